"""The Memory Footprint measurements, the sweep's key parsing and the governor's RSS bound."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenfold.core._memory import PROBES, measure, memory_rows, slope
from tenfold.core._sweep import parse_sweep
from tenfold.core.errors import BenchError, ResourceLimitExceeded
from tenfold.core.governor import Governor, GovernorConfig


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(-1e9, 1e9, allow_nan=False),
    st.lists(st.integers(0, 10**6), min_size=2, max_size=8, unique=True),
)
def test_slope_recovers_a_line(a: float, b: float, xs: list[int]) -> None:
    got = slope([(x, a * x + b) for x in xs])
    assert got == pytest.approx(a, rel=1e-6, abs=1e-3)


def test_slope_needs_two_different_sizes() -> None:
    with pytest.raises(BenchError, match="two"):
        slope([(5, 1.0)])
    with pytest.raises(BenchError, match="different"):
        slope([(5, 1.0), (5, 2.0)])


def test_every_probe_has_three_growing_sizes_per_mode() -> None:
    assert set(PROBES) == {
        "chaos_engine",
        "contract_compiler",
        "auto_learner",
        "semantic_lattice",
        "parallel_framework",
        "pipeline_engine",
    }
    for probe in PROBES.values():
        for mode in ("smoke", "quick", "full"):
            sizes = probe.sizes[mode]
            assert len(sizes) >= 3 and list(sizes) == sorted(set(sizes))


def test_measure_runs_each_size_in_a_fresh_process_beside_the_document() -> None:
    (rec,) = measure(["parallel_framework"], "smoke")
    assert "error" not in rec, rec.get("error")
    for run in rec["runs"]:
        assert run["peak"] >= run["baseline"] > 10 * 1024**2
    assert [r["size"] for r in rec["runs"]] == [500, 1000, 2000]
    assert rec["max_mb"] == round(rec["runs"][-1]["peak"] / 1024**2, 1)
    assert rec["doc"]["Per-Operation"] == "+20 KB/task"
    (row,) = memory_rows([rec])
    assert row[0] == "Parallel Framework" and "KB/task" in row[2] and "250 MB" in row[4]


def test_a_failing_probe_is_reported_not_raised() -> None:
    env = dict(os.environ, TENFOLD_CHAOS_ENGINE__PERFORMANCE__FAULT_QUEUE_SIZE="0")
    (rec,) = measure(["chaos_engine"], "smoke", env=env)
    assert "fault_queue_size" in rec["error"]
    assert memory_rows([rec])[0][1] == "error"


def test_sweep_keys_become_environment_overrides() -> None:
    sw = parse_sweep("chaos_engine.performance.max_concurrent_faults=10,100,1000")
    assert sw.variable == "TENFOLD_CHAOS_ENGINE__PERFORMANCE__MAX_CONCURRENT_FAULTS"
    assert sw.values == ("10", "100", "1000")
    for bad in ("nokey=1", "a.b", "a.b=", "a.b=1,,2", "a.b=1,1", "A.b=1"):
        with pytest.raises(BenchError, match="--sweep"):
            parse_sweep(bad)


def test_check_rss_is_a_hard_bound_with_a_clear_error() -> None:
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    gov = Governor(
        GovernorConfig.model_validate({"memory_limit_bytes": rss + (64 << 20)}),
        start_sampler=False,
    )
    gov.check_rss("test")  # under the limit
    ballast = b"x" * (96 << 20)
    with pytest.raises(ResourceLimitExceeded, match=r"^test: memory limit of [\d,]+ MiB reached"):
        gov.check_rss("test")
    del ballast
    gov.check_rss("test")
    # Reserved bytes count too: a reservation plus a smaller growth crosses the limit.
    gov.reserve_memory(48 << 20)
    gov.check_rss("test")
    ballast = b"x" * (32 << 20)
    with pytest.raises(ResourceLimitExceeded, match="reserved 48 MiB"):
        gov.check_rss("test")
    del ballast
