"""The Money/int operator table, in both operand orders, literal and not (issue 24, item B).

The guide's rules: ``+ -`` and comparisons need both sides of one type (an
integer literal takes the other side's type); ``Money[U] * i64``,
``i64 * Money[U]``, ``Money[U] / i64`` and ``Money[U] % i64`` give
``Money[U]``; ``Money[U] / Money[U]`` gives ``i64``; units never mix. The
expected type below is written from those rules alone, then compared with what
the checker infers, and every accepted expression is run on the interpreter
and the JIT against plain Python arithmetic.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.contract_compiler import CompileError, CompileOptions, ContractRevert, compile_source

# operand -> (source text, type); "lit" is an integer literal, typed by context
OPERANDS = {
    "usd": ("x", "Money[USD]"),
    "usd2": ("(y + 0)", "Money[USD]"),  # not a plain name: an expression of Money type
    "eur": ("e", "Money[EUR]"),
    "k": ("k", "i64"),
    "k2": ("(k - 0)", "i64"),
    "u": ("u", "u32"),
    "lit": ("3", "lit"),
}
OPS = ["+", "-", "*", "/", "%", "<", "==", "!="]
PARAMS = "x: Money[USD], y: Money[USD], e: Money[EUR], k: i64, u: u32"


def expected_type(op: str, lt: str, rt: str) -> str | None:
    """The table in the guide; None means a type error."""
    if lt == "lit" and rt == "lit":
        lt = rt = "i64"
    money = {t for t in (lt, rt) if t.startswith("Money")}
    if op in ("+", "-", "<", "==", "!="):
        if lt == "lit":
            lt = rt
        if rt == "lit":
            rt = lt
        if lt != rt:
            return None
        return "bool" if op in ("<", "==", "!=") else lt
    # * / %: a literal next to an amount is an i64, next to an integer that integer's type
    if lt == "lit":
        lt = "i64" if money else rt
    if rt == "lit":
        rt = "i64" if money else lt
    if not money:
        return lt if lt == rt else None
    if op == "*":
        if lt.startswith("Money") and rt == "i64":
            return lt
        if rt.startswith("Money") and lt == "i64":
            return rt
        return None
    if lt.startswith("Money") and rt == "i64":
        return lt
    if op == "/" and lt.startswith("Money") and lt == rt:
        return "i64"
    return None


def _source(op: str, left: str, right: str) -> str:
    return f"contract T {{ fn f({PARAMS}) {{ let r = {left} {op} {right}; }} }}"


TABLE = [(op, a, b) for op in OPS for a in OPERANDS for b in OPERANDS]


@pytest.mark.parametrize(("op", "a", "b"), TABLE)
def test_operator_table(op: str, a: str, b: str) -> None:
    (left, lt), (right, rt) = OPERANDS[a], OPERANDS[b]
    want = expected_type(op, lt, rt)
    source = _source(op, left, right)
    if want is None:
        with pytest.raises(CompileError):
            compile_source(source, "t.ct", CompileOptions(emit="ast"))
        return
    c = compile_source(source, "t.ct", CompileOptions(emit="ast"))
    let = c.contract.fns[0].body[0]
    assert str(let.value.ty) == want, source  # type: ignore[attr-defined]


def test_the_issue_case_non_literal_i64_times_money() -> None:
    # Regression: "expected i64, found Money[USD]" while x * k and 3 * x compiled.
    source = "contract C { fn f(k: i64, x: Money[USD]) -> Money[USD] { return k * x; } }"
    c = compile_source(source, "c.ct", CompileOptions())
    assert c.jit().call("f", [-4, 25]) == -100
    assert c.interpreter().call("f", [-4, 25]) == -100


I64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["*", "/", "%"]),
    st.booleans(),
    st.booleans(),
    I64,
    st.one_of(st.integers(-1000, 1000), I64),
)
def test_money_and_i64_compute_the_same_in_both_orders(
    op: str, money_left: bool, literal: bool, amount: int, n: int
) -> None:
    """Non-literal (and literal) i64 operands on either side, run on the interpreter and JIT."""
    other = str(n) if literal and n >= 0 else "k"
    left, right = ("x", other) if money_left else (other, "x")
    want_ty = expected_type(
        op, "Money[USD]" if money_left else "i64", "Money[USD]" if not money_left else "i64"
    )
    ret = want_ty or "Money[USD]"
    source = (
        f"contract C {{ fn f(x: Money[USD], k: i64) -> {ret} {{ return {left} {op} {right}; }} }}"
    )
    if want_ty is None:
        with pytest.raises(CompileError):
            compile_source(source, "c.ct", CompileOptions(emit="ast"))
        return
    c = compile_source(source, "c.ct", CompileOptions(opt_level=0))
    a, b = (amount, n) if money_left else (n, amount)
    if op == "*":
        expect: int | None = a * b
    elif b == 0:
        expect = None
    else:
        q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
        expect = q if op == "/" else a - b * q
    if expect is not None and not -(2**63) <= expect < 2**63:
        expect = None
    for runner in (c.interpreter(), c.jit()):
        if expect is None:
            with pytest.raises(ContractRevert):
                runner.call("f", [amount, n])
        else:
            assert runner.call("f", [amount, n]) == expect
