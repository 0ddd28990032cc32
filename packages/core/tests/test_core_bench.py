from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenfold.core._harness import run_scenario, run_system_in_process
from tenfold.core._report import fmt_ms, markdown_report
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
        fairness="both count things", checks="the metric says so",
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

    sc = Scenario(
        "p", "x", Subject("ours", lambda ctx: lambda: 1), Subject("peerlib", no_peer),
        fairness="same", unchecked_reason="a test",
    )  # fmt: skip
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
                assert "speedup_vs_peer" not in sc  # different mechanisms: no ratio
            continue
        assert sc["peer"]["ops_per_s"] > 0 and sc["fairness"] and sc["results_checked"]
        if sc["name"] == "plugin_state_transition":
            assert "speedup_vs_peer" not in sc  # pluggy has no state machine: no ratio
        else:
            assert sc["speedup_vs_peer"] > 0
        assert sc["seed"]["ops_per_s"] > 0
        assert sc["latency_kind"] in ("per_unit_mean", "per_call", "per_unit"), sc["name"]
        # Each micro-op returns what it decided, and the harness checked both sides agree.
        if sc["name"].startswith(("governor_", "crypto_")):
            assert sc["results_compared"] == sc["calls"], sc["name"]
    full = {
        "machine": {"cores": 2, "cpu": "x", "python": "3.11"},
        "mode": "smoke",
        "systems": {"core": result},
    }
    text = markdown_report(full)
    assert "## Quick Reference" in text and "### Resource Governor" in text and "2 cores" in text
    # A system the document does not list (the platform) gets its section after the others.
    both = {**full, "systems": {"zz_extra": dict(result, title="Extra System"), "core": result}}
    text_both = markdown_report(both)
    assert text_both.index("## Shared Core") < text_both.index("## Extra System")
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


# -- the harness rules (issue 16) -----------------------------------------------------------


def _ops(n: int, latencies: list[float] | None = None, result: object = None):
    def prepare(ctx: BenchContext):
        return lambda: Outcome(n, latencies_ms=latencies, result=result)

    return prepare


def _row(ours: Subject, peer: Subject | None = None, **kw) -> Scenario:
    kw.setdefault("rounds", 3)
    return Scenario("r", "events", ours, peer, None, "T", "R", **kw)


def test_a_batch_without_unit_latencies_is_never_reported_per_unit(tmp_path: Path) -> None:
    def slow_batch(ctx: BenchContext):
        import time

        return lambda: (time.sleep(0.01), 1000)[1]

    batched = run_scenario(_row(Subject("ours (batched)", slow_batch)), "quick", workdir=tmp_path)
    assert batched["latency_kind"] == "per_call"
    # The latency is the whole call (10 ms), not the call over 1,000 units (10 us).
    assert 9 < batched["p50_ms"] < 100
    stamped = run_scenario(
        _row(Subject("ours", _ops(1000, [0.5] * 1000))), "quick", workdir=tmp_path
    )
    assert stamped["latency_kind"] == "per_unit" and stamped["latency_samples"] == 3000
    seq = run_scenario(
        _row(Subject("ours", _ops(1000), sequential=True)), "quick", workdir=tmp_path
    )
    assert seq["latency_kind"] == "per_unit_mean" and seq["units_per_call"] == 1000
    # The Quick Reference never sets a per-call figure beside the document's p95.
    from tenfold.core._report import quick_reference_rows

    batched["headline"] = True
    rows = quick_reference_rows({"pipeline_engine": {"built": True, "scenarios": [batched]}})
    (row,) = [r for r in rows if r[0] == "Pipeline Engine"]
    assert row[2] == "n/a (per call)"
    stamped["headline"] = True
    rows = quick_reference_rows({"pipeline_engine": {"built": True, "scenarios": [stamped]}})
    (row,) = [r for r in rows if r[0] == "Pipeline Engine"]
    assert stamped["p95_ms"] == pytest.approx(0.5, rel=0.01)
    assert row[2] == fmt_ms(stamped["p95_ms"])


def test_percentiles_need_enough_samples(tmp_path: Path) -> None:
    rec = run_scenario(_row(Subject("ours", _ops(5)), rounds=5), "quick", workdir=tmp_path)
    assert rec["calls"] == 5 and rec["latency_samples"] == 5
    assert rec["p50_ms"] is not None and rec["p95_ms"] is None and rec["p99_ms"] is None
    rec = run_scenario(_row(Subject("ours", _ops(1)), rounds=25), "quick", workdir=tmp_path)
    assert rec["p95_ms"] is not None and rec["p99_ms"] is None


def test_subject_names_reach_the_json_and_the_report(tmp_path: Path) -> None:
    sc = _row(
        Subject("tenfold (Ray backend, 2 workers)", _ops(1, result=7)),
        Subject("ray 2.x", _ops(1, result=7)),
        fairness="both run the same graph",
        checks="the harness compares the results",
        headline=True,
    )
    rec = run_scenario(sc, "quick", workdir=tmp_path)
    assert "error" not in rec, rec.get("traceback")
    assert rec["ours"]["name"] == "tenfold (Ray backend, 2 workers)"
    assert rec["results_compared"] == 3 and rec["results_checked"] is True
    full = {
        "machine": {"cores": 2, "cpu": "x", "python": "3.11"},
        "mode": "quick",
        "systems": {"parallel_framework": {"title": "P", "built": True, "scenarios": [rec]}},
    }
    text = markdown_report(full)
    assert text.count("tenfold (Ray backend, 2 workers)") >= 3  # row, notes, Quick Reference
    assert "both run the same graph" in text


def test_a_peer_row_without_a_result_check_is_refused(tmp_path: Path) -> None:
    ours, peer = Subject("ours", _ops(1)), Subject("peer", _ops(1))
    rec = run_scenario(_row(ours, peer, fairness="same work"), "quick", workdir=tmp_path)
    assert rec["error"].startswith("refused:") and "checks" in rec["error"]
    rec = run_scenario(_row(ours, peer, checks="compared"), "quick", workdir=tmp_path)
    assert rec["error"].startswith("refused:") and "fairness" in rec["error"]
    rec = run_scenario(
        _row(ours, peer, fairness="same work", unchecked_reason="outputs are random"),
        "quick",
        workdir=tmp_path,
    )
    assert "error" not in rec and rec["results_checked"] is False
    assert rec["unchecked_reason"] == "outputs are random"
    # A row without a peer needs neither.
    assert "error" not in run_scenario(_row(ours), "quick", workdir=tmp_path)


def test_results_that_differ_fail_the_row(tmp_path: Path) -> None:
    sc = _row(
        Subject("ours", _ops(1, result=1)),
        Subject("peer", _ops(1, result=2)),
        fairness="same",
        checks="compared",
    )
    rec = run_scenario(sc, "quick", workdir=tmp_path)
    assert "results differ" in rec["error"]


def test_no_ratio_and_overhead_rows(tmp_path: Path) -> None:
    ours, peer = Subject("ours", _ops(1)), Subject("direct", _ops(1))
    kw = {"fairness": "f", "unchecked_reason": "u"}
    rec = run_scenario(_row(ours, peer, comparison="no_ratio", **kw), "quick", workdir=tmp_path)
    assert "speedup_vs_peer" not in rec and rec["like_for_like"] is False
    rec = run_scenario(_row(ours, peer, comparison="overhead", **kw), "quick", workdir=tmp_path)
    assert "speedup_vs_peer" not in rec and "overhead_pct" in rec


def _spawn_holding(mb: int, seconds: float):
    import subprocess
    import sys

    code = f"import time; b = bytearray({mb} << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep({seconds})"

    def prepare(ctx: BenchContext):
        def op() -> int:
            subprocess.run([sys.executable, "-c", code], check=True)
            return 1

        return op

    return prepare


def _idle(ctx: BenchContext):
    import time

    return lambda: time.sleep(0.05)


def test_memory_is_per_side_and_short_children_count(tmp_path: Path) -> None:
    """A side that runs a short-lived child holding 80 MB is charged for it; the other is not."""
    sc = _row(
        Subject("ours", _spawn_holding(80, 0.02)),
        Subject("peer", _idle),
        fairness="f",
        unchecked_reason="u",
        rounds=2,
    )
    rec = run_scenario(sc, "quick", workdir=tmp_path)
    assert "error" not in rec, rec.get("traceback")
    assert rec["ours"]["rss_mb"] >= 80, rec["ours"]
    assert rec["peer"]["rss_mb"] < 40, rec["peer"]


def _busy_worker(ctx: BenchContext):
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    ctx.callback(lambda: (proc.kill(), proc.wait()))
    return lambda: time.sleep(0.3)


def test_live_workers_cpu_is_counted(tmp_path: Path) -> None:
    """CPU burnt by a worker that stays alive across calls counts towards its side."""
    sc = _row(
        Subject("ours", _busy_worker),
        Subject("peer", _idle),
        fairness="f",
        unchecked_reason="u",
        rounds=2,
    )
    rec = run_scenario(sc, "quick", workdir=tmp_path)
    assert "error" not in rec, rec.get("traceback")
    # A busy loop gets at least a few percent of a core even on a loaded machine; counted
    # only when reaped (the old harness), it would show 0.
    assert rec["ours"]["cpu_pct"] > 2, rec["ours"]
    assert rec["peer"]["cpu_pct"] * 3 < rec["ours"]["cpu_pct"], (rec["ours"], rec["peer"])


def test_document_figures_file_agrees_with_the_document() -> None:
    """doc_figures.json is derived from the spec, never edited by hand."""
    from importlib import resources

    from tenfold.core._docfigures import doc_seed, parse_document

    spec = (
        Path(__file__).resolve().parents[3] / ".." / "shared" / "spec" / "performance-benchmarks.md"
    )
    assert spec.is_file(), f"the performance document is missing at {spec}"
    committed = json.loads(resources.files("tenfold.core").joinpath("doc_figures.json").read_text())
    assert parse_document(spec.read_text(encoding="utf-8")) == committed
    seed = doc_seed("chaos_engine", "Throughput Benchmarks", "CPU Fault Injection")
    assert seed is not None
    assert (seed.ops_per_s, seed.p50_ms, seed.p95_ms, seed.p99_ms) == (12_500, 5.2, 8.5, 12.1)
    kernel = doc_seed("cloud_kernel", "Syscall Performance", "open()")
    assert kernel is not None and kernel.ops_per_s == 476_000 and kernel.p50_ms == 0.0021
    core = doc_seed("core", "Cryptography", "BLAKE3 Hash (1MB)")
    assert core is not None and core.ops_per_s == 1_250 and core.p50_ms == 0.8
    assert doc_seed("core", "Cryptography", "no such row") is None


def test_quick_reference_takes_the_like_for_like_row() -> None:
    from tenfold.core._report import quick_pick

    base = {"unit": "events", "ops_per_s": 1.0, "peer": {"name": "p", "ops_per_s": 1.0}}
    unfair = {**base, "name": "a", "headline": True, "like_for_like": False, "speedup_vs_peer": 9.0}
    fair = {**base, "name": "b", "like_for_like": True, "speedup_vs_peer": 1.1}
    assert quick_pick([unfair, fair])["name"] == "b"
    assert quick_pick([{**unfair, "like_for_like": True}, fair])["name"] == "a"


def test_a_peer_stopped_at_a_cap_gets_no_ratio(tmp_path: Path) -> None:
    def capped(ctx: BenchContext):
        return lambda: Outcome(1, {"unfinished_calls": 1, "peer_result": "did not finish"})

    scenario = Scenario(
        "capped", "things", Subject("ours", _counting(10, [], "A")), Subject("peer", capped),
        rounds=2, fairness="both simplify the same expression", checks="values compared",
    )  # fmt: skip
    rec = run_scenario(scenario, "quick", workdir=tmp_path)
    assert "error" not in rec, rec.get("traceback")
    assert rec["speedup_vs_peer"] is None
    assert rec["peer"]["metrics"]["peer_result"] == "did not finish"
