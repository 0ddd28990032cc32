"""In-memory semi-naive evaluation for small positive programs.

On a few thousand facts, materialisation through DuckDB is all statement
overhead: each round runs tens of SQL statements of a few hundred microseconds
each while the joins themselves take microseconds. For positive programs
(no negation, aggregation or lattices; comparisons allowed) over symbol
relations whose stored facts fit :data:`IN_MEMORY_MAX_ROWS`, the engine runs
the fixpoint here instead and writes the derived rows back in one statement per
relation.

The algorithm is the same semi-naive evaluation as the SQL path: round one
applies every rule to all facts; each later round applies, for every rule and
every body atom, the rule with that atom reading only the facts new in the
previous round and the others reading everything known, and keeps what is new.
Each (rule, delta atom) variant is generated as one Python function of nested
loops over hash indexes (relation, bound positions) -> tuples: the delta atom
first, then at each step the atom with the most bound positions, comparisons as
soon as their variables are bound. Indexes are built the first time a variant
needs them and extended as facts are added, so each holds every known fact.
A variant whose constant-only atom pattern has no fact yet is skipped for the
round (the SQL path prunes the same way).

A :class:`Plan` (the variants of a rule set) depends on the rules only:
constants are parameters of the generated functions, bound to a store's ids
when a :class:`Fixpoint` runs, and the compiled code of each source is kept per
process, so a rule pack used by many stores is generated and compiled once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from tenfold.semantic_lattice._datalog import Atom, Compare, Const, Rule, Var
from tenfold.semantic_lattice.errors import BudgetExceededError

__all__ = ["IN_MEMORY_MAX_ROWS", "Fixpoint", "Plan", "supported"]

# Stored facts (all relations together) up to which the in-memory path runs; above
# it DuckDB's joins are faster than Python loops and memory stays in DuckDB.
IN_MEMORY_MAX_ROWS = 60_000

# Generated variant source -> its function (constants are parameters, so the source is
# the same for every store); bounded so user programs cannot grow it without end.
_COMPILED: dict[str, Callable[..., None]] = {}
_COMPILED_MAX = 4096

Fact = tuple[int, ...]
Pattern = tuple[str, tuple[int, ...]]  # relation, bound positions
_MEMBERSHIP = (-1,)  # "every position bound": the pattern reads the fact set itself


def supported(rules: list[Rule]) -> bool:
    """Whether every rule is positive atoms and comparisons of variables and constants."""
    for rule in rules:
        for b in rule.body:
            if isinstance(b, Atom):
                if b.negated or not all(isinstance(a, Var | Const) for a in b.args):
                    return False
            elif isinstance(b, Compare):
                if not all(isinstance(x, Var | Const) for x in (b.left, b.right)):
                    return False
            else:
                return False  # assignments
        if not rule.positive or not all(isinstance(a, Var | Const) for a in rule.head.args):
            return False
    return True


def _key(values: list[int]) -> Any:
    """An index key: the value itself for one bound position, else a tuple."""
    return values[0] if len(values) == 1 else tuple(values)


def _getter(positions: tuple[int, ...]) -> Callable[[Fact], Any]:
    """The index key of a fact (see :func:`_key`)."""
    if not positions:
        return lambda fact: ()
    return itemgetter(*positions)


class _Variant:
    """One rule with one body atom (or none, for round one) reading the delta.

    Built from the rule alone: constants stay :class:`Const` terms (bound to ids per
    store by :class:`Fixpoint`), so a plan is shared by every store with the same rules.
    """

    def __init__(self, rule: Rule, delta_atom: int | None) -> None:
        self.rule = rule
        self.head = rule.head.relation
        atoms = [b for b in rule.body if isinstance(b, Atom)]

        def consts(atom: Atom) -> tuple[int, ...]:
            return tuple(j for j, a in enumerate(atom.args) if isinstance(a, Const))

        if delta_atom is None:
            # Round one: start from the atom with the most constants (fewest facts).
            delta_atom = max(range(len(atoms)), key=lambda k: (len(consts(atoms[k])), -k))
        self.first_atom = delta_atom
        first = atoms[delta_atom]
        self.first: Pattern = (first.relation, consts(first))
        self.first_consts: tuple[Const, ...] = tuple(first.args[j] for j in self.first[1])  # type: ignore[misc]
        # (pattern, constants) of every atom with constants: all must match for any result.
        self.guards: list[tuple[Pattern, tuple[Const, ...]]] = [
            ((a.relation, consts(a)), tuple(a.args[j] for j in consts(a)))  # type: ignore[misc]
            for a in atoms
            if consts(a)
        ]
        self.patterns: list[Pattern] = []  # full-relation indexes the function reads
        self.params: tuple[Const | float, ...] = ()  # the function's constant parameters
        self.source = self._generate()
        self._run: Callable[..., None] | None = None

    def compiled(self) -> Callable[..., None]:
        """The variant's function, compiled the first time a round needs it."""
        if self._run is None:
            run = _COMPILED.get(self.source)
            if run is None:
                namespace: dict[str, Any] = {}
                code = compile(self.source, f"<rule at line {self.rule.line}>", "exec")
                exec(code, namespace)  # generated from the rule: ids and names only
                run = namespace["_variant"]
                if len(_COMPILED) < _COMPILED_MAX:
                    _COMPILED[self.source] = run
            self._run = run
        return self._run

    def _generate(self) -> str:
        """The Python source of the variant: nested loops over indexes (module docstring)."""
        rule = self.rule
        atoms = [b for b in rule.body if isinstance(b, Atom)]
        compares = [b for b in rule.body if isinstance(b, Compare)]
        names: dict[str, str] = {}
        bound: set[str] = set()

        consts: dict[Const | float, str] = {}  # a term (an id at run time), a number -> name

        def param(value: Const | float) -> str:
            return consts.setdefault(value, f"k{len(consts)}")

        def ref(term: Any) -> str:
            if isinstance(term, Var):
                return names[term.name]
            return param(term)

        def operand(term: Any) -> str:
            # As the SQL path compiles comparisons: a symbol is its id, a number its value.
            if isinstance(term, Const) and not isinstance(term.value, str):
                return param(float(term.value))
            return ref(term)

        def bound_positions(atom: Atom) -> tuple[int, ...]:
            return tuple(
                j
                for j, a in enumerate(atom.args)
                if isinstance(a, Const) or (isinstance(a, Var) and a.name in bound)
            )

        remaining = list(range(len(atoms)))
        order = [self.first_atom]
        remaining.remove(self.first_atom)
        lines: list[str] = []
        depth = 1
        placed: set[int] = set()
        step = 0
        while True:
            k = order[-1]
            atom = atoms[k]
            positions = bound_positions(atom)
            parts = [ref(atom.args[j]) for j in positions]
            key = parts[0] if len(parts) == 1 else "(" + "".join(f"{x}, " for x in parts) + ")"
            pad = "    " * depth
            if step == 0:
                lines.append(f"{pad}for _t in first:")
            elif len(positions) == len(atom.args):
                self.patterns.append((atom.relation, _MEMBERSHIP))
                fact = "(" + "".join(f"{x}, " for x in parts) + ")"  # facts are tuples
                lines.append(f"{pad}if {fact} in full{len(self.patterns) - 1}:")
            else:
                self.patterns.append((atom.relation, positions))
                lines.append(f"{pad}for _t in idx{len(self.patterns) - 1}.get({key}, ()):")
            depth += 1
            pad = "    " * depth
            if len(positions) < len(atom.args):
                checks = []
                for j, a in enumerate(atom.args):
                    if j in positions:
                        continue
                    assert isinstance(a, Var)
                    if a.name in bound:
                        # Bound earlier in this same atom (else j would be a bound position).
                        checks.append(f"_t[{j}] == {names[a.name]}")
                        continue
                    names.setdefault(a.name, f"v{len(names)}")
                    lines.append(f"{pad}{names[a.name]} = _t[{j}]")
                    bound.add(a.name)
                if checks:
                    lines.append(f"{pad}if {' and '.join(checks)}:")
                    depth += 1
                    pad = "    " * depth
            for c_i, cmp in enumerate(compares):
                if c_i in placed:
                    continue
                vars_ = [x.name for x in (cmp.left, cmp.right) if isinstance(x, Var)]
                if all(v in bound for v in vars_):
                    op = "==" if cmp.op == "=" else cmp.op
                    left, right = operand(cmp.left), operand(cmp.right)
                    lines.append(f"{pad}if {left} {op} {right}:")
                    depth += 1
                    pad = "    " * depth
                    placed.add(c_i)
            step += 1
            if not remaining:
                break
            nxt = max(remaining, key=lambda r: (len(bound_positions(atoms[r])), -r))
            remaining.remove(nxt)
            order.append(nxt)
        head_args = [ref(a) for a in rule.head.args]
        lines.append(f"{'    ' * depth}add(({', '.join(head_args)},))")
        params = ["first", "add"] + [
            f"full{i}" if p[1] == _MEMBERSHIP else f"idx{i}" for i, p in enumerate(self.patterns)
        ]
        # Constants are parameters, so the source depends on the rule only and its code
        # object is shared by every store in the process (a rule pack compiles once).
        params += consts.values()
        self.params = tuple(consts)
        return f"def _variant({', '.join(params)}):\n" + "\n".join(lines) + "\n"


class Plan:
    """The variants of a rule set: round one's, and one per (rule, body atom) after."""

    def __init__(self, rules: list[Rule]) -> None:
        self.full_variants = [_Variant(r, None) for r in rules]
        self.delta_variants: list[tuple[str, _Variant]] = []
        for rule in rules:
            atoms = [b for b in rule.body if isinstance(b, Atom)]
            for k, atom in enumerate(atoms):
                self.delta_variants.append((atom.relation, _Variant(rule, k)))


class Fixpoint:
    """The state of one in-memory materialisation: facts, indexes, compiled variants."""

    def __init__(
        self,
        rules: list[Rule] | Plan,
        facts: dict[str, set[Fact]],
        const: Callable[[Const], int],
    ) -> None:
        self.facts = facts
        self.indexes: dict[Pattern, dict[Fact, list[Fact]]] = {}
        self.plan = rules if isinstance(rules, Plan) else Plan(rules)
        self._const = const
        self._ids: dict[Const, int] = {}
        # variant -> (first key, guard keys, parameter values) with this store's ids
        self._bound: dict[_Variant, tuple[Any, list[tuple[Pattern, Any]], tuple[Any, ...]]] = {}

    def _id(self, term: Const) -> int:
        ident = self._ids.get(term)
        if ident is None:
            ident = self._ids[term] = self._const(term)
        return ident

    def _bind(self, v: _Variant) -> tuple[Any, list[tuple[Pattern, Any]], tuple[Any, ...]]:
        got = self._bound.get(v)
        if got is None:
            ids = self._id
            got = self._bound[v] = (
                _key([ids(c) for c in v.first_consts]),
                [(pattern, _key([ids(c) for c in cs])) for pattern, cs in v.guards],
                tuple(p if isinstance(p, float) else ids(p) for p in v.params),
            )
        return got

    def _index(self, pattern: Pattern) -> dict[Fact, list[Fact]]:
        index = self.indexes.get(pattern)
        if index is None:
            relation, positions = pattern
            index = {}
            key = _getter(positions)
            for fact in self.facts[relation]:
                index.setdefault(key(fact), []).append(fact)
            self.indexes[pattern] = index
        return index

    def _add(self, relation: str, new: set[Fact]) -> None:
        self.facts[relation] |= new
        for (rel, positions), index in self.indexes.items():
            if rel != relation:
                continue
            key = _getter(positions)
            for fact in new:
                index.setdefault(key(fact), []).append(fact)

    def _possible(self, guards: list[tuple[Pattern, Any]]) -> bool:
        return all(key in self._index(pattern) for pattern, key in guards)

    def run(
        self,
        time_budget_s: float | None,
        start: float,
        on_round: Callable[[int, int], None] | None = None,
    ) -> tuple[int, dict[str, set[Fact]]]:
        """Run to the fixpoint; returns the rounds and the facts derived per relation.

        ``on_round(rounds, derived)`` is called after each round (for progress).
        """
        derived: dict[str, set[Fact]] = {}
        rounds = 0
        delta: dict[str, set[Fact]] = {}
        while True:
            candidates: dict[str, set[Fact]] = {}
            delta_indexes: dict[Pattern, dict[Fact, list[Fact]]] = {}
            if rounds == 0:
                work = [(v, self._index(v.first)) for v in self.plan.full_variants]
            else:
                work = []
                for relation, v in self.plan.delta_variants:
                    if relation not in delta:
                        continue
                    index = delta_indexes.get(v.first)
                    if index is None:
                        index = {}
                        key = _getter(v.first[1])
                        for fact in delta[relation]:
                            index.setdefault(key(fact), []).append(fact)
                        delta_indexes[v.first] = index
                    work.append((v, index))
            for v, index in work:
                first_key, guards, values = self._bind(v)
                first = index.get(first_key)
                if not first or not self._possible(guards):
                    continue
                out = candidates.setdefault(v.head, set())
                run = v.compiled()
                run(first, out.add, *(self._full(p) for p in v.patterns), *values)
            rounds += 1
            delta = {}
            for relation, cand in candidates.items():
                new = cand - self.facts[relation]
                if new:
                    delta[relation] = new
                    derived.setdefault(relation, set()).update(new)
            for relation, new in delta.items():
                self._add(relation, new)
            if on_round is not None:
                on_round(rounds, sum(map(len, derived.values())))
            if not delta:
                return rounds, derived
            if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                raise BudgetExceededError(
                    f"time budget of {time_budget_s:g} s exceeded after {rounds} round(s)"
                )

    def _full(self, pattern: Pattern) -> Any:
        if pattern[1] == _MEMBERSHIP:
            return self.facts[pattern[0]]
        return self._index(pattern)
