"""The benchmark scenarios run in smoke mode and check themselves against the peers."""

from pathlib import Path

import pytest

from tenfold.core.bench import BenchContext, Outcome
from tenfold.core.testing import run_both_sides
from tenfold.symbolic_modeler.bench import scenarios


@pytest.mark.parametrize(
    "name", ["reduce_5_ops", "reduce_20_ops", "match_10_patterns_ac", "reduce_5_ops_vs_simplify"]
)
def test_smoke_scenarios_run_and_agree_with_the_peer(name: str, tmp_path: Path) -> None:
    (scenario,) = [s for s in scenarios() if s.name == name]
    assert scenario.peer is not None
    ours, peer = run_both_sides(scenario, tmp_path)
    assert isinstance(ours, Outcome)
    assert ours.ops >= 1 and (peer if isinstance(peer, int) else 1) >= 1
    if name.endswith("simplify"):  # the worker times simplify itself, within the 10 s cap
        assert isinstance(peer, Outcome) and peer.latencies_ms is not None
        assert 0 < peer.latencies_ms[0] <= 10_000
    if name.startswith("reduce"):
        assert ours.metrics["equivalence_pass_rate"] == 1.0
    else:
        assert ours.metrics["equal_to_peer"] == 1


def test_exactly_one_headline() -> None:
    assert sum(s.headline for s in scenarios()) == 1


def test_saturation_scenario_runs_and_never_grows_terms(tmp_path: Path) -> None:
    (scenario,) = [s for s in scenarios() if s.name == "saturate_20_ops"]
    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    with ctx.stack:
        op = scenario.ours.prepare(ctx)
        outcomes = [op() for _ in range(3)]
    for out in outcomes:
        assert isinstance(out, Outcome) and out.ops == 1
        assert 0 < float(out.metrics["size_vs_reduce"]) <= 1.0


def test_only_the_1000_pattern_ac_row_takes_fewer_subjects(tmp_path: Path) -> None:
    # ours and MatchPy both convert this one list, so they match the same subjects
    from tenfold.symbolic_modeler.bench import _match_inputs

    ctx = BenchContext(mode="full", workdir=tmp_path)
    patterns, subjects = _match_inputs(ctx, 1000, True)
    assert len(patterns) == 1000 and len(subjects) == 12
    assert len(_match_inputs(ctx, 100, True)[1]) == len(_match_inputs(ctx, 1000, False)[1]) == 50


def test_a_capped_simplify_call_is_no_result_and_gives_no_speedup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cap SymPy cannot meet: the call must count no unit and no latency (a capped
    # call used to count as one result taking 10 s, so the row showed a speedup
    # over a result that never came), and the row must say it did not finish.
    import tenfold.symbolic_modeler.bench as bench

    monkeypatch.setattr(bench, "SIMPLIFY_CAP_S", 0.0001)
    (scenario,) = [s for s in scenarios() if s.name == "reduce_500_ops_vs_simplify"]
    assert scenario.peer is not None
    ctx = BenchContext(mode="full", workdir=tmp_path)
    with ctx.stack:
        out = scenario.peer.prepare(ctx)()
    assert isinstance(out, Outcome)
    assert out.ops == 0 and not out.latencies_ms
    assert out.metrics["simplify_timeouts_10s"] == 1
    assert "did not finish in 10 s on 1 of 1 calls" in str(out.metrics["peer_result"])


def test_vertical_rows_reduce_the_same_batch_at_1_and_2_workers(tmp_path: Path) -> None:
    rows = {s.name: s for s in scenarios() if s.table == "Vertical Scaling"}
    assert sorted(rows) == ["reduce_1_workers", "reduce_2_workers"]
    assert rows["reduce_2_workers"].seed is not None and rows["reduce_1_workers"].seed is None
    ours, peer = run_both_sides(rows["reduce_2_workers"], tmp_path)
    assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
    assert ours.ops == peer.ops == 32 and ours.metrics["workers"] == 2
