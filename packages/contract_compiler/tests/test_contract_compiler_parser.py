"""Lexer, Pratt parser and checker: structure, precedence, limits and error reporting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.contract_compiler import (
    CompileError,
    CompileOptions,
    LimitExceeded,
    compile_source,
    parse_contract,
    parse_expression,
)
from tenfold.contract_compiler._ast import Binary, Expr, IntLit, Name, Unary


def _shape(e: Expr) -> object:
    if isinstance(e, Binary):
        return (e.op, _shape(e.left), _shape(e.right))  # type: ignore[arg-type]
    if isinstance(e, Unary):
        return (e.op, _shape(e.operand))  # type: ignore[arg-type]
    if isinstance(e, IntLit):
        return e.value
    if isinstance(e, Name):
        return e.id
    return type(e).__name__


_OPS = ["+", "-", "*", "/", "%", "<", "==", "&&", "||", "==>"]

exprs = st.recursive(
    st.one_of(st.integers(0, 10**6), st.sampled_from(["a", "b", "c"])),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(_OPS), inner, inner),
        st.tuples(st.just("!"), inner),
    ),
    max_leaves=25,
)


def _render(tree: object) -> str:
    if isinstance(tree, tuple) and len(tree) == 3:
        return f"({_render(tree[1])} {tree[0]} {_render(tree[2])})"
    if isinstance(tree, tuple):
        return f"({tree[0]}{_render(tree[1])})"
    return str(tree)


@given(exprs)
@settings(max_examples=200, deadline=None)
def test_fully_parenthesized_expressions_parse_back_to_their_tree(tree: object) -> None:
    assert _shape(parse_expression(_render(tree))) == tree


def test_precedence_and_associativity() -> None:
    assert _shape(parse_expression("a + b * c")) == ("+", "a", ("*", "b", "c"))
    assert _shape(parse_expression("a - b - c")) == ("-", ("-", "a", "b"), "c")
    assert _shape(parse_expression("a ==> b ==> c")) == ("==>", "a", ("==>", "b", "c"))
    assert _shape(parse_expression("a || b && c")) == ("||", "a", ("&&", "b", "c"))
    assert _shape(parse_expression("!a && b")) == ("&&", ("!", "a"), "b")
    assert _shape(parse_expression("a < b == c < a")) == ("==", ("<", "a", "b"), ("<", "c", "a"))


def test_comparisons_do_not_chain() -> None:
    with pytest.raises(CompileError, match="comparisons do not chain"):
        parse_expression("a < b < c")


@pytest.mark.parametrize(
    "text",
    ["(" * 10_000 + "1" + ")" * 10_000, "-" * 10_000 + "1", "a ==> " * 10_000 + "a"],
)
def test_ten_thousand_deep_nesting_is_a_depth_error(text: str) -> None:
    with pytest.raises(CompileError, match="deeper than the limit of 200"):
        parse_expression(text)


@pytest.mark.parametrize("n", [201, 10_000])
def test_a_flat_sum_is_long_not_deep(n: int) -> None:
    # Regression: a sum of 201 terms was refused as nested deeper than 200 levels.
    node = parse_expression(" + ".join(["x"] * n))
    assert node.height == 2
    assert parse_expression("a + (b + (c + d)) * e").height == 4


def test_right_nesting_past_the_limit_is_still_refused() -> None:
    text = "1 + (" * 201 + "1" + ")" * 201
    with pytest.raises(CompileError, match="deeper than the limit of 200"):
        parse_expression(text)


def test_deep_blocks_are_a_depth_error_not_recursion_error() -> None:
    body = "if true { " * 10_000 + "}" * 10_000
    with pytest.raises(CompileError, match="nesting deeper than the limit"):
        parse_contract(f"contract C {{ fn f() {{ {body} }} }}")


def test_several_syntax_errors_are_reported_with_position_and_caret() -> None:
    source = (
        "contract C {\n"
        "  state x: u32 = 1;\n"
        "  fn f() { let a = 1 +; }\n"
        "  fn g() -> u32 { return x @ 2; }\n"
        '  fn h() { check x > 0, "unterminated; }\n'
        "  fn k() { x = 3 }\n"
        "}\n"
    )
    with pytest.raises(CompileError) as info:
        parse_contract(source, "bad.ct")
    diags = info.value.diagnostics
    assert len(diags) >= 4
    where = {(d.line, d.col) for d in diags}
    assert (3, 23) in where  # the ';' where an expression was expected
    assert (4, 28) in where  # the stray '@'
    assert any("unterminated string" in d.message and d.line == 5 for d in diags)
    assert any("expected ';'" in d.message and d.line == 6 for d in diags)
    text = str(info.value)
    assert "bad.ct:4:28: error: stray character '@'" in text
    assert "\n    " + " " * 27 + "^" in text


def test_missing_closing_brace_names_the_opening_one() -> None:
    with pytest.raises(CompileError, match=r"close the contract opened at m.ct:1:12"):
        parse_contract("contract C { fn f() { }", "m.ct")


def test_error_count_is_capped() -> None:
    source = "contract C { fn f() { " + "let = ; " * 100 + "} }"
    with pytest.raises(CompileError) as info:
        compile_source(source, "cap.ct", CompileOptions(max_errors=5, emit="none"))
    assert len(info.value.diagnostics) == 5
    assert "stopped after 5 errors" in str(info.value)


def test_non_utf8_source_reports_the_position_of_the_bad_byte() -> None:
    with pytest.raises(
        CompileError, match=r"u.ct:2:4: error: source is not valid UTF-8 \(byte 0xff\)"
    ):
        compile_source(b"contract C {\n  s\xfftate }", "u.ct")


def test_a_ten_megabyte_file_is_refused() -> None:
    big = b"contract C { }" + b" " * (10 * 1024 * 1024)
    with pytest.raises(LimitExceeded, match="over the limit"):
        compile_source(big, "big.ct")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("contract C { state n: u8 = 256; }", "literal 256 does not fit in u8"),
        (
            "contract C { fn f() -> u64 { return 18446744073709551616; } }",
            "does not fit in 64 bits",
        ),
        ("contract C { fn f() { loop { } } }", "'loop' loops are not allowed"),
        ("contract C { fn f() { for i in 0..n { } } }", "literal loop bound"),
        ("contract C { fn f() { f(); } }", "recursion is not allowed: f -> f"),
        (
            "contract C { state balance: u32; fn f() -> u32 { return balanse; } }",
            "unknown name 'balanse' (did you mean 'balance'?)",
        ),
        ("contract C { fn deposit() { } fn f() { deposti(); } }", "did you mean 'deposit'?"),
        (
            "contract C { state a: Money[USD]; fn f(x: i64) -> Money[USD] { return a + x; } }",
            "unit mismatch",
        ),
        (
            "contract C { state a: Money[USD]; fn f() -> Money[EUR] { return a as Money[EUR]; } }",
            "changing units needs an explicit rate",
        ),
        ("contract C { fn f(x: u8) -> u8 { x = 1; return x; } }", "cannot assign to param"),
        ("contract C { fn f(x: u8) -> u8 { if x > 1 { return 1; } } }", "without returning"),
        ("contract C { fn f(x: u8) -> u8 { return -x; } }", "cannot negate"),
        ("contract C { fn f() -> bool { return result; } }", "'result' is only allowed"),
    ],
)
def test_semantic_errors_are_clear(source: str, message: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_source(source, "e.ct", CompileOptions(emit="none"))
    assert message in str(info.value)
    assert "e.ct:1:" in str(info.value)


def test_a_201_term_sum_compiles_proves_and_runs() -> None:
    # Regression: "nested deeper than the limit of 200 levels" for a flat sum.
    from tenfold.contract_compiler import CompileOptions, compile_source

    terms = " + ".join(["x"] * 201)
    ands = " && ".join(["b"] * 201)
    source = (
        f"contract S {{ fn f(x: i64, b: bool) -> i64 requires x >= 0 && x <= 1000 {{\n"
        f"  check {ands}; return {terms}; }} }}"
    )
    c = compile_source(source, "s.ct", CompileOptions(opt_level=2))
    assert c.verdicts and all(v.status == "proved" for v in c.verdicts)
    assert c.jit().call("f", [3, True]) == c.interpreter().call("f", [3, True]) == 603


def test_long_chains_pass_every_stage_without_recursion() -> None:
    import json

    from tenfold.contract_compiler import CompileOptions, compile_source
    from tenfold.contract_compiler._compiler import ast_json

    n = 1500
    source = (
        f"contract S {{ state s: u64 = 0; fn f(x: i64) -> i64 {{\n"
        f"  s = s{' + 1' * n}; return {' - '.join(['x'] * n)}; }} }}"
    )
    c = compile_source(source, "s.ct", CompileOptions(opt_level=0, verify=False))
    for runner in (c.interpreter(), c.jit()):
        assert runner.call("f", [2]) == 2 - 2 * (n - 1)
        assert runner.state == [n]
    tree = compile_source(source, "s.ct", CompileOptions(emit="ast")).contract
    doc = json.loads(json.dumps(ast_json(tree)))
    ret = doc["fns"][0]["body"][1]["value"]
    assert ret["node"] == "BinaryChain" and len(ret["links"]) == n - 1
