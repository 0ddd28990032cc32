from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenfold.core._harness import run_scenario, run_system_in_process
from tenfold.core._report import markdown_report
from tenfold.core._runner import compare_baseline, save_baseline
from tenfold.core.bench import BenchContext, Outcome, Scenario, Seed, Subject


def _counting(n: int, calls: list[str], who: str):
    def prepare(ctx: BenchContext):
        def op() -> Outcome:
            calls.append(who)
            return Outcome(n, {"checked": "equal"})

        return op

    return prepare


def test_interleaves_and_reports_both_sides(tmp_path: Path) -> None:
    calls: list[str] = []
    scenario = Scenario(
        "demo", "things", Subject("ours", _counting(10, calls, "A")), Subject("peer", _counting(5, calls, "B")),
        Seed(100, p95_ms=1.0), "Table", "Row", rounds=4, warmup=1,
    )  # fmt: skip
    rec = run_scenario(scenario, "quick", workdir=tmp_path)
    assert "error" not in rec, rec.get("traceback")
    assert calls == ["A", "B", "A", "B", "B", "A", "A", "B", "B", "A"]
    assert rec["ops"] == 40 and rec["peer"]["ops"] == 20
    assert rec["seed"] == {"ops_per_s": 100, "p95_ms": 1.0}
    assert rec["speedup_vs_peer"] == pytest.approx(
        rec["ops_per_s"] / rec["peer"]["ops_per_s"], rel=1e-3
    )
    assert rec["metrics"] == {"checked": "equal"}


def test_bad_op_result_and_exceptions_are_reported(tmp_path: Path) -> None:
    bad = Scenario("bad", "x", Subject("ours", lambda ctx: lambda: "nope"))
    assert "must return int" in run_scenario(bad, "smoke", workdir=tmp_path)["error"]

    def boom(ctx: BenchContext):
        raise RuntimeError("prepare failed")

    rec = run_scenario(Scenario("boom", "x", Subject("ours", boom)), "smoke", workdir=tmp_path)
    assert rec["error"] == "RuntimeError: prepare failed"


def test_missing_peer_is_reported_not_fatal(tmp_path: Path) -> None:
    def no_peer(ctx: BenchContext):
        raise ImportError("No module named 'peerlib'")

    sc = Scenario("p", "x", Subject("ours", lambda ctx: lambda: 1), Subject("peerlib", no_peer))
    rec = run_scenario(sc, "smoke", workdir=tmp_path)
    assert rec["ops"] == 1
    assert rec["peer"]["error"] == "ImportError: No module named 'peerlib'"


def test_mode_restriction(tmp_path: Path) -> None:
    sc = Scenario("big", "x", Subject("ours", lambda ctx: lambda: 1), modes=("full",))
    assert "skipped" in run_scenario(sc, "quick", workdir=tmp_path)


def test_core_smoke_has_a_peer_and_speedup_everywhere(tmp_path: Path) -> None:
    result = run_system_in_process("core", "smoke", workdir=tmp_path)
    names = {s["name"] for s in result["scenarios"]}
    assert {"governor_cpu_throttle_check", "plugin_load", "crypto_ed25519_sign"} <= names
    for sc in result["scenarios"]:
        assert "error" not in sc, (sc["name"], sc.get("traceback"))
        if sc["name"] == "governor_cgroup_cpu_quota":
            assert "skipped" in sc or 0 < sc["metrics"]["share_pct"] <= 55
            if "skipped" not in sc:
                assert sc["peer"]["metrics"]["share_pct"] > 0
            continue
        assert sc["peer"]["ops_per_s"] > 0 and sc["speedup_vs_peer"] > 0
        assert sc["seed"]["ops_per_s"] > 0
    full = {
        "machine": {"cores": 2, "cpu": "x", "python": "3.11"},
        "mode": "smoke",
        "systems": {"core": result},
    }
    text = markdown_report(full)
    assert "## Quick Reference" in text and "### Resource Governor" in text and "2 cores" in text
    save_baseline(full, tmp_path / "baseline")
    assert compare_baseline(full, tmp_path / "baseline") == []
    worse = json.loads(json.dumps(full))
    for sc in worse["systems"]["core"]["scenarios"]:
        sc["best_ops_per_s"] *= 0.5
    assert len(compare_baseline(worse, tmp_path / "baseline")) == len(result["scenarios"])
    # A row measured in another mode (--full vs a quick baseline) is not compared.
    for sc in worse["systems"]["core"]["scenarios"]:
        assert sc["mode"] == "smoke"
        sc["mode"] = "full"
    assert compare_baseline(worse, tmp_path / "baseline") == []


def test_cli_bench_json(cli) -> None:
    result = cli("bench", "-p", "core", "--smoke", "--json", "-s", "crypto_ed25519_sign")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (sc,) = data["systems"]["core"]["scenarios"]
    assert data["machine"]["cores"] >= 1
    assert {
        "name",
        "unit",
        "ops_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "rss_mb",
        "cpu_pct",
        "seed",
        "peer",
        "speedup_vs_peer",
    } <= set(sc)


def _systems() -> list[str]:
    from tenfold.core.plugins import system_names

    return [name for name in system_names() if name != "core"]


@pytest.mark.slow
@pytest.mark.parametrize("system", _systems())
def test_every_system_smoke_bench_runs(cli, system: str) -> None:
    """CI's smoke run: every scenario executes at its smallest size (no speed asserted)."""
    result = cli("bench", "-p", system, "--smoke", "--json", timeout=900)
    data = json.loads(result.stdout)["systems"][system]
    assert not data.get("error"), data.get("error")
    failed = {s["name"]: s.get("traceback", s["error"]) for s in data["scenarios"] if "error" in s}
    assert not failed, failed
    assert result.returncode == 0, result.stderr[-2000:]
