"""Choosing how a parsed SPARQL query runs on a :class:`LatticeStore`.

Three paths give the same answers:

* the **index path** (:mod:`._index`): a basic graph pattern with constant
  predicates, projection, ``DISTINCT``, ``GROUP BY`` and ``COUNT``, compiled
  into nested loops over per-predicate hash indexes of dictionary ids;
* **DuckDB**: the same subset as one SQL join over ``r_triple``, for
  patterns whose estimated work is above the index path's limit (large
  analytical joins and counts);
* the **evaluator** (:mod:`._sparql_eval`): every other query, by the SPARQL
  algebra over an in-memory copy of the closure with SPO/POS/OSP indexes.

:func:`bgp_plan` says whether a query is in the first two paths' subset and
builds both plans; the store picks between them by the index plan's estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenfold.semantic_lattice._index import BGPQuery
from tenfold.semantic_lattice._sparql_parse import HIDDEN, Query

if TYPE_CHECKING:
    from tenfold.semantic_lattice._engine import Engine

__all__ = ["BGPPlan", "bgp_plan"]


@dataclass
class BGPPlan:
    """The index-path query and the equivalent SQL for a query in the BGP subset."""

    bgp: BGPQuery
    sql: str
    columns: list[str]
    kinds: list[str]  # "symbol" or "count"


def bgp_plan(q: Query, engine: Engine) -> BGPPlan | str:
    """Both plans for a query in the subset, or why the query is outside it."""
    why = _refusal(q)
    if why:
        return why
    where = q.where
    patterns = where[1]
    lookup = engine.dictionary.lookup

    def slot(term: str) -> str | int:
        if term.startswith("?"):
            return term[1:]
        ident = lookup(term)
        return -1 if ident is None else ident

    slots = tuple((slot(s), int(slot(p)), slot(o)) for s, p, o in patterns)
    projection = q.projection if q.projection is not None else [(v, None) for v in q.in_scope()]
    columns: list[tuple[str, str, bool]] = []
    for name, e in projection:
        if e is None:
            columns.append(("var", name, False))
        else:
            _, _, distinct, arg, _ = e
            columns.append(("count", "*" if arg is None else arg[1], distinct))
    group_by = tuple(e[1] for e, _ in q.group_by or ())
    grouped = q.group_by is not None or any(e is not None for _, e in projection)
    bgp = BGPQuery(
        patterns=slots, columns=tuple(columns), group_by=group_by, grouped=grouped,
        distinct=q.distinct,
    )  # fmt: skip
    # SQL: one r_triple alias per pattern; the first occurrence of a variable binds it.
    env: dict[str, str] = {}
    where_sql: list[str] = []
    for k, (s, p, o) in enumerate(slots):
        where_sql.append(f"t{k}.c1 = {p}")
        for col, x in ((f"t{k}.c0", s), (f"t{k}.c2", o)):
            if isinstance(x, int):
                where_sql.append(f"{col} = {x}")
            elif x in env:
                where_sql.append(f"{col} = {env[x]}")
            else:
                env[x] = col
    cols: list[str] = []
    kinds: list[str] = []
    for kind, name, distinct in columns:
        if kind == "var":
            cols.append(env[name])
            kinds.append("symbol")
        else:
            inner = "*" if name == "*" else ("DISTINCT " if distinct else "") + env[name]
            cols.append(f"count({inner})")
            kinds.append("count")
    froms = ", ".join(f"r_triple t{k}" for k in range(len(slots)))
    sql = f"SELECT {'DISTINCT ' if q.distinct else ''}{', '.join(cols)} FROM {froms}"
    sql += " WHERE " + " AND ".join(where_sql)
    if group_by:
        sql += " GROUP BY " + ", ".join(env[v] for v in group_by)
    return BGPPlan(bgp, sql, [name for name, _ in projection], kinds)


def _refusal(q: Query) -> str:
    if q.form != "SELECT":
        return f"a {q.form} query"
    if q.from_graphs or q.from_named:
        return "FROM / FROM NAMED"
    where = q.where
    named = {"filter": "FILTER", "leftjoin": "OPTIONAL", "union": "UNION", "minus": "MINUS"}
    if where[0] in named:
        return named[where[0]]
    if where[0] != "bgp" or not where[1]:
        return "a pattern other than one basic graph pattern"
    for pat in where[1]:
        if pat[0] == "path":
            return "a property path"
        s, p, o = pat
        if p.startswith("?"):
            return "a variable in predicate position"
        for t in (s, o):
            if t.startswith(f"?{HIDDEN}"):
                return "blank nodes in the pattern"
            if t.startswith('"') and t is s:
                return "a literal subject"
    if q.having or q.order_by or q.limit is not None or q.offset or q.values is not None:
        return "HAVING / ORDER BY / LIMIT / OFFSET / VALUES"
    if q.reduced:
        return "REDUCED"
    bound = {t[1:] for pat in where[1] for t in (pat[0], pat[2]) if t.startswith("?")}
    for e, alias in q.group_by or ():
        if e[0] != "var" or alias is not None or e[1] not in bound:
            return "a GROUP BY other than variables of the pattern"
    for name, sel in q.projection or ():
        if sel is None:
            if name not in bound:
                return f"?{name}, which the pattern does not bind"
            continue
        if sel[0] != "agg" or sel[1] != "COUNT":
            return "an expression or aggregate other than COUNT"
        arg = sel[3]
        if arg is None and sel[2]:
            return "COUNT(DISTINCT *)"
        if arg is not None and (arg[0] != "var" or arg[1] not in bound):
            return "COUNT of an expression"
    return ""
