"""The equivalence suite: our normal forms against SymPy on the benchmark corpora."""

from fractions import Fraction

import pytest
import sympy

from tenfold.symbolic_modeler import num, parse_expression, reduce, sym, to_sympy
from tenfold.symbolic_modeler._corpus import random_expressions
from tenfold.symbolic_modeler._evaluate import compare, compare_with_sympy


@pytest.mark.parametrize("n_ops", [5, 20, 100, 500])
def test_every_benchmark_expression_agrees_with_sympy(n_ops: int) -> None:
    # The benchmark's corpus (seed 1234, 21 expressions per size): each one must be
    # decided equal; "inconclusive" fails as surely as "different".
    # The generator skips expressions that are defined nowhere, so SymPy never
    # answers zoo or nan on them.
    for text in random_expressions(1234, n_ops, 21):
        assert not sympy.sympify(text).has(sympy.zoo, sympy.nan, sympy.oo), text
        verdict = compare_with_sympy(reduce(parse_expression(text)), text)
        assert verdict == "equal", f"{verdict}: {text}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_other_seeds_agree_with_sympy_at_500_ops(seed: int) -> None:
    for text in random_expressions(seed, 500, 4):
        verdict = compare_with_sympy(reduce(parse_expression(text)), text)
        assert verdict == "equal", f"{verdict}: {text}"


def test_sympy_simplify_confirms_small_cases() -> None:
    for text in random_expressions(99, 5, 8, transcendental=False):
        ours = to_sympy(reduce(parse_expression(text)))
        assert sympy.simplify(ours - sympy.sympify(text)) == 0, text


# The referee itself must catch differences, including tiny and branch-cut ones.


def test_referee_finds_small_relative_differences_in_transcendental_terms() -> None:
    text = random_expressions(1234, 100, 1)[0]
    ours = reduce(parse_expression(text))
    nudged = ours * (num(1) + num(Fraction(1, 10**12)))
    assert compare(ours, nudged, points=3) == "different"


def test_referee_accepts_identities_that_only_cancel_numerically() -> None:
    x = sym("x")
    lhs = parse_expression("sin(x)**2 + cos(x)**2 + exp(exp(3))")
    assert compare(lhs, num(1) + parse_expression("exp(exp(3))"), points=3) == "equal"
    # sin of a 10**40 argument: needs 40 more digits, which the referee takes
    big = parse_expression("sin(10**40*x)**2 + cos(10**40*x)**2")
    assert compare(big, num(1), points=3) == "equal"
    assert compare(big, num(1) + x * num(Fraction(1, 10**20)), points=3) == "different"


def test_referee_respects_principal_branches() -> None:
    # (-8)**(1/3) is 1 + sqrt(3)*i on the principal branch, not -2
    assert compare(parse_expression("(x - 9)**(1/3)"), parse_expression("-(9 - x)**(1/3)")) == (
        "different"
    )
    assert compare(parse_expression("log(x**2)"), parse_expression("2*log(x)")) == "different"


def test_nowhere_defined_terms_are_inconclusive_never_equal() -> None:
    lhs = parse_expression("1/(x - x)")
    assert compare(lhs, num(7)) == "inconclusive"
