"""Differential testing: the JIT (at -O0 and -O2) against the reference interpreter.

Random call sequences with edge-biased arguments run on both; after every call
the result (or the id and kind of the failing check) and the whole state must
be equal. At -O2 the checks the prover removed must therefore never have been
needed: this also tests the proofs.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.contract_compiler import (
    CompiledContract,
    CompileOptions,
    ContractRevert,
    compile_source,
    generate_contract,
)
from tenfold.contract_compiler._ast import BOOL, Ty

SOURCES = {
    "arith": """contract Arith {
  state acc: i32 = 0;
  state u: u8 = 200;
  state hist: map[4] of i16;
  fn mix(a: i32, b: i32) -> i32 { return a * 3 - b / 7 + a % 5; }
  fn divs(a: i64, b: i64) -> i64 { return a / b + a % b; }
  fn neg(a: i8) -> i8 { return -a; }
  fn bytes(a: u8, b: u8) -> u8 { u = u + a - b; return u * 1; }
  fn widen(a: i16) -> u32 { return (a as u32) + 1; }
  fn narrow(a: i64) -> i8 { return a as i8; }
  fn store(i: i64, v: i16) -> i16 { hist[i] = hist[i] + v; return hist[i]; }
  fn logic(a: bool, b: bool, x: i32) -> bool { return a && x / 2 > 1 || !b && x != 0; }
  fn accumulate(n: u8) -> i32 requires n <= 20 {
    for i in 0..20 { if (i as u8) < n { acc = acc + (i as i32) * 1000; } }
    return acc;
  }
}""",
    "money": """contract Money {
  party owner;
  state bal: Money[USD] = 1000;
  state rate: dec = 1.25;
  invariant bal >= 0;
  fn claim() { check owner == 0, "taken"; owner = caller; }
  fn pay(x: Money[USD]) -> Money[USD] only owner requires x > 0 && x <= 1000000 {
    check bal <= 1000000000, "cap";
    bal = bal + x; return bal;
  }
  fn take(x: Money[USD]) -> Money[USD] requires x > 0 ensures bal == old(bal) - x {
    check x <= bal, "funds"; bal = bal - x; return bal;
  }
  fn ratio(x: Money[USD], y: Money[USD]) -> i64 { return x / y; }
  fn split(x: Money[USD], n: i64) -> Money[USD] { return x / n * 2; }
  fn scale(d: dec, e: dec) -> dec { return d * rate / e; }
  fn todec(n: i32) -> dec { return (n as dec) / 3.0; }
  fn fromdec(d: dec) -> i16 { return d as i16; }
  fn grow(x: Money[USD]) -> Money[USD] requires x > 0 && x < 1000000 {
    check bal <= 1000000000, "cap";
    bal = bal + x; check bal < 2000, "limit"; return bal;
  }
  fn both(x: Money[USD]) -> Money[USD] requires x > 0 && x < 100 {
    check bal <= 1000000000, "cap";
    return take(x) + x;
  }
}""",
}


@cache
def _compiled(name: str, opt_level: int) -> CompiledContract:
    source = generate_contract(120, seed=3).ours if name == "generated" else SOURCES[name]
    return compile_source(source, f"{name}.ct", CompileOptions(opt_level=opt_level, emit="none"))


def _arg(ty: Ty) -> st.SearchStrategy[Any]:
    if ty == BOOL:
        return st.booleans()
    lo, hi = ty.range
    edges = [v for v in (lo, hi, 0, 1, -1, 2, 7, lo + 1, hi - 1) if lo <= v <= hi]
    return st.one_of(
        st.sampled_from(edges), st.integers(lo, hi), st.integers(max(lo, -300), min(hi, 300))
    )


@st.composite
def _calls(draw: st.DrawFn, name: str) -> list[tuple[str, list[Any], int]]:
    contract = _compiled(name, 0).contract
    out = []
    for _ in range(draw(st.integers(1, 12))):
        fn = draw(st.sampled_from(contract.fns))
        args = [draw(_arg(p.ty)) for p in fn.params]
        out.append((fn.name, args, draw(st.integers(0, 3))))
    return out


def _outcome(runner: Any, fn: str, args: list[Any], caller: int) -> tuple[str, object]:
    try:
        return ("ok", runner.call(fn, args, caller=caller))
    except ContractRevert as exc:
        return ("revert", (exc.guard, exc.kind))


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("name", ["arith", "money", "generated"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_jit_matches_the_interpreter(name: str, opt_level: int, data: st.DataObject) -> None:
    compiled = _compiled(name, opt_level)
    calls = data.draw(_calls(name))
    jit, interp = compiled.jit(), compiled.interpreter()
    for fn, args, caller in calls:
        assert _outcome(jit, fn, args, caller) == _outcome(interp, fn, args, caller), (
            fn,
            args,
            caller,
        )
        assert jit.state == interp.state


def test_reverts_restore_the_state() -> None:
    compiled = _compiled("money", 2)
    for runner in (compiled.jit(), compiled.interpreter()):
        before = list(runner.state)
        with pytest.raises(ContractRevert, match="limit"):
            runner.call("grow", [5000])  # writes bal, then its check fails
        assert runner.state == before
        assert runner.call("take", [990]) == 10
        snapshot = list(runner.state)
        with pytest.raises(ContractRevert, match="funds"):
            runner.call("both", [50])  # the nested take fails: the whole call reverts
        assert runner.state == snapshot
