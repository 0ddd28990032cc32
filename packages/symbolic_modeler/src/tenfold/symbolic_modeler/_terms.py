"""Hash-consed terms: an immutable DAG interned on (operator, value, children).

Invariants kept by every constructor here:

* Two terms are structurally equal if and only if they are the same object, so
  ``is`` (and the default identity ``==`` / ``hash``) is structural equality.
  The intern table holds terms weakly: a term lives as long as someone uses it.
* Arguments of the associative-commutative operators (``+`` and ``*``) are
  flattened (no ``+`` directly under ``+``) and sorted by :attr:`Term.skey`, a
  deterministic structural key (never ``id()``), so permuting them yields the
  identical node.
* Numbers are exact: ``int`` or :class:`fractions.Fraction` with a denominator
  other than 1.

Constructors here only flatten and sort; they never combine like terms or fold
constants. That is :func:`reduce`'s job, so a parsed term is a faithful record of
its input.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

__all__ = [
    "AC_OPS",
    "OP_ADD",
    "OP_MUL",
    "OP_NUM",
    "OP_POW",
    "OP_SEQ",
    "OP_SEQ0",
    "OP_SYM",
    "OP_WILD",
    "Number",
    "Term",
    "add",
    "fn",
    "from_postfix",
    "mul",
    "num",
    "pow_",
    "sym",
    "to_postfix",
    "wild",
]

Number = int | Fraction

# Operator spellings are not identifiers, so no user function name can clash.
OP_NUM = "#"
OP_SYM = "$"
OP_ADD = "+"
OP_MUL = "*"
OP_POW = "^"
OP_WILD = "?"  # pattern variable: exactly one term
OP_SEQ = "?+"  # sequence variable: one or more arguments
OP_SEQ0 = "?*"  # sequence variable: zero or more arguments
AC_OPS = frozenset({OP_ADD, OP_MUL})
WILD_OPS = frozenset({OP_WILD, OP_SEQ, OP_SEQ0})
LEAF_OPS = frozenset({OP_NUM, OP_SYM, OP_WILD, OP_SEQ, OP_SEQ0})

_MASK = (1 << 61) - 1
_seed_cache: dict[str, int] = {}


def _seed(text: str) -> int:
    """A deterministic 61-bit hash of a string (``hash(str)`` is salted per process)."""
    s = _seed_cache.get(text)
    if s is None:
        s = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") & _MASK
        _seed_cache[text] = s
    return s


# Functions undefined somewhere in the finite complex plane (a pole, log(0), the
# poles of tanh at i*pi/2 and of atan at +-i), with the numbers where they are
# undefined: a term containing one applied to a non-number (or to one of those
# numbers) is "partial" and guards the rewrites that would drop the bad point.
# Functions not listed (sin, exp, asin, abs, functions the modeler does not know)
# are taken as defined everywhere.
PARTIAL_FUNCTIONS: dict[str, frozenset[int]] = {
    "log": frozenset({0}),
    "tan": frozenset(),
    "cot": frozenset({0}),
    "sec": frozenset(),
    "csc": frozenset({0}),
    "tanh": frozenset(),
    "coth": frozenset({0}),
    "sech": frozenset(),
    "csch": frozenset({0}),
    "atan": frozenset(),
    "acot": frozenset(),
    "atanh": frozenset({1, -1}),
    "acoth": frozenset({1, -1}),
    "asec": frozenset({0}),
    "acsc": frozenset({0}),
    "asech": frozenset({0}),
    "acsch": frozenset({0}),
}
_PARTIAL_FUNCTIONS = PARTIAL_FUNCTIONS


class Term:
    """An interned, immutable expression node. Build terms with the module functions.

    ``op`` is the operator (``+ * ^ # $`` or a function name), ``args`` the
    children, ``value`` the number (``#``) or name (``$``, wildcards).
    ``size`` counts operator and symbol nodes of the tree (shared subterms each
    time they occur; numbers are free, so ``x + x -> 2*x`` does not grow it).
    ``partial`` says the term may be undefined at some finite point (it divides
    by a non-constant or takes a logarithm), which decides whether a rewrite that
    removes such a point is allowed.
    """

    __slots__ = ("__weakref__", "args", "op", "partial", "shash", "size", "skey", "value")

    op: str
    args: tuple[Term, ...]
    value: Any
    shash: int
    skey: tuple[Any, ...]
    size: int
    partial: bool

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("terms are immutable")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (from_postfix, (to_postfix(self),))

    def __repr__(self) -> str:
        from tenfold.symbolic_modeler._printing import to_text

        return f"Term({to_text(self)!r})"

    def __str__(self) -> str:
        from tenfold.symbolic_modeler._printing import to_text

        return to_text(self)

    # Operator overloads build raw (unreduced) terms, like the parser does.
    def __add__(self, other: object) -> Term:
        return add(self, _coerce(other))

    def __radd__(self, other: object) -> Term:
        return add(_coerce(other), self)

    def __mul__(self, other: object) -> Term:
        return mul(self, _coerce(other))

    def __rmul__(self, other: object) -> Term:
        return mul(_coerce(other), self)

    def __sub__(self, other: object) -> Term:
        return add(self, mul(num(-1), _coerce(other)))

    def __rsub__(self, other: object) -> Term:
        return add(_coerce(other), mul(num(-1), self))

    def __neg__(self) -> Term:
        return mul(num(-1), self)

    def __truediv__(self, other: object) -> Term:
        return mul(self, pow_(_coerce(other), num(-1)))

    def __rtruediv__(self, other: object) -> Term:
        return mul(_coerce(other), pow_(self, num(-1)))

    def __pow__(self, other: object) -> Term:
        return pow_(self, _coerce(other))

    def __rpow__(self, other: object) -> Term:
        return pow_(_coerce(other), self)

    @property
    def is_number(self) -> bool:
        return self.op == OP_NUM

    @property
    def is_symbol(self) -> bool:
        return self.op == OP_SYM

    @property
    def name(self) -> str:
        """The symbol, wildcard or function name."""
        return str(self.value) if self.op in LEAF_OPS else self.op

    def walk(self) -> Iterator[Term]:
        """Every distinct node of the DAG once, children before parents (iterative)."""
        seen: set[Term] = set()
        stack: list[tuple[Term, bool]] = [(self, False)]
        while stack:
            t, expanded = stack.pop()
            if t in seen:
                continue
            if expanded or not t.args:
                seen.add(t)
                yield t
                continue
            stack.append((t, True))
            for c in reversed(t.args):
                if c not in seen:
                    stack.append((c, False))

    def free_symbols(self) -> frozenset[str]:
        return frozenset(t.value for t in self.walk() if t.op == OP_SYM)

    def dag_size(self) -> int:
        """Distinct nodes (what hash-consing stores), as opposed to :attr:`size`."""
        return sum(1 for _ in self.walk())


def _coerce(value: object) -> Term:
    if isinstance(value, Term):
        return value
    if isinstance(value, int | Fraction) and not isinstance(value, bool):
        return num(value)
    raise TypeError(f"cannot combine a term with {type(value).__name__}")


_table: weakref.WeakValueDictionary[tuple[Any, ...], Term] = weakref.WeakValueDictionary()
_table_get = _table.get
_new = object.__new__
_set = object.__setattr__


def _intern(op: str, value: Any, args: tuple[Term, ...]) -> Term:
    key = (op, value, args)
    t = _table_get(key)
    if t is not None:
        return t
    t = _new(Term)
    _set(t, "op", op)
    _set(t, "args", args)
    _set(t, "value", value)
    if op == OP_NUM:
        h = (_seed("#") ^ (hash(value) * 0x9E3779B97F4A7C15)) & _MASK
        _set(t, "skey", (0, value, 0))
        _set(t, "size", 0)
        _set(t, "partial", False)
    elif op in LEAF_OPS:
        h = _seed(op + str(value))
        _set(t, "skey", (1 if op == OP_SYM else 3, value, 0))
        _set(t, "size", 1)
        _set(t, "partial", False)
    else:
        h = _seed(op)
        size = 1
        partial = False
        for c in args:
            h = ((h * 1000003) ^ c.shash) & _MASK
            size += c.size
            partial = partial or c.partial
        if not partial:
            partial = _self_partial(op, args)
        _set(t, "skey", (2, op, h))
        _set(t, "size", size)
        _set(t, "partial", partial)
    _set(t, "shash", h)
    _table[key] = t
    return t


def _self_partial(op: str, args: tuple[Term, ...]) -> bool:
    """The node's own operation can be undefined for some value of its (defined) arguments."""
    if op == OP_POW:
        b, e = args
        # b**e fails only at b = 0 with Re(e) <= 0, e != 0 (0**-1, 0**y for y <= 0)
        if (b.op == OP_NUM and b.value != 0) or b.op == "exp":
            return False  # never zero
        return e.op != OP_NUM or e.value < 0
    bad = _PARTIAL_FUNCTIONS.get(op)
    if bad is None or len(args) != 1:
        return False
    a = args[0]
    return a.op != OP_NUM or a.value in bad


def self_partial(t: Term) -> bool:
    """``t``'s root operation can fail (a division, a log, a pole of tan...) on defined arguments."""
    return bool(t.args) and _self_partial(t.op, t.args)


def num(value: int | Fraction | str) -> Term:
    """An exact number; a Fraction with denominator 1 becomes an int."""
    if isinstance(value, str):
        value = Fraction(value)
    if isinstance(value, Fraction):
        if value.denominator == 1:
            value = value.numerator
    elif isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"numbers are int or Fraction, not {type(value).__name__}")
    return _intern(OP_NUM, value, ())


def sym(name: str) -> Term:
    """A symbol."""
    return _intern(OP_SYM, name, ())


def wild(name: str, kind: str = OP_WILD) -> Term:
    """A pattern variable: ``OP_WILD`` (one term), ``OP_SEQ`` (1+ args), ``OP_SEQ0`` (0+ args)."""
    if kind not in WILD_OPS:
        raise ValueError(f"unknown wildcard kind {kind!r}")
    return _intern(kind, name, ())


def sort_args(args: list[Term]) -> tuple[Term, ...]:
    """Sort AC arguments by structural key; a (rare) 61-bit hash tie falls back to full structure."""
    args.sort(key=_skey)
    for i in range(len(args) - 1):
        a, b = args[i], args[i + 1]
        if a is not b and a.skey == b.skey:
            args.sort(key=lambda t: (t.skey, to_postfix(t)))
            break
    return tuple(args)


def _skey(t: Term) -> tuple[Any, ...]:
    return t.skey


def ac(op: str, args: Iterable[Term]) -> Term:
    """Flatten and sort arguments of ``+`` or ``*``; unit for zero args, the arg for one."""
    flat: list[Term] = []
    for a in args:
        if a.op == op:
            flat.extend(a.args)
        else:
            flat.append(a)
    if not flat:
        return num(0 if op == OP_ADD else 1)
    if len(flat) == 1:
        return flat[0]
    return _intern(op, None, sort_args(flat))


def ac_sorted(op: str, args: tuple[Term, ...]) -> Term:
    """Intern an AC node whose arguments are already flat and sorted (hot path of reduce)."""
    if len(args) == 1:
        return args[0]
    return _intern(op, None, args)


def add(*args: Term) -> Term:
    return ac(OP_ADD, args)


def mul(*args: Term) -> Term:
    return ac(OP_MUL, args)


def pow_(base: Term, exponent: Term) -> Term:
    return _intern(OP_POW, None, (base, exponent))


def fn(name: str, *args: Term) -> Term:
    """A function application, ``name(args...)``."""
    if not name or name in LEAF_OPS or name in AC_OPS or name == OP_POW:
        raise ValueError(f"bad function name {name!r}")
    return _intern(name, None, tuple(args))


def make(op: str, value: Any, args: tuple[Term, ...]) -> Term:
    """Rebuild a node of kind ``op`` over new children (AC operators re-flattened and sorted)."""
    if op in AC_OPS:
        return ac(op, args)
    return _intern(op, value, args)


def to_postfix(term: Term) -> tuple[Any, ...]:
    """A flat encoding of the DAG: ``(op, value, child indices)`` per distinct node, children first.

    Iterative, so pickling a 100,000-deep term does not recurse.
    """
    index: dict[Term, int] = {}
    out: list[tuple[Any, ...]] = []
    for t in term.walk():
        index[t] = len(out)
        out.append((t.op, t.value, tuple(index[c] for c in t.args)))
    return tuple(out)


def from_postfix(code: Iterable[tuple[Any, ...]]) -> Term:
    """Rebuild (and re-intern) a term from :func:`to_postfix` output."""
    built: list[Term] = []
    for op, value, kids in code:
        built.append(_intern(op, value, tuple(built[i] for i in kids)))
    if not built:
        raise ValueError("empty postfix code")
    return built[-1]
