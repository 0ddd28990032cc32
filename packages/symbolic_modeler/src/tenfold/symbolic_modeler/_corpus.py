"""Seeded random expressions with an exact operator count, shared by benchmarks and tests."""

from __future__ import annotations

import random

from tenfold.symbolic_modeler._parser import parse_expression
from tenfold.symbolic_modeler._reduce import reduce
from tenfold.symbolic_modeler.errors import ReductionError

__all__ = ["random_expression", "random_expressions"]

SYMBOLS = ("x", "y", "z", "w")
_BINARY = (("+", 30), ("-", 20), ("*", 30), ("/", 10), ("**", 10))
_UNARY = ("sin", "cos", "exp", "log")


def random_expression(rng: random.Random, n_ops: int, transcendental: bool = True) -> str:
    """Expression text with exactly ``n_ops`` operators (binary, powers, and functions).

    Operands are combined at random positions, so the tree shape varies from a
    chain to a balanced tree, and the four symbols recur so like terms meet.
    """
    ops: list[str] = []
    for _ in range(n_ops):
        if transcendental and rng.random() < 0.12:
            ops.append(rng.choice(_UNARY))
        else:
            ops.append(rng.choices([b for b, _ in _BINARY], [w for _, w in _BINARY])[0])
    n_leaves = sum(1 for o in ops if o not in _UNARY) + 1
    operands: list[str] = []
    for _ in range(n_leaves):
        if rng.random() < 0.7:
            operands.append(rng.choice(SYMBOLS))
        else:
            operands.append(str(rng.randint(1, 9)))
    for o in ops:
        if o in _UNARY:
            i = rng.randrange(len(operands))
            operands[i] = f"{o}({operands[i]})"
            continue
        a = operands.pop(rng.randrange(len(operands)))
        b = operands.pop(rng.randrange(len(operands)))
        if o == "**":
            b = str(rng.choice((2, 3)))
            operands.append(f"({a})**{b}")
        else:
            operands.append(f"({a}) {o} ({b})")
    (text,) = operands
    return text


def random_expressions(seed: int, n_ops: int, count: int, transcendental: bool = True) -> list[str]:
    """``count`` distinct expressions of ``n_ops`` operators that reduce without a domain error.

    Candidates whose reduction hits a constant division by zero or ``log(0)`` are
    skipped (SymPy would answer ``zoo``), deterministically for a given seed.
    """
    rng = random.Random(seed * 1_000_003 + n_ops)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        text = random_expression(rng, n_ops, transcendental)
        if text in seen:
            continue
        try:
            reduce(parse_expression(text))
        except ReductionError:
            continue
        seen.add(text)
        out.append(text)
    return out
