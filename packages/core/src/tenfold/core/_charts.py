"""Charts for ``docs/benchmarks.md``: plain SVG drawn from the harness's JSON, no plotting library.

Three kinds, each a pure function from result rows to SVG text (so they are tested without
a browser and the report writer only saves them):

* ``speedup_chart``: per system, each row that has a peer, ours over the peer on a log
  scale (1x in the middle; right of it we are faster);
* ``rate_latency_chart``: latency at each offered rate (rows named ``rate_<N>k``), p50
  and p95, for the open-loop rows of a streaming system;
* ``scaling_chart``: throughput against nodes or workers for rows named ``..._<N>_...``
  in a scaling table, beside the ideal line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

__all__ = [
    "rate_latency_chart",
    "scaling_chart",
    "speedup_chart",
    "system_charts",
    "write_charts",
]

_FONT = 'font-family="sans-serif" font-size="12"'
_GREEN, _RED, _BLUE, _GREY = "#2e7d32", "#c62828", "#1565c0", "#9e9e9e"


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="10" y="18" {_FONT} font-weight="bold">{escape(title)}</text>',
            *body,
            "</svg>",
            "",
        ]
    )


def speedup_chart(title: str, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Bars of ours / peer per row (log scale, 1x centred); ``None`` when no row has a peer."""
    bars = [
        (str(r.get("row") or r["name"]), float(r["speedup_vs_peer"]))
        for r in rows
        if isinstance(r.get("speedup_vs_peer"), int | float) and r["speedup_vs_peer"] > 0
    ]
    if not bars:
        return None
    label_w, bar_w, row_h = 280, 360, 22
    span = max([1.0, *(abs(math.log10(v)) for _, v in bars)])
    span = math.ceil(span * 2) / 2
    mid = label_w + bar_w / 2
    height = 40 + row_h * len(bars) + 30
    body = [f'<line x1="{mid}" y1="28" x2="{mid}" y2="{height - 28}" stroke="{_GREY}"/>']
    for i, (label, value) in enumerate(bars):
        y = 32 + i * row_h
        extent = math.log10(value) / span * (bar_w / 2)
        x = mid if extent >= 0 else mid + extent
        colour = _GREEN if value >= 1 else _RED
        short = label if len(label) <= 40 else label[:37] + "..."
        body += [
            f'<text x="{label_w - 6}" y="{y + 14}" {_FONT} text-anchor="end">{escape(short)}</text>',
            f'<rect x="{x:.1f}" y="{y + 3}" width="{abs(extent):.1f}" height="{row_h - 6}" '
            f'fill="{colour}"/>',
            f'<text x="{mid + (extent + 4 if extent >= 0 else 4):.1f}" y="{y + 14}" {_FONT}>'
            f"{value:.3g}x</text>",
        ]
    axis_y = height - 12
    for mark in (-span, 0.0, span):
        x = mid + mark / span * (bar_w / 2)
        body.append(
            f'<text x="{x:.1f}" y="{axis_y}" {_FONT} text-anchor="middle">{10**mark:.3g}x</text>'
        )
    return _svg(label_w + bar_w + 60, height, body, title)


def _line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    colours: Sequence[str],
) -> str:
    width, height, left, bottom, top, right = 520, 300, 70, 40, 30, 120
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x_max, y_max = max(xs) or 1.0, max(ys) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + x / x_max * plot_w

    def py(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        f'stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 8}" {_FONT} text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="14" y="{top + plot_h / 2}" {_FONT} transform="rotate(-90 14 '
        f'{top + plot_h / 2})" text-anchor="middle">{escape(y_label)}</text>',
        f'<text x="{left - 4}" y="{top + 4}" {_FONT} text-anchor="end">{y_max:.3g}</text>',
        f'<text x="{left + plot_w}" y="{top + plot_h + 14}" {_FONT} text-anchor="end">'
        f"{x_max:.3g}</text>",
    ]
    for i, (name, pts) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        ordered = sorted(pts)
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ordered)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body += [
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in ordered
        ]
        body.append(
            f'<text x="{left + plot_w + 10}" y="{top + 14 + 16 * i}" {_FONT} fill="{colour}">'
            f"{escape(name)}</text>"
        )
    return _svg(width, height, body, title)


_RATE = re.compile(r"rate_(\d+)k$")


def rate_latency_chart(title: str, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """p50 and p95 latency (ms) against offered rate for rows named ``rate_<N>k``."""
    p50: list[tuple[float, float]] = []
    p95: list[tuple[float, float]] = []
    for r in rows:
        m = _RATE.search(str(r.get("name", "")))
        if m and isinstance(r.get("p50_ms"), int | float):
            rate = float(m.group(1)) * 1000
            p50.append((rate, float(r["p50_ms"])))
            if isinstance(r.get("p95_ms"), int | float):
                p95.append((rate, float(r["p95_ms"])))
    if len(p50) < 2:
        return None
    return _line_chart(
        title, "offered events/s", "latency (ms)", {"p50": p50, "p95": p95}, [_BLUE, _RED]
    )


_NODES = re.compile(r"_(\d+)_(?:nodes?|writers?|workers?|shards?|agents?|engines?)\b")


def scaling_chart(title: str, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Throughput against node count for rows named ``..._<N>_nodes`` (or writers, workers,
    shards, agents, engines), beside the ideal (linear from the smallest count)."""
    points = []
    for r in rows:
        m = _NODES.search(str(r.get("name", "")))
        if m and isinstance(r.get("ops_per_s"), int | float) and r["ops_per_s"] > 0:
            points.append((float(m.group(1)), float(r["ops_per_s"])))
    if len(points) < 2:
        return None
    points.sort()
    n0, r0 = points[0]
    ideal = [(n, r0 * n / n0) for n, _ in points]
    return _line_chart(
        title, "nodes", "units/s", {"measured": points, "ideal": ideal}, [_BLUE, _GREY]
    )


def system_charts(system: str, title: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Every chart that applies to one system's rows, by file name (``<system>-<kind>.svg``)."""
    charts = {
        f"{system}-speedup.svg": speedup_chart(f"{title}: ours over the peer, same run", rows),
        f"{system}-latency.svg": rate_latency_chart(f"{title}: latency vs offered rate", rows),
        f"{system}-scaling.svg": scaling_chart(f"{title}: scaling", rows),
    }
    return {name: svg for name, svg in charts.items() if svg is not None}


def write_charts(result: Mapping[str, Any], report: Path) -> str:
    """Save every system's charts in ``charts/`` beside ``report``; return the Markdown section
    that shows them (empty when no row makes a chart)."""
    folder = report.parent / "charts"
    lines: list[str] = []
    for system, data in result.get("systems", {}).items():
        rows = data.get("scenarios") or []
        charts = system_charts(system, str(data.get("title", system)), rows)
        if not charts:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name, svg in charts.items():
            (folder / name).write_text(svg)
            lines.append(f"![{escape(name[:-4])}](charts/{name})")
    if not lines:
        return ""
    return "\n".join(["## Charts", "", *(f"{line}\n" for line in lines)])
