"""saturate: equality saturation over our own e-graph, extracting the smallest equivalent term.

The e-graph follows egg (Willsey et al., "egg: Fast and Extensible Equality
Saturation", POPL 2021), simplified where our sizes allow:

* e-classes are integers in a union-find (path halving, union by node count);
* an e-node is ``(op, value, child classes)``; ``+`` and ``*`` e-nodes keep their
  children sorted, so every permutation of an AC node is one e-node (a multiset);
* the hash-cons maps each canonical e-node to its class. Invariant after
  :meth:`EGraph.rebuild`: every stored e-node has canonical children, each
  canonical e-node is stored once, and congruent e-nodes (same op, value and
  children) sit in the same class (congruence closure). ``rebuild`` restores it
  by re-canonicalizing every e-node and merging the classes of duplicates until
  none is left: one linear pass per round, which our node limits keep cheap.

One iteration of :func:`saturate` reads, then writes: it e-matches every rule's
left side against every class (AC multiset and sequence variables included),
then instantiates the right sides and merges them into the matched classes.
The built-in canonicalization of :func:`reduce` joins in as a rule: the
smallest term of each class is reduced and merged back. Iterations stop when
nothing changes (saturated) or at the node, iteration, time or match limit;
then the cheapest term of the root class is extracted (bottom-up costs to a
fixpoint; by default a term's :attr:`Term.size`), so the result is never larger
than ``reduce(term)``, which the e-graph holds from the start.

Rules are equations valid wherever their left side is defined (as for
:func:`reduce`); ``both_ways=True`` also applies each rule right to left when
that direction binds every variable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from tenfold.symbolic_modeler._match import MatchBudget
from tenfold.symbolic_modeler._reduce import reduce
from tenfold.symbolic_modeler._rules import (
    EXP_RULES,
    TRIG_RULES,
    Rule,
    RuleSet,
    drops_domain,
    instantiate,
)
from tenfold.symbolic_modeler._terms import (
    AC_OPS,
    OP_ADD,
    OP_NUM,
    OP_SEQ,
    OP_SEQ0,
    OP_SYM,
    WILD_OPS,
    Term,
    ac,
    make,
    num,
)
from tenfold.symbolic_modeler.errors import (
    MatchBudgetExceeded,
    SaturationError,
    SaturationLimitExceeded,
)

__all__ = ["ALGEBRA_RULES", "EGraph", "SaturationResult", "StopReason", "saturate"]

ENode = tuple[str, Any, tuple[int, ...]]

# Factoring: sound everywhere; saturation keeps both forms, extraction picks.
ALGEBRA_RULES: tuple[str, ...] = (
    "x_*y__ + x_*z__ -> x_*(y__ + z__)",
    "x_*y__ + x_*z__ + r__ -> x_*(y__ + z__) + r__",
    "x_ + x_*y__ -> x_*(1 + y__)",
    "x_ + x_*y__ + r__ -> x_*(1 + y__) + r__",
)


class StopReason(StrEnum):
    """Why :func:`saturate` stopped."""

    SATURATED = "saturated"
    NODE_LIMIT = "node_limit"
    ITERATION_LIMIT = "iteration_limit"
    TIME_LIMIT = "time_limit"
    MATCH_LIMIT = "match_limit"


@dataclass(frozen=True)
class SaturationResult:
    """The extracted term and what the run did.

    ``input_size`` is the size of ``reduce(input)``; ``size`` the extracted
    term's, never larger with the default cost (with a custom ``node_cost`` the
    extracted term's cost is never above the reduced input's). ``enodes`` never
    exceeds the node limit.
    """

    term: Term
    input_size: int
    size: int
    stop_reason: StopReason
    iterations: int
    enodes: int
    eclasses: int

    @property
    def saturated(self) -> bool:
        return self.stop_reason is StopReason.SATURATED


class _Seq(NamedTuple):
    """A sequence variable's binding: the classes it took, under ``op`` (None: ordered args)."""

    op: str | None
    classes: tuple[int, ...]


Binding = int | _Seq
ESubst = dict[str, Binding]


class _Full(Exception):
    """The e-graph holds ``node_limit`` e-nodes."""


class _TimeUp(Exception):
    pass


class EGraph:
    """Hash-consed e-nodes over a union-find of e-classes (see the module docstring)."""

    def __init__(self, node_limit: int = 10_000) -> None:
        self.node_limit = node_limit
        self._parent: list[int] = []
        self._nodes: dict[int, set[ENode]] = {}
        self._memo: dict[ENode, int] = {}

    def __len__(self) -> int:
        """The number of e-nodes."""
        return len(self._memo)

    @property
    def classes(self) -> list[int]:
        return list(self._nodes)

    def find(self, c: int) -> int:
        parent = self._parent
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    def canon(self, n: ENode) -> ENode:
        op, value, kids = n
        ids = [self.find(k) for k in kids]
        if op in AC_OPS:
            ids.sort()
        return (op, value, tuple(ids))

    def add_node(self, n: ENode) -> int:
        n = self.canon(n)
        c = self._memo.get(n)
        if c is not None:
            return self.find(c)
        if len(self._memo) >= self.node_limit:
            raise _Full
        c = len(self._parent)
        self._parent.append(c)
        self._nodes[c] = {n}
        self._memo[n] = c
        return c

    def add_term(self, t: Term) -> int:
        ids: dict[Term, int] = {}
        for u in t.walk():
            ids[u] = self.add_node((u.op, u.value, tuple(ids[a] for a in u.args)))
        return ids[t]

    def union(self, a: int, b: int) -> bool:
        """Merge two classes; True if they were distinct. Call :meth:`rebuild` before matching."""
        a, b = self.find(a), self.find(b)
        if a == b:
            return False
        if len(self._nodes[a]) < len(self._nodes[b]):
            a, b = b, a
        self._parent[b] = a
        self._nodes[a] |= self._nodes.pop(b)
        return True

    def rebuild(self) -> None:
        """Restore the hash-cons and congruence-closure invariant after unions."""
        while True:
            memo: dict[ENode, int] = {}
            congruent: list[tuple[int, int]] = []
            for c, nodes in self._nodes.items():
                fresh: set[ENode] = set()
                for n in nodes:
                    n2 = self.canon(n)
                    fresh.add(n2)
                    other = memo.get(n2)
                    if other is None:
                        memo[n2] = c
                    elif other != c:
                        congruent.append((other, c))
                self._nodes[c] = fresh
            self._memo = memo
            if not congruent:
                return
            for a, b in congruent:
                self.union(a, b)

    def class_of(self, n: ENode) -> int | None:
        c = self._memo.get(self.canon(n))
        return None if c is None else self.find(c)

    def nodes(self, c: int) -> set[ENode]:
        return self._nodes[self.find(c)]

    # --- e-matching ----------------------------------------------------------

    def ematch(self, p: Term, c: int, subst: ESubst, budget: MatchBudget) -> Iterator[ESubst]:
        """Every substitution making pattern ``p`` equal to a term of class ``c`` (modulo AC)."""
        c = self.find(c)
        op = p.op
        if op in WILD_OPS:  # a sequence variable standing alone takes one class
            bound = subst.get(p.value)
            if bound is None:
                yield {**subst, p.value: c}
            elif bound == c:
                yield subst
            return
        if not p.args:
            if self._memo.get((op, p.value, ())) == c:
                yield subst
            return
        for n in tuple(self._nodes[c]):
            if n[0] != op or n[1] != p.value:
                continue
            if op in AC_OPS:
                yield from self._match_ac(p.args, n[2], op, subst, budget)
            else:
                yield from self._match_seq(p.args, 0, n[2], 0, subst, budget)

    def _match_seq(
        self,
        pats: tuple[Term, ...],
        i: int,
        kids: tuple[int, ...],
        j: int,
        subst: ESubst,
        budget: MatchBudget,
    ) -> Iterator[ESubst]:
        if i == len(pats):
            if j == len(kids):
                yield subst
            return
        p = pats[i]
        if p.op in (OP_SEQ, OP_SEQ0):
            lo = 1 if p.op == OP_SEQ else 0
            rest_min = sum(1 for q in pats[i + 1 :] if q.op != OP_SEQ0)
            bound = subst.get(p.value)
            if bound is not None:
                seq = bound.classes if isinstance(bound, _Seq) else (bound,)
                if kids[j : j + len(seq)] == seq:
                    yield from self._match_seq(pats, i + 1, kids, j + len(seq), subst, budget)
                return
            for k in range(lo, len(kids) - j - rest_min + 1):
                budget.spend()
                taken = _Seq(None, kids[j : j + k])
                yield from self._match_seq(
                    pats, i + 1, kids, j + k, {**subst, p.value: taken}, budget
                )
            return
        if j == len(kids):
            return
        for s2 in self.ematch(p, kids[j], subst, budget):
            yield from self._match_seq(pats, i + 1, kids, j + 1, s2, budget)

    def _match_ac(
        self,
        pats: tuple[Term, ...],
        kids: tuple[int, ...],
        op: str,
        subst: ESubst,
        budget: MatchBudget,
    ) -> Iterator[ESubst]:
        seqs = [p for p in pats if p.op in (OP_SEQ, OP_SEQ0)]
        others = [p for p in pats if p.op not in (OP_SEQ, OP_SEQ0)]
        min_seq = sum(1 for p in seqs if p.op == OP_SEQ)
        if len(others) + min_seq > len(kids) or (not seqs and len(others) != len(kids)):
            return
        # Most constrained first: numbers and symbols, then compound patterns, then variables.
        others.sort(key=lambda p: 2 if p.op in WILD_OPS else 0 if not p.args else 1)
        yield from self._assign(others, 0, list(kids), seqs, op, subst, budget)

    def _assign(
        self,
        others: list[Term],
        i: int,
        free: list[int],
        seqs: list[Term],
        op: str,
        subst: ESubst,
        budget: MatchBudget,
    ) -> Iterator[ESubst]:
        if i == len(others):
            yield from self._spread(seqs, 0, free, op, subst, budget)
            return
        p = others[i]
        tried: set[int] = set()
        for pos, c in enumerate(free):
            if c in tried:  # equal classes give equal branches
                continue
            tried.add(c)
            budget.spend()
            for s2 in self.ematch(p, c, subst, budget):
                yield from self._assign(
                    others, i + 1, free[:pos] + free[pos + 1 :], seqs, op, s2, budget
                )

    def _spread(
        self, seqs: list[Term], k: int, rest: list[int], op: str, subst: ESubst, budget: MatchBudget
    ) -> Iterator[ESubst]:
        if k == len(seqs):
            if not rest:
                yield subst
            return
        p = seqs[k]
        lo = 1 if p.op == OP_SEQ else 0
        bound = subst.get(p.value)
        if bound is not None:
            left = list(rest)
            for c in bound.classes if isinstance(bound, _Seq) else (bound,):
                if c not in left:
                    return
                left.remove(c)
            yield from self._spread(seqs, k + 1, left, op, subst, budget)
            return
        if k == len(seqs) - 1:
            if len(rest) >= lo:
                budget.spend()
                yield {**subst, p.value: _Seq(op, tuple(sorted(rest)))}
            return
        n = len(rest)
        for mask in range(1 << n):
            chosen = tuple(sorted(rest[b] for b in range(n) if mask >> b & 1))
            if len(chosen) < lo:
                continue
            budget.spend()
            remaining = [rest[b] for b in range(n) if not mask >> b & 1]
            yield from self._spread(
                seqs, k + 1, remaining, op, {**subst, p.value: _Seq(op, chosen)}, budget
            )

    # --- building ------------------------------------------------------------

    def _seq_class(self, seq: _Seq) -> int:
        """The class of a sequence binding used on its own (its operator over its classes)."""
        op = seq.op if seq.op is not None else OP_ADD
        if not seq.classes:
            return self.add_node((OP_NUM, 0 if op == OP_ADD else 1, ()))
        if len(seq.classes) == 1:
            return seq.classes[0]
        return self.add_node((op, None, seq.classes))

    def instantiate(self, rhs: Term, subst: ESubst) -> int:
        """Add ``rhs`` with its variables replaced by their classes; returns its class."""
        ids: dict[Term, int] = {}
        seqs: dict[Term, _Seq] = {}
        for t in rhs.walk():
            if t.op in WILD_OPS:
                b = subst[t.value]
                if isinstance(b, _Seq):
                    seqs[t] = b
                else:
                    ids[t] = b
                continue
            if not t.args:
                ids[t] = self.add_node((t.op, t.value, ()))
                continue
            kids: list[int] = []
            for a in t.args:
                seq = seqs.get(a)
                if seq is None:
                    kids.append(ids[a])
                elif seq.op == t.op or (seq.op is None and t.op not in AC_OPS):
                    kids.extend(seq.classes)  # splice into the same kind of argument list
                else:
                    kids.append(self._seq_class(seq))
            if t.op in AC_OPS and len(kids) < 2:
                ids[t] = (
                    kids[0] if kids else self.add_node((OP_NUM, 0 if t.op == OP_ADD else 1, ()))
                )
            else:
                ids[t] = self.add_node((t.op, t.value, tuple(kids)))
        if rhs in seqs:
            return self._seq_class(seqs[rhs])
        return ids[rhs]

    # --- extraction ----------------------------------------------------------

    def costs(self, node_cost: Callable[[str], float]) -> dict[int, tuple[float, ENode]]:
        """The cheapest e-node of each class (bottom-up, to a fixpoint; ties by a fixed key)."""
        best: dict[int, tuple[float, ENode]] = {}
        changed = True
        while changed:
            changed = False
            for c, nodes in self._nodes.items():
                for n in nodes:
                    kids = n[2]
                    if any(k not in best for k in kids):
                        continue
                    cost = node_cost(n[0]) + sum(best[k][0] for k in kids)
                    old = best.get(c)
                    if old is None or cost < old[0] or (cost == old[0] and _key(n) < _key(old[1])):
                        best[c] = (cost, n)
                        changed = True
        return best

    def term(self, c: int, best: dict[int, tuple[float, ENode]], memo: dict[int, Term]) -> Term:
        """The term of the cheapest e-nodes under class ``c`` (iterative)."""
        stack = [self.find(c)]
        while stack:
            x = stack[-1]
            if x in memo:
                stack.pop()
                continue
            op, value, kids = best[x][1]
            missing = [k for k in kids if k not in memo]
            if missing:
                stack.extend(missing)
                continue
            memo[x] = make(op, value, tuple(memo[k] for k in kids))
            stack.pop()
        return memo[self.find(c)]


def term_cost(t: Term, node_cost: Callable[[str], float]) -> float:
    """The tree cost of ``t`` (shared subterms counted each time they occur)."""
    total: dict[Term, float] = {}
    for u in t.walk():
        total[u] = node_cost(u.op) + sum(total[a] for a in u.args)
    return total[t]


def _key(n: ENode) -> tuple[str, str, tuple[int, ...]]:
    return (n[0], str(n[1]), n[2])


def _size_cost(op: str) -> float:
    """:attr:`Term.size`: numbers are free, every other node costs 1."""
    return 0.0 if op == OP_NUM else 1.0


@dataclass(frozen=True)
class _Rewrite:
    lhs: Term
    rhs: Term
    guards: tuple[Any, ...]
    rhs_vars: frozenset[str] = frozenset()


def _rewrites(rules: RuleSet, both_ways: bool) -> list[_Rewrite]:
    out: list[_Rewrite] = []
    for rule, guards in zip(rules.rules, rules._guards, strict=True):
        lhs_vars = frozenset(t.value for t in rule.lhs.walk() if t.op in WILD_OPS)
        rhs_vars = frozenset(t.value for t in rule.rhs.walk() if t.op in WILD_OPS)
        out.append(_Rewrite(rule.lhs, rule.rhs, tuple(g[1] for g in guards), rhs_vars))
        reversible = both_ways and not guards and rule.rhs.op not in WILD_OPS
        if reversible and rule.rhs.args and lhs_vars <= rhs_vars:
            out.append(_Rewrite(reduce(rule.rhs), rule.lhs, (), lhs_vars))
    return out


def default_rules() -> RuleSet:
    """Factoring, the trigonometric and the exponential identities, as equations."""
    return RuleSet([Rule.parse(r) for r in (*ALGEBRA_RULES, *TRIG_RULES, *EXP_RULES)], orient=False)


def saturate(
    term: Term,
    rules: RuleSet | Iterable[str | Rule] | None = None,
    *,
    node_limit: int = 10_000,
    iteration_limit: int = 30,
    time_limit_s: float = 5.0,
    match_budget: int = 200_000,
    node_cost: Callable[[str], float] | None = None,
    both_ways: bool = False,
    strict: bool = False,
) -> SaturationResult:
    """The cheapest term equal to ``term`` that equality saturation finds within the limits.

    ``rules``: a :class:`RuleSet`, rule texts, or None for :func:`default_rules`.
    ``node_cost(op)`` prices one node (``"#"`` numbers, ``"$"`` symbols, ``"+"``,
    ``"*"``, ``"^"`` or a function name); it must be positive for operators.
    When a limit stops the run the best term so far is returned with the
    reason, or :class:`SaturationLimitExceeded` is raised if ``strict``.
    :class:`ReductionError` means saturation proved the input defined nowhere
    (``1/(x*y + x*z - x*(y + z))``: a division by a term equal to zero), as
    :func:`reduce` does for ``1/(x - x)``.
    """
    if node_limit < 1 or iteration_limit < 1 or time_limit_s <= 0 or match_budget < 1:
        raise SaturationError("saturate limits must be positive")
    cost_of = node_cost or _size_cost
    for op in (OP_ADD, "^", "f"):
        if not cost_of(op) > 0:
            raise SaturationError(f"node_cost({op!r}) must be positive (extraction needs it)")
    if rules is None:
        rule_set = default_rules()
    elif isinstance(rules, RuleSet):
        rule_set = rules
    else:
        rule_set = RuleSet(
            [r if isinstance(r, Rule) else Rule.parse(r) for r in rules], orient=False
        )
    rewrites = _rewrites(rule_set, both_ways)
    start = reduce(term)
    deadline = time.monotonic() + time_limit_s
    graph = EGraph(node_limit)
    if start.dag_size() > node_limit:
        raise SaturationError(
            f"the reduced input has {start.dag_size()} distinct nodes, over node_limit {node_limit}"
        )
    root = graph.add_term(start)
    reason = StopReason.ITERATION_LIMIT
    iterations = 0
    reduced: dict[int, Term] = {}

    def check_time() -> None:
        if time.monotonic() > deadline:
            raise _TimeUp

    try:
        for _ in range(iteration_limit):
            iterations += 1
            best = graph.costs(cost_of)
            terms: dict[int, Term] = {}
            budget = MatchBudget(match_budget)
            found: list[tuple[int, _Rewrite, ESubst]] = []
            for c in graph.classes:  # read phase: the graph does not change
                check_time()
                for rw in rewrites:
                    for subst in graph.ematch(rw.lhs, c, {}, budget):
                        if rw.guards and not _guards_hold(graph, rw, subst, best, terms):
                            continue
                        if _drops_a_pole(graph, rw, subst, best, terms):
                            continue
                        found.append((c, rw, subst))
            changed = False
            for c, rw, subst in found:  # write phase
                check_time()
                changed |= graph.union(c, graph.instantiate(rw.rhs, subst))
            graph.rebuild()
            # The built-in canonicalization as one more rule: reduce each class's best term.
            best = graph.costs(cost_of)
            terms = {}
            canonical: list[tuple[int, Term]] = []
            for c in graph.classes:
                check_time()
                t = graph.term(c, best, terms)
                if reduced.get(c) is not t:
                    reduced[c] = t
                    r = reduce(t)
                    if r is not t:
                        canonical.append((c, r))
            for c, r in canonical:
                changed |= graph.union(c, graph.add_term(r))
            graph.rebuild()
            if not changed:
                reason = StopReason.SATURATED
                break
    except _Full:
        reason = StopReason.NODE_LIMIT
    except _TimeUp:
        reason = StopReason.TIME_LIMIT
    except MatchBudgetExceeded:
        reason = StopReason.MATCH_LIMIT
    graph.rebuild()
    best = graph.costs(cost_of)
    cheapest = graph.term(root, best, {})
    # reduce() minimizes size, not a custom cost: keep whichever is cheaper (the
    # root class holds `start` itself, so extraction is never dearer than it).
    extracted = min((reduce(cheapest), cheapest, start), key=lambda t: term_cost(t, cost_of))
    if strict and reason is not StopReason.SATURATED:
        raise SaturationLimitExceeded(
            f"saturation stopped on {reason.value} after {iterations} iterations "
            f"({len(graph)} e-nodes) before saturating"
        )
    return SaturationResult(
        term=extracted,
        input_size=start.size,
        size=extracted.size,
        stop_reason=reason,
        iterations=iterations,
        enodes=len(graph),
        eclasses=len(graph.classes),
    )


def _guards_hold(
    graph: EGraph,
    rw: _Rewrite,
    subst: ESubst,
    best: dict[int, tuple[float, ENode]],
    terms: dict[int, Term],
) -> bool:
    """Evaluate guards on representatives: a number or symbol node of the class if it has one."""
    values: dict[str, Any] = {}
    for name, b in subst.items():
        if isinstance(b, _Seq):
            values[name] = ac(
                b.op or OP_ADD, [_representative(graph, c, best, terms) for c in b.classes]
            )
        else:
            values[name] = _representative(graph, b, best, terms)
    return all(check(values) for check in rw.guards)


def _drops_a_pole(
    graph: EGraph,
    rw: _Rewrite,
    subst: ESubst,
    best: dict[int, tuple[float, ENode]],
    terms: dict[int, Term],
) -> bool:
    """The rewrite would lose a point where the matched term is undefined, as in reduce.

    ``sin(1/y)**2 + cos(1/y)**2 -> 1`` drops the pole at y = 0: judged on the
    classes' cheapest terms, the rewrite is skipped when the left side is partial
    and the right side either is not or leaves out a partial bound subterm.
    """
    if not any(
        isinstance(b, int) and _representative(graph, b, best, terms).partial
        for b in subst.values()
    ) and not (rw.lhs.partial or any(isinstance(b, _Seq) for b in subst.values())):
        return False
    values: dict[str, Any] = {}
    for name, b in subst.items():
        if isinstance(b, _Seq):
            reps = tuple(_representative(graph, c, best, terms) for c in b.classes)
            values[name] = reps if b.op is None else ac(b.op, reps)
        else:
            values[name] = _representative(graph, b, best, terms)
    if not instantiate(rw.lhs, values).partial:
        return False
    return drops_domain(instantiate(rw.rhs, values), values, rw.rhs_vars)


def _representative(
    graph: EGraph, c: int, best: dict[int, tuple[float, ENode]], terms: dict[int, Term]
) -> Term:
    for op, value, _kids in graph.nodes(c):
        if op == OP_NUM:
            return num(value)
    for op, value, _kids in graph.nodes(c):
        if op == OP_SYM:
            return make(op, value, ())
    if graph.find(c) not in best:  # pragma: no cover - every class has a finite cost
        raise SaturationError("an e-class has no finite-cost term")
    return graph.term(c, best, terms)
