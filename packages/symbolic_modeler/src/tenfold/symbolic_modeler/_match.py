"""Pattern matching: syntactic, sequence variables, associative-commutative; one-to-one and many-to-one.

Patterns are terms with wildcards (``x_`` one term, ``x__`` one or more
arguments, ``x___`` zero or more). Under ``+`` and ``*`` arguments match as a
multiset. A sequence variable there binds to the ``+`` or ``*`` of the
arguments it takes (``0`` or ``1`` when it takes none), so it splices back
naturally when the right-hand side uses it under the same operator; under an
ordinary function it binds to the tuple of arguments it takes.

:class:`ManyToOneMatcher` compiles a whole pattern set to Python source, loaded
with ``compile()`` (the "JIT" for hot rule sets): a discrimination tree on the
root's head and arity and on its first argument's head picks candidates, and
each pattern becomes a generator function whose syntactic parts are straight-line
identity checks on interned terms; only AC and sequence parts call back into the
generic matcher below. AC matching is combinatorial, so every candidate
assignment spends from a :class:`MatchBudget`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tenfold.symbolic_modeler._terms import (
    AC_OPS,
    LEAF_OPS,
    OP_ADD,
    OP_SEQ,
    OP_SEQ0,
    OP_WILD,
    WILD_OPS,
    Term,
    ac,
    num,
)
from tenfold.symbolic_modeler.errors import MatchBudgetExceeded

__all__ = ["ManyToOneMatcher", "MatchBudget", "Subst", "match", "pattern_variables"]

Binding = Term | tuple[Term, ...]
Subst = dict[str, Binding]

DEFAULT_MATCH_BUDGET = 100_000


class MatchBudget:
    """Candidate assignments left for AC / sequence matching; exhausted -> MatchBudgetExceeded."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int = DEFAULT_MATCH_BUDGET) -> None:
        self.limit = limit
        self.left = limit

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise MatchBudgetExceeded(
                f"pattern matching tried more than {self.limit} candidate assignments "
                "(a combinatorial associative-commutative pattern?)"
            )


def pattern_variables(p: Term) -> dict[str, str]:
    """Variable name -> wildcard kind, for every wildcard in ``p``."""
    return {t.value: t.op for t in p.walk() if t.op in WILD_OPS}


def is_ground(p: Term) -> bool:
    return all(t.op not in WILD_OPS for t in p.walk())


def match(pattern: Term, subject: Term, budget: MatchBudget | None = None) -> Iterator[Subst]:
    """Every substitution that makes ``pattern`` equal to ``subject`` (modulo AC)."""
    return _match(pattern, subject, {}, budget or MatchBudget())


def _match(p: Term, s: Term, subst: Subst, budget: MatchBudget) -> Iterator[Subst]:
    op = p.op
    if op == OP_WILD:
        bound = subst.get(p.value)
        if bound is None:
            yield {**subst, p.value: s}
        elif bound is s:
            yield subst
        return
    if op in LEAF_OPS:
        if op in WILD_OPS:  # a sequence variable standing alone matches one term
            bound = subst.get(p.value)
            if bound is None:
                yield {**subst, p.value: s}
            elif bound is s:
                yield subst
            return
        if p is s:
            yield subst
        return
    if p is s:
        yield subst
        return
    if op != s.op:
        return
    if op in AC_OPS:
        yield from _match_ac(p.args, s.args, op, subst, budget)
    else:
        yield from _match_seq(p.args, 0, s.args, 0, subst, budget)


def _match_seq(
    pats: tuple[Term, ...],
    i: int,
    subs: tuple[Term, ...],
    j: int,
    subst: Subst,
    budget: MatchBudget,
) -> Iterator[Subst]:
    """Ordered arguments with sequence variables."""
    if i == len(pats):
        if j == len(subs):
            yield subst
        return
    p = pats[i]
    if p.op in (OP_SEQ, OP_SEQ0):
        rest_min = sum(1 if q.op not in (OP_SEQ0,) else 0 for q in pats[i + 1 :])
        lo = 1 if p.op == OP_SEQ else 0
        bound = subst.get(p.value)
        if bound is not None:
            seq = bound if isinstance(bound, tuple) else (bound,)
            if subs[j : j + len(seq)] == seq:
                yield from _match_seq(pats, i + 1, subs, j + len(seq), subst, budget)
            return
        for k in range(lo, len(subs) - j - rest_min + 1):
            budget.spend()
            yield from _match_seq(
                pats, i + 1, subs, j + k, {**subst, p.value: subs[j : j + k]}, budget
            )
        return
    if j == len(subs):
        return
    for s2 in _match(p, subs[j], subst, budget):
        yield from _match_seq(pats, i + 1, subs, j + 1, s2, budget)


def _unit(op: str) -> Term:
    return num(0 if op == OP_ADD else 1)


def _match_ac(
    pats: tuple[Term, ...], subs: tuple[Term, ...], op: str, subst: Subst, budget: MatchBudget
) -> Iterator[Subst]:
    """Multiset matching of AC arguments."""
    seqs = [p for p in pats if p.op in (OP_SEQ, OP_SEQ0)]
    others = [p for p in pats if p.op not in (OP_SEQ, OP_SEQ0)]
    min_seq = sum(1 for p in seqs if p.op == OP_SEQ)
    if len(others) + min_seq > len(subs) or (not seqs and len(others) != len(subs)):
        return
    # Most constrained first: ground terms, then compound patterns, then variables.
    others.sort(
        key=lambda p: 0 if not p.args and p.op not in WILD_OPS else (2 if p.op in WILD_OPS else 1)
    )
    yield from _assign(others, 0, list(range(len(subs))), subs, seqs, op, subst, budget)


def _assign(
    others: list[Term],
    i: int,
    free: list[int],
    subs: tuple[Term, ...],
    seqs: list[Term],
    op: str,
    subst: Subst,
    budget: MatchBudget,
) -> Iterator[Subst]:
    if i == len(others):
        yield from _spread(seqs, 0, [subs[j] for j in free], op, subst, budget)
        return
    p = others[i]
    tried: set[int] = set()
    for pos, j in enumerate(free):
        s = subs[j]
        if id(s) in tried:  # identical arguments give identical branches
            continue
        tried.add(id(s))
        budget.spend()
        for s2 in _match(p, s, subst, budget):
            yield from _assign(
                others, i + 1, free[:pos] + free[pos + 1 :], subs, seqs, op, s2, budget
            )


def _spread(
    seqs: list[Term], k: int, rest: list[Term], op: str, subst: Subst, budget: MatchBudget
) -> Iterator[Subst]:
    """Distribute the remaining AC arguments over the sequence variables."""
    if k == len(seqs):
        if not rest:
            yield subst
        return
    p = seqs[k]
    lo = 1 if p.op == OP_SEQ else 0
    bound = subst.get(p.value)
    if bound is not None:
        items = list(bound.args) if isinstance(bound, Term) and bound.op == op else [bound]
        left = list(rest)
        for it in items:
            if not isinstance(it, Term) or it not in left:
                return
            left.remove(it)
        yield from _spread(seqs, k + 1, left, op, subst, budget)
        return
    if k == len(seqs) - 1:
        if len(rest) >= lo:
            budget.spend()
            value = ac(op, rest) if rest else _unit(op)
            yield {**subst, p.value: value}
        return
    # subsets for this variable (as bitmasks over the remaining arguments)
    n = len(rest)
    for mask in range(1 << n):
        chosen = [rest[b] for b in range(n) if mask >> b & 1]
        if len(chosen) < lo:
            continue
        budget.spend()
        remaining = [rest[b] for b in range(n) if not mask >> b & 1]
        value = ac(op, chosen) if chosen else _unit(op)
        yield from _spread(seqs, k + 1, remaining, op, {**subst, p.value: value}, budget)


# ---------------------------------------------------------------------------
# Many-to-one: discrimination by head, compiled to Python source.


def _head_key(t: Term) -> Any:
    """Index key of a subject node: the node itself for leaves, (op, arity) otherwise."""
    return t if not t.args else (t.op, len(t.args))


def _is_fixed(p: Term) -> bool:
    """Syntactic node matchable by straight-line code (no AC, no sequence variable child)."""
    return (
        bool(p.args) and p.op not in AC_OPS and all(a.op not in (OP_SEQ, OP_SEQ0) for a in p.args)
    )


class _Codegen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: list[Term] = []
        self.n = 0

    def const(self, t: Term) -> str:
        self.consts.append(t)
        return f"K[{len(self.consts) - 1}]"

    def fresh(self) -> str:
        self.n += 1
        return f"n{self.n}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def pattern_fn(self, name: str, p: Term) -> None:
        """A generator ``name(s, budget)`` yielding substitution dicts for pattern ``p``."""
        self.emit(0, f"def {name}(s, budget):")
        bound: dict[str, str] = {}
        depth, _ = self.node(p, "s", 1, "return", bound)
        items = ", ".join(f"{v!r}: {loc}" for v, loc in bound.items())
        self.emit(depth, f"yield {{{items}}}")
        self.emit(0, "")

    def node(
        self, p: Term, var: str, depth: int, fail: str, bound: dict[str, str]
    ) -> tuple[int, str]:
        op = p.op
        if op == OP_WILD or op in (OP_SEQ, OP_SEQ0):
            loc = bound.get(p.value)
            if loc is not None:
                self.emit(depth, f"if {var} is not {loc}: {fail}")
            else:
                bound[p.value] = var
            return depth, fail
        if op in LEAF_OPS:
            self.emit(depth, f"if {var} is not {self.const(p)}: {fail}")
            return depth, fail
        if is_ground(p):
            self.emit(depth, f"if {var} is not {self.const(p)}: {fail}")
            return depth, fail
        if _is_fixed(p):
            self.emit(depth, f"if {var}.op != {op!r} or len({var}.args) != {len(p.args)}: {fail}")
            names = [self.fresh() for _ in p.args]
            self.emit(depth, f"{', '.join(names)}{',' if len(names) == 1 else ''} = {var}.args")
            for child, cname in zip(p.args, names, strict=True):
                depth, fail = self.node(child, cname, depth, fail, bound)
            return depth, fail
        # AC or sequence node: hand over to the generic matcher with what is bound so far.
        self.emit(depth, f"if {var}.op != {op!r}: {fail}")
        known = ", ".join(f"{v!r}: {loc}" for v, loc in bound.items())
        sub = self.fresh()
        self.emit(depth, f"for {sub} in _match({self.const(p)}, {var}, {{{known}}}, budget):")
        depth += 1
        for v in pattern_variables(p):
            if v not in bound:
                bound[v] = f"{sub}[{v!r}]"
        return depth, "continue"


class ManyToOneMatcher:
    """Match a subject against many patterns at once; yields (pattern index, substitution).

    The pattern set is compiled once to Python source (see :attr:`source`).
    """

    def __init__(self, patterns: Sequence[Term]) -> None:
        self.patterns = list(patterns)
        gen = _Codegen()
        for i, p in enumerate(self.patterns):
            gen.pattern_fn(f"m{i}", p)
        self.source = "\n".join(gen.lines)
        namespace: dict[str, Any] = {"K": gen.consts, "_match": _match}
        exec(compile(self.source, "<tenfold.symbolic_modeler.patterns>", "exec"), namespace)
        fns = [namespace[f"m{i}"] for i in range(len(self.patterns))]
        # Discrimination: root (op, arity) -> first-argument key -> [(index, fn)].
        # AC / sequence roots index on op only; a bare-variable root matches anything.
        self._fixed: dict[tuple[str, int], dict[Any, list[tuple[int, Any]]]] = {}
        self._fixed_any: dict[tuple[str, int], list[tuple[int, Any]]] = {}
        self._by_op: dict[str, list[tuple[int, Any]]] = {}
        self._leaf: dict[Term, list[tuple[int, Any]]] = {}
        self._anything: list[tuple[int, Any]] = []
        for i, (p, f) in enumerate(zip(self.patterns, fns, strict=True)):
            entry = (i, f)
            if p.op in WILD_OPS:
                self._anything.append(entry)
            elif not p.args:
                self._leaf.setdefault(p, []).append(entry)
            elif _is_fixed(p) and p.args:
                key = (p.op, len(p.args))
                a0 = p.args[0]
                if a0.op in WILD_OPS:
                    self._fixed_any.setdefault(key, []).append(entry)
                elif is_ground(a0) or not a0.args:
                    self._fixed.setdefault(key, {}).setdefault(a0, []).append(entry)
                elif _is_fixed(a0):
                    self._fixed.setdefault(key, {}).setdefault((a0.op, len(a0.args)), []).append(
                        entry
                    )
                else:
                    self._fixed_any.setdefault(key, []).append(entry)
            else:
                self._by_op.setdefault(p.op, []).append(entry)

    def candidates(self, subject: Term) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        if subject.args:
            key = (subject.op, len(subject.args))
            table = self._fixed.get(key)
            if table is not None:
                a0 = subject.args[0]
                hit = table.get(a0)
                if hit:
                    out.extend(hit)
                if a0.args:
                    hit = table.get((a0.op, len(a0.args)))
                    if hit:
                        out.extend(hit)
            hit = self._fixed_any.get(key)
            if hit:
                out.extend(hit)
            hit = self._by_op.get(subject.op)
            if hit:
                out.extend(hit)
        else:
            hit = self._leaf.get(subject)
            if hit:
                out.extend(hit)
        if self._anything:
            out.extend(self._anything)
        if len(out) > 1:
            out.sort(key=lambda e: e[0])
        return out

    def match(
        self, subject: Term, budget: MatchBudget | None = None
    ) -> Iterator[tuple[int, Subst]]:
        """Every (pattern index, substitution), in pattern order."""
        b = budget or MatchBudget()
        for i, f in self.candidates(subject):
            for subst in f(subject, b):
                yield i, subst

    def first(self, subject: Term, budget: MatchBudget | None = None) -> tuple[int, Subst] | None:
        for hit in self.match(subject, budget):
            return hit
        return None
