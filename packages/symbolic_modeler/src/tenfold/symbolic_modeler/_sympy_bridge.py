"""Conversion between terms and SymPy expressions, both ways, iteratively."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from tenfold.symbolic_modeler._terms import (
    OP_ADD,
    OP_MUL,
    OP_NUM,
    OP_POW,
    OP_SYM,
    WILD_OPS,
    Term,
    ac,
    fn,
    num,
    pow_,
    sym,
)
from tenfold.symbolic_modeler.errors import UnsupportedExpression

__all__ = ["from_sympy", "to_sympy"]

# Functions with the same name and meaning on both sides.
SYMPY_FUNCTIONS = frozenset(
    {"sin", "cos", "tan", "cot", "sec", "csc", "exp", "log", "sinh", "cosh", "tanh", "asin"}
    | {"acos", "atan", "asinh", "acosh", "atanh", "re", "im", "conjugate", "Abs"}
)
# SymPy objects that stand for no finite value: a term cannot hold them.
_INFINITE = {
    "zoo": "zoo (complex infinity)",
    "oo": "oo (infinity)",
    "-oo": "-oo (minus infinity)",
    "nan": "nan (an undefined value)",
}


def to_sympy(term: Term, evaluate: bool = False) -> Any:
    """The SymPy expression for ``term``, built node for node.

    ``evaluate=False`` (the default) keeps the term's exact shape and takes time
    linear in the DAG; ``evaluate=True`` lets SymPy evaluate every node as it is
    built, which is SymPy's own automatic simplification and can take minutes on
    a term of a few hundred operators. Call ``sympy.simplify`` or ``.doit()`` on
    the result for SymPy's normal form.
    """
    import sympy

    done: dict[Term, Any] = {}
    for t in term.walk():
        op = t.op
        if op == OP_NUM:
            v = t.value
            done[t] = (
                sympy.Rational(v.numerator, v.denominator)
                if isinstance(v, Fraction)
                else sympy.Integer(v)
            )
        elif op == OP_SYM:
            done[t] = sympy.Symbol(t.value)
        elif op in WILD_OPS:
            raise UnsupportedExpression(f"pattern variable {t.value!r} has no SymPy counterpart")
        else:
            args = [done[a] for a in t.args]
            if op == OP_ADD:
                done[t] = sympy.Add(*args, evaluate=evaluate)
            elif op == OP_MUL:
                done[t] = sympy.Mul(*args, evaluate=evaluate)
            elif op == OP_POW:
                done[t] = sympy.Pow(*args, evaluate=evaluate)
            elif op == "abs":
                done[t] = sympy.Abs(*args, evaluate=evaluate)
            elif op in SYMPY_FUNCTIONS:
                done[t] = getattr(sympy, op)(*args, evaluate=evaluate)
            else:
                done[t] = sympy.Function(op)(*args)
    return done[term]


def from_sympy(expr: Any) -> Term:
    """The term for a SymPy expression; raises :class:`UnsupportedExpression` for others."""
    import sympy

    try:
        expr = sympy.sympify(expr)
    except (sympy.SympifyError, TypeError) as exc:
        raise UnsupportedExpression(f"not a SymPy expression: {expr!r}") from exc
    done: dict[Any, Term] = {}
    stack: list[tuple[Any, bool]] = [(expr, False)]
    while stack:
        e, expanded = stack.pop()
        if e in done:
            continue
        if not expanded and e.args and not e.is_Number:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args if a not in done)
            continue
        done[e] = _convert_node(e, [done[a] for a in e.args] if expanded else [], sympy)
    return done[expr]


def _convert_node(e: Any, args: list[Term], sympy: Any) -> Term:
    infinite = _INFINITE.get(str(e)) if e.is_number and not e.is_finite else None
    if infinite is not None or e is sympy.nan:
        raise UnsupportedExpression(
            f"unsupported: {infinite or _INFINITE['nan']}: a term stands for a finite value"
        )
    if e.is_Integer:
        return num(int(e))
    if e.is_Rational:
        return num(Fraction(int(e.p), int(e.q)))
    if e.is_Float:
        return num(Fraction(str(e)))
    if e.is_Symbol:
        return sym(e.name)
    if e is sympy.E:
        return fn("exp", num(1))
    if e is sympy.I:  # SymPy writes log(-2) as log(2) + I*pi
        return pow_(num(-1), num(Fraction(1, 2)))
    if e is sympy.pi:
        return fn("acos", num(-1))
    if e.is_Add:
        return ac(OP_ADD, args)
    if e.is_Mul:
        return ac(OP_MUL, args)
    if e.is_Pow:
        return pow_(args[0], args[1])
    if isinstance(e, sympy.Abs):
        return fn("abs", *args)
    if isinstance(e, sympy.Function):
        name = type(e).__name__
        if name in SYMPY_FUNCTIONS or isinstance(e, sympy.core.function.AppliedUndef):
            return fn(name, *args)
    raise UnsupportedExpression(
        f"unsupported: SymPy {type(e).__name__} ({_short(e)}); supported are numbers, symbols, "
        f"+, *, **, E, I, pi, undefined functions and {', '.join(sorted(SYMPY_FUNCTIONS))}"
    )


def _short(e: Any) -> str:
    text = str(e)
    return text if len(text) <= 60 else text[:57] + "..."
