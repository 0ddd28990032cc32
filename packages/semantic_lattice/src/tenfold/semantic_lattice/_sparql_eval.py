"""SPARQL 1.1 evaluation over in-memory graphs, following the algebra of section 18.5.

Solutions are dicts from variable name to term (the canonical N-Triples
strings of :mod:`._rdf`). Expressions evaluate to terms; a type error is the
:class:`_ExprError` exception, which FILTER turns into false, BIND and SELECT
expressions into an unbound variable, and aggregates into an unbound result,
as section 17.3 says. Values are compared as values (numbers by value across
the numeric types, strings, booleans, dateTimes), never by identifier.

Joins: a basic graph pattern is an index nested-loop join over :class:`Graph`
(patterns ordered greedily by how many positions are bound); other joins are
hash joins on the variables every solution of the right side binds, and an
OPTIONAL whose right side is a basic graph pattern evaluates it once per left
solution with that solution's bindings.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import random
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from tenfold.semantic_lattice._rdf import RDF, XSD, resolve_iri
from tenfold.semantic_lattice._sparql_parse import HIDDEN, Algebra, Expr, Query, literal_term
from tenfold.semantic_lattice.errors import BudgetExceededError, QueryError

__all__ = ["Dataset", "Graph", "SparqlResult", "evaluate"]

Solution = dict[str, str]
Triple = tuple[str, str, str]

_X = f"<{XSD}"
XSD_STRING = f"<{XSD}string>"
XSD_BOOLEAN = f"<{XSD}boolean>"
XSD_INTEGER = f"<{XSD}integer>"
XSD_DECIMAL = f"<{XSD}decimal>"
XSD_FLOAT = f"<{XSD}float>"
XSD_DOUBLE = f"<{XSD}double>"
XSD_DATETIME = f"<{XSD}dateTime>"
XSD_DATE = f"<{XSD}date>"
RDF_LANGSTRING = f"<{RDF}langString>"
TRUE = literal_term("true", XSD_BOOLEAN)
FALSE = literal_term("false", XSD_BOOLEAN)
_INTEGER_TYPES = {
    f"<{XSD}{n}>"
    for n in (
        "integer", "int", "long", "short", "byte", "nonNegativeInteger", "positiveInteger",
        "negativeInteger", "nonPositiveInteger", "unsignedInt", "unsignedLong",
        "unsignedShort", "unsignedByte",
    )
}  # fmt: skip
_NUMERIC_RANK = {XSD_DECIMAL: 1, XSD_FLOAT: 2, XSD_DOUBLE: 3} | dict.fromkeys(_INTEGER_TYPES, 0)
_RANK_TYPE = [XSD_INTEGER, XSD_DECIMAL, XSD_FLOAT, XSD_DOUBLE]
_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_DEC_RE = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
_DBL_RE = re.compile(
    r"^(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?INF|NaN)$"
)
_DT_RE = re.compile(r"^(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d+)?)(Z|[+-]\d\d:\d\d)?$")
_UNESC = re.compile(r"\\(.)")


class _ExprError(Exception):
    """A SPARQL expression error (type error, unbound variable)."""


class QueryUnsupported(QueryError):
    """A construct outside what the evaluator implements (message starts 'unsupported:')."""


# -- terms ----------------------------------------------------------------------------
@lru_cache(maxsize=1 << 18)
def lit_parts(term: str) -> tuple[str, str, str]:
    """(lexical form, datatype term, language) of a literal term."""
    end = term.rfind('"')
    raw = term[1:end]
    lex = _UNESC.sub(lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), raw)
    rest = term[end + 1 :]
    if rest.startswith("@"):
        return lex, RDF_LANGSTRING, rest[1:]
    if rest.startswith("^^"):
        return lex, rest[2:], ""
    return lex, XSD_STRING, ""


def is_literal(t: str) -> bool:
    return t[0] == '"'


def is_iri(t: str) -> bool:
    return t[0] == "<"


def is_blank(t: str) -> bool:
    return t[0] == "_"


@lru_cache(maxsize=1 << 18)
def numeric_value(term: str) -> tuple[int, Any] | None:
    """(rank, value) for a well-formed numeric literal, else None."""
    if term[0] != '"':
        return None
    lex, dt, _ = lit_parts(term)
    rank = _NUMERIC_RANK.get(dt)
    if rank is None:
        return None
    lex = lex.strip() if False else lex
    if rank == 0:
        if not _INT_RE.match(lex):
            return None
        return 0, int(lex)
    if rank == 1:
        if not _DEC_RE.match(lex):
            return None
        return 1, Decimal(lex)
    if not _DBL_RE.match(lex):
        return None
    return rank, float(lex.replace("INF", "inf"))


def _fmt_double(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "INF" if v > 0 else "-INF"
    if v == 0:
        return "0.0E0" if math.copysign(1, v) > 0 else "-0.0E0"
    mant, _, exp = f"{v:.15E}".partition("E")
    mant = mant.rstrip("0")
    if mant.endswith("."):
        mant += "0"
    return f"{mant}E{int(exp)}"


def _fmt_decimal(v: Decimal) -> str:
    if v == v.to_integral_value():
        return f"{int(v)}.0"
    text = format(v.normalize(), "f")
    return text


def make_numeric(rank: int, value: Any) -> str:
    if rank == 0:
        return f'"{int(value)}"^^{XSD_INTEGER}'
    if rank == 1:
        return f'"{_fmt_decimal(Decimal(value))}"^^{XSD_DECIMAL}'
    return f'"{_fmt_double(float(value))}"^^{_RANK_TYPE[rank]}'


def _bool(b: bool) -> str:
    return TRUE if b else FALSE


def _simple(s: str) -> str:
    return literal_term(s)


@lru_cache(maxsize=1 << 16)
def _datetime_value(term: str) -> datetime | None:
    if term[0] != '"':
        return None
    lex, dt, _ = lit_parts(term)
    if dt != XSD_DATETIME:
        return None
    m = _DT_RE.match(lex)
    if not m:
        return None
    year, mon, day, hh, mm, ss, tz = m.groups()
    sec = Decimal(ss)
    try:
        base = datetime(int(year), int(mon), int(day), tzinfo=_tz(tz))
    except ValueError:
        return None
    return base + timedelta(hours=int(hh), minutes=int(mm), seconds=float(sec))


def _tz(tz: str | None) -> timezone | None:
    if tz is None:
        return None
    if tz == "Z":
        return UTC
    sign = -1 if tz[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))


def ebv(t: str) -> bool:
    """Effective boolean value (section 17.2.2); raises _ExprError when there is none."""
    if t[0] != '"':
        raise _ExprError("no effective boolean value for an IRI or blank node")
    lex, dt, _ = lit_parts(t)
    if dt == XSD_BOOLEAN:
        return lex in ("true", "1")
    if dt in (XSD_STRING, RDF_LANGSTRING) and dt == XSD_STRING:
        return lex != ""
    if dt in _NUMERIC_RANK:
        nv = numeric_value(t)
        if nv is None:
            return False
        v = nv[1]
        return not (v == 0 or (isinstance(v, float) and math.isnan(v)))
    raise _ExprError(f"no effective boolean value for {t}")


def _string_arg(t: str) -> tuple[str, str]:
    """(lexical, lang) of a string literal argument (simple, xsd:string or language-tagged)."""
    if t[0] != '"':
        raise _ExprError("expected a string literal")
    lex, dt, lang = lit_parts(t)
    if dt not in (XSD_STRING, RDF_LANGSTRING):
        raise _ExprError("expected a string literal")
    return lex, lang


def _string_like(lex: str, lang: str) -> str:
    return literal_term(lex, lang=lang) if lang else literal_term(lex)


def _compatible_args(a: str, b: str) -> tuple[str, str, str]:
    la, lang_a = _string_arg(a)
    lb, lang_b = _string_arg(b)
    if lang_b and lang_a.lower() != lang_b.lower():
        raise _ExprError("incompatible language tags")
    return la, lb, lang_a


def values_equal(a: str, b: str) -> bool:
    """The ``=`` operator (raises _ExprError where SPARQL gives a type error)."""
    if a == b:
        if a[0] == '"' and lit_parts(a)[1] in _NUMERIC_RANK:
            na = numeric_value(a)
            if na is not None and isinstance(na[1], float) and math.isnan(na[1]):
                return False
        return True
    if a[0] != '"' or b[0] != '"':
        return False
    na, nb = numeric_value(a), numeric_value(b)
    if na is not None and nb is not None:
        return bool(na[1] == nb[1])
    la, dta, langa = lit_parts(a)
    lb, dtb, langb = lit_parts(b)
    if dta == XSD_STRING and dtb == XSD_STRING:
        return la == lb
    if dta == RDF_LANGSTRING and dtb == RDF_LANGSTRING:
        return la == lb and langa.lower() == langb.lower()
    if dta == XSD_BOOLEAN and dtb == XSD_BOOLEAN:
        return (la in ("true", "1")) == (lb in ("true", "1"))
    da, db = _datetime_value(a), _datetime_value(b)
    if da is not None and db is not None:
        if (da.tzinfo is None) != (db.tzinfo is None):
            raise _ExprError("cannot compare dateTimes with and without a timezone")
        return da == db
    known = {XSD_STRING, RDF_LANGSTRING, XSD_BOOLEAN, XSD_DATETIME, *_NUMERIC_RANK}
    if (
        dta in known
        and dtb in known
        and dta != dtb
        and not (dta in _NUMERIC_RANK and dtb in _NUMERIC_RANK)
    ):
        return False
    raise _ExprError("cannot compare these literals")


def compare_values(a: str, b: str) -> int:
    """-1/0/1 for ``<`` between comparable literals; raises _ExprError otherwise."""
    if a[0] != '"' or b[0] != '"':
        raise _ExprError("cannot order IRIs or blank nodes")
    na, nb = numeric_value(a), numeric_value(b)
    if na is not None and nb is not None:
        x, y = na[1], nb[1]
        if isinstance(x, Decimal) and isinstance(y, float):
            x = float(x)
        elif isinstance(y, Decimal) and isinstance(x, float):
            y = float(y)
        if (isinstance(x, float) and math.isnan(x)) or (isinstance(y, float) and math.isnan(y)):
            raise _ExprError("NaN is not ordered")
        return int(x > y) - int(x < y)
    la, dta, langa = lit_parts(a)
    lb, dtb, langb = lit_parts(b)
    if dta == XSD_STRING and dtb == XSD_STRING:
        return (la > lb) - (la < lb)
    if dta == RDF_LANGSTRING and dtb == RDF_LANGSTRING and langa.lower() == langb.lower():
        return (la > lb) - (la < lb)
    if dta == XSD_BOOLEAN and dtb == XSD_BOOLEAN:
        x2, y2 = la in ("true", "1"), lb in ("true", "1")
        return (x2 > y2) - (x2 < y2)
    da, db = _datetime_value(a), _datetime_value(b)
    if da is not None and db is not None:
        if (da.tzinfo is None) != (db.tzinfo is None):
            raise _ExprError("cannot compare dateTimes with and without a timezone")
        return (da > db) - (da < db)
    raise _ExprError("these literals are not comparable")


def order_key_cmp(a: str | None, b: str | None) -> int:
    """ORDER BY ordering (section 15.1): unbound < blank < IRI < literal, then by value."""

    def cls(t: str | None) -> int:
        if t is None:
            return 0
        return {"_": 1, "<": 2}.get(t[0], 3)

    ca, cb = cls(a), cls(b)
    if ca != cb:
        return ca - cb
    if a is None or b is None or a == b:
        return 0
    if ca == 3:
        try:
            c = compare_values(a, b)
            if c:
                return c
        except _ExprError:
            pass
        la, dta, langa = lit_parts(a)
        lb, dtb, langb = lit_parts(b)
        # Simple literals before typed ones; then by datatype, language, lexical form.
        ka = (dta != XSD_STRING, dta, langa, la)
        kb = (dtb != XSD_STRING, dtb, langb, lb)
        return (ka > kb) - (ka < kb)
    return (a > b) - (a < b)


# -- graphs and datasets ------------------------------------------------------------------
class Graph:
    """One RDF graph with SPO, POS and OSP hash indexes over term strings."""

    def __init__(self, triples: Iterable[Triple] = ()) -> None:
        self.spo: dict[str, dict[str, list[str]]] = {}
        self.pos: dict[str, dict[str, list[str]]] = {}
        self.osp: dict[str, dict[str, list[str]]] = {}
        self.size = 0
        seen: set[Triple] = set()
        for t in triples:
            if t in seen:
                continue
            seen.add(t)
            s, p, o = t
            self.spo.setdefault(s, {}).setdefault(p, []).append(o)
            self.pos.setdefault(p, {}).setdefault(o, []).append(s)
            self.osp.setdefault(o, {}).setdefault(s, []).append(p)
        self.size = len(seen)

    def match(self, s: str | None, p: str | None, o: str | None) -> Iterator[Triple]:
        if s is not None:
            bys = self.spo.get(s)
            if bys is None:
                return
            if p is not None:
                objs = bys.get(p, ())
                if o is not None:
                    if o in objs:
                        yield s, p, o
                    return
                for ob in objs:
                    yield s, p, ob
                return
            if o is not None:
                for pp in self.osp.get(o, {}).get(s, ()):
                    yield s, pp, o
                return
            for pp, objs in bys.items():
                for ob in objs:
                    yield s, pp, ob
            return
        if p is not None:
            byp = self.pos.get(p)
            if byp is None:
                return
            if o is not None:
                for sb in byp.get(o, ()):
                    yield sb, p, o
                return
            for ob, subs in byp.items():
                for sb in subs:
                    yield sb, p, ob
            return
        if o is not None:
            for sb, preds in self.osp.get(o, {}).items():
                for pp in preds:
                    yield sb, pp, o
            return
        for sb, bys in self.spo.items():
            for pp, objs in bys.items():
                for ob in objs:
                    yield sb, pp, ob

    def estimate(self, s: str | None, p: str | None, o: str | None) -> int:
        if s is not None:
            bys = self.spo.get(s)
            if bys is None:
                return 0
            if p is not None:
                return len(bys.get(p, ()))
            return sum(len(v) for v in bys.values()) if len(bys) < 8 else 8 * len(bys)
        if p is not None:
            byp = self.pos.get(p)
            if byp is None:
                return 0
            if o is not None:
                return len(byp.get(o, ()))
            return len(byp) * 2
        if o is not None:
            return len(self.osp.get(o, ()))
        return self.size

    def nodes(self) -> set[str]:
        return set(self.spo) | set(self.osp)

    def triples(self) -> Iterator[Triple]:
        return self.match(None, None, None)


class Dataset:
    """A default graph and named graphs (IRI term -> :class:`Graph`)."""

    def __init__(self, default: Graph, named: dict[str, Graph] | None = None) -> None:
        self.default = default
        self.named = named or {}


class SparqlResult:
    """The answer of a query: SELECT rows, an ASK boolean or CONSTRUCT triples."""

    def __init__(
        self,
        form: str,
        variables: list[str],
        rows: list[tuple[str | None, ...]],
        boolean: bool | None = None,
        triples: list[Triple] | None = None,
        ordered: bool = False,
    ) -> None:
        self.form = form
        self.variables = variables
        self.rows = rows
        self.boolean = boolean
        self.triples = triples or []
        self.ordered = ordered


# -- evaluation -----------------------------------------------------------------------------
class _Ctx:
    def __init__(self, dataset: Dataset, base: str, timeout_s: float | None = None) -> None:
        self.dataset = dataset
        self.base = base
        self.now = datetime.now(UTC)
        self.bnodes: dict[tuple[int, str], tuple[Solution, str]] = {}
        self.bnode_counter = 0
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def check_time(self) -> None:
        """Raise when the query's time budget is spent (called between units of work)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BudgetExceededError(f"query ran past its time budget of {self.timeout_s:g} s")


def evaluate(
    query: Query,
    dataset: Dataset,
    *,
    base: str = "",
    load_graph: Callable[[str], Graph] | None = None,
    timeout_s: float | None = None,
) -> SparqlResult:
    """Evaluate a parsed query over a dataset.

    ``load_graph``: how ``FROM``/``FROM NAMED`` IRIs become graphs; without it a
    query naming a dataset raises ``unsupported: FROM``. ``timeout_s``: a
    :class:`BudgetExceededError` once the evaluation has run that long (checked
    between pattern steps and every few thousand solutions).
    """
    if query.from_graphs or query.from_named:
        if load_graph is None:
            raise QueryUnsupported("unsupported: FROM / FROM NAMED (the store holds one graph)")
        triples: list[Triple] = []
        for iri in query.from_graphs:
            triples.extend(load_graph(iri).triples())
        dataset = Dataset(Graph(triples), {iri: load_graph(iri) for iri in query.from_named})
    ctx = _Ctx(dataset, query.base or base, timeout_s)
    sols = _eval_query(query, ctx, dataset.default)
    if query.form == "ASK":
        return SparqlResult("ASK", [], [], boolean=bool(sols))
    if query.form == "CONSTRUCT":
        out: dict[Triple, None] = {}
        for mu in sols:
            fresh: dict[str, str] = {}
            for s, p, o in query.template:
                terms: list[str] = []
                for t in (s, p, o):
                    if t.startswith("?"):
                        if t[1:].startswith(HIDDEN):
                            if t not in fresh:
                                ctx.bnode_counter += 1
                                fresh[t] = f"_:c{ctx.bnode_counter}"
                            terms.append(fresh[t])
                            continue
                        v = mu.get(t[1:])
                        if v is None:
                            break
                        terms.append(v)
                    else:
                        terms.append(t)
                else:
                    ts, tp, to = terms
                    if ts[0] == '"' or tp[0] != "<":
                        continue
                    out[(ts, tp, to)] = None
        return SparqlResult("CONSTRUCT", [], [], triples=list(out))
    names = query.projected()
    rows = [tuple(mu.get(v) for v in names) for mu in sols]
    return SparqlResult("SELECT", list(names), rows, ordered=bool(query.order_by))


def _eval_query(q: Query, ctx: _Ctx, graph: Graph, init: Solution | None = None) -> list[Solution]:
    sols = _eval(q.where, ctx, graph, init)
    if q.values is not None:
        sols = _join(sols, _eval(q.values, ctx, graph, None), ctx)
    grouped = q.group_by is not None or q.uses_aggregates
    projection = q.projection
    having = q.having
    order = q.order_by
    if grouped:
        sols, projection, having, order = _group(q, sols, ctx)
    if having:
        sols = [mu for mu in sols if all(_filter_ok(h, mu, ctx, graph) for h in having)]
    if projection is not None:
        for name, e in projection:
            if e is None:
                continue
            for mu in sols:
                with contextlib.suppress(_ExprError):
                    mu[name] = _ev(e, mu, ctx, graph)
    if order:
        sols = _order(sols, order, ctx, graph)
    names = [n for n, _ in projection] if projection is not None else q.in_scope()
    if q.form in ("SELECT", "ASK"):
        sols = [{k: mu[k] for k in names if k in mu} for mu in sols]
    if q.distinct or q.reduced:
        seen: set[tuple[tuple[str, str], ...]] = set()
        unique = []
        for mu in sols:
            key = tuple(sorted(mu.items()))
            if key not in seen:
                seen.add(key)
                unique.append(mu)
        sols = unique
    if q.offset or q.limit is not None:
        end = None if q.limit is None else q.offset + q.limit
        sols = sols[q.offset : end]
    return sols


def _order(
    sols: list[Solution], order: list[tuple[Expr, bool]], ctx: _Ctx, graph: Graph
) -> list[Solution]:
    keyed = []
    for mu in sols:
        keys: list[str | None] = []
        for e, _ in order:
            try:
                keys.append(_ev(e, mu, ctx, graph))
            except _ExprError:
                keys.append(None)
        keyed.append((keys, mu))

    def cmp(x: tuple[list[str | None], Solution], y: tuple[list[str | None], Solution]) -> int:
        for (_, desc), a, b in zip(order, x[0], y[0], strict=True):
            c = order_key_cmp(a, b)
            if c:
                return -c if desc else c
        return 0

    keyed.sort(key=functools.cmp_to_key(cmp))  # a stable sort: ties keep their order
    return [mu for _, mu in keyed]


# -- grouping and aggregates -----------------------------------------------------------------
def _group(
    q: Query, sols: list[Solution], ctx: _Ctx
) -> tuple[
    list[Solution], list[tuple[str, Expr | None]] | None, list[Expr], list[tuple[Expr, bool]]
]:
    """Group solutions (section 18.2.4.1) and compute each aggregate once per group.

    Aggregates in SELECT, HAVING and ORDER BY are replaced by hidden variables
    that the grouped solutions bind.
    """
    aggs: list[Expr] = []
    names: dict[Expr, str] = {}

    def lift(e: Expr) -> Expr:
        if e[0] == "agg":
            if e not in names:
                names[e] = f"{HIDDEN}agg{len(names)}"
                aggs.append(e)
            return ("var", names[e])
        if e[0] in ("op", "fn"):
            return (e[0], e[1], tuple(lift(a) for a in e[2]))
        return e

    projection = [(n, None if e is None else lift(e)) for n, e in q.projection or []]
    having = [lift(h) for h in q.having]
    order = [(lift(e), d) for e, d in q.order_by]
    keys = q.group_by or []
    groups: dict[tuple[str | None, ...], list[Solution]] = {}
    graph = ctx.dataset.default
    for mu in sols:
        key: list[str | None] = []
        for e, _alias in keys:
            try:
                key.append(_ev(e, mu, ctx, graph))
            except _ExprError:
                key.append(None)
        groups.setdefault(tuple(key), []).append(mu)
    if not groups and not keys:
        groups[()] = []  # aggregates without GROUP BY: one group, even when empty
    out: list[Solution] = []
    for group_key, members in groups.items():
        row: Solution = {}
        for (e, alias), v in zip(keys, group_key, strict=True):
            if v is None:
                continue
            if alias:
                row[alias] = v
            elif e[0] == "var":
                row[e[1]] = v
        for agg in aggs:
            with contextlib.suppress(_ExprError):
                row[names[agg]] = _aggregate(agg, members, ctx, graph)
        out.append(row)
    return out, projection, having, order


def _aggregate(agg: Expr, members: list[Solution], ctx: _Ctx, graph: Graph) -> str:
    _, name, distinct, arg, sep = agg
    if arg is None:
        rows = {tuple(sorted(mu.items())) for mu in members} if distinct else members
        return make_numeric(0, len(rows))
    values: list[str] = []
    errors = 0
    for mu in members:
        try:
            values.append(_ev(arg, mu, ctx, graph))
        except _ExprError:
            errors += 1
    if distinct:
        values = list(dict.fromkeys(values))
    if name == "COUNT":
        return make_numeric(0, len(values))
    if name == "SAMPLE":
        if not values:
            raise _ExprError("SAMPLE of an empty group")
        return values[0]
    if name == "GROUP_CONCAT":
        if errors:
            raise _ExprError("GROUP_CONCAT over an error")
        parts = [_string_arg(v) for v in values]
        return _simple(sep.join(lex for lex, _ in parts))
    if name in ("MIN", "MAX"):
        if not values:
            raise _ExprError("MIN/MAX of an empty group")
        ordered = sorted(values, key=functools.cmp_to_key(order_key_cmp))
        return ordered[0] if name == "MIN" else ordered[-1]
    if errors:
        raise _ExprError(f"{name} over an error")
    total = make_numeric(0, 0)
    for v in values:
        total = _arith("+", total, v)
    if name == "SUM":
        return total
    if name == "AVG":
        if not values:
            return make_numeric(0, 0)
        return _arith("/", total, make_numeric(0, len(values)))
    raise QueryUnsupported(f"unsupported: aggregate {name}")


# -- pattern evaluation ----------------------------------------------------------------------
def _eval(node: Algebra, ctx: _Ctx, graph: Graph, init: Solution | None) -> list[Solution]:
    op = node[0]
    if op == "bgp":
        return _eval_bgp(node[1], graph, dict(init) if init else {}, ctx)
    if op == "join":
        left = _eval(node[1], ctx, graph, init)
        right_node = node[2]
        if right_node[0] == "bgp" and left and _substitutable(right_node):
            out: list[Solution] = []
            for mu in left:
                out.extend(_eval_bgp(right_node[1], graph, dict(mu), ctx))
            return out
        return _join(left, _eval(right_node, ctx, graph, init), ctx)
    if op == "leftjoin":
        left = _eval(node[1], ctx, graph, init)
        right_node, cond = node[2], node[3]
        out = []
        if right_node[0] == "bgp" and _substitutable(right_node):
            for mu in left:
                matched = False
                for m2 in _eval_bgp(right_node[1], graph, dict(mu), ctx):
                    if cond is None or _filter_ok(cond, m2, ctx, graph):
                        out.append(m2)
                        matched = True
                if not matched:
                    out.append(mu)
            return out
        right = _eval(right_node, ctx, graph, init)
        for mu in left:
            ctx.check_time()
            matched = False
            for m2 in right:
                if _compatible(mu, m2):
                    merged = {**mu, **m2}
                    if cond is None or _filter_ok(cond, merged, ctx, graph):
                        out.append(merged)
                        matched = True
            if not matched:
                out.append(mu)
        return out
    if op == "union":
        return _eval(node[1], ctx, graph, init) + _eval(node[2], ctx, graph, init)
    if op == "minus":
        left = _eval(node[1], ctx, graph, init)
        right = _eval(node[2], ctx, graph, None)
        return [
            mu
            for mu in left
            if not any(_compatible(mu, m2) and not mu.keys().isdisjoint(m2) for m2 in right)
        ]
    if op == "filter":
        sols = _eval(node[2], ctx, graph, init)
        return [mu for mu in sols if _filter_ok(node[1], mu, ctx, graph)]
    if op == "extend":
        sols = _eval(node[1], ctx, graph, init)
        name, e = node[2], node[3]
        for mu in sols:
            with contextlib.suppress(_ExprError):
                mu[name] = _ev(e, mu, ctx, graph)
        return sols
    if op == "values":
        names, rows = node[1], node[2]
        table = [{n: v for n, v in zip(names, row, strict=True) if v is not None} for row in rows]
        if init:
            return [{**init, **mu} for mu in table if _compatible(init, mu)]
        return table
    if op == "graph":
        name, inner = node[1], node[2]
        named = ctx.dataset.named
        if name.startswith("?"):
            var = name[1:]
            bound = init.get(var) if init else None
            out = []
            for g_iri, g in named.items():
                if bound is not None and bound != g_iri:
                    continue
                for mu in _eval(inner, ctx, g, init):
                    if var in mu and mu[var] != g_iri:
                        continue
                    mu[var] = g_iri
                    out.append(mu)
            return out
        one = named.get(name)
        if one is None:
            return []
        return _eval(inner, ctx, one, init)
    if op == "sub":
        q: Query = node[1]
        sols = _eval_query(q, ctx, graph, None)
        if init:
            return [{**init, **mu} for mu in sols if _compatible(init, mu)]
        return sols
    raise QueryUnsupported(f"unsupported: algebra operator {op}")


def _substitutable(bgp: Algebra) -> bool:
    """Whether evaluating ``bgp`` from a solution equals joining it with that solution.

    True unless a zero-length path (``*``, ``?``) could match a term that a
    left-hand solution brings from outside the graph: evaluated alone, such a
    path with variable ends matches only the graph's own nodes.
    """
    return not any(pat[0] == "path" and _has_zero_length(pat[2]) for pat in bgp[1])


def _has_zero_length(path: Any) -> bool:
    kind = path[0]
    if kind in ("star", "opt"):
        return True
    if kind in ("seq", "alt"):
        return _has_zero_length(path[1]) or _has_zero_length(path[2])
    if kind == "inv":
        return _has_zero_length(path[1])
    return False


def _compatible(a: Solution, b: Solution) -> bool:
    if len(a) > len(b):
        a, b = b, a
    for k, v in a.items():
        w = b.get(k)
        if w is not None and w != v:
            return False
    return True


def _join(left: list[Solution], right: list[Solution], ctx: _Ctx) -> list[Solution]:
    """Hash join on the variables every solution of both sides binds; nested loops otherwise."""
    if not left or not right:
        return []
    common = set(right[0])
    for mu in right:
        common &= mu.keys()
    for mu in left:
        common &= mu.keys()
    out: list[Solution] = []
    if common:
        keys = sorted(common)
        table: dict[tuple[str, ...], list[Solution]] = defaultdict(list)
        for m2 in right:
            table[tuple(m2[k] for k in keys)].append(m2)
        for n, mu in enumerate(left):
            if not n & 4095:
                ctx.check_time()
            for m2 in table.get(tuple(mu[k] for k in keys), ()):
                if _compatible(mu, m2):
                    out.append({**mu, **m2})
                    if not len(out) & 8191:
                        ctx.check_time()
        return out
    for mu in left:
        ctx.check_time()
        for m2 in right:
            if _compatible(mu, m2):
                out.append({**mu, **m2})
    return out


def _eval_bgp(patterns: list[Any], graph: Graph, start: Solution, ctx: _Ctx) -> list[Solution]:
    """Index nested-loop join of the patterns, starting from one solution.

    Each step takes the pattern with the fewest estimated matches given what
    is bound (estimated on the first partial solution); a path with an
    unbound end waits until a plain pattern has bound something.
    """
    sols = [start]
    remaining = list(patterns)
    while remaining and sols:
        mu0 = sols[0]
        best_i, best_cost = 0, None
        for i, pat in enumerate(remaining):
            if pat[0] == "path":
                s, o = pat[1], pat[3]
                bound = sum(1 for t in (s, o) if not t.startswith("?") or t[1:] in mu0)
                cost = (0 if bound else 2, 10_000_000 - bound)
            else:
                resolved = [(mu0.get(t[1:]) if t[0] == "?" else t) for t in pat]
                est = graph.estimate(*resolved)
                cost = (1 if est else 0, est)
            if best_cost is None or cost < best_cost:
                best_i, best_cost = i, cost
        pat = remaining.pop(best_i)
        ctx.check_time()
        sols = _extend_pattern(sols, pat, graph, ctx)
    return sols


def _extend_pattern(sols: list[Solution], pat: Any, graph: Graph, ctx: _Ctx) -> list[Solution]:
    out: list[Solution] = []
    if pat[0] == "path":
        _, s, path, o = pat
        for mu in sols:
            sv = mu.get(s[1:]) if s.startswith("?") else s
            ov = mu.get(o[1:]) if o.startswith("?") else o
            for x, y in (
                set(_path_pairs(ctx, graph, path, sv, ov))
                if _is_set_path(path)
                else _path_pairs(ctx, graph, path, sv, ov)
            ):
                m2 = dict(mu)
                if s.startswith("?") and sv is None:
                    m2[s[1:]] = x
                if o.startswith("?") and ov is None:
                    if o == s and m2.get(o[1:]) != y:
                        continue
                    m2[o[1:]] = y
                out.append(m2)
        return out
    s, p, o = pat
    # Variable names ("" for a constant position); a repeated variable is checked.
    sv = s[1:] if s[0] == "?" else ""
    pv = p[1:] if p[0] == "?" else ""
    ov = o[1:] if o[0] == "?" else ""
    for k, mu in enumerate(sols):
        if not k & 4095:
            ctx.check_time()
        sb = mu.get(sv) if sv else s
        pb = mu.get(pv) if pv else p
        ob = mu.get(ov) if ov else o
        for ts, tp, to in graph.match(sb, pb, ob):
            m2 = dict(mu)
            if sb is None:
                m2[sv] = ts
            if pb is None:
                if m2.get(pv, tp) != tp:
                    continue
                m2[pv] = tp
            if ob is None:
                if m2.get(ov, to) != to:
                    continue
                m2[ov] = to
            out.append(m2)
            if not len(out) & 8191:
                ctx.check_time()
    return out


def _is_set_path(path: Any) -> bool:
    return path[0] in ("star", "plus", "opt")


def _path_pairs(
    ctx: _Ctx, graph: Graph, path: Any, s: str | None, o: str | None
) -> Iterator[tuple[str, str]]:
    kind = path[0]
    if kind == "link":
        for ts, _, to in graph.match(s, path[1], o):
            yield ts, to
    elif kind == "inv":
        for a, b in _path_pairs(ctx, graph, path[1], o, s):
            yield b, a
    elif kind == "seq":
        if s is None and o is not None:
            for mid, y in _path_pairs(ctx, graph, path[2], None, o):
                for x, _ in _path_pairs(ctx, graph, path[1], None, mid):
                    yield x, y
        else:
            for x, mid in _path_pairs(ctx, graph, path[1], s, None):
                for _, y in _path_pairs(ctx, graph, path[2], mid, o):
                    yield x, y
    elif kind == "alt":
        yield from _path_pairs(ctx, graph, path[1], s, o)
        yield from _path_pairs(ctx, graph, path[2], s, o)
    elif kind == "nps":
        _, fwd, inv, has_fwd, has_inv = path
        if has_fwd:
            for ts, tp, to in graph.match(s, None, o):
                if tp not in fwd:
                    yield ts, to
        if has_inv:
            for ts, tp, to in graph.match(o, None, s):
                if tp not in inv:
                    yield to, ts
    elif kind in ("star", "plus", "opt"):
        inner = path[1]
        zero = kind != "plus"
        single = kind == "opt"
        if s is not None:
            for y in _reach(ctx, graph, inner, s, zero, single, forward=True):
                if o is None or o == y:
                    yield s, y
        elif o is not None:
            for x in _reach(ctx, graph, inner, o, zero, single, forward=False):
                yield x, o
        else:
            starts = (
                graph.nodes()
                if zero
                else {x for x, _ in _path_pairs(ctx, graph, inner, None, None)}
            )
            for x in starts:
                ctx.check_time()
                for y in _reach(ctx, graph, inner, x, zero, single, forward=True):
                    yield x, y
    else:
        raise QueryUnsupported(f"unsupported: property path {kind}")


def _reach(
    ctx: _Ctx, graph: Graph, path: Any, start: str, zero: bool, single: bool, *, forward: bool
) -> list[str]:
    seen: dict[str, None] = {}
    if zero:
        seen[start] = None
    frontier = [start]
    visited = {start} if not zero else set()
    while frontier:
        ctx.check_time()
        nxt = []
        for node in frontier:
            pairs = (
                _path_pairs(ctx, graph, path, node, None)
                if forward
                else _path_pairs(ctx, graph, path, None, node)
            )
            for a, b in pairs:
                y = b if forward else a
                if y not in seen:
                    seen[y] = None
                if single:
                    continue
                if y not in visited:
                    visited.add(y)
                    nxt.append(y)
        if single:
            break
        frontier = nxt
    return list(seen)


# -- expressions ------------------------------------------------------------------------------
def _filter_ok(e: Expr, mu: Solution, ctx: _Ctx, graph: Graph) -> bool:
    try:
        return ebv(_ev(e, mu, ctx, graph))
    except _ExprError:
        return False


def _ev(e: Expr, mu: Solution, ctx: _Ctx, graph: Graph) -> str:
    kind = e[0]
    if kind == "var":
        v = mu.get(e[1])
        if v is None:
            raise _ExprError(f"?{e[1]} is unbound")
        return v
    if kind == "const":
        return str(e[1])
    if kind == "op":
        return _op(e[1], e[2], mu, ctx, graph)
    if kind == "fn":
        return _fn(e[1], e[2], mu, ctx, graph)
    if kind == "exists":
        found = bool(_eval(e[2], ctx, graph, mu))
        return _bool(found != e[1])
    if kind == "agg":
        raise QueryError("an aggregate is allowed only in SELECT, HAVING and ORDER BY")
    raise QueryUnsupported(f"unsupported: expression {kind}")


def _op(name: str, args: tuple[Expr, ...], mu: Solution, ctx: _Ctx, graph: Graph) -> str:
    if name == "||":
        err = False
        for a in args:
            try:
                if ebv(_ev(a, mu, ctx, graph)):
                    return TRUE
            except _ExprError:
                err = True
        if err:
            raise _ExprError("error in ||")
        return FALSE
    if name == "&&":
        err = False
        for a in args:
            try:
                if not ebv(_ev(a, mu, ctx, graph)):
                    return FALSE
            except _ExprError:
                err = True
        if err:
            raise _ExprError("error in &&")
        return TRUE
    if name == "!":
        return _bool(not ebv(_ev(args[0], mu, ctx, graph)))
    if name in ("IN", "NOT IN"):
        x = _ev(args[0], mu, ctx, graph)
        err = False
        for a in args[1:]:
            try:
                if values_equal(x, _ev(a, mu, ctx, graph)):
                    return _bool(name == "IN")
            except _ExprError:
                err = True
        if err:
            raise _ExprError("error in IN")
        return _bool(name != "IN")
    if name in {"neg", "pos"}:
        x = _ev(args[0], mu, ctx, graph)
        nv = numeric_value(x)
        if nv is None:
            raise _ExprError("unary minus of a non-number")
        return make_numeric(nv[0], -nv[1] if name == "neg" else nv[1])
    left = _ev(args[0], mu, ctx, graph)
    right = _ev(args[1], mu, ctx, graph)
    if name == "=":
        return _bool(values_equal(left, right))
    if name == "!=":
        return _bool(not values_equal(left, right))
    if name in ("<", ">", "<=", ">="):
        c = compare_values(left, right)
        return _bool({"<": c < 0, ">": c > 0, "<=": c <= 0, ">=": c >= 0}[name])
    return _arith(name, left, right)


def _arith(name: str, a: str, b: str) -> str:
    na, nb = numeric_value(a), numeric_value(b)
    if na is None or nb is None:
        raise _ExprError("arithmetic on a non-number")
    rank = max(na[0], nb[0])
    x, y = na[1], nb[1]
    if rank >= 2:
        x, y = float(x), float(y)
    elif rank == 1:
        x, y = Decimal(x), Decimal(y)
    if name == "+":
        r = x + y
    elif name == "-":
        r = x - y
    elif name == "*":
        r = x * y
    else:
        if rank == 0:
            if y == 0:
                raise _ExprError("division by zero")
            return make_numeric(1, Decimal(x) / Decimal(y))
        if y == 0:
            if rank == 1:
                raise _ExprError("division by zero")
            r = (
                math.nan
                if x == 0 or math.isnan(x)
                else math.copysign(math.inf, x) * math.copysign(1, y)
            )
        else:
            r = x / y
    return make_numeric(rank, r)


def _str_of(t: str) -> str:
    if t[0] == "<":
        return t[1:-1]
    if t[0] == '"':
        return lit_parts(t)[0]
    raise _ExprError("STR of a blank node")


_CASTS = {
    f"<{XSD}{n}>"
    for n in ("string", "integer", "decimal", "float", "double", "boolean", "dateTime")
}


def _canonical_string(t: str) -> str:
    """The XPath string of a term's value (section 17.5: casting to xsd:string)."""
    if t[0] != '"':
        return _str_of(t)
    lex, dt, _ = lit_parts(t)
    if dt == XSD_BOOLEAN and lex in ("1", "0", "true", "false"):
        return "true" if lex in ("1", "true") else "false"
    nv = numeric_value(t)
    if nv is None:
        return lex
    rank, v = nv
    if rank == 0:
        return str(v)
    if rank == 1:
        d = Decimal(v).normalize()
        if d == d.to_integral_value():
            return str(int(d))
        return format(d, "f")
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "INF" if v > 0 else "-INF"
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    if 1e-6 <= abs(v) < 1e6:
        if v == int(v):
            return str(int(v))
        return repr(v)
    mant, _, exp = repr(v).replace("e", "E").partition("E")
    if not exp:
        return _fmt_double(v)
    if "." not in mant:
        mant += ".0"
    return f"{mant}E{int(exp)}"


def _cast(dt: str, t: str) -> str:
    if t[0] == "_":
        raise _ExprError("cannot cast a blank node")
    if dt == XSD_STRING:
        return literal_term(_canonical_string(t))
    if t[0] == "<":
        raise _ExprError("cannot cast an IRI")
    lex, src, _ = lit_parts(t)
    nv = numeric_value(t)
    if src in _NUMERIC_RANK and nv is None:
        raise _ExprError("ill-formed numeric literal")
    if (
        src not in (XSD_STRING, XSD_BOOLEAN)
        and src not in _NUMERIC_RANK
        and not (dt == XSD_DATETIME and src == XSD_DATETIME)
    ):
        raise _ExprError("cannot cast this literal")
    if dt == XSD_BOOLEAN:
        if src == XSD_BOOLEAN:
            if lex not in ("true", "false", "1", "0"):
                raise _ExprError("not a boolean")
            return _bool(lex in ("true", "1"))
        if nv is not None:
            v = nv[1]
            return _bool(not (v == 0 or (isinstance(v, float) and math.isnan(v))))
        if lex in ("true", "1"):
            return TRUE
        if lex in ("false", "0"):
            return FALSE
        raise _ExprError("not a boolean")
    if dt == XSD_DATETIME:
        if src not in (XSD_STRING, XSD_DATETIME) or not _DT_RE.match(lex):
            raise _ExprError("not a dateTime")
        return literal_term(lex, XSD_DATETIME)
    if src == XSD_BOOLEAN:
        val: Any = 1 if lex in ("true", "1") else 0
        return make_numeric(_NUMERIC_RANK[dt], val)
    if nv is not None:
        _rank, val = nv
    else:
        lex = lex.strip()
        if dt in (XSD_INTEGER,):
            if not _INT_RE.match(lex):
                raise _ExprError("not an integer")
            return make_numeric(0, int(lex))
        if dt == XSD_DECIMAL:
            if not _DEC_RE.match(lex):
                raise _ExprError("not a decimal")
            return make_numeric(1, Decimal(lex))
        if not _DBL_RE.match(lex):
            raise _ExprError("not a double")
        return make_numeric(_NUMERIC_RANK[dt], float(lex.replace("INF", "inf")))
    if dt == XSD_INTEGER:
        if isinstance(val, float) and (math.isnan(val) or math.isinf(val)):
            raise _ExprError("cannot cast to integer")
        return make_numeric(0, int(val))
    if dt == XSD_DECIMAL:
        if isinstance(val, float) and (math.isnan(val) or math.isinf(val)):
            raise _ExprError("cannot cast to decimal")
        return make_numeric(1, Decimal(str(val)) if isinstance(val, float) else Decimal(val))
    return make_numeric(_NUMERIC_RANK[dt], float(val))


def _fn(name: str, args: tuple[Expr, ...], mu: Solution, ctx: _Ctx, graph: Graph) -> str:
    # Functions with their own error handling come first.
    if name == "BOUND":
        if args[0][0] != "var":
            raise QueryError("BOUND takes a variable")
        return _bool(args[0][1] in mu)
    if name == "IF":
        cond = ebv(_ev(args[0], mu, ctx, graph))
        return _ev(args[1] if cond else args[2], mu, ctx, graph)
    if name == "COALESCE":
        for a in args:
            try:
                return _ev(a, mu, ctx, graph)
            except _ExprError:
                continue
        raise _ExprError("COALESCE: every argument is an error")
    if name == "RAND":
        return make_numeric(3, random.random())
    if name == "NOW":
        return literal_term(ctx.now.isoformat().replace("+00:00", "Z"), XSD_DATETIME)
    if name == "UUID":
        return f"<urn:uuid:{uuid.uuid4()}>"
    if name == "STRUUID":
        return literal_term(str(uuid.uuid4()))
    if name == "BNODE" and not args:
        ctx.bnode_counter += 1
        return f"_:f{ctx.bnode_counter}"
    vals = [_ev(a, mu, ctx, graph) for a in args]
    if name.startswith("<"):
        if name in _CASTS:
            if len(vals) != 1:
                raise _ExprError("a cast takes one argument")
            return _cast(name, vals[0])
        raise _ExprError(f"unknown function {name}")
    x = vals[0] if vals else ""
    if name == "STR":
        return literal_term(_str_of(x))
    if name == "LANG":
        if x[0] != '"':
            raise _ExprError("LANG of a non-literal")
        return literal_term(lit_parts(x)[2])
    if name == "LANGMATCHES":
        tag, _ = _string_arg(x)
        rng, _ = _string_arg(vals[1])
        if rng == "*":
            return _bool(tag != "")
        tl, rl = tag.lower(), rng.lower()
        return _bool(tl == rl or tl.startswith(rl + "-"))
    if name == "DATATYPE":
        if x[0] != '"':
            raise _ExprError("DATATYPE of a non-literal")
        return lit_parts(x)[1]
    if name in ("IRI", "URI"):
        if x[0] == "<":
            return x
        lex, dt, _ = lit_parts(x) if x[0] == '"' else ("", "", "")
        if x[0] != '"' or dt != XSD_STRING:
            raise _ExprError("IRI of a non-string")
        return f"<{resolve_iri(ctx.base, lex)}>"
    if name == "BNODE":
        # The same label within one solution, a new node per solution: keyed by the
        # solution's identity, which holding the solution keeps from being reused.
        lex, _ = _string_arg(x)
        mkey = (id(mu), lex)
        if mkey not in ctx.bnodes:
            ctx.bnode_counter += 1
            ctx.bnodes[mkey] = (mu, f"_:f{ctx.bnode_counter}")
        return ctx.bnodes[mkey][1]
    if name in {"ABS", "CEIL", "FLOOR", "ROUND"}:
        nv = numeric_value(x)
        if nv is None:
            raise _ExprError(f"{name} of a non-number")
        rank, v = nv
        if name == "ABS":
            return make_numeric(rank, abs(v))
        if rank == 0:
            return x if lit_parts(x)[1] == XSD_INTEGER else make_numeric(0, v)
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return make_numeric(rank, v)
        if name == "CEIL":
            r: Any = math.ceil(v)
        elif name == "FLOOR":
            r = math.floor(v)
        else:
            r = Decimal(str(v)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return make_numeric(rank, Decimal(r) if rank == 1 else float(r))
    if name == "CONCAT":
        parts = [_string_arg(v) for v in vals]
        langs = {lang for _, lang in parts}
        text = "".join(lex for lex, _ in parts)
        if len(langs) == 1 and parts and "" not in langs:
            return literal_term(text, lang=next(iter(langs)))
        return literal_term(text)
    if name == "STRLEN":
        lex, _ = _string_arg(x)
        return make_numeric(0, len(lex))
    if name in ("UCASE", "LCASE"):
        lex, lang = _string_arg(x)
        out = lex.upper() if name == "UCASE" else lex.lower()
        return _keep_type(x, out, lang)
    if name == "ENCODE_FOR_URI":
        lex, _ = _string_arg(x)
        return literal_term(quote(lex, safe="-_.~"))
    if name in ("CONTAINS", "STRSTARTS", "STRENDS"):
        hay, needle, _ = _compatible_args(x, vals[1])
        if name == "CONTAINS":
            return _bool(needle in hay)
        return _bool(hay.startswith(needle) if name == "STRSTARTS" else hay.endswith(needle))
    if name in ("STRBEFORE", "STRAFTER"):
        hay, needle, lang = _compatible_args(x, vals[1])
        k = hay.find(needle)
        if k < 0:
            return literal_term("")
        res = hay[:k] if name == "STRBEFORE" else hay[k + len(needle) :]
        return _keep_type(x, res, lang)
    if name in ("YEAR", "MONTH", "DAY", "HOURS", "MINUTES", "SECONDS", "TIMEZONE", "TZ"):
        if x[0] != '"':
            raise _ExprError("not a dateTime")
        lex, dt, _ = lit_parts(x)
        m = _DT_RE.match(lex)
        if dt != XSD_DATETIME or not m:
            raise _ExprError("not a dateTime")
        year, mon, day, hh, mm, ss, tz = m.groups()
        if name == "YEAR":
            return make_numeric(0, int(year))
        if name == "MONTH":
            return make_numeric(0, int(mon))
        if name == "DAY":
            return make_numeric(0, int(day))
        if name == "HOURS":
            return make_numeric(0, int(hh))
        if name == "MINUTES":
            return make_numeric(0, int(mm))
        if name == "SECONDS":
            return make_numeric(1, Decimal(ss))
        if name == "TZ":
            return literal_term(tz or "")
        if tz is None:
            raise _ExprError("no timezone")
        if tz == "Z":
            return literal_term("PT0S", f"<{XSD}dayTimeDuration>")
        sign = "-" if tz[0] == "-" else ""
        h, mnt = int(tz[1:3]), int(tz[4:6])
        dur = f"{sign}PT{h}H" + (f"{mnt}M" if mnt else "") if h else f"{sign}PT{mnt}M"
        if h == 0 and mnt == 0:
            dur = "PT0S"
        return literal_term(dur, f"<{XSD}dayTimeDuration>")
    if name in ("MD5", "SHA1", "SHA256", "SHA384", "SHA512"):
        lex, lang = _string_arg(x)
        if lang:
            raise _ExprError("hash of a language-tagged string")
        digest = hashlib.new(name.lower())
        digest.update(lex.encode("utf-8"))
        return literal_term(digest.hexdigest())
    if name == "STRLANG":
        lex, lang = _string_arg(x)
        if lang or lit_parts(x)[1] != XSD_STRING:
            raise _ExprError("STRLANG takes a simple literal")
        tag, _ = _string_arg(vals[1])
        if not tag:
            raise _ExprError("empty language tag")
        return literal_term(lex, lang=tag)
    if name == "STRDT":
        if x[0] != '"' or lit_parts(x)[1] != XSD_STRING:
            raise _ExprError("STRDT takes a simple literal")
        if vals[1][0] != "<":
            raise _ExprError("STRDT takes a datatype IRI")
        return literal_term(lit_parts(x)[0], vals[1])
    if name == "SAMETERM":
        return _bool(x == vals[1])
    if name in ("ISIRI", "ISURI"):
        return _bool(x[0] == "<")
    if name == "ISBLANK":
        return _bool(x[0] == "_")
    if name == "ISLITERAL":
        return _bool(x[0] == '"')
    if name == "ISNUMERIC":
        return _bool(numeric_value(x) is not None)
    if name == "REGEX":
        lex, _ = _string_arg(x)
        pattern, _ = _string_arg(vals[1])
        flags = _string_arg(vals[2])[0] if len(vals) > 2 else ""
        return _bool(_regex(pattern, flags).search(lex) is not None)
    if name == "REPLACE":
        lex, lang = _string_arg(x)
        pattern, _ = _string_arg(vals[1])
        repl, _ = _string_arg(vals[2])
        flags = _string_arg(vals[3])[0] if len(vals) > 3 else ""
        rx = _regex(pattern, flags)
        if rx.match(""):
            raise _ExprError("REPLACE pattern matches the empty string")
        py_repl = re.sub(r"\$(\d+)", r"\\\1", repl.replace("\\", "\\\\").replace("\\\\$", "$"))
        return _keep_type(x, rx.sub(py_repl, lex), lang)
    if name == "SUBSTR":
        lex, lang = _string_arg(x)
        start_v = numeric_value(vals[1])
        if start_v is None:
            raise _ExprError("SUBSTR start is not a number")
        start = _xpath_round(start_v[1])
        if len(vals) > 2:
            len_v = numeric_value(vals[2])
            if len_v is None:
                raise _ExprError("SUBSTR length is not a number")
            end = start + _xpath_round(len_v[1])
        else:
            end = math.inf
        chars = [c for i, c in enumerate(lex, start=1) if start <= i < end]
        return _keep_type(x, "".join(chars), lang)
    raise QueryUnsupported(f"unsupported: function {name}")


def _xpath_round(v: Any) -> float:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return v
    return float(Decimal(str(v)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _keep_type(original: str, lex: str, lang: str) -> str:
    if lang:
        return literal_term(lex, lang=lang)
    return literal_term(lex)


@lru_cache(maxsize=256)
def _regex(pattern: str, flags: str) -> re.Pattern[str]:
    f = 0
    for ch in flags:
        if ch == "i":
            f |= re.I
        elif ch == "s":
            f |= re.S
        elif ch == "m":
            f |= re.M
        elif ch == "x":
            f |= re.X
        elif ch == "q":
            pattern = re.escape(pattern)
        else:
            raise _ExprError(f"unknown regex flag {ch}")
    try:
        return re.compile(pattern, f)
    except re.error as exc:
        raise _ExprError(f"bad regex: {exc}") from None


def decimal_or_none(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None
