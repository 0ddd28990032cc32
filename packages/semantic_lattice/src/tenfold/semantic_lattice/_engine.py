"""Semi-naive Datalog evaluation compiled to DuckDB SQL over integer-encoded terms.

This module is the I/O edge: it owns the DuckDB connection, the dictionary and
the catalog, and runs statements. The SQL text comes from :mod:`._sqlgen` (pure,
tested as text without a database); small positive fixpoints run in Python
(:mod:`._memeval`).

Storage, one DuckDB database (in memory or a file):

* ``dict(id BIGINT, term VARCHAR)``: every RDF term / symbol once; ids are
  dense and assigned in insertion order, so zone maps prune id lookups.
* ``r_<rel>``: all facts of a relation (base and derived), columns ``c0..``;
  symbol columns hold dictionary ids, number columns DOUBLE, a lattice column
  its lattice's SQL type.
* ``e_<rel>``: the base (explicit) facts, so retraction can re-derive.

Evaluation runs stratum by stratum. Within a stratum each round evaluates, for
every rule and every body atom over a relation of the stratum that changed in
the previous round, the rule with that atom reading the round's delta (the
semi-naive variants), all variants of a head relation in one ``UNION ALL``.
Plain relations keep what is new (``EXCEPT``); lattice relations group the
candidates by key, join them with the stored value, and keep the keys whose
value grew. The invariant between rounds: ``r_X`` holds everything derived so
far and ``d_X`` exactly what changed in the last round.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from tenfold.semantic_lattice._datalog import (
    Agg,
    Atom,
    Const,
    LatticeType,
    Program,
    Query,
    Relation,
    Rule,
    check_program,
    parse_program,
    stratify,
)
from tenfold.semantic_lattice._memeval import IN_MEMORY_MAX_ROWS, Fixpoint, supported
from tenfold.semantic_lattice._sqlgen import SqlGen
from tenfold.semantic_lattice.errors import (
    BudgetExceededError,
    SchemaError,
    SemanticLatticeError,
    StoreError,
)

# The longest time budget: a year, well within what threading timers can wait.
MAX_TIME_S = 365 * 86_400.0

__all__ = ["Budget", "Dictionary", "Engine", "ReasonStats", "merge_program"]


@dataclass(frozen=True)
class Budget:
    """Limits on one materialisation; ``None`` means unlimited.

    ``time_s``: finite seconds, 0 to a year (0 stops after the first round); ``rounds``
    and ``rows``: whole numbers from 0. Anything else is refused when the budget is
    made, with :class:`SemanticLatticeError`: an infinite time budget is no budget.
    """

    time_s: float | None = None
    rounds: int | None = None
    rows: int | None = None

    def __post_init__(self) -> None:
        t = self.time_s
        if t is not None and (
            isinstance(t, bool)
            or not isinstance(t, int | float)
            or not math.isfinite(t)
            or not 0 <= t <= MAX_TIME_S
        ):
            raise SemanticLatticeError(
                f"time budget must be a finite number of seconds from 0 to {MAX_TIME_S:g}, "
                f"not {t!r} (leave it out for no limit)"
            )
        for name in ("rounds", "rows"):
            n = getattr(self, name)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise SemanticLatticeError(
                    f"{name} budget must be a whole number from 0, not {n!r}"
                )


@dataclass
class ReasonStats:
    """What a materialisation did."""

    rounds: int = 0
    derived: int = 0
    seconds: float = 0.0
    strata: int = 0
    per_relation: dict[str, int] = field(default_factory=dict)


class Dictionary:
    """The term <-> id map, stored in DuckDB with a partial cache in Python."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        con.execute("CREATE TABLE IF NOT EXISTS dict(id BIGINT, term VARCHAR)")
        self._ids: dict[str, int] = {}
        self._terms: dict[int, str] = {}
        row = con.execute("SELECT coalesce(max(id) + 1, 0) FROM dict").fetchone()
        self.size = int(row[0]) if row else 0

    def encode_many(self, terms: Iterable[str]) -> list[int]:
        """Ids for ``terms``, adding the unknown ones."""
        terms = list(terms)
        missing = sorted({t for t in terms if t not in self._ids})
        if missing:
            arr = {"t": np.array(missing, dtype=object)}  # noqa: F841 - scanned by DuckDB
            found = self.con.execute(
                "SELECT term, id FROM dict WHERE term IN (SELECT t FROM arr)"
            ).fetchall()
            for term, ident in found:
                self._ids[term] = int(ident)
                self._terms[int(ident)] = term
            new = [t for t in missing if t not in self._ids]
            if new:
                ids = np.arange(self.size, self.size + len(new), dtype=np.int64)
                fresh = {"id": ids, "term": np.array(new, dtype=object)}  # noqa: F841
                self.con.execute("INSERT INTO dict SELECT id, term FROM fresh")
                for term, ident in zip(new, ids.tolist(), strict=True):
                    self._ids[term] = ident
                    self._terms[ident] = term
                self.size += len(new)
        return [self._ids[t] for t in terms]

    def encode(self, term: str) -> int:
        return self.encode_many([term])[0]

    def lookup(self, term: str) -> int | None:
        """The id of ``term`` if the store has seen it (never adds)."""
        if term in self._ids:
            return self._ids[term]
        row = self.con.execute("SELECT id FROM dict WHERE term = ?", [term]).fetchone()
        if row is None:
            return None
        self._ids[term] = int(row[0])
        self._terms[int(row[0])] = term
        return int(row[0])

    def decode_many(self, ids: Iterable[int]) -> dict[int, str]:
        wanted = {int(i) for i in ids}
        missing = [i for i in wanted if i not in self._terms]
        if missing:
            rows = self.con.execute(
                "SELECT id, term FROM dict WHERE id IN (SELECT unnest(?::BIGINT[]))", [missing]
            ).fetchall()
            for ident, term in rows:
                self._terms[int(ident)] = term
                if len(self._ids) < 2_000_000:
                    self._ids[term] = int(ident)
        return {i: self._terms[i] for i in wanted}

    def decode_rows(
        self, raw: list[tuple[Any, ...]], symbols: Sequence[bool]
    ) -> list[tuple[Any, ...]]:
        """Rows with the ids in the ``symbols`` columns replaced by their terms (others kept)."""
        terms = self._terms
        for _ in range(2):
            try:
                if len(symbols) == 1 and symbols[0]:
                    return [(terms[v],) for (v,) in raw]
                if all(symbols):
                    return [tuple(map(terms.__getitem__, r)) for r in raw]
                return [
                    tuple(terms[v] if sym else v for v, sym in zip(r, symbols, strict=True))
                    for r in raw
                ]
            except KeyError:
                # Terms not cached yet: fetch them all once, then decode again.
                self.decode_many(v for r in raw for v, sym in zip(r, symbols, strict=True) if sym)
        raise AssertionError("unreachable: every id was decoded")  # pragma: no cover

    def bulk_encode_table(self, stage: str, columns: Sequence[str]) -> None:
        """Add every term of ``stage``'s VARCHAR ``columns`` to the dictionary, in SQL."""
        union = " UNION ".join(f"SELECT {c} AS t FROM {stage}" for c in columns)
        self.con.execute(
            f"""INSERT INTO dict
                SELECT {self.size} + row_number() OVER (ORDER BY t) - 1, t
                FROM (SELECT DISTINCT t FROM ({union}) u WHERE t IS NOT NULL) n
                WHERE NOT EXISTS (SELECT 1 FROM dict d WHERE d.term = n.t)"""
        )
        row = self.con.execute("SELECT coalesce(max(id) + 1, 0) FROM dict").fetchone()
        self.size = int(row[0]) if row else 0


def merge_program(current: Program, parsed: Program) -> tuple[Program, list[Rule]]:
    """``current`` with ``parsed``'s rules and declarations added (neither is changed).

    Returns the checked and stratified program (rules with a body only) and
    ``parsed``'s facts (rules without a body), which the caller stores as base facts.
    Raises the schema, safety and stratification errors of the combined program.
    """
    trial = Program(
        rules=list(current.rules),
        queries=[],
        relations={
            k: Relation(v.name, list(v.columns), list(v.types), v.lattice, v.declared)
            for k, v in current.relations.items()
        },
        lattice_types=dict(current.lattice_types),
        prefixes=dict(current.prefixes),
    )
    facts = [r for r in parsed.rules if not r.body]
    trial.merge(
        Program(
            rules=[r for r in parsed.rules if r.body],
            relations=parsed.relations,
            lattice_types=parsed.lattice_types,
            prefixes=parsed.prefixes,
        )
    )
    trial.rules.extend(facts)
    check_program(trial)
    trial.rules = [r for r in trial.rules if r.body]
    stratify(trial)
    return trial, facts


def _refuse_foreign_file(path: Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB opens it.

    DuckDB reads a ``.json``, ``.csv`` or ``.parquet`` path as a table instead of refusing
    it, so a store given the wrong file would seem empty; a database file carries
    ``DUCK`` at byte 8.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from None
    if head[8:12] != b"DUCK":
        raise StoreError(f"{path} is not a lattice store (not a DuckDB database file)")


class Engine:
    """A Datalog program over a DuckDB database; see the module docstring."""

    def __init__(self, path: str | Path | None = None, *, threads: int | None = None) -> None:
        if path:
            _refuse_foreign_file(Path(path))
        try:
            self.con = duckdb.connect(str(path) if path else ":memory:")
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute("SET enable_progress_bar = false")  # no bars on the CLI's stderr
        self.path = path
        self.dictionary = Dictionary(self.con)
        self.program = Program()
        self.sqlgen = SqlGen(self.program, self.dictionary.encode)
        self._macros: set[str] = set()
        self._texts: set[str] = set()
        # Relations with rows added since the last fixpoint: name -> table of those rows.
        self._changed: dict[str, str] = {}
        self._new_rules: set[int] = set()
        self._retracted = False
        self._recompute = False
        self._deleted: set[str] = set()
        self._reset: set[str] = set()
        self._in_transaction = False
        self._on_round: Callable[[int, int], None] | None = None
        # Bumped on every write to a relation table: in-memory indexes built at an
        # older generation are stale.
        self.generation = 0
        self._tables: set[str] = set()  # relations whose r_/e_ tables exist
        # Up to this many stored facts a full fixpoint of a positive program runs in
        # Python (0: always DuckDB).
        self.in_memory_max_rows = IN_MEMORY_MAX_ROWS
        self._load_catalog()

    # -- schema ------------------------------------------------------------------
    def _load_catalog(self) -> None:
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS catalog(kind VARCHAR, name VARCHAR, body VARCHAR)"
        )
        if not self.path:
            return  # a new in-memory database: nothing stored yet
        rows = self.con.execute("SELECT kind, body FROM catalog ORDER BY rowid").fetchall()
        # Work a previous process left for the next fixpoint: programs added since the
        # last one, a run that aborted (budget, error), rows added or retracted.
        pending = {body for kind, body in rows if kind == "pending"}
        self._recompute = any(kind == "recompute" for kind, _ in rows)
        for kind, body in rows:
            if kind == "program":
                self._texts.add(body)
                self._add_program(parse_program(body, "<stored program>"), persist=False, text=body)
                n_rules = sum(1 for r in parse_program(body).rules if r.body)
                if body in pending and n_rules:
                    self._new_rules |= {id(r) for r in self.program.rules[-n_rules:]}
        tables = self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary"
        ).fetchall()
        for (table,) in tables:
            if table.startswith("chg_") and table[4:] in self.program.relations:
                self._changed[table[4:]] = table
            elif table.startswith("del_") and table[4:] in self.program.relations:
                self._deleted.add(table[4:])
                self._retracted = True

    def close(self) -> None:
        self.con.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make a file store's writes in the block one DuckDB transaction.

        A process killed inside the block leaves the store as it was before it (the
        write-ahead log replays committed transactions only); an exception rolls the
        database back and reloads this object's state from it, as a reopen would.
        Nested blocks join the outer one; in memory the block is a no-op.
        """
        if not self.path or self._in_transaction:
            yield
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            with suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            self._reload()
            raise
        self._in_transaction = False
        self.con.execute("COMMIT")

    def _reload(self) -> None:
        """Forget everything cached in Python and read the store's state again."""
        self.dictionary = Dictionary(self.con)
        self.program = Program()
        self.sqlgen = SqlGen(self.program, self.dictionary.encode)
        self._macros = set()
        self._texts = set()
        self._changed = {}
        self._new_rules = set()
        self._retracted = False
        self._recompute = False
        self._deleted = set()
        self._reset = set()
        self._tables = set()
        self.generation += 1
        self._load_catalog()

    def add_program(self, text: str, source: str = "<program>") -> Program:
        """Add rules and declarations (kept in the store); returns the parsed program."""
        parsed = parse_program(text, source)
        if text in self._texts:
            return parsed  # the same rules again: nothing new to derive
        self._add_program(parsed, persist=True, text=text)
        return parsed

    def _add_program(self, parsed: Program, *, persist: bool, text: str) -> None:
        trial, facts = merge_program(self.program, parsed)
        self.program = trial
        self.sqlgen.program = trial
        for lt in trial.lattice_types.values():
            self._define_lattice(lt)
        self._ensure_tables(list(trial.relations.values()))
        grouped: dict[str, list[tuple[object, ...]]] = {}
        for fact in facts:
            values = tuple(a.value for a in fact.head.args if isinstance(a, Const))
            grouped.setdefault(fact.head.relation, []).append(values)
        for name, fact_rows in grouped.items():
            rel = trial.relations[name]
            if rel.lattice == "set":
                self.add_facts(name, [(*r[:-1], [r[-1]]) for r in fact_rows])
            else:
                self.add_facts(name, fact_rows)
        if persist:
            self.con.execute("INSERT INTO catalog VALUES ('program', '', ?)", [text])
            self.con.execute("INSERT INTO catalog VALUES ('pending', '', ?)", [text])
            self._texts.add(text)
        if persist:
            self._new_rules |= {id(r) for r in trial.rules if r in parsed.rules}
        # One dictionary round trip for every constant the rules mention.
        self.dictionary.encode_many(
            {
                a.value
                for r in parsed.rules
                for atom in (r.head, *(b for b in r.body if isinstance(b, Atom)))
                for a in atom.args
                if isinstance(a, Const) and isinstance(a.value, str)
            }
        )

    def _define_lattice(self, lt: LatticeType) -> None:
        if lt.name in self._macros:
            return
        for statement in self.sqlgen.lattice_macros(lt.name):
            self.con.execute(statement)
        self._macros.add(lt.name)

    def _ensure_tables(self, relations: list[Relation]) -> None:
        """Create the r_/e_ tables of the relations that have none yet, in one call."""
        statements = []
        for rel in relations:
            if rel.name in self._tables:
                continue  # every program added re-lists all relations: create each once
            statements += self.sqlgen.create_tables(rel)
            self._tables.add(rel.name)
        if statements:
            self.con.execute("; ".join(statements))

    def relation(self, name: str) -> Relation:
        return self.sqlgen.relation(name)

    def declare(self, name: str, arity: int) -> Relation:
        """Make sure a plain symbol relation exists (for loading data before rules)."""
        rel = self.program.relations.get(name)
        if rel is None:
            cols = ", ".join(f"c{i}" for i in range(arity))
            self.add_program(f".decl {name}({cols}).")
            rel = self.program.relations[name]
        if rel.arity != arity:
            raise SchemaError(f"relation {name!r} has {rel.arity} columns, not {arity}")
        return rel

    # -- data ----------------------------------------------------------------------
    def add_facts(self, name: str, rows: Sequence[Sequence[object]]) -> int:
        """Add base facts (terms as canonical strings, numbers as numbers); returns how many."""
        rel = self.relation(name)
        if not rows:
            return 0
        self._stage_rows(rel, rows)
        try:
            return self._add_encoded(rel, "SELECT * FROM stage_facts")
        finally:
            self.con.execute("DROP TABLE IF EXISTS stage_facts")

    def _stage_rows(self, rel: Relation, rows: Sequence[Sequence[object]]) -> None:
        """Encode rows into the temporary table ``stage_facts`` (columns c0..)."""
        name = rel.name
        columns: dict[str, Any] = {}
        for i in range(rel.arity):
            values = [r[i] for r in rows]
            if rel.lattice and i == rel.arity - 1:
                if rel.lattice == "set":
                    sets = [sorted(set(self.dictionary.encode_many(v))) for v in values]  # type: ignore[arg-type]
                    columns[f"c{i}"] = np.array(sets, dtype=object)
                else:
                    columns[f"c{i}"] = np.array(values, dtype=object)
            elif rel.types[i] == "symbol":
                if not all(isinstance(v, str) for v in values):
                    raise SchemaError(
                        f"{name}: column {rel.columns[i]} takes symbols, got a number"
                    )
                columns[f"c{i}"] = np.array(self.dictionary.encode_many(values), dtype=np.int64)  # type: ignore[arg-type]
            else:
                try:
                    columns[f"c{i}"] = np.array([float(v) for v in values], dtype=np.float64)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise SchemaError(f"{name}: column {rel.columns[i]} takes numbers") from None
        staged = columns  # noqa: F841 - scanned by DuckDB below
        sel = ", ".join(f"c{i}::{self.sqlgen.sql_type(rel, i)} AS c{i}" for i in range(rel.arity))
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE stage_facts AS SELECT DISTINCT {sel} FROM staged"
        )

    def add_columns(self, name: str, columns: dict[str, np.ndarray]) -> int:
        """Add base facts of a relation whose columns are all numbers, from NumPy arrays."""
        rel = self.relation(name)
        if any(t != "number" for t in rel.types) or rel.lattice:
            raise SchemaError(f"{name}: add_columns takes relations of number columns only")
        if sorted(columns) != [f"c{i}" for i in range(rel.arity)]:
            raise SchemaError(f"{name}: expected arrays c0..c{rel.arity - 1}")
        staged = columns  # noqa: F841 - scanned by DuckDB below
        sel = ", ".join(f"c{i}::DOUBLE AS c{i}" for i in range(rel.arity))
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE stage_facts AS SELECT DISTINCT {sel} FROM staged"
        )
        try:
            return self._add_encoded(rel, "SELECT * FROM stage_facts")
        finally:
            self.con.execute("DROP TABLE IF EXISTS stage_facts")

    def _add_encoded(self, rel: Relation, select_sql: str) -> int:
        """Insert encoded rows into e_ and r_, and record them as pending delta."""
        # CREATE TABLE AS returns the number of rows it wrote: one statement, not two.
        row = self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE add_{rel.name} AS ({select_sql}) EXCEPT SELECT * FROM e_{rel.name}"
        ).fetchone()
        added = int(row[0]) if row else 0
        self.con.execute(f"INSERT INTO e_{rel.name} SELECT * FROM add_{rel.name}")
        if rel.lattice:
            self._merge_lattice(rel, f"add_{rel.name}", f"pend_{rel.name}")
            self.con.execute(f"DROP TABLE IF EXISTS pend_{rel.name}")
        else:
            self.con.execute(
                f"INSERT INTO r_{rel.name} SELECT * FROM add_{rel.name} EXCEPT SELECT * FROM r_{rel.name}"
            )
        self._note_change(rel.name, f"add_{rel.name}")
        self.con.execute(f"DROP TABLE add_{rel.name}")
        return added

    def _note_change(self, name: str, table: str) -> None:
        """Remember rows of ``table`` as changed in ``name`` since the last fixpoint."""
        self.generation += 1
        chg = f"chg_{name}"
        if name in self._changed:
            self.con.execute(f"INSERT INTO {chg} SELECT * FROM {table}")
        else:
            # Not TEMP: a file store remembers pending changes across processes.
            self.con.execute(f"CREATE OR REPLACE TABLE {chg} AS SELECT * FROM {table}")
            self._changed[name] = chg

    def load_triples_sql(self, name: str, stage: str) -> int:
        """Add the triples of a staging table with VARCHAR columns s, p, o to relation ``name``."""
        rel = self.declare(name, 3)
        self.dictionary.bulk_encode_table(stage, ["s", "p", "o"])
        return self._add_encoded(
            rel,
            f"""SELECT ds.id AS c0, dp.id AS c1, dob.id AS c2 FROM {stage} st
                JOIN dict ds ON ds.term = st.s JOIN dict dp ON dp.term = st.p
                JOIN dict dob ON dob.term = st.o""",
        )

    def adopt(self, derived: dict[str, list[tuple[str, ...]]], *, settled: bool) -> None:
        """Take facts derived elsewhere (a light store's fixpoint) into the relations.

        ``settled``: they are the fixpoint of everything stored, so nothing is pending;
        else the pending work stays and the next :meth:`materialize` re-derives.
        """
        for name, rows in derived.items():
            if not rows:
                continue
            self._stage_rows(self.relation(name), rows)
            try:
                self.con.execute(
                    f"INSERT INTO r_{name} SELECT * FROM stage_facts EXCEPT SELECT * FROM r_{name}"
                )
            finally:
                self.con.execute("DROP TABLE IF EXISTS stage_facts")
        self.generation += 1
        if settled:
            self._settle()

    def _settle(self) -> None:
        """Forget the pending work: the relations hold the fixpoint of what is stored."""
        for table in self._changed.values():
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        self._changed = {}
        self._new_rules = set()
        self._reset = set()
        self._recompute = False
        self.con.execute("DELETE FROM catalog WHERE kind IN ('pending', 'recompute')")

    def retract_facts(self, name: str, rows: Sequence[Sequence[object]]) -> int:
        """Remove base facts; the next :meth:`materialize` removes what no longer follows."""
        rel = self.relation(name)
        if not rows:
            return 0
        self.generation += 1
        self._stage_rows(rel, rows)
        match = " AND ".join(f"g.c{i} = e_{name}.c{i}" for i in range(rel.arity))
        try:
            row = self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE gone AS "
                f"SELECT * FROM e_{name} INTERSECT SELECT * FROM stage_facts"
            ).fetchone()
            removed = int(row[0]) if row else 0
            if removed:
                self.con.execute(
                    f"DELETE FROM e_{name} WHERE EXISTS (SELECT 1 FROM gone g WHERE {match})"
                )
                if name in self._deleted:
                    self.con.execute(f"INSERT INTO del_{name} SELECT * FROM gone")
                else:
                    self.con.execute(f"CREATE OR REPLACE TABLE del_{name} AS SELECT * FROM gone")
                    self._deleted.add(name)
                self._retracted = True
        finally:
            self.con.execute("DROP TABLE IF EXISTS stage_facts")
            self.con.execute("DROP TABLE IF EXISTS gone")
        return removed

    def _counts(self) -> dict[str, int]:
        """Row counts of every relation, in one statement."""
        names = list(self.program.relations)
        if not names:
            return {}
        parts = ", ".join(f"(SELECT count(*) FROM r_{n})" for n in names)
        row = self.con.execute(f"SELECT {parts}").fetchone()
        return {n: int(v) for n, v in zip(names, row or (), strict=True)}

    def count(self, name: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM r_{self.relation(name).name}").fetchone()
        return int(row[0]) if row else 0

    def rows(self, name: str, *, decode: bool = True) -> list[tuple[Any, ...]]:
        rel = self.relation(name)
        raw = self.con.execute(f"SELECT * FROM r_{rel.name}").fetchall()
        return (
            self._decode_rows(raw, [self.sqlgen.kind(rel, i) for i in range(rel.arity)])
            if decode
            else raw
        )

    def _decode_rows(
        self, raw: list[tuple[Any, ...]], kinds: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        ids: set[int] = set()
        for row in raw:
            for v, k in zip(row, kinds, strict=True):
                if v is None:
                    continue
                if k == "symbol":
                    ids.add(v)
                elif k == "set":
                    ids.update(v)
        names = self.dictionary.decode_many(ids) if ids else {}
        out = []
        for row in raw:
            dec: list[Any] = []
            for v, k in zip(row, kinds, strict=True):
                if v is None:
                    dec.append(None)
                elif k == "symbol":
                    dec.append(names[v])
                elif k == "set":
                    dec.append(frozenset(names[x] for x in v))
                elif k == "interval":
                    dec.append((v["lo"], v["hi"]))
                elif isinstance(v, float) and v.is_integer():
                    dec.append(int(v))
                else:
                    dec.append(v)
            out.append(tuple(dec))
        return out

    # -- evaluation ----------------------------------------------------------------------
    def _merge_lattice(self, rel: Relation, cand: str, delta: str) -> int:
        """Join candidate rows into r_<rel> by key; ``delta`` gets the keys whose value grew."""
        merge = self.sqlgen.merge_lattice(rel, cand, delta)
        row = self.con.execute(merge.compute).fetchone()
        changed = int(row[0]) if row else 0
        if changed:
            for statement in merge.apply:
                self.con.execute(statement)
        return changed

    def materialize(
        self, budget: Budget | None = None, on_round: Callable[[int, int], None] | None = None
    ) -> ReasonStats:
        """Run the rules to their fixpoint (only what changed since the last run when possible).

        ``on_round(rounds, derived)``: called after each round (rounds so far, facts
        derived so far in the current stratum), for progress reports.
        """
        budget = budget or Budget()
        self._on_round = on_round
        self.generation += 1
        try:
            with self.transaction():
                return self._materialize(budget)
        except BaseException:
            if not self.path:
                # In memory an aborted run leaves partial results and lost deltas: the
                # next run starts over from the base facts. A file store rolled back.
                self._recompute = True
                self.con.execute("INSERT INTO catalog VALUES ('recompute', '', '')")
            raise
        finally:
            self.generation += 1

    def _materialize(self, budget: Budget) -> ReasonStats:
        stats = ReasonStats()
        start = time.perf_counter()
        if self._recompute:
            for table in self._changed.values():
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
            self._changed = {}
            self._reset_relations(set(self.program.relations))
            self._new_rules |= {id(r) for r in self.program.rules}
            for name in self._deleted:
                self.con.execute(f"DROP TABLE IF EXISTS del_{name}")
            self._deleted = set()
            self._retracted = False
        if self._retracted:
            if self._is_positive():
                self._delete_rederive(stats)
            else:
                # Negation, aggregation or lattices: forget what was derived and
                # re-derive from the remaining base facts.
                self._reset_relations(set(self.program.relations))
                self._new_rules |= {id(r) for r in self.program.rules}
            for name in self._deleted:
                self.con.execute(f"DROP TABLE IF EXISTS del_{name}")
            self._deleted = set()
            self._retracted = False
        before = self._counts()
        strata = stratify(self.program)
        stats.strata = len(strata)
        after_counts: dict[str, int] | None = None
        timer: threading.Timer | None = None
        if budget.time_s is not None:
            timer = threading.Timer(budget.time_s, self.con.interrupt)
            timer.daemon = True
            timer.start()
        try:
            if self._fits_in_memory(budget, before):
                after_counts = self._materialize_in_memory(budget, stats, start, before)
            else:
                for stratum in strata:
                    self._run_stratum(stratum, budget, stats, start)
        except duckdb.InterruptException:
            raise BudgetExceededError(
                f"time budget of {budget.time_s:g} s exceeded after {stats.rounds} round(s)"
            ) from None
        except duckdb.Error as exc:
            raise SemanticLatticeError(f"evaluation failed in DuckDB: {exc}") from None
        finally:
            if timer is not None:
                timer.cancel()
        self._settle()
        # The in-memory path knows what it added; the SQL path counts the tables.
        counts = self._counts() if after_counts is None else after_counts
        for name, after in counts.items():
            stats.per_relation[name] = after - before[name]
            stats.derived += max(0, after - before[name])
        stats.seconds = time.perf_counter() - start
        return stats

    def _fits_in_memory(self, budget: Budget, counts: dict[str, int]) -> bool:
        """Whether this fixpoint runs in Python (see :mod:`._memeval`).

        Small stores only, every rule evaluated in full (new rules or a recompute:
        the incremental bookkeeping stays with the SQL path), positive rules over
        symbol relations, and no round or row budget (those count SQL rounds).
        """
        rules = self.program.rules
        return (
            bool(rules)
            and sum(counts.values()) <= self.in_memory_max_rows
            and budget.rounds is None
            and budget.rows is None
            and all(id(r) in self._new_rules for r in rules)
            and self._is_positive()
            and all(t == "symbol" for rel in self.program.relations.values() for t in rel.types)
            and supported(rules)
        )

    def _materialize_in_memory(
        self, budget: Budget, stats: ReasonStats, start: float, counts: dict[str, int]
    ) -> dict[str, int]:
        """Run the fixpoint in Python (see :mod:`._memeval`); returns the new row counts."""
        facts: dict[str, set[tuple[int, ...]]] = {}
        for name, rel in self.program.relations.items():
            if not counts[name]:
                facts[name] = set()
                continue
            got = self.con.execute(f"SELECT * FROM r_{name}").fetchnumpy()
            columns = [got[f"c{i}"].tolist() for i in range(rel.arity)]
            facts[name] = set(zip(*columns, strict=True))
        fixpoint = Fixpoint(
            self.program.rules, facts, lambda c: int(self.sqlgen.const_sql(c, "symbol"))
        )
        rounds, derived = fixpoint.run(budget.time_s, start, self._on_round)
        stats.rounds += rounds
        for name, rows in derived.items():
            table = np.array(list(rows), dtype=np.int64)
            staged = {f"c{i}": table[:, i] for i in range(table.shape[1])}  # noqa: F841 - scanned
            self.con.execute(f"INSERT INTO r_{name} SELECT * FROM staged")
        self.generation += 1
        return {name: n + len(derived.get(name, ())) for name, n in counts.items()}

    def _probe_key(self, table: str, atom: Atom) -> tuple[str, tuple[tuple[int, str], ...]]:
        return self.sqlgen.probe_key(table, atom)

    def _probe(
        self,
        wanted: list[tuple[str, Atom]],
        seen: dict[tuple[str, tuple[tuple[int, str], ...]], bool],
    ) -> None:
        """Find, in one query, which (table, constant pattern) pairs have a matching row.

        Variants whose atoms cannot match are pruned before SQL is generated: most
        OWL 2 RL rules name vocabulary (owl:SymmetricProperty, ...) a data set never uses.
        """
        keys = list(dict.fromkeys(self._probe_key(t, a) for t, a in wanted))
        unknown = [k for k in keys if k not in seen]
        for start in range(0, len(unknown), 200):
            chunk = unknown[start : start + 200]
            sql = self.sqlgen.probe(chunk)
            found = {int(r[0]) for r in self.con.execute(sql).fetchall()}
            for n, key in enumerate(chunk):
                seen[key] = n in found

    def _is_positive(self) -> bool:
        return not any(rel.lattice for rel in self.program.relations.values()) and not any(
            any(isinstance(a, Agg) for a in r.head.args)
            or any(isinstance(b, Atom) and b.negated for b in r.body)
            for r in self.program.rules
        )

    def _delete_rederive(self, stats: ReasonStats) -> None:
        """DRed (Gupta, Mumick, Subrahmanian 1993) for positive programs.

        1. Overdelete: semi-naively, every fact with a derivation that uses a
           deleted fact (rules read the deletion delta and the old relations).
        2. Remove the overdeleted facts that are not base facts.
        3. Rederive: overdeleted facts that one rule application still derives
           from what remains go back in, marked changed, so the ordinary
           semi-naive pass that follows restores everything else they support.
        """
        deltas = {name: f"del_{name}" for name in self._deleted}
        over: set[str] = set()
        for name, table in deltas.items():
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE od_{name} AS SELECT * FROM {table}")
            over.add(name)
        step = 0
        while deltas:
            step += 1
            per_head: dict[str, list[str]] = {}
            for rule in self.program.rules:
                for i, b in enumerate(rule.body):
                    if isinstance(b, Atom) and b.relation in deltas:
                        sql = self.sqlgen.rule(rule, {i: deltas[b.relation]})
                        per_head.setdefault(rule.head.relation, []).append(sql)
            new: dict[str, str] = {}
            for head, selects in per_head.items():
                union = " UNION ALL ".join(f"({q})" for q in selects)
                table = f"dd_{head}_{step % 2}"
                known = f" EXCEPT SELECT * FROM od_{head}" if head in over else ""
                row = self.con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {table} AS ({union}) INTERSECT "
                    f"SELECT * FROM r_{head}{known}"
                ).fetchone()
                if row and row[0]:
                    if head in over:
                        self.con.execute(f"INSERT INTO od_{head} SELECT * FROM {table}")
                    else:
                        self.con.execute(
                            f"CREATE OR REPLACE TEMP TABLE od_{head} AS SELECT * FROM {table}"
                        )
                        over.add(head)
                    new[head] = table
            deltas = new
            stats.rounds += 1
        for name in over:
            # Base facts stay; the rest of the overdeleted facts go.
            cols = ", ".join(f"c{i}" for i in range(self.relation(name).arity))
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE od_{name} AS "
                f"SELECT * FROM od_{name} EXCEPT SELECT * FROM e_{name}"
            )
            self.con.execute(
                f"CREATE OR REPLACE TABLE r_{name} AS "
                f"SELECT {cols} FROM r_{name} EXCEPT SELECT {cols} FROM od_{name}"
            )
        for name in over:
            selects = [
                self.sqlgen.rule(rule, {})
                for rule in self.program.rules
                if rule.head.relation == name
            ]
            if not selects:
                continue
            union = " UNION ALL ".join(f"({q})" for q in selects)
            row = self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE back_{name} AS "
                f"({union}) INTERSECT SELECT * FROM od_{name}"
            ).fetchone()
            if row and row[0]:
                self.con.execute(f"INSERT INTO r_{name} SELECT * FROM back_{name}")
                self._note_change(name, f"back_{name}")
            self.con.execute(f"DROP TABLE back_{name}")
        for name in over:
            self.con.execute(f"DROP TABLE IF EXISTS od_{name}")
            for k in (0, 1):
                self.con.execute(f"DROP TABLE IF EXISTS dd_{name}_{k}")

    def _reset_relations(self, names: set[str]) -> None:
        for name in names:
            self.con.execute(f"DELETE FROM r_{name}")
            self.con.execute(f"INSERT INTO r_{name} SELECT * FROM e_{name}")
            self._reset.add(name)
            self._note_change(name, f"e_{name}")

    def _needs_reset(self, rules: list[Rule]) -> bool:
        """Whether a stratum must be recomputed from its base facts.

        True when a relation it reads under negation or aggregation changed (its
        facts may no longer hold), or a relation it reads was itself recomputed.
        """
        for rule in rules:
            aggregating = any(isinstance(a, Agg) for a in rule.head.args)
            for b in rule.body:
                if isinstance(b, Atom) and (
                    b.relation in self._reset
                    or ((b.negated or aggregating) and b.relation in self._changed)
                ):
                    return True
        return False

    def _run_recursive_cte(self, stratum: list[str], rules: list[Rule], stats: ReasonStats) -> bool:
        """Evaluate a linear single-relation stratum as one DuckDB recursive query.

        See :meth:`SqlGen.recursive_stratum` for when it fits; returns False (and does
        nothing) when it does not.
        """
        if len(stratum) != 1:
            return False
        name = stratum[0]
        query = self.sqlgen.recursive_stratum(name, rules)
        if query is None:
            return False
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE cte_{name} AS {query}")
        self.con.execute(f"DELETE FROM r_{name}")
        self.con.execute(f"INSERT INTO r_{name} SELECT * FROM cte_{name}")
        self.con.execute(f"DROP TABLE cte_{name}")
        self._note_change(name, f"r_{name}")
        stats.rounds += 1
        return True

    def _run_stratum(
        self, stratum: list[str], budget: Budget, stats: ReasonStats, start: float
    ) -> None:
        members = set(stratum)
        rules = [r for r in self.program.rules if r.head.relation in members]
        if not rules:
            return
        naive = self._needs_reset(rules)
        if naive:
            self._reset_relations(members)
        full = naive or all(id(r) in self._new_rules for r in rules)
        # One recursive query cannot stop at a round or row count: with those budgets
        # set, rounds run one by one below.
        unbounded = budget.rounds is None and budget.rows is None
        if full and unbounded and self._run_recursive_cte(stratum, rules, stats):
            return
        # First round: new rules (or a reset stratum) run in full; the others run once per
        # body atom over a relation that changed since the last fixpoint, reading the change.
        deltas: dict[str, str] = {}
        first = True
        rows_total = 0
        seen: dict[tuple[str, tuple[tuple[int, str], ...]], bool] = {}
        while True:
            # Full tables only grow during a stratum, so a pattern found there stays found.
            seen = {k: v for k, v in seen.items() if v and k[0].startswith("r_")}
            per_head: dict[str, list[str]] = {}
            candidates: list[tuple[Rule, int, str, dict[int, str], list[tuple[int, Atom]]]] = []
            for rule in rules:
                aggregating = any(isinstance(a, Agg) for a in rule.head.args)
                atoms = [
                    (i, b) for i, b in enumerate(rule.body) if isinstance(b, Atom) and not b.negated
                ]
                if first and (naive or id(rule) in self._new_rules):
                    per_head.setdefault(rule.head.relation, []).append(self.sqlgen.rule(rule, {}))
                    continue
                if aggregating:
                    continue
                source = self._changed if first else deltas
                for i, b in atoms:
                    if b.relation not in source:
                        continue
                    tables = {
                        j: source[b.relation] if j == i else f"r_{a.relation}" for j, a in atoms
                    }
                    candidates.append((rule, i, source[b.relation], tables, atoms))
            self._probe(
                [(tables[j], a) for _, _, _, tables, atoms in candidates for j, a in atoms], seen
            )
            for rule, i, table, tables, atoms in candidates:
                if all(seen[self._probe_key(tables[j], a)] for j, a in atoms):
                    sql = self.sqlgen.rule(rule, {i: table})
                    per_head.setdefault(rule.head.relation, []).append(sql)
            if not per_head:
                break
            stats.rounds += 1
            if budget.rounds is not None and stats.rounds > budget.rounds:
                raise BudgetExceededError(
                    f"round budget of {budget.rounds} exceeded in stratum {', '.join(stratum)}"
                )
            new_deltas: dict[str, str] = {}
            for head, selects in per_head.items():
                rel = self.relation(head)
                union = " UNION ALL ".join(f"({s})" for s in selects)
                delta = f"d_{head}_{stats.rounds % 2}"
                if rel.lattice:
                    self.con.execute(f"CREATE OR REPLACE TEMP TABLE cand_{head} AS {union}")
                    changed = self._merge_lattice(rel, f"cand_{head}", delta)
                    self.con.execute(f"DROP TABLE cand_{head}")
                else:
                    row = self.con.execute(
                        f"CREATE OR REPLACE TEMP TABLE {delta} AS "
                        f"({union}) EXCEPT SELECT * FROM r_{head}"
                    ).fetchone()
                    changed = int(row[0]) if row else 0
                    if changed:
                        self.con.execute(f"INSERT INTO r_{head} SELECT * FROM {delta}")
                if changed:
                    new_deltas[head] = delta
                    rows_total += changed
                    self._note_change(head, delta)
            if self._on_round is not None:
                self._on_round(stats.rounds, rows_total)
            if budget.rows is not None and rows_total > budget.rows:
                raise BudgetExceededError(
                    f"row budget of {budget.rows} exceeded: {rows_total} rows derived "
                    f"in stratum {', '.join(stratum)} after {stats.rounds} round(s)"
                )
            if budget.time_s is not None and time.perf_counter() - start > budget.time_s:
                raise BudgetExceededError(
                    f"time budget of {budget.time_s:g} s exceeded after {stats.rounds} round(s)"
                )
            deltas = new_deltas
            first = False
            if not deltas:
                break

    # -- queries -----------------------------------------------------------------------
    def compile_query(self, query: Query) -> tuple[str, list[str], list[str]]:
        """SQL, output variable names and their kinds for a Datalog query body."""
        return self.sqlgen.query(query)

    def run_sql(
        self, sql: str, kinds: Sequence[str], params: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:
        try:
            raw = self.con.execute(sql, list(params)).fetchall()
        except duckdb.Error as exc:
            raise SemanticLatticeError(f"query failed in DuckDB: {exc}") from None
        return self._decode_rows(raw, kinds)

    def rules_text(self) -> list[str]:
        return [str(r) for r in self.program.rules]
