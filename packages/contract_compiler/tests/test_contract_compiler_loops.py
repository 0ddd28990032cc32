"""Loop obligations: summarised loops never yield a bogus counterexample (issue 24, item A).

Loops of more than ``UNROLL`` iterations are summarised. An obligation after (or
inside) such a loop is proved from the loop's invariants (written with
``for ... invariant ...`` or inferred for counters), reported "unknown" when they
do not decide it, and "failed" only with a counterexample that replays on the
interpreter (``conftest.py`` replays every counterexample the suite produces).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.contract_compiler import (
    CompileError,
    CompileOptions,
    ContractRevert,
    VerificationFailed,
    compile_source,
)
from tenfold.contract_compiler._interp import replay

ISSUE = (
    "contract L { fn f() -> u64 ensures result == 17 {\n"
    "  let k: u64 = 0; for i in 0..17 { k = k + 1; } return k; } }"
)


def _compile(source: str, **kw: object) -> object:
    return compile_source(source, "l.ct", CompileOptions(emit="none", **kw))  # type: ignore[arg-type]


def test_the_issue_contract_compiles_and_its_postcondition_is_proved() -> None:
    # Regression: "ensures may fail ... counterexample: caller=0", exit 1, while it returns 17.
    c = compile_source(ISSUE, "l.ct", CompileOptions(emit="none"))
    assert [v.status for v in c.verdicts if v.kind == "ensures"] == ["proved"]
    assert c.interpreter().call("f") == 17
    assert c.jit().call("f") == 17


def test_the_old_bogus_counterexample_does_not_replay() -> None:
    # What the conftest hook would have flagged: with caller=0 the call completes.
    c = compile_source(ISSUE, "l.ct", CompileOptions(emit="ast"))
    assert replay(c.contract, "f", {"caller": "0"}) == 0


@pytest.mark.parametrize(
    "body",
    [
        "let k: u64 = 0; for i in 0..40 { k = k + 2; } assert k == 80; return k;",
        "let k: u64 = 100; for i in 0..33 { k = k - 3; } assert k == 1; return k;",
        "for i in 0..50 { n = n + 2; } return n;",
    ],
)
def test_assert_and_state_invariant_after_a_long_counting_loop_are_proved(body: str) -> None:
    source = (
        "contract L { state n: u64 = 0; invariant n <= 100;\n"
        f"  fn f() -> u64 requires n == 0 {{ {body} }} }}"
    )
    c = _compile(source)
    assert all(v.status == "proved" for v in c.verdicts), c.verdicts  # type: ignore[attr-defined]


def test_a_user_loop_invariant_is_checked_inductively_and_proves_the_result() -> None:
    source = (
        "contract L { fn f(x: u64) -> u64 requires x <= 10 ensures result == 30 * x {\n"
        "  let k: u64 = 0;\n"
        "  for i in 0..30 invariant k == (i as u64) * x { k = k + x; }\n"
        "  return k; } }"
    )
    c = compile_source(source, "l.ct", CompileOptions(emit="none"))
    assert all(v.status == "proved" for v in c.verdicts)
    assert {v.kind for v in c.verdicts} >= {"ensures", "loop-invariant"}
    assert c.jit().call("f", [7]) == 210


def test_a_false_loop_invariant_fails_with_a_counterexample_and_reverts_at_run_time() -> None:
    source = (
        "contract L { fn f(x: u64) -> u64 requires x <= 5 {\n"
        "  let k: u64 = 0; for i in 0..20 invariant k <= 40 { k = k + x; } return k; } }"
    )
    with pytest.raises(VerificationFailed, match="loop-invariant may fail in 'f'") as info:
        _compile(source)
    assert "counterexample: x=" in str(info.value)
    c = compile_source(source, "l.ct", CompileOptions(verify=False, opt_level=0))
    for runner in (c.interpreter(), c.jit()):
        assert runner.call("f", [2]) == 40
        with pytest.raises(ContractRevert) as rev:
            runner.call("f", [3])
        assert rev.value.kind == "loop-invariant"


def test_an_invariant_that_does_not_hold_on_entry_is_refused_even_for_zero_iterations() -> None:
    source = "contract L { fn f() { let k: u64 = 3; for i in 0..0 invariant k == 0 { } } }"
    with pytest.raises(VerificationFailed, match="loop-invariant may fail"):
        _compile(source)


def test_loop_invariants_are_type_checked() -> None:
    with pytest.raises(CompileError, match="expected a bool condition|expected bool"):
        _compile("contract L { fn f() { for i in 0..20 invariant i + 1 { } } }")
    with pytest.raises(CompileError, match="unknown name 'q'"):
        _compile("contract L { fn f() { for i in 0..20 invariant q > 0 { } } }")


def test_an_undecided_obligation_after_a_summarised_loop_is_unknown_not_failed() -> None:
    source = (
        "contract L { fn f() -> u64 ensures result == 131072 {\n"
        "  let k: u64 = 1; for i in 0..17 { k = k * 2; } return k; } }"
    )
    c = compile_source(source, "l.ct", CompileOptions(emit="none"))
    ens = [v for v in c.verdicts if v.kind == "ensures"]
    assert [v.status for v in ens] == ["unknown"]
    assert "loop of 17 iterations" in ens[0].reason
    assert any("verdict unknown, check kept" in w.message for w in c.warnings)
    assert c.jit().call("f") == 131072


def test_a_real_failure_after_a_summarised_loop_is_reported_with_a_replaying_counterexample() -> (
    None
):
    source = (
        "contract L { fn f(x: u64) -> u64 ensures result != 5 {\n"
        "  let k: u64 = 0; for i in 0..20 { k = k + 1; } return x; } }"
    )
    with pytest.raises(VerificationFailed, match=r"counterexample: x=5, caller="):
        _compile(source)


def test_a_callee_known_only_by_its_ensures_gives_unknown_not_a_bogus_counterexample() -> None:
    source = "contract L { fn g() -> u64 { return 5; } fn f() -> u64 ensures result == 5 { return g(); } }"
    c = compile_source(source, "l.ct", CompileOptions(emit="none"))
    ens = [v for v in c.verdicts if v.kind == "ensures"]
    assert [v.status for v in ens] == ["unknown"] and "'g'" in ens[0].reason
    assert c.interpreter().call("f") == 5


# -- properties ----------------------------------------------------------------------

LOOP = st.fixed_dictionaries(
    {
        "n": st.integers(1, 64),
        "step": st.integers(1, 1000),
        "start": st.integers(0, 1000),
        "guarded": st.booleans(),
        "spec": st.sampled_from(["ensures", "assert", "invariant", "loop-invariant"]),
    }
)


def _loop_contract(p: dict[str, object], off: int = 0) -> str:
    n, step, start = int(p["n"]), int(p["step"]), int(p["start"])  # type: ignore[call-overload]
    total = start + n * step
    rel = "<=" if p["guarded"] else "=="
    bump = f"if x > (i as u64) {{ k = k + {step}; }}" if p["guarded"] else f"k = k + {step};"
    spec, inv, post = "", "", ""
    claim = f"k {rel} {total + off}"
    if p["spec"] == "ensures":
        spec = f"ensures result {rel} {total + off}"
    elif p["spec"] == "assert":
        post = f"assert {claim};"
    elif p["spec"] == "invariant":
        post = "total = k;"
        spec = ""
    elif off >= 0:
        inv = f"invariant k <= {start} + (i as u64) * {step} + {off}"
    else:
        inv = f"invariant k + {-off} <= {start} + (i as u64) * {step}"
    state_inv = f"invariant total <= {total + off};" if p["spec"] == "invariant" else ""
    return (
        f"contract P {{ state total: u64 = 0; {state_inv}\n"
        f"  fn f(x: u64) -> u64 {spec} {{\n"
        f"    let k: u64 = {start};\n"
        f"    for i in 0..{n} {inv} {{ {bump} }}\n"
        f"    {post} return k; }} }}"
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOOP, st.integers(0, 70))
def test_true_specs_after_loops_of_any_bound_never_fail(p: dict[str, object], x: int) -> None:
    source = _loop_contract(p)
    c = compile_source(source, "p.ct", CompileOptions(emit="none"))  # must not raise
    assert not [v for v in c.verdicts if v.status == "failed" and v.kind != "overflow"]
    if not p["guarded"] or p["spec"] == "loop-invariant":
        # Counters are inferred (and a true user invariant is inductive): proved at any bound.
        spec_kinds = {"ensures", "assert", "invariant", "loop-invariant"}
        assert all(v.status == "proved" for v in c.verdicts if v.kind in spec_kinds), (
            source,
            c.verdicts,
        )
    n, step, start = int(p["n"]), int(p["step"]), int(p["start"])  # type: ignore[call-overload]
    expected = start + step * (min(x, n) if p["guarded"] else n)
    assert c.interpreter().call("f", [x]) == expected


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOOP, st.integers(1, 5))
def test_false_specs_after_loops_are_never_proved_and_fail_with_replaying_counterexamples(
    p: dict[str, object], off: int
) -> None:
    # Claim less than the loop reaches: false for every x (unguarded) or for x >= n.
    source = _loop_contract(p, -off)
    if not p["guarded"] or p["spec"] == "loop-invariant":
        with pytest.raises(VerificationFailed, match="counterexample"):
            compile_source(source, "p.ct", CompileOptions(emit="none"))
        return  # the conftest hook replays the counterexample it carries
    try:
        c = compile_source(source, "p.ct", CompileOptions(emit="none"))
    except VerificationFailed:
        return
    specs = [v for v in c.verdicts if v.kind in ("ensures", "assert", "invariant")]
    assert specs and all(v.status == "unknown" for v in specs), (source, c.verdicts)


def test_a_model_past_a_callee_that_reverts_is_not_reported_as_a_counterexample() -> None:
    # With x = 10 the real run reverts inside g, so "x=10" would not replay; x < 5 does.
    source = (
        "contract L { fn g(x: u64) { check x < 5; }\n"
        "  fn f(x: u64) -> u64 ensures result != 3 { g(x); return x; } }"
    )
    with pytest.raises(VerificationFailed, match=r"counterexample: x=3, caller="):
        _compile(source)
    source = (
        "contract L { fn g(x: u64) { check x < 5; }\n"
        "  fn f(x: u64) -> u64 ensures result < 5 { g(x); return x; } }"
    )
    c = compile_source(source, "l.ct", CompileOptions(emit="none"))
    assert [v.status for v in c.verdicts if v.kind == "ensures"] == ["unknown"]


# Contracts with maps, calls and loops of any bound, and specs that may be true or false:
# whatever the compiler reports, every counterexample must replay (the conftest hook
# replays each one), and a spec the interpreter shows false on some input is never proved.
ATOMS = ["x", "y", "m[x % 8]", "n", "g(y)"]


@st.composite
def _mixed_contract(draw: st.DrawFn) -> tuple[str, int]:
    expr = draw(st.sampled_from(ATOMS))
    for _ in range(draw(st.integers(0, 2))):
        expr = (
            f"({expr} {draw(st.sampled_from(['+', '-', '*', '%']))} {draw(st.sampled_from(ATOMS))})"
        )
    bound = draw(st.integers(1, 64))
    limit = draw(st.integers(0, 40))
    rel = draw(st.sampled_from(["<", "<=", "!=", ">"]))
    g_ensures = draw(st.sampled_from(["", "ensures result <= 10", "ensures result == y % 11"]))
    source = (
        "contract M {\n"
        "  state n: u32 = 0;\n"
        "  state m: map[8] of u32;\n"
        f"  fn g(y: u32) -> u32 requires y < 50 {g_ensures} {{ return y % 11; }}\n"
        "  fn put(i: u32, v: u32) { m[i % 8] = v; }\n"
        f"  fn f(x: u32, y: u32) -> u32 requires x < 30 && y < 30 ensures result {rel} {limit} {{\n"
        f"    let k: u32 = 0;\n"
        f"    for i in 0..{bound} {{ if (i as u32) < x {{ k = k + 1; }} }}\n"
        f"    n = k;\n"
        f"    return {expr};\n"
        "  } }"
    )
    return source, limit


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mixed_contract(), st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=4))
def test_every_counterexample_on_generated_contracts_replays(
    case: tuple[str, int], inputs: list[tuple[int, int]]
) -> None:
    source, _limit = case
    try:
        c = compile_source(source, "m.ct", CompileOptions(emit="none"))
    except VerificationFailed:
        return  # the hook replays every counterexample of the failed verdicts
    ens = next(v for v in c.verdicts if v.kind == "ensures" and v.fn == "f")
    if ens.status != "proved":
        return
    interp = c.interpreter()
    interp.call("put", [3, 17])
    for x, y in inputs:
        try:
            interp.call("f", [x, y])
        except ContractRevert as exc:
            assert exc.guard != ens.gid, f"proved ensures fails at run time: {source}"
