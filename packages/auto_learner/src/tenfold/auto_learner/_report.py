"""The search and shift report as a self-contained HTML page with an SVG plot."""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["html_report"]


def _svg(scores: list[float], width: int = 640, height: int = 220) -> str:
    if not scores:
        return ""
    lo, hi = min(scores), max(scores)
    span = (hi - lo) or 1.0
    pts = []
    best = -1e9
    best_pts = []
    for i, s in enumerate(scores):
        x = 40 + (width - 60) * (i / max(1, len(scores) - 1))
        y = height - 30 - (height - 50) * (s - lo) / span
        pts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#888"/>')
        best = max(best, s)
        by = height - 30 - (height - 50) * (best - lo) / span
        best_pts.append(f"{x:.1f},{by:.1f}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<text x="5" y="15" font-size="12">validation score per trial (line: best so far); {lo:.4f} .. {hi:.4f}</text>'
        + "".join(pts)
        + f'<polyline fill="none" stroke="#c33" stroke-width="2" points="{" ".join(best_pts)}"/></svg>'
    )


def html_report(summary: dict[str, Any], trials: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(t['family'])}</td><td>{html.escape(t['source'])}</td>"
        f"<td>{t['score']:.4f}</td><td>{t['seconds']:.2f}</td><td><code>{html.escape(json.dumps(t['config']))}</code></td></tr>"
        for i, t in enumerate(trials)
    )
    shift = summary.get("shift") or {}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tenfold learn report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style></head><body>
<h1>Search report</h1>
<p>Metric {html.escape(str(summary.get("metric")))}: validation {summary.get("validation_score")},
holdout {summary.get("holdout_score")}, gap {summary.get("validation_holdout_gap")}.</p>
{_svg([t["score"] for t in trials])}
<h2>Shift diagnostics</h2>
<p>Domain classifier AUC {shift.get("domain_classifier_auc")} (0.5: no shift); shifted: {shift.get("shifted")};
reweighted: {shift.get("reweighted")}; calendar-like columns left out: {html.escape(", ".join(shift.get("time_like_columns", [])) or "none")}.</p>
<p>Columns that tell training from later data apart most: {html.escape(", ".join(f"{n} ({g})" for n, g in shift.get("top_features", [])))}</p>
<h2>Warnings</h2><ul>{"".join(f"<li>{html.escape(w)}</li>" for w in summary.get("warnings", []))}</ul>
<h2>Trials</h2><table><tr><th>#</th><th>family</th><th>source</th><th>score</th><th>s</th><th>config</th></tr>{rows}</table>
</body></html>
"""
