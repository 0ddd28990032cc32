"""Pattern matching (one-to-one, many-to-one compiled), budgets, shipped rules, the CLI."""

import json
from pathlib import Path

import pytest

from tenfold.core.testing import run_cli
from tenfold.symbolic_modeler import parse_expression, parse_pattern, reduce
from tenfold.symbolic_modeler._evaluate import compare
from tenfold.symbolic_modeler._match import ManyToOneMatcher, MatchBudget, match
from tenfold.symbolic_modeler._rules import EXP_RULES, TRIG_RULES, Rule, RuleSet
from tenfold.symbolic_modeler.errors import MatchBudgetExceeded

P, E = parse_pattern, parse_expression


def texts(pattern: str, subject: str) -> list[dict[str, object]]:
    out = []
    for s in match(reduce(P(pattern)), reduce(E(subject))):
        out.append(
            {k: tuple(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in s.items()}
        )
    return out


def test_syntactic_and_nonlinear_variables() -> None:
    assert texts("f(x_, y_)", "f(a, b)") == [{"x": "a", "y": "b"}]
    assert texts("f(x_, x_)", "f(a, a)") == [{"x": "a"}]
    assert texts("f(x_, x_)", "f(a, b)") == []


def test_sequence_variables_in_ordered_arguments() -> None:
    assert texts("f(x__, y__)", "f(a, b, c)") == [
        {"x": ("a",), "y": ("b", "c")},
        {"x": ("a", "b"), "y": ("c",)},
    ]
    assert texts("f(x___, c)", "f(c)") == [{"x": ()}]


def test_ac_matching_enumerates_every_assignment() -> None:
    found = texts("x_ + y__", "a + b + c")
    assert sorted(str(d["x"]) for d in found) == ["a", "b", "c"]
    assert {"x": "a", "y": "b + c"} in found
    assert texts("x_ + y_", "a + b + c") == []  # a plain variable takes one argument
    assert texts("sin(x_)**2 + cos(x_)**2 + r___", "sin(a)**2 + cos(a)**2 + b") == [
        {"x": "a", "r": "b"}
    ]


def test_combinatorial_ac_patterns_hit_the_match_budget() -> None:
    subject = reduce(E(" + ".join(f"f(a{i})" for i in range(12))))
    pattern = reduce(P(" + ".join(f"f(x{i}_)" for i in range(6)) + " + z__"))
    with pytest.raises(MatchBudgetExceeded, match="more than 500"):
        list(match(pattern, subject, MatchBudget(500)))


def test_many_to_one_agrees_with_one_to_one_and_is_compiled() -> None:
    patterns = [reduce(P(p)) for p in ["f(x_, y_)", "f(a, y_)", "g(x_)", "x_ + y_", "f(x_, x_)"]]
    matcher = ManyToOneMatcher(patterns)
    assert "def m0(s, budget):" in matcher.source
    for subject in ["f(a, b)", "f(a, a)", "g(c)", "a + b", "h(a)"]:
        s = reduce(E(subject))
        expected = [(i, m) for i, p in enumerate(patterns) for m in match(p, s)]
        assert list(matcher.match(s)) == expected


def test_ten_thousand_pattern_rule_set_compiles_and_dispatches() -> None:
    rules = RuleSet([Rule.parse(f"k{i}(x_) -> x_ + {i}") for i in range(10_000)], orient=False)
    assert len(rules) == 10_000
    assert reduce(E("k9999(y) + k0(y)"), rules) is reduce(E("2*y + 9999"))


@pytest.mark.parametrize("rule", [*TRIG_RULES, *EXP_RULES])
def test_each_shipped_rule_is_sound(rule: str) -> None:
    parsed = Rule.parse(rule)
    rs = RuleSet([parsed])
    lhs = reduce(parsed.lhs)
    # instantiate variables with concrete subterms and compare both sides numerically
    binding = {"x": "(u + 1/3)", "y": "(2*v - 1)", "n": "3", "r": "w**2"}
    text = str(lhs)
    for var, value in binding.items():
        text = text.replace(f"{var}__", value).replace(f"{var}_", value)
    subject = E(text)
    rewritten = reduce(subject, rs)
    assert rewritten is not reduce(subject), f"{rule} did not fire on {text}"
    assert compare(subject, rewritten, points=4) == "equal"


def test_cli_reduce_match_and_errors(tmp_path: Path) -> None:
    out = run_cli("symbolic", "reduce", "x + x + 2*y - y", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert reduce(E(doc["result"])) is reduce(E("2*x + y"))
    rules = tmp_path / "trig.rules"
    rules.write_text("# trig\nsin(x_)**2 + cos(x_)**2 -> 1\n")
    out = run_cli("symbolic", "reduce", "sin(t)**2 + cos(t)**2", "--rules", str(rules))
    assert out.stdout.strip() == "1"
    out = run_cli("symbolic", "match", "f(x_, y_)", "f(a, b)", "--json")
    assert json.loads(out.stdout)["matches"] == [{"x": "a", "y": "b"}]
    bad = run_cli("symbolic", "reduce", "x + * y")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("tenfold: error: col 5: expected a number")
    assert "Traceback" not in bad.stderr
    rules.write_text("f(x_) -> g(y_)\n")
    bad = run_cli("symbolic", "reduce", "f(a)", "--rules", str(rules))
    assert bad.returncode == 2 and "does not bind" in bad.stderr
