"""Built-in canonicalization of one node whose children are already canonical.

Every function here takes canonical children and returns a canonical term, and
keeps three promises:

* sound: the result equals the input wherever the input is defined. Rewrites that
  would also *extend* the domain (``x/x -> 1``, ``x**2/x -> x``,
  ``1/y - 1/y -> 0``, ``exp(log(x)) -> x``) happen only with ``nonzero=True``
  (the caller asserts that no subterm is zero or singular); otherwise the
  singular part is kept (``x**2*x**-1`` stays, ``1/y - 1/y`` becomes ``0*(1/y)``);
* never larger: the tree size of the result is at most that of the input (so,
  unlike SymPy, ``2*(x + y)`` is not distributed; a distribution inside a sum is
  taken only when it makes the sum smaller);
* idempotent: canonicalizing a canonical node returns the same node.

Symbols stand for finite complex numbers; powers use the principal branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from tenfold.symbolic_modeler._terms import (
    OP_ADD,
    OP_MUL,
    OP_NUM,
    OP_POW,
    Number,
    Term,
    ac_sorted,
    num,
    pow_,
    sort_args,
)
from tenfold.symbolic_modeler._terms import _intern as intern
from tenfold.symbolic_modeler.errors import ReductionError

__all__ = ["Flags", "canon_node"]

ZERO = num(0)
ONE = num(1)
MINUS_ONE = num(-1)


@dataclass(frozen=True)
class Flags:
    """Options of the built-in canonicalization.

    ``nonzero``: allow rewrites that are only valid where subterms are non-zero
    and defined (the ``x/x -> 1`` family). ``max_power_bits``: constant powers
    whose exact value would need more bits stay unevaluated (``2**(10**9)``).
    """

    nonzero: bool = False
    max_power_bits: int = 1 << 16


def _mul_of(coeff: Number, base: Term) -> Term:
    """``coeff * base`` for a canonical non-number ``base`` and coeff not 0 or 1."""
    c = num(coeff)
    if base.op == OP_MUL:
        return intern(OP_MUL, None, (c, *base.args))
    return intern(OP_MUL, None, (c, base))


def _collect_sum(items: list[tuple[Number, Term]], flags: Flags) -> Term:
    const: Number = 0
    coeffs: dict[Term, Number] = {}
    for c, base in items:
        if base is ONE:
            const += c
        else:
            coeffs[base] = coeffs.get(base, 0) + c
    terms: list[Term] = []
    nested = False
    null: list[Term] = []  # the singular factors of summands that cancelled
    for base, c in coeffs.items():
        if c == 1:
            if base.op == OP_ADD:  # 2*(y + z) - (y + z): the sum itself comes back
                nested = True
                terms.extend(base.args)
            else:
                terms.append(base)
        elif c == 0:
            if base.partial and not flags.nonzero:
                null.extend(f for f in (base.args if base.op == OP_MUL else (base,)) if f.partial)
        else:
            terms.append(_mul_of(c, base))
    if null:
        # one summand 0*(1/x)*(1/y) for all of them: 0/x + 0/x is 0/x
        z = canon_mul([ZERO, *null], flags)
        # -1/y + 0/y is -1/y: a null term over a base that survives adds nothing
        if z is not ZERO and not coeffs.get(_split(z)[1]):
            terms.append(z)
    if const != 0:
        terms.append(num(const))
    if nested:
        return canon_add(terms, flags)
    if not terms:
        return ZERO
    if len(terms) == 1:
        return terms[0]
    return intern(OP_ADD, None, sort_args(terms))


def _split(a: Term) -> tuple[Number, Term]:
    """A canonical summand as (numeric coefficient, base)."""
    if a.op == OP_NUM:
        return a.value, ONE
    if a.op == OP_MUL and a.args[0].op == OP_NUM:
        rest = a.args[1:]
        return a.args[0].value, (rest[0] if len(rest) == 1 else ac_sorted(OP_MUL, rest))
    return 1, a


def canon_add(args: list[Term] | tuple[Term, ...], flags: Flags) -> Term:
    items: list[tuple[Number, Term]] = []
    distributable = odd = False
    for a in args:
        # summands of a nested sum (a power **1 or sqrt(...)**2 of a sum returns
        # its sum here) are looked at like any other: 1 + z - (x + z) -> 1 - x
        for b in a.args if a.op == OP_ADD else (a,):
            c, base = _split(b)
            if c != 0:
                if base.op == OP_ADD:
                    distributable = True
                elif base.op in _ODD and _negated(base.args[0]) is not None:
                    odd = True
            items.append((c, base))
    plain = _collect_odd(items, flags) if odd else _collect_sum(items, flags)
    if not distributable:
        return plain
    # c*(u + v) inside a sum: distributing may let terms cancel; keep it only if smaller.
    spread: list[tuple[Number, Term]] = []
    work = list(items)
    while work:  # nested c*(u + d*(v + w)) distribute all the way down
        c, base = work.pop()
        if base.op == OP_ADD and c != 0:
            for b in base.args:
                bc, bb = _split(b)
                work.append((c * bc, bb))
        else:
            spread.append((c, base))
    other = _collect_odd(spread, flags)
    return other if other.size < plain.size else plain


def _collect_odd(items: list[tuple[Number, Term]], flags: Flags) -> Term:
    """The sum, with the sign taken out of odd functions when that makes it smaller.

    sin(-x*y) stays (moving the sign out would grow it), but in a sum
    sin(-x*y) + sin(x*y) -> 0.
    """
    plain = _collect_sum(items, flags)
    if any(c != 0 and _odd_out(c, base)[1] is not base for c, base in items):
        flipped = _collect_sum([_odd_out(c, base) for c, base in items], flags)
        if flipped.size < plain.size:
            return flipped
    return plain


_ODD = frozenset({"sin", "tan", "sinh", "tanh", "asin", "atan", "asinh", "atanh"})


def _odd_out(c: Number, base: Term) -> tuple[Number, Term]:
    """``c*f(-u)`` as ``-c*f(u)`` for an odd function ``f``; other summands unchanged."""
    if base.op in _ODD and len(base.args) == 1:
        u = _negated(base.args[0])
        if u is not None:
            return -c, intern(base.op, None, (u,))
    return c, base


def _exact_root(n: int, q: int) -> int | None:
    if n < 0 or n.bit_length() > 4096:
        return None
    if n < 2:
        return n
    r = round(n ** (1.0 / q)) if n.bit_length() < 1000 else _iroot(n, q)
    for cand in (r - 1, r, r + 1):
        if cand >= 0 and cand**q == n:
            return cand
    return None


def _iroot(n: int, q: int) -> int:
    lo, hi = 0, 1 << (n.bit_length() // q + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid**q <= n:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _fold_power(b: Number, e: Number, flags: Flags) -> Term | None:
    """``b**e`` for numbers when exact and not too large; ``None`` keeps the power."""
    if b == 0:
        if e < 0:
            raise ReductionError("division by zero: 0 raised to a negative power")
        return ZERO
    if b == 1:
        return ONE
    if isinstance(e, int):
        fb = Fraction(b)
        bits = abs(e) * max(fb.numerator.bit_length(), fb.denominator.bit_length())
        if bits > flags.max_power_bits:
            return None
        return num(fb**e)
    if b < 0:
        return None
    fb = Fraction(b)
    p, q = e.numerator, e.denominator
    rn = _exact_root(fb.numerator, q)
    rd = _exact_root(fb.denominator, q) if rn is not None else None
    if rn is None or rd is None:
        return None
    return _fold_power(Fraction(rn, rd), p, flags)


def _is_null(t: Term) -> bool:
    """``t`` is zero wherever it is defined (``0*(1/y)``, or a sum of such terms)."""
    if t.op == OP_ADD:
        return all(_is_null(a) for a in t.args)
    return t.op == OP_MUL and t.args[0] is ZERO


def canon_pow(b: Term, e: Term, flags: Flags) -> Term:
    if e.op == OP_NUM:
        ev = e.value
        if ev < 0 and _is_null(b):  # defined nowhere, like 0**-1
            raise ReductionError(f"division by zero: {b} is zero wherever it is defined")
        if ev == 0:
            # (1/x)**0 and log(x)**0 are undefined at x = 0: keep them unless allowed
            return ONE if flags.nonzero or not b.partial else pow_(b, e)
        if ev == 1:
            return b
        if b.op == OP_NUM:
            folded = _fold_power(b.value, ev, flags)
            if folded is not None:
                return folded
        elif b.op == OP_POW and isinstance(ev, int):
            inner, f = b.args
            if f.op == OP_NUM:
                fe = f.value * ev
                # (x**-1)**-1 -> x would define the result at x = 0.
                if flags.nonzero or not (f.value < 0 and fe > 0):
                    return canon_pow(inner, num(fe), flags)
            elif ev > 0 or flags.nonzero:
                # (x**y)**n = x**(n*y) for integer n; for n < 0, (x**-y)**-1 -> x**y
                # would define the result at x = 0, as with numbers above.
                return canon_pow(inner, canon_mul([f, e], flags), flags)
    elif b is ONE and (flags.nonzero or not e.partial):
        return ONE  # but 1**(1/x) keeps its pole at x = 0
    return pow_(b, e)


def canon_mul(args: list[Term] | tuple[Term, ...], flags: Flags) -> Term:
    coeff: Number = 1
    # base -> exponents, in order of first appearance
    powers: dict[Term, list[Term]] = {}
    work = list(args)
    i = 0
    while i < len(work):
        a = work[i]
        i += 1
        op = a.op
        if op == OP_NUM:
            coeff *= a.value
            continue
        if op == OP_MUL:
            work.extend(a.args)
            continue
        if op == OP_POW:
            base, e = a.args
        else:
            base, e = a, ONE
        slot = powers.get(base)
        if slot is None:
            powers[base] = [e]
        else:
            slot.append(e)
    factors: list[Term] = []
    reenter = False
    for base, exponents in powers.items():
        if len(exponents) == 1:
            groups = [exponents]
        elif flags.nonzero or (base.op == OP_NUM and base.value != 0):
            groups = [exponents]  # x**a * x**b = x**(a + b) where x != 0
        else:
            groups = _same_sign_groups(exponents)
        for group in groups:
            if len(group) == 1:
                ex = group[0]
            elif all(g.op == OP_NUM for g in group):
                ex = num(sum(g.value for g in group))
            else:
                ex = canon_add(group, flags)
            f = canon_pow(base, ex, flags)
            if f.op == OP_NUM:
                coeff *= f.value
            elif f.op == OP_MUL:
                # sqrt(x*y)*sqrt(x*y) -> x*y: its factors may meet others over the same base.
                reenter = True
                factors.extend(f.args)
            else:
                factors.append(f)
    if reenter:
        return canon_mul([num(coeff), *factors], flags)
    if coeff == 0:
        if flags.nonzero:
            return ZERO
        keep = [f for f in factors if f.partial]
        if not keep:
            return ZERO
        return intern(OP_MUL, None, (ZERO, *sort_args(keep)))
    if isinstance(coeff, Fraction) and coeff.denominator == 1:
        coeff = coeff.numerator
    if not factors:
        return num(coeff)
    if coeff == 1:
        if len(factors) == 1:
            return factors[0]
        return intern(OP_MUL, None, sort_args(factors))
    if len(factors) == 1:
        return intern(OP_MUL, None, (num(coeff), factors[0]))
    return intern(OP_MUL, None, (num(coeff), *sort_args(factors)))


def _same_sign_groups(exponents: list[Term]) -> list[list[Term]]:
    """Exponents of one base that may be added without losing a point where it is undefined.

    At x = 0, x**a is undefined when Re(a) <= 0 (a != 0). x**a * x**b and
    x**(a + b) are undefined at the same points when a and b are positive multiples
    of one term (x**2*x**3, x**y*x**(2*y), x**-1*x**-2), not otherwise (x**3*x**-1
    and x**y*x**-y would lose the pole at 0; x**y*x would lose it where y = -1/2).
    """
    groups: dict[tuple[Term, int], list[Term]] = {}
    for e in exponents:
        c, u = _split(e)
        key = (u, (c > 0) - (c < 0))
        slot = groups.get(key)
        if slot is None:
            groups[key] = [e]
        else:
            slot.append(e)
    return list(groups.values())


def _negated(a: Term) -> Term | None:
    """``u`` when ``a`` is ``-1*u`` (exactly), else None."""
    if a.op == OP_MUL and a.args[0] is MINUS_ONE:
        rest = a.args[1:]
        return rest[0] if len(rest) == 1 else ac_sorted(OP_MUL, rest)
    return None


def canon_fn(name: str, args: tuple[Term, ...], flags: Flags) -> Term:
    if len(args) == 1:
        (a,) = args
        if name in _ODD:
            if a is ZERO:
                return ZERO
            u = _negated(a)
            if u is not None and u.op != OP_MUL:
                # odd function: f(-u) = -f(u). Only for a single factor u, where the
                # product moves outside at equal size; f(-x*y) -> -f(x*y) would grow.
                return intern(OP_MUL, None, (MINUS_ONE, intern(name, None, (u,))))
        elif name in ("cos", "cosh"):
            if a is ZERO:
                return ONE
            if a.op == OP_NUM and a.value < 0:
                return intern(name, None, (num(-a.value),))
            if a.op == OP_MUL and a.args[0].op == OP_NUM and a.args[0].value < 0:
                c = -a.args[0].value
                rest = a.args[1:]
                inner = (
                    (rest[0] if len(rest) == 1 else ac_sorted(OP_MUL, rest))
                    if c == 1
                    else ac_sorted(OP_MUL, (num(c), *rest))
                )
                return intern(name, None, (inner,))
        elif name == "exp":
            if a is ZERO:
                return ONE
            if a.op == "log" and len(a.args) == 1 and flags.nonzero:
                return a.args[0]
        elif name == "log":
            if a is ONE:
                return ZERO
            if a is ZERO or _is_null(a):
                raise ReductionError("log(0) is undefined")
        elif name == "abs":
            if a.op == OP_NUM:
                return num(abs(a.value))
            if a.op == "abs":
                return a
            u = _negated(a)
            if u is not None:
                return canon_fn("abs", (u,), flags)
    return intern(name, None, args)


def canon_node(op: str, value: object, args: list[Term], flags: Flags) -> Term:
    """Canonical form of node ``op`` over canonical ``args``."""
    if op == OP_ADD:
        return canon_add(args, flags)
    if op == OP_MUL:
        return canon_mul(args, flags)
    if op == OP_POW:
        return canon_pow(args[0], args[1], flags)
    return canon_fn(op, tuple(args), flags)
