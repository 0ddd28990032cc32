"""saturate: the e-graph (hash-consing, congruence closure, e-matching), extraction, limits, CLI."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.core.testing import run_cli
from tenfold.symbolic_modeler import (
    ALGEBRA_RULES,
    RuleSet,
    StopReason,
    parse_expression,
    parse_pattern,
    reduce,
    saturate,
)
from tenfold.symbolic_modeler._evaluate import compare
from tenfold.symbolic_modeler._match import MatchBudget
from tenfold.symbolic_modeler._saturate import EGraph, term_cost
from tenfold.symbolic_modeler.errors import (
    ReductionError,
    RuleError,
    SaturationError,
    SaturationLimitExceeded,
)

from .test_symbolic_modeler_terms import expressions

P = parse_expression


def test_hash_consing_and_ac_permutations_share_a_class() -> None:
    g = EGraph()
    a = g.add_term(P("f(x, y) + g(z)"))
    assert g.add_term(P("g(z) + f(x, y)")) == a
    assert len(g) == 6  # x, y, z, f, g, +


def test_rebuild_restores_congruence() -> None:
    g = EGraph()
    fa, fb = g.add_term(P("f(a)")), g.add_term(P("f(b)"))
    ga, gb = g.add_term(P("g(f(a))")), g.add_term(P("g(f(b))"))
    assert len({g.find(c) for c in (fa, fb, ga, gb)}) == 4
    g.union(g.add_term(P("a")), g.add_term(P("b")))
    g.rebuild()
    # a = b gives f(a) = f(b), and then g(f(a)) = g(f(b)): closure upward
    assert g.find(fa) == g.find(fb)
    assert g.find(ga) == g.find(gb)
    assert g.class_of(("g", None, (g.find(fa),))) == g.find(ga)


def test_ematch_with_ac_and_sequence_variables() -> None:
    g = EGraph()
    root = g.add_term(reduce(P("a*b + a*c + d")))
    pattern = reduce(parse_pattern("x_*y__ + x_*z__ + r__"))
    found = list(g.ematch(pattern, root, {}, MatchBudget()))
    a = g.add_term(P("a"))
    assert found and all(s["x"] == a for s in found)
    # y and z take b and c in either order: two matches
    assert len(found) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x*y + x*z - x*(y + z)", "0"),
        ("sin(t)**2 + cos(t)**2 + exp(a)*exp(b)", "1 + exp(a + b)"),
        ("a*b + a*c + a*d", "a*(b + c + d)"),
        ("2*sin(u)*cos(u) - sin(2*u)", "0"),
        ("x + x*y - x*(1 + y)", "0"),
    ],
)
def test_saturation_finds_what_reduce_alone_misses(text: str, expected: str) -> None:
    result = saturate(P(text))
    assert result.term is reduce(P(expected))
    assert result.size < reduce(P(text)).size
    assert result.saturated and result.stop_reason is StopReason.SATURATED


@st.composite
def factorable(draw: st.DrawFn) -> str:
    """Sums of products sharing factors, trig and exp pieces: what the default rules act on."""
    atoms = st.sampled_from(["x", "y", "z", "2", "1/3", "sin(x)**2", "cos(x)**2", "exp(y)"])
    terms = []
    for _ in range(draw(st.integers(1, 4))):
        factors = draw(st.lists(atoms, min_size=1, max_size=3))
        sign = draw(st.sampled_from(["", "-"]))
        terms.append(sign + "*".join(f"({f})" for f in factors))
    return " + ".join(terms)


@settings(max_examples=60, deadline=None)
@given(st.one_of(expressions(), factorable()), st.sampled_from([8, 40, 400, 10_000]))
def test_saturate_is_sound_never_larger_and_honours_the_node_limit(
    text: str, node_limit: int
) -> None:
    t = P(text)
    try:
        reduced = reduce(t)
    except ReductionError:
        return
    try:
        result = saturate(t, node_limit=node_limit, iteration_limit=6, time_limit_s=10)
    except SaturationError as exc:  # the reduced input alone does not fit
        assert reduced.dag_size() > node_limit, exc
        return
    except ReductionError:  # saturation proved a division by zero (defined nowhere)
        return
    assert result.enodes <= node_limit
    assert result.iterations <= 6
    assert result.size <= reduced.size == result.input_size
    verdict = compare(t, result.term, points=3)
    assert verdict != "different", (text, str(result.term))
    if verdict == "inconclusive":  # only when the input itself has no usable point
        assert compare(t, reduced, points=3) == "inconclusive"
    if result.stop_reason is StopReason.SATURATED:
        # saturated means a fixpoint: running again from the result finds nothing smaller
        assert saturate(result.term, node_limit=10_000).size == result.size


def test_a_division_by_a_hidden_zero_is_refused_like_reduce_does() -> None:
    with pytest.raises(ReductionError, match="division by zero"):
        saturate(P("1/(x*y + x*z - x*(y + z))"))


def test_limits_give_a_typed_reason_or_a_strict_error() -> None:
    text = " + ".join(f"a*b{i}" for i in range(8)) + " + sin(t)**2 + cos(t)**2"
    small = saturate(P(text), node_limit=30)
    assert small.stop_reason is StopReason.NODE_LIMIT and small.enodes <= 30
    assert small.size <= reduce(P(text)).size
    once = saturate(P(text), iteration_limit=1)
    assert once.stop_reason is StopReason.ITERATION_LIMIT and once.iterations == 1
    quick = saturate(P(text), time_limit_s=1e-9)
    assert quick.stop_reason is StopReason.TIME_LIMIT
    with pytest.raises(SaturationLimitExceeded, match="node_limit"):
        saturate(P(text), node_limit=30, strict=True)
    with pytest.raises(SaturationError, match="positive"):
        saturate(P(text), node_limit=0)
    with pytest.raises(SaturationError, match="must be positive"):
        saturate(P(text), node_cost=lambda op: 0.0)


def test_custom_cost_and_both_ways() -> None:
    rules = RuleSet.of("exp(x_)*exp(y_) -> exp(x_ + y_)", orient=False)
    t = P("exp(a + b)")
    assert saturate(t, rules).term is t  # one way only: nothing matches
    plus_is_dear = {"+": 100.0}

    def cost(op: str) -> float:
        return plus_is_dear.get(op, 0.0 if op == "#" else 1.0)

    result = saturate(t, rules, both_ways=True, node_cost=cost)
    assert result.term is P("exp(a)*exp(b)")
    assert term_cost(result.term, cost) < term_cost(t, cost)


def test_rule_guards_apply_in_the_egraph() -> None:
    rules = RuleSet.of("exp(x_)**n_ -> exp(n_*x_) if integer(n)", orient=False)

    def cost(op: str) -> float:  # both sides have size 3: make powers dear to see the rewrite
        return 10.0 if op == "^" else 0.0 if op == "#" else 1.0

    assert saturate(P("exp(y)**3"), rules, node_cost=cost).term is reduce(P("exp(3*y)"))
    half = reduce(P("exp(y)**(1/2)"))
    assert saturate(half, rules, node_cost=cost).term is half  # the guard refuses n = 1/2


def test_default_rules_are_equations_and_unbound_variables_are_rejected() -> None:
    for rule in ALGEBRA_RULES:
        assert "->" in rule
    with pytest.raises(RuleError, match="does not bind"):
        saturate(P("f(a)"), ["f(x_) -> g(y_)"])


def test_cli_saturate(tmp_path: Path) -> None:
    out = run_cli("symbolic", "saturate", "x*y + x*z - x*(y + z)", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["result"] == "0" and doc["stop_reason"] == "saturated"
    assert doc["size_after"] <= doc["size_before"]
    rules = tmp_path / "exp.rules"
    rules.write_text("# product of exponentials\nexp(x_)*exp(y_)*r___ -> exp(x_ + y_)*r___\n")
    out = run_cli("symbolic", "saturate", "exp(a)*exp(b)*exp(c)", "--rules", str(rules))
    assert out.returncode == 0, out.stderr
    assert reduce(P(out.stdout.strip())) is reduce(P("exp(a + b + c)"))
    bad = run_cli("symbolic", "saturate", "a*b + a*c + a*d", "--node-limit", "9", "--strict")
    assert bad.returncode == 2 and "node_limit" in bad.stderr and "Traceback" not in bad.stderr
