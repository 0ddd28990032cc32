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


def _zero_times(base: Term) -> Term:
    """``0 * base`` keeping only the factors that can be undefined (``0*(1/y)``)."""
    factors = base.args if base.op == OP_MUL else (base,)
    keep = [f for f in factors if f.partial]
    if not keep:
        return ZERO
    return intern(OP_MUL, None, (ZERO, *sort_args(keep)))


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
    for base, c in coeffs.items():
        if c == 1:
            if base.op == OP_ADD:  # 2*(y + z) - (y + z): the sum itself comes back
                nested = True
                terms.extend(base.args)
            else:
                terms.append(base)
        elif c == 0:
            if base.partial and not flags.nonzero:
                z = _zero_times(base)
                if z is not ZERO:
                    terms.append(z)
        else:
            terms.append(_mul_of(c, base))
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
    distributable = False
    for a in args:
        if a.op == OP_ADD:
            for b in a.args:
                items.append(_split(b))
        else:
            c, base = _split(a)
            if base.op == OP_ADD and c != 0:
                distributable = True
            items.append((c, base))
    plain = _collect_sum(items, flags)
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
    other = _collect_sum(spread, flags)
    return other if other.size < plain.size else plain


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
            return ONE
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
            else:
                # (x**y)**n = x**(n*y) for integer n.
                return canon_pow(inner, canon_mul([f, e], flags), flags)
    elif b is ONE:
        return ONE
    return pow_(b, e)


def canon_mul(args: list[Term] | tuple[Term, ...], flags: Flags) -> Term:
    coeff: Number = 1
    # base -> [positive exponent sum, negative exponent sum, symbolic exponents]
    powers: dict[Term, list[object]] = {}
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
            slot = powers[base] = [0, 0, []]
        if e.op == OP_NUM:
            if e.value > 0:
                slot[0] = slot[0] + e.value
            else:
                slot[1] = slot[1] + e.value
        else:
            symbolic = slot[2]
            assert isinstance(symbolic, list)
            symbolic.append(e)
    factors: list[Term] = []
    reenter = False
    for base, (pos, neg, symbolic) in powers.items():
        assert isinstance(pos, int | Fraction) and isinstance(neg, int | Fraction)
        assert isinstance(symbolic, list)
        merge = flags.nonzero or (base.op == OP_NUM and base.value != 0)
        exps: list[Term] = []
        if symbolic:
            if merge:
                exps.append(canon_add([*symbolic, num(pos + neg)], flags))
            else:
                exps.append(canon_add([*symbolic, num(pos)], flags))
                if neg:
                    exps.append(num(neg))
        elif merge or not (pos and neg):
            if pos + neg != 0 or merge:
                exps.append(num(pos + neg))
            else:  # pragma: no cover - pos and neg both zero cannot happen
                continue
        else:
            exps.extend((num(pos), num(neg)))
        for ex in exps:
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


def _negated(a: Term) -> Term | None:
    """``u`` when ``a`` is ``-1*u`` (exactly), else None."""
    if a.op == OP_MUL and a.args[0] is MINUS_ONE:
        rest = a.args[1:]
        return rest[0] if len(rest) == 1 else ac_sorted(OP_MUL, rest)
    return None


def canon_fn(name: str, args: tuple[Term, ...], flags: Flags) -> Term:
    if len(args) == 1:
        (a,) = args
        if name in ("sin", "tan", "sinh", "tanh", "asin", "atan"):
            if a is ZERO:
                return ZERO
            u = _negated(a)
            if u is not None:  # odd function: f(-u) = -f(u)
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
