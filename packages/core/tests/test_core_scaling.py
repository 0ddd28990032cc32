"""The scaling factor of rows measured at 1/2/4/8 nodes."""

from hypothesis import given
from hypothesis import strategies as st

from tenfold.core.scaling import scaling_factor


@given(st.floats(1.0, 1e7), st.sampled_from([2, 4, 8]), st.floats(0.1, 1.5))
def test_the_factor_is_actual_over_ideal_speedup(base: float, nodes: int, eff: float) -> None:
    series = f"s-{base}-{nodes}-{eff}"
    assert scaling_factor(series, 1, base) is None  # the base itself has none
    got = scaling_factor(series, nodes, base * nodes * eff)
    assert got is not None and abs(got - eff) <= 0.0005 + 1e-9  # rounded to 3 places


def test_the_best_call_at_the_base_count_is_the_base() -> None:
    assert scaling_factor("best", 1, 100.0) is None
    assert scaling_factor("best", 1, 50.0) is None  # a slower call does not lower the base
    assert scaling_factor("best", 2, 150.0) == 0.75
    assert scaling_factor("none", 2, 0.0) is None
