"""Point evaluation of terms, exact (Fractions) or adaptive high precision (mpmath), and equivalence.

This is the referee of the equivalence suite. Two terms are compared at random
points; at each point:

* if both have exact rational values (no transcendental function, no
  irrational power, numbers of at most a few thousand bits) the values must be
  equal as Fractions;
* otherwise each side is evaluated with mpmath (complex, principal branches)
  together with a running first-order bound on its absolute error (every
  rounding, propagated through sums, products, powers and each function's
  derivative). A value is *reliable* when the bound is below 10**-30 of it,
  or below 10**-40 outright (a sum that cancels to zero); else the precision
  grows by the digits that are missing, up to :data:`MAX_DPS`. ``sin`` of a
  10**400 argument needs 400 more digits than the answer: such steps ask for
  the precision they need at once. A reliable value is confirmed at 20 more
  digits (the two must lie within their bounds). Two reliable values must
  agree to 25 significant digits, plus their bounds;
* a complex argument within its error of a branch cut of ``log``, a
  non-integer power, ``asin``, ``acos`` or ``atan`` makes the point unusable:
  the principal value jumps there, and rounding could pick either side.

A point where either side is undefined (a pole, ``log(0)``) or is not reliable
at :data:`MAX_DPS` digits is skipped; ``compare`` draws fresh points until it has
``points`` usable ones or runs out of attempts. Nothing is ever counted equal
without a usable point: no point at all is ``"inconclusive"``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tenfold.symbolic_modeler._terms import OP_ADD, OP_MUL, OP_NUM, OP_POW, OP_SYM, Term

__all__ = [
    "Undefined",
    "compare",
    "compare_with_sympy",
    "equivalent",
    "evaluate_exact",
    "evaluate_mp",
]

MAX_DPS = 10_000
"""Highest working precision tried before a point is declared ill-conditioned."""

_START_DPS = 40
_STABLE_DIGITS = 30  # agreement between the two precisions of one side
_EQUAL_DIGITS = 25  # agreement between the two sides
_ZERO_FLOOR_DIGITS = 40  # a cancellation counts as zero only below 10**-40


class Undefined(ArithmeticError):
    """The term has no value at this point (division by zero, log of zero)."""


class _NotExact(Exception):
    pass


class _NeedPrecision(Exception):
    """A step needs at least ``dps`` working digits to produce any correct digit."""

    def __init__(self, dps: int) -> None:
        super().__init__(dps)
        self.dps = dps


class _IllConditioned(Exception):
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
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "exp": "exp",
    "log": "log",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "abs": "fabs",
    "asinh": "asinh",
    "acosh": "acosh",
    "atanh": "atanh",
    "re": "re",
    "im": "im",
    "conjugate": "conj",
}
# Functions that lose |a| * 2**-prec absolute (trig) or relative (exp) accuracy
# from the rounding of a large argument ``a``.
_BRANCHED = frozenset({"log", "asin", "acos", "atan", "asinh", "acosh", "atanh"})
_ARGUMENT_SENSITIVE = frozenset({"sin", "cos", "tan", "cot", "sec", "csc", "exp", "sinh", "cosh"})
_DIGITS_PER_BIT = math.log10(2)


def _slope(mp: Any, op: str, a: Any, v: Any) -> Any:
    """|f'(a)| for the function ``op`` with value ``v = f(a)``: how argument errors propagate."""
    if op == "sin":
        return abs(mp.cos(a))
    if op == "cos":
        return abs(mp.sin(a))
    if op == "tan":
        return abs(1 + v * v)
    if op == "cot":
        return abs(1 + v * v)
    if op == "sec":
        return abs(v * mp.tan(a))
    if op == "csc":
        return abs(v * mp.cot(a))
    if op == "exp":
        return abs(v)
    if op == "log":
        return 1 / abs(a)
    if op == "sinh":
        return abs(mp.cosh(a))
    if op == "cosh":
        return abs(mp.sinh(a))
    if op == "tanh":
        return abs(1 - v * v)
    if op in ("asin", "acos"):
        return 1 / abs(mp.sqrt(mp.mpc(1 - a * a)))
    if op == "atan":
        return 1 / abs(1 + a * a)
    if op == "asinh":
        return 1 / abs(mp.sqrt(mp.mpc(1 + a * a)))
    if op == "acosh":
        return 1 / abs(mp.sqrt(mp.mpc(a * a - 1)))
    if op == "atanh":
        return 1 / abs(1 - a * a)
    return mp.mpf(1)  # abs, re, im, conjugate


def _near_cut(mp: Any, op: str, a: Any, error: Any) -> bool:
    """True when ``a`` is complex and within its error of the branch cut of ``op``.

    A value computed in real arithmetic (an ``mpf``) is exactly real, so its
    side of the cut is its sign; a complex one whose imaginary part is below its
    error bound could lie on either side, and the principal value jumps there.
    """
    if not isinstance(a, mp.mpc) or not error:
        return False
    if op in ("atan", "asinh"):  # cuts on the imaginary axis beyond +-i
        return bool(abs(a.real) <= error and abs(a.imag) > 1)
    if abs(a.imag) > error:
        return False
    if op in ("asin", "acos", "atanh"):
        return bool(abs(a.real) > 1)
    if op == "acosh":
        return bool(a.real < 1)
    return bool(a.real < 0)  # log and non-integer powers


def _eval_mp(term: Term, point: Mapping[str, Fraction], dps: int) -> tuple[Any, Any]:
    """(complex value, absolute error bound) at ``dps`` digits.

    The bound is a running first-order error analysis: every rounding adds
    ``|v| * 2**-prec``, sums add their arguments' errors, products and powers
    propagate relative errors, and functions multiply the argument's error by
    ``|f'(a)|``. First-order is only trusted while an argument's error is small
    (below 1e-10 of the scale on which ``f`` varies); otherwise the evaluation
    asks for more precision.
    """
    import mpmath  # type: ignore[import-untyped]

    with mpmath.workdps(dps):
        mp = mpmath.mp
        u = mpmath.mpf(2) ** -(mp.prec - 1)
        small = mpmath.mpf(10) ** -10
        done: dict[Term, Any] = {}
        err: dict[Term, Any] = {}
        for t in term.walk():
            op = t.op
            if op == OP_NUM:
                v = t.value
                if isinstance(v, Fraction):
                    done[t] = x = mpmath.mpf(v.numerator) / v.denominator
                    err[t] = abs(x) * u
                else:
                    done[t] = v
                    err[t] = 0
            elif op == OP_SYM:
                v = point[t.value]
                done[t] = x = mpmath.mpf(v.numerator) / v.denominator
                err[t] = abs(x) * u
            elif op == OP_ADD:
                done[t] = x = mpmath.fsum(done[a] for a in t.args)
                err[t] = mpmath.fsum(err[a] for a in t.args) + abs(x) * u
            elif op == OP_MUL:
                mags = [abs(done[a]) for a in t.args]
                acc: Any = mpmath.mpf(1)
                for a in t.args:
                    acc = acc * done[a]
                done[t] = acc
                # sum over i of err_i * prod_{j != i} |v_j|, via prefix and suffix products
                n = len(mags)
                suffix = [mpmath.mpf(1)] * (n + 1)
                for i in range(n - 1, -1, -1):
                    suffix[i] = suffix[i + 1] * mags[i]
                prefix: Any = mpmath.mpf(1)
                total: Any = abs(acc) * u * n
                for i, a in enumerate(t.args):
                    if err[a]:
                        total += err[a] * prefix * suffix[i + 1]
                    prefix = prefix * mags[i]
                err[t] = total
            elif op == OP_POW:
                b, e = done[t.args[0]], done[t.args[1]]
                eb, ee = err[t.args[0]], err[t.args[1]]
                if b == 0 and mpmath.re(e) < 0:
                    raise Undefined("division by zero")
                if eb and eb > abs(b) * small:
                    raise _NeedPrecision(2 * dps)  # base not known to 10 digits
                if isinstance(e, int):
                    x = mpmath.power(b, e) if e >= 0 or b != 0 else b
                    rel = abs(e) * eb / abs(b) if b != 0 else 0
                else:
                    if _near_cut(mpmath, "log", b, eb):
                        raise _IllConditioned
                    x = mpmath.power(mpmath.mpc(b), e)
                    if ee and ee * abs(mpmath.log(mpmath.mpc(b))) > small:
                        raise _NeedPrecision(2 * dps)
                    rel = abs(e) * eb / abs(b) + abs(mpmath.log(mpmath.mpc(b))) * ee
                done[t] = x
                err[t] = abs(x) * (rel + u)
            else:
                name = _MP_FUNCTIONS.get(op)
                if name is None or len(t.args) != 1:
                    raise ValueError(f"cannot evaluate function {op}")
                a = done[t.args[0]]
                ea = err[t.args[0]]
                if op == "log" and a == 0:
                    raise Undefined("log(0)")
                if op == "atanh" and abs(a) == 1 and mpmath.im(a) == 0:
                    raise Undefined("atanh(+-1)")
                if op in _ARGUMENT_SENSITIVE and a != 0:
                    bits = int(mpmath.mag(a))
                    if bits > mp.prec - 100:  # the rounded argument has no correct fraction bits
                        raise _NeedPrecision(int((bits + 200) * _DIGITS_PER_BIT) + _START_DPS)
                # the distance to a singularity of f' bounds where first order holds
                scale = (
                    abs(a)
                    if op == "log"
                    else abs(1 - a * a)
                    if op in ("asin", "acos", "acosh", "atanh")
                    else abs(1 + a * a)
                    if op == "asinh"
                    else 1
                )
                if ea and ea > scale * small:
                    raise _NeedPrecision(2 * dps)  # first-order propagation not trusted
                if op in _BRANCHED and _near_cut(mpmath, op, a, ea):
                    raise _IllConditioned
                if op == "abs":
                    x = abs(a)
                else:
                    x = getattr(mpmath, name)(mpmath.mpc(a) if op == "log" else a)
                done[t] = x
                err[t] = (_slope(mpmath, op, a, x) * ea if ea else 0) + abs(x) * u
        value = done[term]
        if isinstance(value, int):
            value = mpmath.mpf(value)
        return value, err[term]


def evaluate_mp(term: Term, point: Mapping[str, Fraction], dps: int = 60) -> Any:
    """The complex value at ``dps`` digits (principal branches), via mpmath.

    Raises :class:`Undefined` at poles and ``OverflowError`` when a step would
    need more than ``dps`` digits to be meaningful (``sin`` of a huge number).
    """
    try:
        return _eval_mp(term, point, dps)[0]
    except _NeedPrecision as exc:
        raise OverflowError(f"needs {exc.dps} digits of working precision") from None


def _reliable(mp: Any, value: Any, error: Any) -> bool:
    """Right to 30 significant digits, or known to be within 10**-40 of zero."""
    return bool(
        error <= abs(value) * mp.mpf(10) ** -_STABLE_DIGITS
        or error <= mp.mpf(10) ** -_ZERO_FLOOR_DIGITS
    )


def _stable_mp(term: Term, point: Mapping[str, Fraction]) -> tuple[Any, Any]:
    """(value, error bound) reliable by :func:`_reliable`, confirmed at a second precision.

    The precision grows until the error bound is small enough (jumping to what a
    large trig or exp argument needs), and the value at 20 more digits must lie
    within the first one's error bound. Raises ``_IllConditioned`` beyond
    :data:`MAX_DPS` digits.
    """
    import mpmath

    dps = _START_DPS
    while dps <= MAX_DPS:
        try:
            value, error = _eval_mp(term, point, dps)
            if not _reliable(mpmath, value, error):
                # digits missing: log10(error / |value|) + 30 (mpmath: both may be far
                # outside the float range)
                grow = float(mpmath.log10(max(error, mpmath.mpf(10) ** -400))) + _STABLE_DIGITS
                if value != 0:
                    grow -= float(mpmath.log10(abs(value)))
                dps = max(2 * dps, dps + int(grow) + 10)
                continue
            check, check_error = _eval_mp(term, point, dps + 20)
        except _NeedPrecision as exc:
            dps = max(exc.dps, dps + 10)
            continue
        except (OverflowError, MemoryError, ZeroDivisionError):
            raise _IllConditioned from None
        with mpmath.workdps(dps + 40):
            if mpmath.isnan(value) or mpmath.isinf(value):
                raise _IllConditioned
            if abs(value - check) > error + check_error:
                raise _IllConditioned  # the error analysis missed something: do not trust it
        return check, check_error
    raise _IllConditioned


@dataclass(frozen=True)
class _Value:
    exact: bool
    value: Any
    error: Any = 0


def _value(term: Term, point: Mapping[str, Fraction]) -> _Value:
    try:
        return _Value(True, evaluate_exact(term, point))
    except _NotExact:
        value, error = _stable_mp(term, point)
        return _Value(False, value, error)
    except ZeroDivisionError as exc:
        raise Undefined(str(exc)) from exc


def _same(a: _Value, b: _Value) -> bool:
    if a.exact and b.exact:
        return bool(a.value == b.value)
    import mpmath

    with mpmath.workdps(120):
        x, y = mpmath.mpmathify(a.value), mpmath.mpmathify(b.value)
        scale = max(abs(x), abs(y))
        return bool(abs(x - y) <= scale * mpmath.mpf(10) ** -_EQUAL_DIGITS + a.error + b.error)


def _points(rng: random.Random, names: list[str]) -> Iterator[dict[str, Fraction]]:
    """Random rational points from three families, taken in turn.

    Wide (``p/q``, |p| <= 9, q <= 7): cheap exact arithmetic. Small (|v| <= 1,
    denominators up to 16): keeps towers of ``exp`` and high powers moderate.
    Near one ([0.8, 1.2]): positive, so logarithms stay on the real branch.
    Within a point the symbols take distinct values where the family allows,
    so accidental poles such as ``1/(x - y)`` are rare.
    """
    while True:
        for family in range(3):
            used: set[Fraction] = set()
            point: dict[str, Fraction] = {}
            for n in names:
                for _ in range(8):
                    if family == 0:
                        v = Fraction(rng.randint(-9, 9), rng.randint(1, 7))
                    elif family == 1:
                        q = rng.randint(2, 16)
                        v = Fraction(rng.randint(-q, q), q)
                    else:
                        v = Fraction(rng.randint(80, 120), 100)
                    if v not in used:
                        break
                used.add(v)
                point[n] = v
            yield point


def compare(
    left: Term,
    right: Term,
    *,
    points: int = 4,
    seed: int = 0,
    symbols: Sequence[str] | None = None,
    attempts: int | None = None,
    deadline_s: float = 60.0,
) -> str:
    """``"equal"``, ``"different"`` or ``"inconclusive"`` at random rational points.

    Up to ``attempts`` points (default ``50 * points``) are drawn; poles and
    points where a value stays unstable at :data:`MAX_DPS` digits are skipped.
    ``"equal"`` needs ``points`` usable points (or every usable point found
    before the attempts or ``deadline_s`` ran out, at least one), all agreeing;
    one disagreeing point is ``"different"``.
    """
    if left is right:
        return "equal"
    rng = random.Random(seed)
    names = sorted(set(symbols or ()) | left.free_symbols() | right.free_symbols())
    limit = attempts if attempts is not None else (50 * points if names else 1)
    deadline = time.monotonic() + deadline_s
    checked = 0
    for attempt, point in enumerate(_points(rng, names)):
        if attempt >= limit or time.monotonic() > deadline:
            break
        try:
            vl = _value(left, point)
            vr = _value(right, point)
        except (Undefined, ZeroDivisionError, _IllConditioned):
            continue
        if not _same(vl, vr):
            return "different"
        checked += 1
        if checked >= points:
            break
    return "equal" if checked else "inconclusive"


def equivalent(left: Term, right: Term, **kw: Any) -> bool:
    """True when :func:`compare` finds the terms equal at every usable point."""
    return compare(left, right, **kw) == "equal"


SIMPLIFY_MAX_SIZE = 40
"""Largest term for which an inconclusive point test falls back to ``sympy.simplify``."""


def compare_with_sympy(ours: Term, text: str, *, points: int = 3, seed: int = 0) -> str:
    """Our normal form of ``text`` against SymPy's automatic evaluation of the same text.

    The verdict of :func:`compare`; when it is inconclusive and the term is
    small, ``sympy.simplify(ours - theirs) == 0`` decides ``"equal"`` (a proof
    by SymPy's simplifier, not a numeric test). Otherwise it stays
    ``"inconclusive"``, never silently equal.
    """
    import sympy

    from tenfold.symbolic_modeler._sympy_bridge import from_sympy, to_sympy

    expr = sympy.sympify(text)
    verdict = compare(ours, from_sympy(expr), points=points, seed=seed)
    small = verdict == "inconclusive" and ours.size <= SIMPLIFY_MAX_SIZE
    if small and sympy.simplify(to_sympy(ours) - expr) == 0:
        return "equal"
    return verdict
