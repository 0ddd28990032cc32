"""The Scalability Analysis tables: rows named ``<op>_<N>_nodes`` / ``_workers`` in, tables out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tenfold.core._report import markdown_report
from tenfold.core._runner import merge_results
from tenfold.core._scaling import SCALING_TABLES, scaling_factor, scaling_markdown, scaling_rows
from tenfold.core.errors import BenchError
from tenfold.core.testing import run_cli


def _row(name: str, ours: float, peer: float | None = None, **extra: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {"name": name, "unit": "events", "ops_per_s": ours, **extra}
    sc["ours"] = {"name": "tenfold"}
    if peer is not None:
        sc["peer"] = {"name": "plain etcd", "ops_per_s": peer}
    return sc


def _result(cores: int = 2) -> dict[str, Any]:
    return {
        "machine": {"cores": cores, "cpu": "test", "python": "3.11"},
        "mode": "quick",
        "systems": {
            "autoblocker_ledger": {
                "title": "Autoblocker Ledger",
                "scenarios": [
                    _row("append_1_nodes", 1000.0, 2000.0, counts="a shard is an etcd cluster"),
                    _row("append_2_nodes", 1600.0, 3000.0, counts="a shard is an etcd cluster"),
                    _row("append_8_nodes", 2400.0, 4000.0, mode="full"),
                    _row("write_3_nodes", 99.0),  # cluster size, not a scaling row
                    _row("write_3_nodes_vs_txn", 99.0),
                ],
            },
            "contract_compiler": {
                "title": "Contract Compiler",
                "scenarios": [
                    _row("compile_1_workers", 10.0, 8.0),
                    _row("compile_2_workers", 19.0, 8.0),
                ],
            },
            "pipeline_engine": {"title": "Pipeline Engine", "scenarios": [_row("other", 5.0)]},
        },
    }


def test_scaling_factor_is_actual_over_ideal_speedup() -> None:
    assert scaling_factor(1800, 1000, 2) == pytest.approx(0.9)
    assert scaling_factor(4000, 1000, 4) == pytest.approx(1.0)
    assert scaling_factor(5, 0, 2) is None


def test_horizontal_table_fills_cells_from_nodes_rows() -> None:
    horizontal = SCALING_TABLES[0]
    headers, rows, notes = scaling_rows(horizontal, _result()["systems"], 2)
    assert headers == [
        "System",
        "operation",
        "1 Node",
        "2 Nodes",
        "4 Nodes",
        "8 Nodes",
        "Scaling Factor",
    ]
    by_system = {r[0]: r for r in rows}
    ledger = by_system["Autoblocker Ledger"]
    assert ledger[1] == "append"
    assert "ours 1,000/s" in ledger[2] and "peer 2,000/s" in ledger[2] and "doc 50K/s" in ledger[2]
    assert "scaling" not in ledger[2]  # 1 by definition at one node
    # 1600/1000 over 2 = 0.80; the peer 3000/2000 over 2 = 0.75.
    assert "scaling 0.80 (peer 0.75)" in ledger[3] and "doc 85K/s" in ledger[3]
    assert ledger[4].startswith("not run") and "doc 145K/s" in ledger[4]
    # 2400/1000 over 8 = 0.30, marked as measured at --full sizes.
    assert "ours 2,400/s [--full]" in ledger[5] and "scaling 0.30 (peer 0.25)" in ledger[5]
    assert ledger[6] == "ours 0.30 at 8; peer 0.25; doc 0.60"
    assert not any(r[1] == "write" for r in rows), "a cluster-size row leaked into the table"
    assert by_system["Chaos Engine"][2].startswith("not run")
    assert by_system["Pipeline Engine"][2].startswith("no rows named")
    assert any("a shard is an etcd cluster" in n for n in notes)


def test_the_note_under_a_table_says_which_sizes_ran_and_describes_only_those() -> None:
    """Quick mode declares the 4- and 8-node rows (skipped, with their own counts text):
    the note must describe the largest row that ran, never a skipped one."""
    horizontal = SCALING_TABLES[0]
    scenarios = [
        _row("faults_1_nodes", 10.0, 5.0, counts="1 agent in 1 node"),
        _row("faults_2_nodes", 18.0, 9.0, counts="2 agents in 2 nodes"),
        _row("faults_4_nodes", 0.0, counts="4 agents in 4 nodes", skipped="runs only in full"),
        _row("faults_8_nodes", 0.0, counts="8 agents in 8 nodes", skipped="runs only in full"),
    ]
    systems = {"chaos_engine": {"title": "Chaos Engine", "scenarios": scenarios}}
    _headers, _rows, notes = scaling_rows(horizontal, systems, 2)
    (note,) = notes
    assert note.startswith("- **Chaos Engine (faults)**, measured at 1 and 2 nodes (not at 4, 8)")
    assert "2 agents in 2 nodes" in note and "8 agents" not in note and "4 agents" not in note
    for sc in scenarios[2:]:
        del sc["skipped"]
    (note,) = scaling_rows(horizontal, systems, 2)[2]
    assert "measured at 1, 2, 4 and 8 nodes;" in note and "8 agents in 8 nodes" in note
    assert "not at" not in note


def test_vertical_table_marks_counts_beyond_the_cores() -> None:
    vertical = SCALING_TABLES[1]
    _h, rows, _n = scaling_rows(vertical, _result()["systems"], 2)
    compiler = next(r for r in rows if r[0] == "Contract Compiler")
    assert "ours 10.0/s" in compiler[2]
    assert "scaling 0.95" in compiler[3] and "doc 250/s" in compiler[3]
    for cell, doc in zip(compiler[4:7], ("480/s", "920/s", "1,700/s"), strict=True):
        assert cell.startswith("needs more cores") and f"doc {doc}" in cell
    learner = next(r for r in rows if r[0] == "Auto Learner")
    assert learner[3].startswith("not run") and learner[4].startswith("needs more cores")
    # On a 16-core machine the same missing columns are "not run", never "needs more cores".
    _h, rows16, _n = scaling_rows(vertical, _result(16)["systems"], 16)
    assert not any("needs more cores" in c for r in rows16 for c in r)


def test_report_carries_both_tables() -> None:
    text = markdown_report(_result())
    assert "## Scalability Analysis" in text
    assert text.index("### Horizontal Scaling") < text.index("### Vertical Scaling")
    assert scaling_markdown(_result()).count("| Autoblocker Ledger | append |") == 1


def _full_run() -> dict[str, Any]:
    """A --full run of the ledger's scaling rows only, as `tenfold bench --json` saves it."""
    rows = [
        _row(f"append_{n}_nodes", rate, 2.0 * n, mode="full", counts="a shard in a node")
        for n, rate in ((1, 100.0), (2, 180.0), (4, 320.0), (8, 480.0))
    ]
    return {
        "machine": {"cores": 2, "cpu": "test", "python": "3.11"},
        "mode": "full",
        "systems": {"autoblocker_ledger": {"title": "Autoblocker Ledger", "scenarios": rows}},
        "runs": [
            {
                "mode": "full",
                "systems": ["autoblocker_ledger"],
                "scenarios": [r["name"] for r in rows],
                "start": "2026-12-06 15:40 UTC",
                "end": "2026-12-06 16:00 UTC",
                "load_start": 0.5,
                "load_end": 1.5,
            }
        ],
    }


def test_a_later_run_replaces_the_same_rows_and_keeps_the_others() -> None:
    quick = _result() | {"memory": [{"system": "autoblocker_ledger", "baseline_mb": 9.0}]}
    full = _full_run() | {"memory": [{"system": "autoblocker_ledger", "baseline_mb": 1.0}]}
    merged = merge_results([quick, full])
    names = [sc["name"] for sc in merged["systems"]["autoblocker_ledger"]["scenarios"]]
    # The quick run's order holds; the row only the full run has comes last.
    assert names == [
        "append_1_nodes",
        "append_2_nodes",
        "append_8_nodes",
        "write_3_nodes",
        "write_3_nodes_vs_txn",
        "append_4_nodes",
    ]
    rates = {
        sc["name"]: sc["ops_per_s"] for sc in merged["systems"]["autoblocker_ledger"]["scenarios"]
    }
    assert rates["append_1_nodes"] == 100.0 and rates["write_3_nodes"] == 99.0
    assert merged["systems"]["contract_compiler"] == _result()["systems"]["contract_compiler"]
    assert merged["memory"] == [{"system": "autoblocker_ledger", "baseline_mb": 1.0}]
    assert merged["mode"] == "quick" and len(merged["runs"]) == 2
    # The factor at 8 comes from the full run's own 1-node row, not the quick one's.
    text = markdown_report({k: v for k, v in merged.items() if k != "memory"})
    assert "ours 0.60 at 8; peer 1.00" in text
    assert (
        "2. full run of autoblocker_ledger (4 rows), 2026-12-06 15:40 UTC to 15:00 UTC" not in text
    )
    assert "2. full run of autoblocker_ledger (4 rows), 2026-12-06 15:40 UTC to 16:00 UTC" in text
    assert "load average 0.5 -> 1.5" in text


def test_merging_nothing_is_refused() -> None:
    with pytest.raises(BenchError, match="no saved results"):
        merge_results([])


def test_bench_reports_on_several_saved_runs(tmp_path: Path) -> None:
    (tmp_path / "quick.json").write_text(json.dumps(_result()))
    (tmp_path / "full.json").write_text(json.dumps(_full_run()))
    (tmp_path / "bad.json").write_text("[1, 2]")
    out = tmp_path / "report.md"
    args = ["bench", "--from-json", str(tmp_path / "quick.json")]
    result = run_cli(*args, "--from-json", str(tmp_path / "full.json"), "--report", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "**Runs**" in text and "ours 480/s [--full]" in text
    result = run_cli(*args, "--from-json", str(tmp_path / "bad.json"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tenfold: error: {tmp_path / 'bad.json'}: not a saved bench result (no 'systems' object)"
    ]


def test_a_run_saved_without_a_stamp_still_says_its_mode_and_systems() -> None:
    old = {k: v for k, v in _full_run().items() if k != "runs"}
    merged = merge_results([_result(), old])
    assert merged["runs"][1] == {"mode": "full", "systems": ["autoblocker_ledger"]}
    assert "2. full run of autoblocker_ledger, time not recorded" in markdown_report(merged)
