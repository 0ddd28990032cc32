"""The search and shift report as a self-contained HTML page with an SVG plot."""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["html_report"]


def _svg(scores: list[float], greater: bool = True, width: int = 640, height: int = 220) -> str:
    if not scores:
        return ""
    lo, hi = min(scores), max(scores)
    span = (hi - lo) or 1.0
    pts = []
    best = -1e9 if greater else 1e9
    best_pts = []
    for i, s in enumerate(scores):
        x = 40 + (width - 60) * (i / max(1, len(scores) - 1))
        y = height - 30 - (height - 50) * (s - lo) / span
        pts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#888"/>')
        best = max(best, s) if greater else min(best, s)
        by = height - 30 - (height - 50) * (best - lo) / span
        best_pts.append(f"{x:.1f},{by:.1f}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<text x="5" y="15" font-size="12">validation score per trial (line: best so far); {lo:.4f} .. {hi:.4f}</text>'
        + "".join(pts)
        + f'<polyline fill="none" stroke="#c33" stroke-width="2" points="{" ".join(best_pts)}"/></svg>'
    )


_COLOURS = ("#c33", "#36c", "#393", "#960")


def svg_curve(
    curves: dict[str, list[tuple[float, float]]],
    metric: str,
    budget_s: float | None = None,
    width: int = 640,
    height: int = 240,
) -> str:
    """Best validation score over time as step lines, one per searcher (ours, FLAML...)."""
    points = [p for c in curves.values() for p in c]
    if not points:
        return ""
    t_max = max([budget_s or 0.0, *(t for t, _ in points)]) or 1.0
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span = (hi - lo) or max(abs(hi), 1.0) * 0.01
    lo, hi = lo - 0.05 * span, hi + 0.05 * span

    def xy(t: float, v: float) -> str:
        return f"{50 + (width - 70) * t / t_max:.1f},{height - 30 - (height - 60) * (v - lo) / (hi - lo):.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        f'<text x="5" y="15" font-size="12">best validation {html.escape(metric)} so far against '
        f"seconds since the start ({lo:.4f} .. {hi:.4f}; 0 .. {t_max:.1f} s)</text>",
        f'<line x1="50" y1="{height - 30}" x2="{width - 20}" y2="{height - 30}" stroke="#999"/>',
    ]
    for k, (name, curve) in enumerate(curves.items()):
        if not curve:
            continue
        steps = []
        for i, (t, v) in enumerate(curve):
            if i:
                steps.append(xy(t, curve[i - 1][1]))
            steps.append(xy(t, v))
        steps.append(xy(t_max, curve[-1][1]))
        colour = _COLOURS[k % len(_COLOURS)]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(steps)}"/>'
            f'<text x="{width - 200}" y="{35 + 14 * k}" font-size="12" fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def html_report(
    summary: dict[str, Any],
    trials: list[dict[str, Any]],
    peer_curves: dict[str, list[tuple[float, float]]] | None = None,
) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(t['family'])}</td><td>{html.escape(t['source'])}</td>"
        f"<td>{t['score']:.4f}</td><td>{t['seconds']:.2f}</td><td><code>{html.escape(json.dumps(t['config']))}</code></td></tr>"
        for i, t in enumerate(trials)
    )
    shift = summary.get("shift") or {}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tenfold learn report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style></head><body>
<h1>Search report</h1>
<p>Task {html.escape(str(summary.get("task", "")))}; metric {html.escape(str(summary.get("metric")))}: validation {summary.get("validation_score")},
holdout {summary.get("holdout_score")}, gap {summary.get("validation_holdout_gap")}.</p>
<h2>Best score over time</h2>
{svg_curve({"tenfold": [tuple(p) for p in summary.get("best_over_time", [])], **(peer_curves or {})}, str(summary.get("metric")))}
<h2>Every trial</h2>
{_svg([t["score"] for t in trials], str(summary.get("metric")) not in ("log_loss", "rmse", "mae"))}
<h2>Shift diagnostics</h2>
<p>Domain classifier AUC {shift.get("domain_classifier_auc")} (0.5: no shift); shifted: {shift.get("shifted")};
reweighted: {shift.get("reweighted")}; calendar-like columns left out: {html.escape(", ".join(shift.get("time_like_columns", [])) or "none")}.</p>
<p>Columns that tell training from later data apart most: {html.escape(", ".join(f"{n} ({g})" for n, g in shift.get("top_features", [])))}</p>
<h2>Warnings</h2><ul>{"".join(f"<li>{html.escape(w)}</li>" for w in summary.get("warnings", []))}</ul>
<h2>Trials</h2><table><tr><th>#</th><th>family</th><th>source</th><th>score</th><th>s</th><th>config</th></tr>{rows}</table>
</body></html>
"""
