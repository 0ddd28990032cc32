"""The in-memory benchmark scenarios run at smoke size and check what they claim."""

from pathlib import Path

import pytest

from tenfold.core.bench import BenchContext, Outcome
from tenfold.core.errors import BenchError
from tenfold.pipeline_engine import bench


def _ctx(tmp_path: Path) -> BenchContext:
    return BenchContext(mode="smoke", workdir=tmp_path)


def test_scenarios_name_the_document_rows_and_one_headline() -> None:
    scenarios = bench.scenarios()
    assert sum(s.headline for s in scenarios) == 1
    assert len({s.name for s in scenarios}) == len(scenarios)
    rows = {(s.table, s.row) for s in scenarios}
    for row in ("10K/sec", "100K/sec", "saturation"):
        assert ("Event Processing Performance", row) in rows
    for row in (
        "Source (Kafka)",
        "Transform (JSON)",
        "Filter",
        "Enrichment (DB)",
        "Sink (Postgres)",
    ):
        assert ("Pipeline Stages", row) in rows


@pytest.mark.parametrize("name", ["in_memory_json_filter_enrich", "in_memory_vs_bytewax_batched"])
def test_in_memory_ours_and_bytewax_write_the_same_events(tmp_path: Path, name: str) -> None:
    scenario = next(s for s in bench.scenarios() if s.name == name)
    ctx = _ctx(tmp_path)
    ours = scenario.ours.prepare(ctx)()
    assert scenario.peer is not None
    peer = scenario.peer.prepare(ctx)()
    assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
    assert ours.ops == peer.ops == 5_000
    assert (
        ours.metrics["written"]
        == peer.metrics["written"]
        == bench.expected_count(bench.make_messages(5_000, ctx.seed))
    )
    # The harness compares these: the count and a hash of every event written, in order.
    assert ours.result == peer.result
    assert ours.result[0] == ours.metrics["written"]


def test_the_content_check_tells_a_changed_event(tmp_path: Path, monkeypatch) -> None:
    scenario = next(s for s in bench.scenarios() if s.name == "in_memory_vs_bytewax_batched")
    assert scenario.peer is not None
    ctx = _ctx(tmp_path)
    peer = scenario.peer.prepare(ctx)()
    # Ours joins with a table whose tiers are one off: the same count, other events.
    shifted = {u: (country, tier + 1) for u, (country, tier) in bench.user_table().items()}
    monkeypatch.setattr(bench, "_USERS", shifted)
    ours = scenario.ours.prepare(ctx)()
    assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
    assert ours.result[0] == peer.result[0]
    assert ours.result[1] != peer.result[1]


def test_rate_scenario_reports_latencies_and_holds_the_rate(tmp_path: Path) -> None:
    scenario = next(s for s in bench.scenarios() if s.name == "rate_10k")
    result = scenario.ours.prepare(_ctx(tmp_path))()
    assert isinstance(result, Outcome)
    assert result.latencies_ms
    assert 0 < result.ops <= 3_100  # at most 0.3 s at 10K ev/s (open loop, never ahead)
    assert result.metrics["backpressure_episodes"] == 0


def test_kernel_runs_and_checks_its_count() -> None:
    bench.kernel()


def test_ours_refuses_to_report_a_wrong_count(tmp_path: Path, monkeypatch) -> None:
    ctx = _ctx(tmp_path)
    monkeypatch.setattr(bench, "expected_count", lambda messages: 0)
    op = bench._ours_in_memory(ctx)
    with pytest.raises(BenchError, match="expected 0"):
        op()


def test_the_80pct_row_runs_at_four_fifths_of_a_measured_saturation(tmp_path: Path) -> None:
    scenario = next(s for s in bench.scenarios() if s.name == "rate_80pct_saturation")
    assert scenario.table == "Event Processing Performance"
    result = scenario.ours.prepare(_ctx(tmp_path))()
    assert isinstance(result, Outcome)
    m = result.metrics
    assert m["saturation_ev_per_s"] > 0
    assert abs(m["target_ev_per_s"] - 0.8 * m["saturation_ev_per_s"]) <= 1
    assert result.latencies_ms and result.ops > 0
    assert m["p50_ms_first_third"] >= 0 and m["p50_ms_last_third"] >= 0
