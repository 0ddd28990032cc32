"""Constraint solving: proofs, counterexamples that really fail, timeouts, guard removal, bounds."""

from __future__ import annotations

import time

import pytest

from tenfold.contract_compiler import (
    CompileOptions,
    ContractRevert,
    VerificationFailed,
    compile_source,
    solve,
)


def _compile(source: str, **kw: object) -> object:
    return compile_source(source, "s.ct", CompileOptions(emit="none", **kw))  # type: ignore[arg-type]


def test_guarded_arithmetic_is_proved() -> None:
    c = compile_source(
        "contract C { state t: u32 = 0; fn add(x: u32) -> u32 requires x < 100 && t < 1000 "
        "ensures result == old(t) + x { t = t + x; return t; } }",
        "s.ct",
        CompileOptions(emit="none"),
    )
    assert c.verdicts and all(v.status == "proved" for v in c.verdicts)
    assert {v.kind for v in c.verdicts} >= {"overflow", "ensures"}


def test_possible_overflow_is_a_warning_whose_counterexample_really_overflows() -> None:
    c = compile_source(
        "contract C { fn mul(a: i32, b: i32) -> i32 { return a * b; } }",
        "s.ct",
        CompileOptions(emit="none"),
    )
    failed = [v for v in c.verdicts if v.status == "failed"]
    assert len(failed) == 1 and failed[0].kind == "overflow"
    assert any("runtime check kept" in w.message for w in c.warnings)
    a, b = int(failed[0].counterexample["a"]), int(failed[0].counterexample["b"])
    assert not -(2**31) <= a * b < 2**31
    with pytest.raises(ContractRevert) as info:
        c.jit().call("mul", [a, b])
    assert info.value.kind == "overflow"


def test_false_ensures_fails_the_compile_with_a_counterexample() -> None:
    source = (
        "contract C { state bal: Money[USD] = 0; invariant bal >= 0;\n"
        "  fn take(x: Money[USD]) -> Money[USD] requires x > 0 ensures bal < old(bal) {\n"
        "    check x <= bal; bal = bal - x; return bal; } \n"
        "  fn leak(x: Money[USD]) requires x >= 0 && x < 10 ensures bal == old(bal) {\n"
        "    check bal < 1000; bal = bal + x; } }"
    )
    with pytest.raises(VerificationFailed) as info:
        _compile(source)
    text = str(info.value)
    assert "ensures may fail in 'leak'" in text
    assert "counterexample:" in text and "s.ct:4:" in text
    assert "take" not in text  # take's postcondition is proved
    assert info.value.exit_code == 1


def test_invariant_broken_by_a_function_and_by_the_initial_state() -> None:
    with pytest.raises(VerificationFailed, match="invariant may fail in 'drain'"):
        _compile(
            "contract C { state b: i64 = 5; invariant b >= 0; "
            "fn drain(x: i64) requires x > 0 && x < 100 { b = b - x; } }"
        )
    with pytest.raises(VerificationFailed, match="initial state"):
        _compile("contract C { state b: i64 = -1; invariant b >= 0; }")


def test_division_by_zero_and_index_range() -> None:
    c = compile_source(
        "contract C { state m: map[8] of u32;\n"
        "  fn safe(x: u32, d: u32) -> u32 requires d > 0 && x < 8 { return m[x] / d; }\n"
        "  fn risky(x: u32, d: u32) -> u32 { return m[x] / d; } }",
        "s.ct",
        CompileOptions(emit="none"),
    )
    by_fn: dict[str, dict[str, str]] = {}
    for v in c.verdicts:
        by_fn.setdefault(v.fn, {})[v.kind] = v.status
    assert by_fn["safe"] == {"index": "proved", "div-zero": "proved"}
    assert by_fn["risky"]["index"] == "failed"
    assert by_fn["risky"]["div-zero"] == "failed"


def test_solver_timeout_gives_unknown_and_returns_quickly() -> None:
    # Nonlinear equalities over wide integers: z3 cannot settle these in 1 ms.
    source = (
        "contract C { fn f(a: i64, b: i64, c: i64) -> i64\n"
        "  requires a > 1 && b > 1 && c > 1 && a < 100000 && b < 100000 && c < 100000\n"
        "  requires a * a * a + b * b * b != c * c * c\n"
        "{ assert a * b * c != 7919 * 7907 * 7901; return 1; } }"
    )
    t0 = time.monotonic()
    try:
        c = compile_source(source, "t.ct", CompileOptions(emit="none", smt_timeout_ms=1))
    except VerificationFailed:
        pytest.fail("a timeout must be a warning with verdict unknown, not a failure")
    assert time.monotonic() - t0 < 30
    unknown = [v for v in c.verdicts if v.status == "unknown"]
    assert unknown, [v.status for v in c.verdicts]
    assert any("verdict unknown" in w.message for w in c.warnings)


def test_o2_removes_proved_guards_and_keeps_unproved_ones() -> None:
    source = (
        "contract C { state t: u32 = 0;\n"
        "  fn proved(x: u32) -> u32 requires x < 100 && t < 1000 { t = t + x; return t; }\n"
        "  fn kept(x: u32) -> u32 { t = t + x; return t; } }"
    )
    o1 = compile_source(source, "g.ct", CompileOptions(opt_level=1, emit="none"))
    o2 = compile_source(source, "g.ct", CompileOptions(opt_level=2, emit="none"))

    def fn_ir(ir: str, name: str) -> str:
        start = ir.index(f'@"C.{name}"')
        return ir[start : ir.index("\n}\n", start)]

    assert "uadd.with.overflow" in fn_ir(o1.ir, "proved")
    assert "uadd.with.overflow" not in fn_ir(o2.ir, "proved")
    assert "uadd.with.overflow" in fn_ir(o2.ir, "kept")
    # requires is input validation: it stays at every level.
    with pytest.raises(ContractRevert, match="requires"):
        o2.jit().call("proved", [500])


def test_modular_calls_use_the_callee_contract() -> None:
    c = compile_source(
        "contract C { state n: u32 = 0; invariant n <= 100;\n"
        "  fn inc() -> u32 requires n < 100 ensures n == old(n) + 1 ensures result == n "
        "{ n = n + 1; return n; }\n"
        "  fn twice() -> u32 requires n < 50 ensures result == old(n) + 2 "
        "{ inc(); let r = inc(); return r; } }",
        "m.ct",
        CompileOptions(emit="none", opt_level=2),
    )
    assert all(v.status == "proved" for v in c.verdicts)
    assert c.jit().call("twice") == 2
    assert c.steps["twice"] > c.steps["inc"] * 2


def test_step_bound_counts_loop_iterations() -> None:
    c = compile_source(
        "contract C { state s: u64 = 0; fn f() { for i in 0..10 { for j in 0..5 { s = s % 100 + 1; } } } }",
        "b.ct",
        CompileOptions(emit="none"),
    )
    interp = c.interpreter()
    interp.call("f")
    assert interp.steps <= c.steps["f"]
    assert c.steps["f"] >= 10 * 5


def test_solve_is_usable_on_its_own() -> None:
    c = compile_source(
        "contract C { fn f(x: u8) -> u8 { return x + 1; } }", "x.ct", CompileOptions(emit="ast")
    )
    verdicts = solve(c.contract, timeout_ms=1000)
    assert [v.status for v in verdicts] == ["failed"]
    assert verdicts[0].counterexample["x"] == "255"


def test_gas_bound_counts_only_feasible_paths() -> None:
    source = (
        "contract C { state s: u64 = 0;\n"
        " fn f(n: u32) -> u64 requires n < 3 {\n"
        "   if n > 10 { for i in 0..10 { s = s % 100 + 1; } }\n"
        "   for j in 0..4 { if (j as u32) < n { s = s % 100 + 2; } }\n"
        "   return s; } }"
    )
    c = compile_source(source, "g.ct", CompileOptions(emit="none", gas=True, smt_timeout_ms=60_000))
    tight = c.gas_bounds["f"]
    assert tight is not None
    assert tight < c.steps["f"]  # the n > 10 branch is infeasible under requires n < 3
    worst = 0
    for n in range(3):
        interp = c.interpreter()
        interp.call("f", [n])
        worst = max(worst, interp.steps)
    assert worst <= tight
