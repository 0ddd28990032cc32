"""The index path: small selective SPARQL queries answered from hash indexes in Python.

DuckDB spends a few hundred microseconds on every statement (planning, pipeline
set-up, result conversion) before it reads a row; a query that touches twenty
triples is all overhead there. This module answers basic graph patterns with
constant predicates without DuckDB:

* :class:`TripleIndex` keeps, per predicate and built the first time a plan
  needs it, ``by_o[o] -> [s]`` and ``by_s[s] -> [o]`` (the POS and PSO orders;
  with the predicate fixed they cover SPO/POS/OSP lookups) and the flat subject
  and object columns for scans, all over the dictionary's integer ids. It is
  tied to the engine's write generation: any write to the store drops every
  index, and the next query rebuilds what it reads (one DuckDB statement per
  predicate). Per-predicate counts (triples, distinct subjects, distinct
  objects) come from one statement per generation and drive the plan.
* :class:`IndexPlan` orders the patterns greedily by estimated fan-out (a
  pattern whose subject and object are both bound is a filter and goes first;
  otherwise the one with the fewest expected matches per input row), estimates
  the work of the nested-loop join, and generates one Python function of nested
  ``for`` loops over the index dicts (index nested-loop joins; no intermediate
  rows are materialised). The function is compiled once per generation.

The plan is used only when its estimated work is at most :data:`WORK_LIMIT`
binding steps plus :data:`OUTPUT_CREDIT` per estimated result row; larger joins
and aggregations over much of the store stay in DuckDB. Results are the same multiset of rows as the SQL path:
the join reads each stored triple once per pattern, as the SQL join does, and
``DISTINCT``, ``GROUP BY`` and ``COUNT`` follow the SQL the other path runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

__all__ = ["OUTPUT_CREDIT", "WORK_LIMIT", "BGPQuery", "IndexPlan", "TripleIndex"]

# Above this many estimated binding steps a plan runs in DuckDB: the generated
# loops cost ~0.15 us a step, and DuckDB answers a join of that size in ~1.5 ms
# (measured on LUBM-like closures of 18K and 178K triples). Rows the query
# returns raise the limit by OUTPUT_CREDIT steps each: the SQL path pays ~1.5 us
# per returned row to fetch and decode it, the index path a fraction of that.
WORK_LIMIT = 10_000
OUTPUT_CREDIT = 10
# A predicate with more triples than this is never indexed (memory: the lists
# cost ~100 bytes per triple and direction).
INDEX_MAX_ROWS = 3_000_000

Slot = str | int  # a variable name, or a constant term id (-1: a term the store lacks)


@dataclass(frozen=True)
class BGPQuery:
    """A basic graph pattern query the index path can answer.

    ``patterns``: (subject, predicate id, object), subject and object a variable
    name or a term id. ``columns``: per output column, ``("var", name, False)`` or
    ``("count", name or "*", distinct)``. ``grouped``: aggregate or GROUP BY
    semantics (one row per group; one row in all when ``group_by`` is empty).
    """

    patterns: tuple[tuple[Slot, int, Slot], ...]
    columns: tuple[tuple[str, str, bool], ...]
    group_by: tuple[str, ...]
    grouped: bool
    distinct: bool


class TripleIndex:
    """Per-predicate hash indexes over the triple table's ids (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        self._con = con
        self._table = table
        self.generation = -1
        self._stats: dict[int, tuple[int, int, int]] | None = None
        self._cols: dict[int, tuple[list[int], list[int]]] = {}
        self._by_s: dict[int, dict[int, list[int]]] = {}
        self._by_o: dict[int, dict[int, list[int]]] = {}

    def sync(self, generation: int) -> None:
        """Drop every index if the store was written since they were built."""
        if generation != self.generation:
            self._stats = None
            self._cols.clear()
            self._by_s.clear()
            self._by_o.clear()
            self.generation = generation

    def stats(self) -> dict[int, tuple[int, int, int]]:
        """Predicate id -> (triples, distinct subjects, distinct objects)."""
        if self._stats is None:
            rows = self._con.execute(
                f"SELECT c1, count(*), count(DISTINCT c0), count(DISTINCT c2) "
                f"FROM {self._table} GROUP BY c1"
            ).fetchall()
            self._stats = {int(p): (int(n), int(ds), int(do)) for p, n, ds, do in rows}
        return self._stats

    def columns(self, p: int) -> tuple[list[int], list[int]]:
        """Subjects and objects of predicate ``p``, aligned (a scan)."""
        cols = self._cols.get(p)
        if cols is None:
            got = self._con.execute(
                f"SELECT c0, c2 FROM {self._table} WHERE c1 = ?", [p]
            ).fetchnumpy()
            cols = (got["c0"].tolist(), got["c2"].tolist())
            self._cols[p] = cols
        return cols

    def by_subject(self, p: int) -> dict[int, list[int]]:
        found = self._by_s.get(p)
        if found is None:
            s, o = self.columns(p)
            found = self._by_s[p] = _group(s, o)
        return found

    def by_object(self, p: int) -> dict[int, list[int]]:
        found = self._by_o.get(p)
        if found is None:
            s, o = self.columns(p)
            found = self._by_o[p] = _group(o, s)
        return found


def _group(keys: list[int], values: list[int]) -> dict[int, list[int]]:
    """``{k: [v, ...]}`` for aligned lists, grouped with one numpy sort."""
    if not keys:
        return {}
    k = np.asarray(keys, dtype=np.int64)
    order = np.argsort(k, kind="stable")
    ks = k[order]
    vs = np.asarray(values, dtype=np.int64)[order].tolist()
    cuts = (np.flatnonzero(ks[1:] != ks[:-1]) + 1).tolist()
    starts = [0, *cuts]
    ends = [*cuts, len(vs)]
    return {key: vs[a:b] for key, a, b in zip(ks[starts].tolist(), starts, ends, strict=True)}


class IndexPlan:
    """A compiled nested-loop plan for one :class:`BGPQuery` (see the module docstring)."""

    def __init__(self, query: BGPQuery) -> None:
        self.query = query
        self.generation = -1
        self.work = 0.0  # estimated binding steps of the nested loops
        self.rows = 0.0  # estimated rows returned (0 for grouped queries: few)
        self.source = ""
        self._run: Callable[..., list[tuple[Any, ...]]] | None = None
        self._args: list[tuple[str, int]] = []

    @property
    def compiled(self) -> bool:
        """Whether the last planning produced a function (no predicate was too large)."""
        return self._run is not None

    def fits(self, index: TripleIndex) -> bool:
        """Plan against the index's current statistics; whether the index path should run."""
        if self.generation != index.generation:
            self._compile(index.stats())
            self.generation = index.generation
        return self._run is not None and self.work <= WORK_LIMIT + OUTPUT_CREDIT * self.rows

    def execute(self, index: TripleIndex) -> list[tuple[Any, ...]]:
        """Raw rows: term ids for variables, ints for counts. Call :meth:`fits` first."""
        assert self._run is not None and self.generation == index.generation
        flat: list[Any] = []
        for kind, p in self._args:
            if kind == "scan":
                flat.extend(index.columns(p))
            else:
                flat.append(index.by_subject(p) if kind == "s" else index.by_object(p))
        return self._run(*flat)

    # -- planning ---------------------------------------------------------------------
    def _compile(self, stats: dict[int, tuple[int, int, int]]) -> None:
        query = self.query
        if any(stats.get(p, (0, 0, 0))[0] > INDEX_MAX_ROWS for _, p, _ in query.patterns):
            self._run = None
            return
        names: dict[str, str] = {}
        bound: set[str] = set()
        remaining = list(query.patterns)
        lines: list[str] = []
        args: dict[tuple[str, int], str] = {}
        depth = 1
        rows = 1.0
        work = 0.0
        empty = False

        def is_bound(x: Slot) -> bool:
            return isinstance(x, int) or x in bound

        def ref(x: Slot) -> str:
            return repr(x) if isinstance(x, int) else names[x]

        def arg(kind: str, p: int) -> str:
            key = (kind, p)
            if key not in args:
                args[key] = f"{kind}{len(args)}"
            return args[key]

        def fan_out(pat: tuple[Slot, int, Slot]) -> float:
            s, p, o = pat
            n, ds, do = stats.get(p, (0, 0, 0))
            if n == 0:
                return 0.0
            sb, ob = is_bound(s), is_bound(o)
            if sb and ob:
                return min(1.0, n / (ds * do))
            if ob:
                return n / do
            if sb:
                return n / ds
            return float(n)

        while remaining:
            best = min(range(len(remaining)), key=lambda i: fan_out(remaining[i]))
            s, p, o = pat = remaining.pop(best)
            fan = fan_out(pat)
            n, ds, do = stats.get(p, (0, 0, 0))
            if n == 0:
                empty = True
            work += rows * (1.0 + fan)
            rows *= fan
            pad = "    " * depth
            for v in (s, o):
                if isinstance(v, str) and v not in names:
                    names[v] = f"v{len(names)}"
            if is_bound(s) and is_bound(o):
                # A filter: probe from the side with the shorter expected list.
                if n / max(ds, 1) <= n / max(do, 1):
                    lines.append(f"{pad}if {ref(o)} in {arg('s', p)}.get({ref(s)}, ()):")
                else:
                    lines.append(f"{pad}if {ref(s)} in {arg('o', p)}.get({ref(o)}, ()):")
            elif is_bound(o):
                lines.append(f"{pad}for {ref(s)} in {arg('o', p)}.get({ref(o)}, ()):")
            elif is_bound(s):
                lines.append(f"{pad}for {ref(o)} in {arg('s', p)}.get({ref(s)}, ()):")
            elif s == o:
                scan = arg("scan", p)
                lines.append(f"{pad}for {ref(s)}, _o in zip({scan}_s, {scan}_o):")
                depth += 1
                lines.append(f"{'    ' * depth}if {ref(s)} == _o:")
            else:
                scan = arg("scan", p)
                lines.append(f"{pad}for {ref(s)}, {ref(o)} in zip({scan}_s, {scan}_o):")
            for v in (s, o):
                if isinstance(v, str):
                    bound.add(v)
            depth += 1
        pad = "    " * depth
        head: list[str] = []
        tail: list[str] = []
        if not query.grouped:
            row = _tuple(names[c[1]] for c in query.columns)
            if query.distinct:
                head.append("_out = set()")
                lines.append(f"{pad}_out.add({row})")
                tail.append("return list(_out)")
            else:
                head.append("_out = []")
                lines.append(f"{pad}_out.append({row})")
                tail.append("return _out")
        else:
            key = _tuple(names[v] for v in query.group_by)
            head.append("_count = {}")
            lines.append(f"{pad}_k = {key}")
            lines.append(f"{pad}_count[_k] = _count.get(_k, 0) + 1")
            cells: list[str] = []
            for n_col, (kind, name, distinct) in enumerate(query.columns):
                if kind == "var":
                    cells.append(f"_k[{query.group_by.index(name)}]")
                elif distinct and name != "*":
                    # COUNT(DISTINCT ?v); COUNT(DISTINCT *) is count(*) on the SQL path too.
                    head.append(f"_d{n_col} = {{}}")
                    lines.append(f"{pad}_d{n_col}.setdefault(_k, set()).add({names[name]})")
                    cells.append(f"len(_d{n_col}[_k])")
                else:
                    cells.append("_c")  # every BGP variable is bound: COUNT(?v) = COUNT(*)
            if not query.group_by:
                # Aggregates without GROUP BY give one row, zeros when nothing matched
                # (every column is then a count: the SQL path refuses bare variables).
                tail.append(f"if not _count: return [{_tuple('0' for _ in query.columns)}]")
            row = _tuple(cells)
            collect = "_rows = [" + row + " for _k, _c in _count.items()]"
            tail.append(collect)
            tail.append("return list(dict.fromkeys(_rows))" if query.distinct else "return _rows")
        params: list[str] = []
        arg_list: list[tuple[str, int]] = []
        for (kind, p), name in args.items():
            arg_list.append((kind, p))
            params += [f"{name}_s", f"{name}_o"] if kind == "scan" else [name]
        if empty:
            # A predicate without triples: nothing matches (aggregates still give their row).
            lines = ["    pass"]
            params, arg_list = [], []
        body = (
            [f"def _plan({', '.join(params)}):"]
            + [f"    {h}" for h in head]
            + lines
            + [f"    {t}" for t in tail]
        )
        self.source = "\n".join(body) + "\n"
        namespace: dict[str, Any] = {}
        exec(
            compile(self.source, "<index plan>", "exec"), namespace
        )  # generated above from ints and names
        self._run = namespace["_plan"]
        self._args = arg_list
        self.work = 0.0 if empty else work
        self.rows = 0.0 if empty or query.grouped else rows


def _tuple(items: Any) -> str:
    parts = list(items)
    if not parts:
        return "()"
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
