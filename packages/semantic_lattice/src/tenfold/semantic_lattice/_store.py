"""The lattice store: RDF triples and Datalog relations in one DuckDB database.

``LatticeStore`` is the public face: load N-Triples / Turtle / CSV in bulk,
add rule packs or user rules, reason to a fixpoint under a budget, check
consistency, query with Datalog or SPARQL (through one plan cache), export
the closure, and persist everything in a DuckDB file that reopens fast.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tenfold.semantic_lattice._datalog import parse_program
from tenfold.semantic_lattice._datatypes import RECOGNIZED, is_well_typed, lexical_form
from tenfold.semantic_lattice._engine import Budget, Engine, ReasonStats
from tenfold.semantic_lattice._index import OUTPUT_CREDIT, WORK_LIMIT, IndexPlan, TripleIndex
from tenfold.semantic_lattice._light import Light
from tenfold.semantic_lattice._memeval import IN_MEMORY_MAX_ROWS
from tenfold.semantic_lattice._packs import rule_pack
from tenfold.semantic_lattice._rdf import RDF, XSD, Triple, parse_ntriples, parse_turtle
from tenfold.semantic_lattice.errors import (
    InconsistencyError,
    QueryError,
    RDFSyntaxError,
    SchemaError,
    StoreError,
)

if TYPE_CHECKING:
    from tenfold.semantic_lattice._sparql_eval import Graph
    from tenfold.semantic_lattice._sparql_parse import Query

__all__ = ["Inconsistency", "LatticeStore", "QueryResult"]

TRIPLE = "triple"
# Relations every store has, and the program that declares them.
_DECLARED = ((TRIPLE, 3), ("literal_of", 2), ("membership_property", 1))
_DECLS = (
    "\n".join(f".decl {n}({', '.join(f'c{i}' for i in range(a))})." for n, a in _DECLARED),
    "<program>",
)


@dataclass(frozen=True)
class Inconsistency:
    """A contradiction found by an inconsistency rule, with the triples that cause it."""

    rule: str
    triples: tuple[Triple, ...]

    def __str__(self) -> str:
        causes = "; ".join(" ".join(t) for t in self.triples)
        return f"{self.rule}: {causes}"


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query with their column names.

    SPARQL answers carry their form in ``kind``: ``"select"`` (rows of terms,
    ``None`` for unbound), ``"ask"`` (``boolean``; no rows) or ``"graph"``
    (CONSTRUCT: rows are (subject, predicate, object) triples). ``ordered``:
    the query fixed the order of the rows (ORDER BY).
    """

    columns: list[str]
    rows: list[tuple[Any, ...]]
    kind: str = "select"
    boolean: bool | None = None
    ordered: bool = False

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class _Plan:
    sql: str
    columns: list[str]
    kinds: list[str]
    index: IndexPlan | None = None
    why_not_index: str = "a Datalog query"
    query: Query | None = None  # SPARQL: the parsed query (the evaluator runs it)


_PLAN_CHOICES = ("auto", "index", "sql", "eval")


class LatticeStore:
    """RDF and Datalog over DuckDB; ``path=None`` keeps everything in memory."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        threads: int | None = None,
        datatypes: Iterable[str] | None = None,
    ) -> None:
        """Open (or create) a store.

        ``datatypes``: the datatype IRIs recognized for D-entailment by the
        ``rdfs-full`` pack (ill-typed literals and datatype clashes are
        inconsistencies); ``None`` recognizes every datatype it knows (the
        ``xsd:`` built-ins, ``rdf:langString``, ``rdf:XMLLiteral``, ``rdf:HTML``);
        ``xsd:string`` and ``rdf:langString`` are always recognized.
        """
        self._datatypes = [d.removeprefix("<").removesuffix(">") for d in datatypes or ()]
        unknown = sorted(d for d in self._datatypes if d not in RECOGNIZED)
        if unknown:
            raise SchemaError(
                f"unknown datatype <{unknown[0]}>: recognized datatypes are the xsd: built-ins, "
                "rdf:langString, rdf:XMLLiteral and rdf:HTML"
            )
        if datatypes is None:
            self._datatypes = sorted(RECOGNIZED)
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise StoreError(f"threads must be a positive whole number, not {threads!r}")
        self._threads = threads
        self._plans: dict[str, _Plan] = {}
        self._eval_graph: Graph | None = None
        self._eval_generation = -1
        self.cache_hits = 0
        self.cache_misses = 0
        self._bnode_loads = 0
        self._engine: Engine | None = None
        self._move_lock = threading.Lock()
        # An in-memory store starts light (see ._light): no DuckDB until it is needed.
        self._light: Light | None = Light((_DECLS,)) if path is None else None
        if path is not None:
            self._open_engine(Engine(path, threads=threads))

    def _open_engine(self, engine: Engine) -> None:
        self._engine = engine
        missing = [
            f".decl {name}({', '.join(f'c{i}' for i in range(arity))})."
            for name, arity in _DECLARED
            if name not in engine.program.relations
        ]
        if missing:
            engine.add_program("\n".join(missing))  # one program: one catalog entry
        if "recognized_datatype" in engine.program.relations:
            self._recognize()  # a file store that has the rdfs-full pack already
        self._index = TripleIndex(engine.con, f"r_{TRIPLE}")
        row = engine.con.execute("SELECT count(*) FROM catalog WHERE kind = 'load'").fetchone()
        self._bnode_loads = int(row[0]) if row else 0

    @property
    def engine(self) -> Engine:
        """The DuckDB engine; a light store moves its content into one on first use."""
        if self._engine is None:
            with self._move_lock:  # server threads may ask at once: move once
                if self._engine is None:
                    self._engine_now()
        assert self._engine is not None
        return self._engine

    def _engine_now(self) -> None:
        """Move a light store's facts, programs and fixpoint into a new DuckDB engine."""
        light = self._light
        assert light is not None
        loads = self._bnode_loads  # blank-node prefixes handed out so far
        self._open_engine(Engine(None, threads=self._threads))
        self._light = None
        engine = self.engine
        for path in light.loads:
            engine.con.execute("INSERT INTO catalog VALUES ('load', ?, '')", [path])
        self._bnode_loads = max(loads, len(light.loads))
        self._add_triples_sql([tuple(map(light.terms.__getitem__, f)) for f in light.loaded])  # type: ignore[misc]
        for text, source in light.texts[1:]:
            engine.add_program(text, source)
        if light.reasoned:
            # The derived facts follow from what is stored; with nothing added since the
            # fixpoint the engine starts settled, else its next run re-derives everything.
            engine.adopt(light.derived(), settled=not light.pending)
        self._plans.clear()

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        self._light = None
        if self._engine is not None:
            self._engine.close()

    def __enter__(self) -> LatticeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading ---------------------------------------------------------------------
    def add_triples(self, triples: Sequence[Triple]) -> int:
        """Add triples (terms in canonical N-Triples form); returns how many were new."""
        if not triples:
            return 0
        for s, _p, _o in triples:
            if s.startswith('"'):
                raise SchemaError(f"a literal cannot be a subject: {s} (triple {s} {_p} {_o})")
        triples = _lowercase_language_tags(triples)
        light = self._light
        if light is not None and light.size() + len(triples) <= IN_MEMORY_MAX_ROWS:
            return light.add(TRIPLE, triples, loaded=True)
        with self.engine.transaction():
            return self._add_triples_sql(triples)

    def _add_triples_sql(self, triples: Sequence[Triple]) -> int:
        """Add checked triples through DuckDB, with the facts about their terms."""
        if not triples:
            return 0
        arrays = {  # noqa: F841 - scanned by DuckDB
            "s": np.array([t[0] for t in triples], dtype=object),
            "p": np.array([t[1] for t in triples], dtype=object),
            "o": np.array([t[2] for t in triples], dtype=object),
        }
        con = self.engine.con
        con.execute("CREATE OR REPLACE TEMP TABLE stage_triples AS SELECT * FROM arrays")
        try:
            added = self.engine.load_triples_sql(TRIPLE, "stage_triples")
            # Terms hold no raw newline (N-Triples escapes it), so "\n" + a prefix finds
            # a term that starts with it, in one C-level scan each.
            every_term = "\n" + "\n".join(chain.from_iterable(triples))
            objects = "\n" + "\n".join(map(itemgetter(2), triples))
            self._add_term_facts(
                "stage_triples",
                literals='\n"' in objects,
                members=f"\n<{RDF}_" in every_term,
            )
        finally:
            con.execute("DROP TABLE IF EXISTS stage_triples; DROP TABLE IF EXISTS stage_terms")
        self._plans.clear()
        return added

    def _add_term_facts(self, stage: str, *, literals: bool = True, members: bool = True) -> None:
        """Facts about the terms themselves, for rules that need them (``rdfs-full``).

        ``literal_of(L, D)``: literal L has datatype D (``rdf:langString`` for
        language-tagged, ``xsd:string`` for simple literals);
        ``membership_property(P)``: P is one of ``rdf:_1``, ``rdf:_2``, ...
        ``literals``/``members``: whether the stage can have either (else skipped).
        """
        con = self.engine.con
        if members:
            self.engine._add_encoded(
                self.engine.relation("membership_property"),
                f"""SELECT DISTINCT d.id AS c0 FROM (SELECT s AS x FROM {stage} UNION
                    SELECT p FROM {stage} UNION SELECT o FROM {stage}) t
                    JOIN dict d ON d.term = t.x
                    WHERE regexp_matches(t.x, '^<{RDF}_[1-9][0-9]*>$')""",
            )
        if not literals:
            return
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE stage_terms AS
                SELECT DISTINCT o AS l, CASE
                    WHEN regexp_matches(o, '\\^\\^<[^>]*>$')
                        THEN regexp_extract(o, '\\^\\^(<[^>]*>)$', 1)
                    WHEN regexp_matches(o, '"@[A-Za-z0-9-]+$') THEN '<{RDF}langString>'
                    ELSE '<{XSD}string>' END AS d
                FROM {stage} WHERE starts_with(o, '"')"""
        )
        self.engine.dictionary.bulk_encode_table("stage_terms", ["d"])
        self.engine._add_encoded(
            self.engine.relation("literal_of"),
            """SELECT dl.id AS c0, dd.id AS c1 FROM stage_terms st
               JOIN dict dl ON dl.term = st.l JOIN dict dd ON dd.term = st.d""",
        )
        self._add_ill_typed("SELECT l, d FROM stage_terms")

    def _recognize(self) -> None:
        """Make ``recognized_datatype`` hold exactly the store's datatypes (kept in a file store).

        Runs when a pack that declares it (``rdfs-full``) is added or reopened, with
        ``ill_typed`` filled for every literal loaded so far; later loads add theirs.
        """
        # RDF 1.1 Semantics 7: every D-interpretation recognizes xsd:string and rdf:langString.
        always = {f"<{XSD}string>", f"<{RDF}langString>"}
        wanted = {f"<{d}>" for d in self._datatypes} | always
        have = {row[0] for row in self.engine.rows("recognized_datatype")}
        if wanted - have:
            self.engine.add_facts("recognized_datatype", [(d,) for d in sorted(wanted - have)])
        if have - wanted:
            self.engine.retract_facts("recognized_datatype", [(d,) for d in sorted(have - wanted)])

    def _add_ill_typed(self, literals_sql: str) -> None:
        """``ill_typed(L, D)`` for the literals (columns l, d: terms) outside their lexical space."""
        if "ill_typed" not in self.engine.program.relations:
            return  # no pack reads it; adding rdfs-full later checks every literal then
        always = {f"<{XSD}string>", f"<{RDF}langString>", f"<{XSD}anyURI>", f"<{RDF}HTML>"}
        checked = sorted(f"<{iri}>" for iri in RECOGNIZED if f"<{iri}>" not in always)
        candidates = self.engine.con.execute(
            f"SELECT l, d FROM ({literals_sql}) WHERE d IN (SELECT unnest(?::VARCHAR[]))",
            [checked],
        ).fetchall()
        bad = [
            (lit, dt) for lit, dt in candidates if not is_well_typed(lexical_form(lit), dt[1:-1])
        ]
        if bad:
            self.engine.add_facts("ill_typed", bad)

    def retract_triples(self, triples: Sequence[Triple]) -> int:
        """Remove base triples; the next :meth:`reason` re-derives what still follows."""
        with self.engine.transaction():
            return self.engine.retract_facts(TRIPLE, list(triples))

    def load(self, path: str | Path, *, fmt: str | None = None, base: str | None = None) -> int:
        """Load an N-Triples (.nt), Turtle (.ttl) or CSV (s,p,o per row) file."""
        path = Path(path)
        kind = fmt or {".nt": "nt", ".ttl": "ttl", ".csv": "csv"}.get(path.suffix.lower())
        if kind is None:
            raise RDFSyntaxError(f"{path}: unknown format (use .nt, .ttl or .csv, or --format)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        self._bnode_loads += 1
        prefix = f"l{self._bnode_loads}_"
        if kind == "csv":
            rows = list(csv.reader(data.decode("utf-8").splitlines()))
            triples = [_csv_triple(path, i + 1, row) for i, row in enumerate(rows) if row]
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RDFSyntaxError(f"{path}: not UTF-8 (byte {exc.start})") from None
            if kind == "nt":
                triples = parse_ntriples(text, source=str(path), bnode_prefix=prefix)
            else:
                iri = base or path.resolve().as_uri()
                triples = parse_turtle(text, base=iri, source=str(path), bnode_prefix=prefix)
        if self._light is not None:
            self._light.loads.append(str(path))
            return self.add_triples(triples)
        with self.engine.transaction():  # a file store has all of the file or none of it
            self.engine.con.execute("INSERT INTO catalog VALUES ('load', ?, '')", [str(path)])
            return self.add_triples(triples)

    def load_text(self, text: str, *, fmt: str = "ttl", base: str = "") -> int:
        self._bnode_loads += 1
        prefix = f"l{self._bnode_loads}_"
        if fmt == "nt":
            return self.add_triples(parse_ntriples(text, bnode_prefix=prefix))
        return self.add_triples(parse_turtle(text, base=base, bnode_prefix=prefix))

    # -- rules and reasoning ------------------------------------------------------------
    def add_rules(self, text_or_pack: str, source: str = "<rules>") -> None:
        """Add a named rule pack (``rdfs``, ``rdfs-full``, ``owl-rl``) or Datalog text."""
        text = rule_pack(text_or_pack) if _is_pack_name(text_or_pack) else text_or_pack
        light = self._light
        if light is not None:
            if any(text == t for t, _ in light.texts):
                return  # the same rules again: nothing new (as the engine does)
            if light.add_program((*light.texts, (text, source))):
                self._plans.clear()
                return
        had_datatypes = "recognized_datatype" in self.engine.program.relations
        self._plans.clear()
        with self.engine.transaction():
            self.engine.add_program(text, source)
            if not had_datatypes and "recognized_datatype" in self.engine.program.relations:
                self._recognize()
                self._add_ill_typed(
                    """SELECT dl.term AS l, dd.term AS d FROM r_literal_of lo
                       JOIN dict dl ON dl.id = lo.c0 JOIN dict dd ON dd.id = lo.c1"""
                )

    def reason(
        self,
        budget: Budget | None = None,
        *,
        on_round: Callable[[int, int], None] | None = None,
    ) -> ReasonStats:
        """Materialise every rule to its fixpoint (incrementally after additions).

        ``on_round(rounds, derived)`` is called after each round, for progress reports.
        """
        light = self._light
        if light is not None and light.fits(budget or Budget()):
            return light.reason(budget or Budget(), on_round)
        stats = self.engine.materialize(budget, on_round)
        self._plans.clear()
        return stats

    def optimize(self) -> None:
        """Cluster the triple table by predicate and object, so zone maps prune scans.

        DuckDB keeps min/max per row group; sorted by (p, o, s), a pattern with a
        constant predicate (and object) reads only the row groups that hold it.
        """
        con = self.engine.con
        for table in (f"r_{TRIPLE}", f"e_{TRIPLE}"):
            con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table} ORDER BY c1, c2, c0"
            )
        self.engine.generation += 1
        self._plans.clear()

    def inconsistencies(self) -> list[Inconsistency]:
        """Contradictions the inconsistency rules found, each with its causing triples."""
        if "inconsistent" not in self.engine.program.relations:
            return []
        out = []
        for rule, *terms in self.engine.rows("inconsistent"):
            first, second = tuple(terms[:3]), tuple(terms[3:])
            triples = (first,) if first == second else (first, second)
            out.append(Inconsistency(rule.strip('"'), triples))
        return sorted(out, key=str)

    def check_consistency(self) -> None:
        """Raise :class:`InconsistencyError` naming each contradiction and its triples."""
        found = self.inconsistencies()
        if found:
            listing = " | ".join(str(i) for i in found[:5])
            more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
            raise InconsistencyError(f"{len(found)} inconsistenc(ies): {listing}{more}")

    # -- reading ---------------------------------------------------------------------------
    def count(self, relation: str = TRIPLE) -> int:
        light = self._light
        if light is not None and relation in light.facts:
            return len(light.facts[relation])
        return self.engine.count(relation)

    def triples(self, *, base_only: bool = False) -> list[Triple]:
        if self._light is not None:
            return self._light.decoded(TRIPLE, base_only=base_only)  # type: ignore[return-value]
        table = f"e_{TRIPLE}" if base_only else f"r_{TRIPLE}"
        raw = self.engine.con.execute(f"SELECT * FROM {table}").fetchall()
        names = self.engine.dictionary.decode_many(i for row in raw for i in row)
        return [(names[s], names[p], names[o]) for s, p, o in raw]

    def export(self, path: str | Path) -> int:
        """Write the closure as N-Triples (in SQL, no Python round trip); returns triples."""
        con = self.engine.con
        con.execute(
            f"""COPY (SELECT ds.term || ' ' || dp.term || ' ' || dob.term || ' .' AS line
                      FROM r_{TRIPLE} t JOIN dict ds ON ds.id = t.c0 JOIN dict dp ON dp.id = t.c1
                      JOIN dict dob ON dob.id = t.c2)
                TO '{str(path).replace("'", "''")}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')"""
        )
        return self.count()

    # -- queries ------------------------------------------------------------------------------
    @property
    def cache_hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 0.0

    def _plan(self, text: str, compile_: Callable[[str], _Plan]) -> _Plan:
        plan = self._plans.get(text)
        if plan is not None:
            self.cache_hits += 1
            return plan
        self.cache_misses += 1
        plan = compile_(text)
        if len(self._plans) > 1024:
            self._plans.pop(next(iter(self._plans)))
        self._plans[text] = plan
        return plan

    def datalog(self, text: str) -> QueryResult:
        """Answer a Datalog query such as ``?- triple(X, rdf:type, ub:Student).``"""

        def compile_(q: str) -> _Plan:
            stripped = q.strip()
            if not stripped.startswith("?-"):
                stripped = "?- " + stripped
            if not stripped.endswith("."):
                stripped += "."
            prefixes = "".join(
                f".prefix {name} <{iri}>\n"
                for name, iri in self.engine.program.prefixes.items()
                if name not in ("rdf", "rdfs", "owl", "xsd")
            )
            program = parse_program(prefixes + stripped, "<query>")
            if len(program.queries) != 1:
                raise QueryError("expected exactly one query")
            sql, columns, kinds = self.engine.compile_query(program.queries[0])
            return _Plan(sql, columns, kinds)

        plan = self._plan(text, compile_)
        return QueryResult(plan.columns, self.engine.run_sql(plan.sql, plan.kinds))

    def sparql(
        self,
        text: str,
        *,
        plan: str = "auto",
        base: str = "",
        named_graphs: Mapping[str, Sequence[Triple]] | None = None,
        load_graph: Callable[[str], Sequence[Triple]] | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult:
        """Answer a SPARQL 1.1 query (SELECT, ASK or CONSTRUCT) over the store's closure.

        ``plan``: ``"auto"`` answers a basic graph pattern with constant
        predicates (projection, DISTINCT, GROUP BY, COUNT) from in-memory hash
        indexes when its estimated work is small (see :mod:`._index`), in DuckDB
        when it is large, and every other query with the SPARQL algebra
        evaluator (:mod:`._sparql_eval`) over an in-memory copy of the closure;
        ``"index"``, ``"sql"`` or ``"eval"`` insist on one path (a
        :class:`QueryError` says why a query is outside it). All give the same
        rows. ``base``: the base IRI of the query. ``named_graphs``: graphs
        (IRI term -> triples) that GRAPH patterns see beside the store, which is
        the default graph; ``load_graph``: how FROM / FROM NAMED IRIs become
        triples (without it such a query is refused as unsupported).
        ``timeout_s``: the evaluator stops with :class:`BudgetExceededError`
        once a query has run that long (the index path and DuckDB answer the
        queries they take in one step).
        """
        if plan not in _PLAN_CHOICES:
            raise QueryError(f"plan must be one of {', '.join(_PLAN_CHOICES)}, not {plan!r}")
        compiled = self._sparql_plan(text, base)
        query = compiled.query
        assert query is not None
        if plan in ("index", "sql") and not compiled.sql:
            raise QueryError(f"the {plan} path does not answer {compiled.why_not_index}")
        if compiled.sql and plan != "eval" and not named_graphs and load_graph is None:
            if plan != "sql":
                index_plan = self._index_plan(compiled, forced=plan == "index")
                if index_plan is not None:
                    raw = index_plan.execute(self._index)
                    symbols = [kind == "symbol" for kind in compiled.kinds]
                    rows = self.engine.dictionary.decode_rows(raw, symbols)
                    return QueryResult(compiled.columns, _counts_as_terms(rows, compiled.kinds))
            rows = self.engine.run_sql(
                compiled.sql, ["symbol" if k == "symbol" else "number" for k in compiled.kinds]
            )
            return QueryResult(compiled.columns, _counts_as_terms(rows, compiled.kinds))
        return self._evaluate(query, base, named_graphs, load_graph, timeout_s)

    def _sparql_plan(self, text: str, base: str) -> _Plan:
        from tenfold.semantic_lattice._sparql_parse import parse_query
        from tenfold.semantic_lattice._sparql_plan import bgp_plan

        def compile_(_key: str) -> _Plan:
            query = parse_query(text, base=base)
            found = bgp_plan(query, self.engine)
            if isinstance(found, str):
                return _Plan("", query.projected(), [], None, found, query)
            return _Plan(found.sql, found.columns, found.kinds, IndexPlan(found.bgp), "", query)

        return self._plan(f"{base}\n{text}" if base else text, compile_)

    def _evaluate(
        self,
        query: Query,
        base: str,
        named_graphs: Mapping[str, Sequence[Triple]] | None,
        load_graph: Callable[[str], Sequence[Triple]] | None,
        timeout_s: float | None,
    ) -> QueryResult:
        from tenfold.semantic_lattice._sparql_eval import Dataset, Graph, evaluate

        named = {
            iri: Graph(_lowercase_language_tags(ts)) for iri, ts in (named_graphs or {}).items()
        }
        dataset = Dataset(self._graph(), named)
        loader = None
        if load_graph is not None:
            fetch = load_graph

            def loader(iri: str) -> Graph:
                return Graph(_lowercase_language_tags(fetch(iri)))

        result = evaluate(query, dataset, base=base, load_graph=loader, timeout_s=timeout_s)
        if result.form == "ASK":
            return QueryResult([], [], kind="ask", boolean=result.boolean)
        if result.form == "CONSTRUCT":
            return QueryResult(["subject", "predicate", "object"], list(result.triples), "graph")
        return QueryResult(result.variables, result.rows, ordered=result.ordered)

    def _graph(self) -> Graph:
        """The closure as an evaluator graph, rebuilt after any write to the store."""
        from tenfold.semantic_lattice._sparql_eval import Graph

        if self._eval_graph is None or self._eval_generation != self.engine.generation:
            self._eval_graph = Graph(self.triples())
            self._eval_generation = self.engine.generation
        return self._eval_graph

    def _index_plan(self, compiled: _Plan, *, forced: bool) -> IndexPlan | None:
        """The plan's index path if it should run now (planned on current statistics)."""
        index_plan = compiled.index
        if index_plan is None:
            if forced:
                raise QueryError(f"the index path does not answer {compiled.why_not_index}")
            return None
        generation = self.engine.generation  # a light store moves to DuckDB first
        self._index.sync(generation)
        if index_plan.fits(self._index) or (forced and index_plan.compiled):
            return index_plan
        if forced:
            raise QueryError("the index path does not answer queries over predicates this large")
        return None

    def explain(self, text: str) -> str:
        """Which path a query takes and why; for SQL, the SQL and DuckDB's plan for it.

        A SPARQL query (one that starts with a SPARQL keyword) shows the path
        chosen: the index path with its estimate and generated function, DuckDB
        with its SQL, or the algebra evaluator with the reason the faster
        paths do not apply. Anything else is a Datalog query.
        """
        if _looks_like_sparql(text):
            compiled = self._sparql_plan(text, "")
            if not compiled.sql:
                return (
                    f"path: evaluator (SPARQL algebra over the in-memory closure; "
                    f"the index and DuckDB paths do not answer {compiled.why_not_index})"
                )
        else:
            if text not in self._plans:
                self.datalog(text)
            compiled = self._plans[text]
        rows = self.engine.con.execute("EXPLAIN " + compiled.sql).fetchall()
        sql = compiled.sql + "\n\n" + "\n".join(str(r[-1]) for r in rows)
        if compiled.index is None:
            return f"path: DuckDB ({compiled.why_not_index})\n\n{sql}"
        chosen = self._index_plan(compiled, forced=False) is not None
        plan = compiled.index
        head = (
            f"path: {'index' if chosen else 'DuckDB'} (estimated {plan.work:,.0f} "
            f"binding steps and {plan.rows:,.0f} rows; index limit {WORK_LIMIT:,} steps "
            f"+ {OUTPUT_CREDIT} per row)\n{plan.source}"
        )
        return f"{head}\n{sql}"


_SPARQL_START = re.compile(
    r"^\s*(?:#[^\n]*\s*)*(?:PREFIX|BASE|SELECT|ASK|CONSTRUCT|DESCRIBE)\b", re.I
)


def _looks_like_sparql(text: str) -> bool:
    return _SPARQL_START.match(text) is not None


_LANG_TAG = re.compile(r'"@([A-Za-z0-9-]*[A-Z][A-Za-z0-9-]*)$')


def _lowercase_language_tags(triples: Sequence[Triple]) -> Sequence[Triple]:
    """Literals with their language tag in lower case (RDF 1.1 Concepts 3.3).

    Tags compare without case, so ``"chat"@EN`` and ``"chat"@en`` are one term;
    storing one spelling makes pattern matching (by term id) agree with that,
    as SPARQL stores such as Oxigraph do.
    """
    if '"@' not in "\n".join(t[2] for t in triples):
        return triples
    out = []
    changed = False
    for s, p, o in triples:
        m = _LANG_TAG.search(o) if o[-1] != '"' and '"@' in o else None
        if m is not None:
            out.append((s, p, o[: m.start(1)] + m.group(1).lower()))
            changed = True
        else:
            out.append((s, p, o))
    return out if changed else triples


def _counts_as_terms(rows: list[tuple[Any, ...]], kinds: list[str]) -> list[tuple[Any, ...]]:
    """COUNT columns as xsd:integer literal terms, as SPARQL results carry them."""
    if "count" not in kinds:
        return rows
    at = [i for i, k in enumerate(kinds) if k == "count"]
    out = []
    for row in rows:
        cells = list(row)
        for i in at:
            cells[i] = f'"{int(cells[i])}"^^<{XSD}integer>'
        out.append(tuple(cells))
    return out


def _is_pack_name(text: str) -> bool:
    return text.strip() in ("rdfs", "rdfs-full", "owl-rl", "owl-rl-core")


def _csv_triple(path: Path, line: int, row: list[str]) -> Triple:
    if len(row) != 3:
        raise RDFSyntaxError(f"{path}:{line}:1: expected 3 columns (s,p,o), found {len(row)}")
    terms = []
    for raw in row:
        value = raw.strip()
        if value.startswith(("<", "_:", '"')):
            terms.append(value)
        elif ":" in value:
            terms.append(f"<{value}>")
        else:
            from tenfold.semantic_lattice._rdf import literal

            terms.append(literal(value))
    if terms[0].startswith('"'):
        raise RDFSyntaxError(f"{path}:{line}:1: a literal cannot be a subject")
    return (terms[0], terms[1], terms[2])
