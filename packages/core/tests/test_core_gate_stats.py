"""The regression gate's statistics: the signed-rank interval and the decision rule."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tenfold.core._stats import (
    Interval,
    decide,
    hodges_lehmann,
    paired_log_ratios,
    signed_rank_counts,
    signed_rank_interval,
    walsh_averages,
)

diffs_st = st.lists(
    st.floats(min_value=-2, max_value=2, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize("n", range(0, 9))
def test_signed_rank_counts_match_brute_force(n: int) -> None:
    counts = signed_rank_counts(n)
    brute = [0] * (n * (n + 1) // 2 + 1)
    for signs in itertools.product((0, 1), repeat=n):
        brute[sum(rank for rank, s in zip(range(1, n + 1), signs, strict=True) if s)] += 1
    assert counts == brute
    assert sum(counts) == 2**n


def test_known_critical_values() -> None:
    # Tables of the signed-rank test (two-sided 5%): n=8 cuts 3 Walsh averages from
    # each end (P(T+ <= 3) = 5/256), n=10 cuts 8 (P(T+ <= 8) = 25/1024).
    d8 = [float(i) for i in range(8)]
    iv = signed_rank_interval(d8)
    walsh = walsh_averages(d8)
    assert (iv.low, iv.high) == (walsh[3], walsh[-4])
    assert iv.confidence == pytest.approx(1 - 2 * 5 / 256)
    d10 = [float(i) ** 1.3 for i in range(10)]
    iv10 = signed_rank_interval(d10)
    w10 = walsh_averages(d10)
    assert (iv10.low, iv10.high) == (w10[8], w10[-9])
    assert iv10.confidence == pytest.approx(1 - 2 * 25 / 1024)


def test_too_few_rounds_give_the_widest_interval_with_its_true_coverage() -> None:
    iv = signed_rank_interval([0.1, -0.2, 0.05, 0.3, 0.0])
    assert (iv.low, iv.high) == (-0.2, 0.3)
    assert iv.confidence == pytest.approx(1 - 2 / 32)


def test_hodges_lehmann_ignores_one_wild_round() -> None:
    calm = [0.01, -0.01, 0.02, 0.0, -0.02, 0.01, 0.0, 0.015]
    wild = [*calm[:-1], 1.5]  # one round where A ran alone and B met a load burst
    assert abs(hodges_lehmann(wild) - hodges_lehmann(calm)) < 0.02
    assert sum(wild) / len(wild) > 0.18  # where a mean would have gone


@given(diffs_st)
def test_interval_contains_estimate_and_lies_within_the_data(diffs: list[float]) -> None:
    iv = signed_rank_interval(diffs)
    assert min(diffs) <= iv.low <= iv.estimate <= iv.high <= max(diffs)
    assert 0 <= iv.confidence < 1 and iv.n == len(diffs)


@given(diffs_st, st.floats(min_value=-1, max_value=1, allow_nan=False))
def test_interval_shifts_with_the_data(diffs: list[float], c: float) -> None:
    a = signed_rank_interval(diffs)
    b = signed_rank_interval([d + c for d in diffs])
    assert b.low == pytest.approx(a.low + c, abs=1e-9)
    assert b.high == pytest.approx(a.high + c, abs=1e-9)
    assert b.estimate == pytest.approx(a.estimate + c, abs=1e-9)


@given(diffs_st)
def test_swapping_the_sides_mirrors_the_interval(diffs: list[float]) -> None:
    a = signed_rank_interval(diffs)
    b = signed_rank_interval([-d for d in diffs])
    assert (b.low, b.high, b.estimate) == pytest.approx((-a.high, -a.low, -a.estimate), abs=1e-12)


@given(diffs_st, st.floats(min_value=0.5, max_value=0.99))
def test_higher_confidence_never_narrows(diffs: list[float], level: float) -> None:
    narrow = signed_rank_interval(diffs, level)
    wide = signed_rank_interval(diffs, min(0.999, level + 0.009))
    assert wide.low <= narrow.low and narrow.high <= wide.high


def test_coverage_of_the_95_interval_under_noise() -> None:
    """Monte Carlo: for a known shift under heavy-tailed symmetric noise, the interval
    covers the shift about as often as it says (seeded, so the count is exact)."""
    rng = random.Random(7)
    shift, trials, covered = math.log(1.15), 2000, 0
    for _ in range(trials):
        diffs = [shift + rng.gauss(0, 0.04) * (3 if rng.random() < 0.1 else 1) for _ in range(8)]
        iv = signed_rank_interval(diffs)
        covered += iv.low <= shift <= iv.high
    assert 0.94 <= covered / trials <= 0.98


def test_paired_log_ratios_sum_each_side_then_take_the_log() -> None:
    rounds = [([1.0, 3.0], [2.0, 2.0]), ([1.0, 1.0], [1.15, 1.15])]
    assert paired_log_ratios(rounds) == pytest.approx([0.0, math.log(1.15)])
    with pytest.raises(ValueError):
        paired_log_ratios([([1.0], [1.0, 2.0])])
    with pytest.raises(ValueError):
        paired_log_ratios([([0.0, 0.0], [1.0, 1.0])])


def _iv(low: float, high: float) -> Interval:
    lo, hi = math.log1p(low), math.log1p(high)
    return Interval((lo + hi) / 2, lo, hi, 0.95, 8)


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (0.11, 0.20, "regression"),
        (0.09, 0.20, "inconclusive"),  # could be under the threshold: not flagged
        (0.01, 0.05, "within"),  # a real 3% change, but under the threshold
        (-0.05, 0.099, "within"),
        (-0.30, -0.10, "improvement"),  # 1/1.1 - 1 = -9.1%: the whole interval is faster
        (-0.30, -0.05, "inconclusive"),
        (-0.5, 0.5, "inconclusive"),
    ],
)
def test_decision_rule(low: float, high: float, verdict: str) -> None:
    assert decide(_iv(low, high), 0.10) == verdict


@given(
    st.floats(min_value=-0.9, max_value=3, allow_nan=False),
    st.floats(min_value=0, max_value=3, allow_nan=False),
    st.floats(min_value=0.01, max_value=1),
)
def test_regression_exactly_when_the_whole_interval_is_beyond(
    low: float, width: float, threshold: float
) -> None:
    high = low + width
    assume(high > -0.99)
    verdict = decide(_iv(low, high), threshold)
    beyond = math.log1p(low) > math.log1p(threshold)
    assert (verdict == "regression") == beyond
    if verdict == "within":
        assert math.log1p(high) <= math.log1p(threshold)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        signed_rank_interval([])
    with pytest.raises(ValueError):
        signed_rank_interval([1.0], confidence=1.0)
    with pytest.raises(ValueError):
        signed_rank_interval([float("nan")])
    with pytest.raises(ValueError):
        decide(_iv(0, 0.1), 0)


@settings(max_examples=50)
@given(st.integers(min_value=6, max_value=40))
def test_coverage_reaches_the_level_from_six_rounds(n: int) -> None:
    iv = signed_rank_interval([float(i) for i in range(n)], 0.95)
    assert iv.confidence >= 0.95
