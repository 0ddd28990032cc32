"""Point evaluation of terms, exact (Fractions) or to high precision (mpmath), and equivalence.

This is the referee of the equivalence suite: two terms are equivalent at a point
if their exact values are equal, or, when a transcendental function or an
irrational power is involved, if their 100-digit complex values agree to 25
digits. A point where either side is undefined (a pole, ``log(0)``) is skipped.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from tenfold.symbolic_modeler._terms import OP_ADD, OP_MUL, OP_NUM, OP_POW, OP_SYM, Term

__all__ = ["Undefined", "compare", "equivalent", "evaluate_exact", "evaluate_mp"]


class Undefined(ArithmeticError):
    """The term has no value at this point (division by zero, log of zero)."""


class _NotExact(Exception):
    pass


_BITS = 4096


def evaluate_exact(term: Term, point: Mapping[str, Fraction]) -> Fraction:
    """The exact rational value; raises ``_NotExact`` internally when irrational."""
    done: dict[Term, Fraction] = {}
    for t in term.walk():
        op = t.op
        if op == OP_NUM:
            done[t] = Fraction(t.value)
        elif op == OP_SYM:
            done[t] = point[t.value]
        elif op == OP_ADD:
            done[t] = sum((done[a] for a in t.args), Fraction(0))
        elif op == OP_MUL:
            acc = Fraction(1)
            for a in t.args:
                acc *= done[a]
            if acc.denominator.bit_length() > _BITS or acc.numerator.bit_length() > _BITS:
                raise _NotExact  # exact but huge: high-precision floats are cheaper
            done[t] = acc
        elif op == OP_POW:
            b, e = done[t.args[0]], done[t.args[1]]
            if e.denominator != 1:
                raise _NotExact
            if b == 0 and e < 0:
                raise Undefined("division by zero")
            if abs(e.numerator) * max(b.numerator.bit_length(), b.denominator.bit_length()) > _BITS:
                raise _NotExact
            done[t] = b**e.numerator
        else:
            raise _NotExact
    return done[term]


_MP_FUNCTIONS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "exp": "exp",
    "log": "log",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "abs": "fabs",
}


def evaluate_mp(term: Term, point: Mapping[str, Fraction], dps: int = 60) -> Any:
    """The complex value with ``dps`` digits (principal branches), via mpmath."""
    import mpmath  # type: ignore[import-untyped]

    with mpmath.workdps(dps):
        done: dict[Term, Any] = {}
        for t in term.walk():
            op = t.op
            if op == OP_NUM:
                v = t.value
                done[t] = mpmath.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else v
            elif op == OP_SYM:
                v = point[t.value]
                done[t] = mpmath.mpf(v.numerator) / v.denominator
            elif op == OP_ADD:
                done[t] = mpmath.fsum(done[a] for a in t.args)
            elif op == OP_MUL:
                acc: Any = mpmath.mpf(1)
                for a in t.args:
                    acc = acc * done[a]
                done[t] = acc
            elif op == OP_POW:
                b, e = done[t.args[0]], done[t.args[1]]
                if b == 0 and mpmath.re(e) < 0:
                    raise Undefined("division by zero")
                if isinstance(e, int):
                    done[t] = mpmath.power(b, e) if e >= 0 or b != 0 else b
                else:
                    done[t] = mpmath.power(mpmath.mpc(b), e)
            else:
                name = _MP_FUNCTIONS.get(op)
                if name is None or len(t.args) != 1:
                    raise ValueError(f"cannot evaluate function {op}")
                a = done[t.args[0]]
                if op == "log" and a == 0:
                    raise Undefined("log(0)")
                # Guards against pathological cost: sin of a 10**40 argument needs pi
                # to 40+ digits beyond the working precision, exp(10**7) has a
                # ten-million-bit exponent; such points are treated as ill-conditioned.
                if op in ("exp", "sinh", "cosh") and abs(mpmath.re(a)) > 10**5:
                    raise OverflowError(f"{op} of a huge argument")
                if op in ("sin", "cos", "tan") and abs(a) > 10**15:
                    raise OverflowError(f"{op} of a huge argument")
                if op == "abs":
                    done[t] = abs(a)
                else:
                    done[t] = getattr(mpmath, name)(mpmath.mpc(a) if op == "log" else a)
        return done[term]


class _IllConditioned(Exception):
    pass


def _value(term: Term, point: Mapping[str, Fraction]) -> tuple[bool, Any]:
    """(exact?, value). A float value must agree with itself at 50 and 100 digits
    to 30 digits, else the point is ill-conditioned for this term and skipped."""
    try:
        return True, evaluate_exact(term, point)
    except _NotExact:
        try:
            low = evaluate_mp(term, point, dps=50)
            high = evaluate_mp(term, point, dps=100)
        except (OverflowError, MemoryError):  # exp of an astronomically large argument
            raise _IllConditioned from None
        if not _close(low, high, 30):
            raise _IllConditioned from None
        return False, high
    except ZeroDivisionError as exc:
        raise Undefined(str(exc)) from exc


def _close(a: Any, b: Any, digits: int = 25) -> bool:
    import mpmath

    with mpmath.workdps(100):
        a, b = mpmath.mpmathify(a), mpmath.mpmathify(b)
        if mpmath.isinf(a) or mpmath.isinf(b) or mpmath.isnan(a) or mpmath.isnan(b):
            return False
        scale = max(mpmath.mpf(1), abs(a), abs(b))
        return bool(abs(a - b) <= scale * mpmath.mpf(10) ** -digits)


def compare(
    left: Term,
    right: Term,
    *,
    points: int = 4,
    seed: int = 0,
    symbols: Sequence[str] | None = None,
) -> str:
    """``"equal"``, ``"different"`` or ``"inconclusive"`` at random rational points.

    Points are drawn from small fractions p/q with |p| <= 9 and 1 <= q <= 7, so
    exact evaluation stays cheap; up to ``20 * points`` draws are tried, skipping
    poles and ill-conditioned points, then as many in [0.8, 1.2] if none was
    usable. No usable point at all is inconclusive.
    """
    if left is right:
        return "equal"
    rng = random.Random(seed)
    names = sorted(set(symbols or ()) | left.free_symbols() | right.free_symbols())
    checked = 0
    for attempt in range(40 * points):
        if attempt < 20 * points:
            point = {n: Fraction(rng.randint(-9, 9), rng.randint(1, 7)) for n in names}
        elif checked:
            break
        else:  # nothing usable yet (exp towers overflow): points near 1 keep values small
            point = {n: Fraction(rng.randint(80, 120), 100) for n in names}
        try:
            exact_l, vl = _value(left, point)
            exact_r, vr = _value(right, point)
        except (Undefined, ZeroDivisionError, _IllConditioned):
            continue
        if exact_l and exact_r:
            if vl != vr:
                return "different"
        elif not _close(vl, vr):
            return "different"
        checked += 1
        if checked >= points:
            break
    return "equal" if checked else "inconclusive"


def equivalent(left: Term, right: Term, **kw: Any) -> bool:
    """True when :func:`compare` finds the terms equal at every usable point."""
    return compare(left, right, **kw) == "equal"
