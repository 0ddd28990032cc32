"""A small in-memory store's content before it needs DuckDB.

Opening a DuckDB database, loading a thousand triples into it and reading them
back for the in-memory fixpoint costs far more than reasoning over them: on
small inputs that statement overhead is the whole run. An in-memory
:class:`~tenfold.semantic_lattice.LatticeStore` therefore starts light: facts
sit in Python sets of integer-encoded tuples (the dictionary is a Python dict),
rule programs are parsed and checked as the engine would, and :meth:`Light.reason`
runs :class:`~._memeval.Fixpoint` directly. Loading, reasoning, counting and
listing triples stay here; anything else (queries, export, retraction, rule
packs that read term facts, more than :data:`~._memeval.IN_MEMORY_MAX_ROWS`
facts, round or row budgets) makes the store move its content into DuckDB
first and continue there (:meth:`LatticeStore._engine_now`), so results never
depend on which side answered.

Parsed and checked rule programs are kept per process, keyed by the texts added
so far, so every store that adds the same rule pack shares one parse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import lru_cache

from tenfold.semantic_lattice._datalog import Const, Program, Rule, parse_program, stratify
from tenfold.semantic_lattice._engine import Budget, ReasonStats, merge_program
from tenfold.semantic_lattice._memeval import IN_MEMORY_MAX_ROWS, Fixpoint, Plan, supported
from tenfold.semantic_lattice._sqlgen import SqlGen

__all__ = ["Light", "Texts"]

Fact = tuple[int, ...]
Texts = tuple[tuple[str, str], ...]  # (program text, source) in the order added

# Relations whose facts the store computes from the loaded terms in SQL (literal
# datatypes, container membership, ill-typed literals): rules that read them run in DuckDB.
_TERM_FACTS = frozenset({"literal_of", "membership_property", "ill_typed", "recognized_datatype"})


@lru_cache(maxsize=64)
def _program(texts: Texts) -> tuple[Program, tuple[tuple[str, tuple[object, ...]], ...], Plan]:
    """The checked program of ``texts``, the facts they state and the fixpoint's plan,
    made once per process."""
    program = Program()
    facts: list[tuple[str, tuple[object, ...]]] = []
    for text, source in texts:
        program, stated = merge_program(program, parse_program(text, source))
        facts += [(f.head.relation, _values(f)) for f in stated]
    plan = Plan(program.rules) if _eligible(program) else Plan([])
    return program, tuple(facts), plan


def _values(fact: Rule) -> tuple[object, ...]:
    return tuple(a.value for a in fact.head.args if isinstance(a, Const))


def _eligible(program: Program) -> bool:
    """Whether ``program`` runs in :class:`Fixpoint`: positive rules over symbols only."""
    rules = program.rules
    return (
        not any(rel.lattice for rel in program.relations.values())
        and all(t == "symbol" for rel in program.relations.values() for t in rel.types)
        and supported(rules)
        and not any(
            getattr(b, "relation", None) in _TERM_FACTS for rule in rules for b in rule.body
        )
    )


class Light:
    """Facts, dictionary and program of a store that has not needed DuckDB yet."""

    def __init__(self, texts: Texts) -> None:
        self.texts: Texts = ()
        self.ids: dict[str, int] = {}
        self.terms: list[str] = []
        self.facts: dict[str, set[Fact]] = {}  # base and derived
        self.base: dict[str, set[Fact]] = {}
        self.loaded: set[Fact] = set()  # triples added as data (not stated by programs)
        self.loads: list[str] = []  # files loaded, for the store's catalog
        self.reasoned = False  # ``facts`` holds a fixpoint (maybe of fewer facts, see pending)
        self.pending = True  # facts or rules added since the last fixpoint
        self.program = Program()
        self.plan = Plan([])
        if not self.add_program(texts):
            raise AssertionError("the store's own declarations are always light")

    # -- content -----------------------------------------------------------------------
    def size(self) -> int:
        return sum(map(len, self.facts.values()))

    def encode(self, term: str) -> int:
        ident = self.ids.get(term)
        if ident is None:
            ident = self.ids[term] = len(self.terms)
            self.terms.append(term)
        return ident

    def add(self, relation: str, rows: Iterable[tuple[str, ...]], *, loaded: bool) -> int:
        """Add base facts (terms); returns how many were not base facts already."""
        ids, terms = self.ids, self.terms
        encoded: set[Fact] = set()
        for row in rows:
            fact = []
            for term in row:
                ident = ids.get(term)
                if ident is None:
                    ident = ids[term] = len(terms)
                    terms.append(term)
                fact.append(ident)
            encoded.add(tuple(fact))
        base = self.base[relation]
        new = encoded - base
        base |= new
        self.facts[relation] |= new
        if loaded:
            self.loaded |= encoded
        if new:
            self.pending = True
        return len(new)

    def add_program(self, texts: Texts) -> bool:
        """Take the program of ``texts`` (the old ones plus one more); False if not light.

        Errors in the new program raise as the engine raises them; a program that
        is valid but not light leaves this object unchanged.
        """
        program, stated, plan = _program(texts)
        if not _eligible(program) or not all(isinstance(v, str) for _, f in stated for v in f):
            return False
        self.program = program
        self.plan = plan
        self.texts = texts
        for name in program.relations:
            self.facts.setdefault(name, set())
            self.base.setdefault(name, set())
        for relation, values in stated:
            self.add(relation, [values], loaded=False)  # type: ignore[list-item]  # all str
        self.pending = True
        return True

    def decoded(self, relation: str, *, base_only: bool = False) -> list[tuple[str, ...]]:
        terms = self.terms
        rows = self.base[relation] if base_only else self.facts[relation]
        return [tuple(map(terms.__getitem__, fact)) for fact in rows]

    def derived(self) -> dict[str, list[tuple[str, ...]]]:
        """Facts derived by the last fixpoint, per relation (terms)."""
        terms = self.terms
        out: dict[str, list[tuple[str, ...]]] = {}
        for name, facts in self.facts.items():
            extra = facts - self.base[name]
            if extra:
                out[name] = [tuple(map(terms.__getitem__, f)) for f in extra]
        return out

    # -- reasoning ---------------------------------------------------------------------
    def fits(self, budget: Budget) -> bool:
        """Whether :meth:`reason` may run here (else the store moves to DuckDB)."""
        return budget.rounds is None and budget.rows is None and self.size() <= IN_MEMORY_MAX_ROWS

    def reason(
        self, budget: Budget, on_round: Callable[[int, int], None] | None = None
    ) -> ReasonStats:
        """Run every rule to the fixpoint over everything known (see :class:`Fixpoint`)."""
        start = time.perf_counter()
        stats = ReasonStats(strata=len(stratify(self.program)))
        before = {name: len(f) for name, f in self.facts.items()}
        if self.pending and self.program.rules:
            gen = SqlGen(self.program, self.encode)
            # A copy: an aborted run (time budget) leaves the known facts as they were.
            work = {name: set(f) for name, f in self.facts.items()}
            fixpoint = Fixpoint(self.plan, work, lambda c: int(gen.const_sql(c, "symbol")))
            stats.rounds, _ = fixpoint.run(budget.time_s, start, on_round)
            self.facts = work
        self.reasoned = True
        self.pending = False
        for name, facts in self.facts.items():
            stats.per_relation[name] = len(facts) - before[name]
            stats.derived += len(facts) - before[name]
        stats.seconds = time.perf_counter() - start
        return stats
