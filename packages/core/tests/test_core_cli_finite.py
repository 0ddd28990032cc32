"""``Finite``: the one parameter type for budgets, timeouts, intervals and rates."""

from __future__ import annotations

import math

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tenfold.core.cli import Finite


@given(st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
def test_any_value_is_a_finite_number_in_range_or_refused(value: float | str) -> None:
    kind = Finite(0.0, 3600.0, open_min=True)
    try:
        got = kind.convert(value, None, None)
    except click.BadParameter as exc:
        assert len(str(exc)) < 200
        return
    assert math.isfinite(got) and 0 < got <= 3600


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inf", "inf is not a finite number"),
        ("-inf", "-inf is not a finite number"),
        ("nan", "nan is not a finite number"),
        ("-1", "-1 s: must be positive"),
        ("0", "0 s: must be positive"),
        ("1e308", "must be at most 3.1536e+07 s"),
        ("soon", "'soon' is not a number"),
    ],
)
def test_a_command_refuses_bad_budgets_with_one_line(value: str, message: str) -> None:
    @click.command()
    @click.option("--timeout-s", type=Finite(0.0, open_min=True))
    def cmd(timeout_s: float) -> None:
        click.echo(timeout_s)

    result = CliRunner().invoke(cmd, ["--timeout-s", value])
    assert result.exit_code == 2
    assert message in result.output
    assert CliRunner().invoke(cmd, ["--timeout-s", "2.5"]).output == "2.5\n"
