from __future__ import annotations

import xml.etree.ElementTree as ET

from tenfold.core._charts import rate_latency_chart, scaling_chart, speedup_chart, system_charts

ROWS = [
    {"name": "a", "row": "Fault Injection", "speedup_vs_peer": 12.0},
    {"name": "b", "row": "Orchestration", "speedup_vs_peer": 0.5},
    {"name": "c", "row": "No peer"},
    {"name": "rate_10k", "p50_ms": 2.4, "p95_ms": 2.7},
    {"name": "rate_100k", "p50_ms": 2.8, "p95_ms": 3.3},
    {"name": "write_1_nodes", "ops_per_s": 50_000.0},
    {"name": "write_3_nodes", "ops_per_s": 85_000.0},
]


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_speedup_bars_go_right_when_faster_and_left_when_slower() -> None:
    svg = speedup_chart("t", ROWS)
    assert svg is not None
    root = _parse(svg)
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect")][1:]  # after the background
    assert [r.get("fill") for r in rects] == ["#2e7d32", "#c62828"]
    assert "12x" in svg and "0.5x" in svg and "No peer" not in svg


def test_no_peer_rows_no_chart() -> None:
    assert speedup_chart("t", [{"name": "x"}]) is None
    assert rate_latency_chart("t", [{"name": "rate_10k", "p50_ms": 1.0}]) is None
    assert scaling_chart("t", [{"name": "x_1_nodes", "ops_per_s": 1.0}]) is None


def test_every_chart_is_well_formed_svg() -> None:
    charts = system_charts("ledger", "Ledger", ROWS)
    assert set(charts) == {"ledger-speedup.svg", "ledger-latency.svg", "ledger-scaling.svg"}
    for svg in charts.values():
        assert _parse(svg).tag == "{http://www.w3.org/2000/svg}svg"


def test_charts_are_saved_beside_the_report_and_linked(tmp_path) -> None:
    from tenfold.core._charts import write_charts

    report = tmp_path / "docs" / "benchmarks.md"
    result = {"systems": {"ledger": {"title": "Ledger", "scenarios": ROWS}, "core": {}}}
    section = write_charts(result, report)
    assert section.startswith("## Charts")
    assert "![ledger-speedup](charts/ledger-speedup.svg)" in section
    assert sorted(p.name for p in (tmp_path / "docs" / "charts").iterdir()) == [
        "ledger-latency.svg",
        "ledger-scaling.svg",
        "ledger-speedup.svg",
    ]
    assert write_charts({"systems": {}}, report) == ""
