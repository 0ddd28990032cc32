"""A SPARQL SELECT subset compiled to the same DuckDB joins as Datalog queries.

Supported: ``PREFIX``/``BASE``; ``SELECT [DISTINCT] ?v ... | *`` with
``(COUNT|SUM|MIN|MAX|AVG([DISTINCT] ?x|*) AS ?y)``; a ``WHERE`` group of triple
patterns (``;`` and ``,`` abbreviations, ``a``), ``FILTER`` (comparisons,
``&&``, ``||``, ``!``, ``BOUND``, ``isIRI``, ``isLiteral``) and ``OPTIONAL { ... }``;
``GROUP BY``, ``ORDER BY [ASC|DESC]``, ``LIMIT``, ``OFFSET``. Everything else
raises :class:`QueryError` naming the construct.

Terms are dictionary ids in SQL; equality compares ids, order comparisons and
``ORDER BY`` decode through the ``dict`` table (numeric when the literal parses
as a number, else by lexical form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tenfold.semantic_lattice._index import BGPQuery
from tenfold.semantic_lattice._rdf import OWL, RDF, RDFS, XSD, literal, resolve_iri
from tenfold.semantic_lattice.errors import QueryError, UnknownPredicateError

if TYPE_CHECKING:
    from tenfold.semantic_lattice._engine import Engine

__all__ = ["compile_sparql", "compile_sparql_plans"]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
  | (?P<var>[?$][A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<lang>@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*)
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<pname>(?:[A-Za-z][\w\-.]*)?:[\w\-.%]*)
  | (?P<word>[A-Za-z_]+)
  | (?P<op>\^\^|&&|\|\||<=|>=|!=|[{}().;,*=<>!])
    """,
    re.X,
)
_DEFAULT_PREFIXES = {"rdf": RDF, "rdfs": RDFS, "owl": OWL, "xsd": XSD}
_AGGS = ("COUNT", "SUM", "MIN", "MAX", "AVG")


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


@dataclass
class _Pattern:
    s: str
    p: str
    o: str  # each "?var" or a canonical term


@dataclass
class _Group:
    patterns: list[_Pattern] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)  # SQL filled in later
    filter_asts: list[object] = field(default_factory=list)
    optionals: list[_Group] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[_Tok] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise self.error(f"unexpected character {text[pos]!r}", pos)
            if m.lastgroup != "ws":
                self.toks.append(_Tok(m.lastgroup or "", m.group(), pos))
            pos = m.end()
        self.toks.append(_Tok("eof", "", len(text)))
        self.i = 0
        self.prefixes = dict(_DEFAULT_PREFIXES)
        self.base = ""

    def error(self, message: str, pos: int | None = None) -> QueryError:
        at = self.toks[self.i].pos if pos is None and self.toks else (pos or 0)
        line = self.text.count("\n", 0, at) + 1
        col = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return QueryError(f"SPARQL {line}:{col}: {message}")

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def word(self, *words: str) -> bool:
        if self.tok.kind == "word" and self.tok.text.upper() in words:
            self.i += 1
            return True
        return False

    def op(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect_op(self, text: str) -> None:
        if not self.op(text):
            raise self.error(f"expected {text!r}, found {self.tok.text or 'end of query'!r}")

    def term(self) -> str:
        tok = self.tok
        self.i += 1
        if tok.kind == "var":
            return "?" + tok.text[1:]
        if tok.kind == "iri":
            return f"<{resolve_iri(self.base, tok.text[1:-1])}>"
        if tok.kind == "pname":
            prefix, local = tok.text.split(":", 1)
            if prefix not in self.prefixes:
                raise self.error(f"undeclared prefix {prefix + ':'!r}", tok.pos)
            return f"<{self.prefixes[prefix]}{local}>"
        if tok.kind == "word" and tok.text == "a":
            return f"<{RDF}type>"
        if tok.kind == "word" and tok.text in ("true", "false"):
            return literal(tok.text, XSD + "boolean")
        if tok.kind == "number":
            kind = (
                "double" if "e" in tok.text.lower() else "decimal" if "." in tok.text else "integer"
            )
            return literal(tok.text, XSD + kind)
        if tok.kind == "string":
            lexical = re.sub(
                r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), tok.text[1:-1]
            )
            if self.tok.kind == "lang":
                self.i += 1
                return literal(lexical, lang=self.toks[self.i - 1].text[1:])
            if self.op("^^"):
                dt = self.term()
                return literal(lexical, dt[1:-1])
            return literal(lexical)
        raise self.error(f"expected a term, found {tok.text or 'end of query'!r}", tok.pos)

    def parse(
        self,
    ) -> tuple[
        list[tuple[str, str, str, bool]],
        bool,
        _Group,
        list[str],
        list[tuple[str, bool]],
        int | None,
        int,
    ]:
        while True:
            if self.word("PREFIX"):
                name = self.tok
                if name.kind != "pname" or not name.text.endswith(":"):
                    raise self.error("expected a prefix name such as ex:")
                self.i += 1
                iri = self.tok
                if iri.kind != "iri":
                    raise self.error("expected <iri> after the prefix")
                self.i += 1
                self.prefixes[name.text[:-1]] = iri.text[1:-1]
            elif self.word("BASE"):
                self.base = self.tok.text[1:-1]
                self.i += 1
            else:
                break
        if not self.word("SELECT"):
            raise self.error("only SELECT queries are supported")
        distinct = self.word("DISTINCT")
        projection: list[tuple[str, str, str, bool]] = []  # (name, agg, arg, agg_distinct)
        if self.op("*"):
            projection = []
        else:
            while True:
                if self.tok.kind == "var":
                    projection.append((self.tok.text[1:], "", "", False))
                    self.i += 1
                elif self.op("("):
                    agg = self.tok.text.upper()
                    if agg not in _AGGS:
                        raise self.error(f"unsupported expression {self.tok.text!r} in SELECT")
                    self.i += 1
                    self.expect_op("(")
                    agg_distinct = self.word("DISTINCT")
                    arg = "*" if self.op("*") else self.term()
                    self.expect_op(")")
                    if not self.word("AS"):
                        raise self.error("expected AS ?name after the aggregate")
                    alias = self.term()
                    self.expect_op(")")
                    projection.append((alias[1:], agg, arg, agg_distinct))
                else:
                    break
            if not projection:
                raise self.error("expected variables or * after SELECT")
        self.word("WHERE")
        group = self.group()
        group_by: list[str] = []
        order: list[tuple[str, bool]] = []
        limit: int | None = None
        offset = 0
        if self.word("GROUP"):
            if not self.word("BY"):
                raise self.error("expected BY after GROUP")
            while self.tok.kind == "var":
                group_by.append(self.tok.text[1:])
                self.i += 1
        if self.word("ORDER"):
            if not self.word("BY"):
                raise self.error("expected BY after ORDER")
            while True:
                if self.word("ASC", "DESC"):
                    desc = self.toks[self.i - 1].text.upper() == "DESC"
                    self.expect_op("(")
                    var = self.term()
                    self.expect_op(")")
                    order.append((var[1:], desc))
                elif self.tok.kind == "var":
                    order.append((self.tok.text[1:], False))
                    self.i += 1
                else:
                    break
        while self.tok.kind == "word":
            if self.word("LIMIT"):
                limit = int(self.tok.text)
                self.i += 1
            elif self.word("OFFSET"):
                offset = int(self.tok.text)
                self.i += 1
            else:
                raise self.error(f"unsupported clause {self.tok.text!r}")
        if self.tok.kind != "eof":
            raise self.error(f"unexpected {self.tok.text!r} after the query")
        return projection, distinct, group, group_by, order, limit, offset

    def group(self) -> _Group:
        self.expect_op("{")
        group = _Group()
        while not self.op("}"):
            if self.tok.kind == "eof":
                raise self.error("unterminated group, expected '}'")
            if self.word("FILTER"):
                group.filter_asts.append(self.filter_expr())
                self.op(".")
                continue
            if self.word("OPTIONAL"):
                group.optionals.append(self.group())
                self.op(".")
                continue
            if self.tok.kind == "op" and self.tok.text == "{":
                raise self.error("nested groups and UNION are outside the supported SPARQL subset")
            if self.tok.kind == "word" and self.tok.text.upper() in (
                "UNION",
                "MINUS",
                "GRAPH",
                "BIND",
                "VALUES",
                "SERVICE",
            ):
                raise self.error(f"{self.tok.text.upper()} is outside the supported SPARQL subset")
            subject = self.term()
            while True:
                predicate = self.term()
                while True:
                    group.patterns.append(_Pattern(subject, predicate, self.term()))
                    if not self.op(","):
                        break
                if not self.op(";") or self.tok.text in (".", "}"):
                    break
            self.op(".")
        return group

    # FILTER expressions -> nested tuples
    def filter_expr(self) -> object:
        if self.op("("):
            e = self.or_expr()
            self.expect_op(")")
            return e
        return self.primary()

    def or_expr(self) -> object:
        left = self.and_expr()
        while self.op("||"):
            left = ("||", left, self.and_expr())
        return left

    def and_expr(self) -> object:
        left = self.cmp_expr()
        while self.op("&&"):
            left = ("&&", left, self.cmp_expr())
        return left

    def cmp_expr(self) -> object:
        left = self.primary()
        for op in ("=", "!=", "<=", ">=", "<", ">"):
            if self.op(op):
                return (op, left, self.primary())
        return left

    def primary(self) -> object:
        if self.op("!"):
            return ("!", self.primary())
        if self.op("("):
            e = self.or_expr()
            self.expect_op(")")
            return e
        if self.tok.kind == "word" and self.tok.text.upper() in (
            "BOUND",
            "ISIRI",
            "ISURI",
            "ISLITERAL",
        ):
            func = self.tok.text.upper()
            self.i += 1
            self.expect_op("(")
            arg = self.term()
            self.expect_op(")")
            return (func, arg)
        if self.tok.kind == "word" and self.tok.text not in ("a", "true", "false"):
            raise self.error(f"function {self.tok.text!r} is outside the supported SPARQL subset")
        return ("term", self.term())


_NUM = "TRY_CAST(regexp_extract({t}, '^\"(.*)\"', 1) AS DOUBLE)"
_LEX = "regexp_extract({t}, '^\"(.*)\"', 1)"


@dataclass
class _Ctx:
    engine: Engine
    env: dict[str, str] = field(default_factory=dict)
    froms: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    n: int = 0

    def const(self, term: str, *, predicate: bool = False) -> str:
        ident = self.engine.dictionary.lookup(term)
        if ident is None:
            if predicate:
                raise UnknownPredicateError(
                    f"unknown predicate {term}: the store has no such triples"
                )
            return "-1"  # matches nothing
        return str(ident)

    def term_sql(self, term: str) -> str:
        if term.startswith("?"):
            if term[1:] not in self.env:
                raise QueryError(f"variable {term} is not bound by any triple pattern")
            return self.env[term[1:]]
        return self.const(term)

    def decoded(self, sql: str) -> str:
        return f"(SELECT term FROM dict WHERE id = {sql})"


def _filter_sql(ctx: _Ctx, e: object) -> str:
    assert isinstance(e, tuple)
    op = e[0]
    if op in ("||", "&&"):
        sql_op = "OR" if op == "||" else "AND"
        return f"({_filter_sql(ctx, e[1])} {sql_op} {_filter_sql(ctx, e[2])})"
    if op == "!":
        return f"(NOT {_filter_sql(ctx, e[1])})"
    if op == "BOUND":
        return f"({ctx.term_sql(e[1])} IS NOT NULL)"
    if op in ("ISIRI", "ISURI", "ISLITERAL"):
        prefix = "<" if op != "ISLITERAL" else '"'
        return f"starts_with({ctx.decoded(ctx.term_sql(e[1]))}, '{prefix}')"
    if op == "term":
        return f"({ctx.term_sql(e[1])} = {ctx.const(literal('true', XSD + 'boolean'))})"
    left, right = e[1], e[2]
    assert isinstance(left, tuple) and isinstance(right, tuple)
    if op in ("=", "!=") and left[0] == "term" and right[0] == "term":
        sql_op = "=" if op == "=" else "<>"
        return f"({ctx.term_sql(left[1])} {sql_op} {ctx.term_sql(right[1])})"

    def value(side: tuple[object, ...]) -> tuple[str, str]:
        term = side[1]
        assert isinstance(term, str)
        if term.startswith("?"):
            dec = ctx.decoded(ctx.term_sql(term))
            return _NUM.format(t=dec), _LEX.format(t=dec)
        lex = re.match(r'^"(.*)"', term)
        text = lex.group(1) if lex else term
        try:
            number = repr(float(text))
        except ValueError:
            number = "NULL"
        escaped = text.replace("'", "''")
        return number, f"'{escaped}'"

    (ln, ll), (rn, rl) = value(left), value(right)
    sql_op = "<>" if op == "!=" else op
    return f"(CASE WHEN {ln} IS NOT NULL AND {rn} IS NOT NULL THEN {ln} {sql_op} {rn} ELSE {ll} {sql_op} {rl} END)"


def _bind_patterns(ctx: _Ctx, patterns: list[_Pattern], table: str) -> None:
    for pat in patterns:
        alias = f"t{ctx.n}"
        ctx.n += 1
        ctx.froms.append(f"{table} {alias}")
        for col, term in ((0, pat.s), (1, pat.p), (2, pat.o)):
            ref = f"{alias}.c{col}"
            if term.startswith("?"):
                name = term[1:]
                if name in ctx.env:
                    ctx.where.append(f"{ref} = {ctx.env[name]}")
                else:
                    ctx.env[name] = ref
            else:
                ctx.where.append(f"{ref} = {ctx.const(term, predicate=col == 1)}")


def compile_sparql(text: str, engine: Engine) -> tuple[str, list[str], list[str]]:
    """SQL, column names and column kinds for a SPARQL SELECT over ``triple``."""
    sql, names, kinds, _, _ = compile_sparql_plans(text, engine)
    return sql, names, kinds


def compile_sparql_plans(
    text: str, engine: Engine
) -> tuple[str, list[str], list[str], BGPQuery | None, str]:
    """The SQL plan (SQL, names, kinds) and, when the query is in its subset, the index plan.

    The index path takes basic graph patterns with constant predicates, projection,
    ``DISTINCT``, ``GROUP BY`` and ``COUNT``; the last item says why a query is
    outside that subset (empty when it is inside).
    """
    parser = _Parser(text)
    projection, distinct, group, group_by, order, limit, offset = parser.parse()
    table = "r_triple"
    ctx = _Ctx(engine)
    if not group.patterns:
        raise QueryError("the WHERE group needs at least one triple pattern")
    _bind_patterns(ctx, group.patterns, table)
    joins = ""
    for k, opt in enumerate(group.optionals):
        sub = _Ctx(engine, n=ctx.n + 100 * (k + 1))
        _bind_patterns(sub, opt.patterns, table)
        sub.where += [_filter_sql(sub, f) for f in opt.filter_asts]
        shared = [v for v in sub.env if v in ctx.env]
        opt_cols = ", ".join(f"{ref} AS v_{name}" for name, ref in sub.env.items())
        inner = f"SELECT DISTINCT {opt_cols} FROM {', '.join(sub.froms)}"
        if sub.where:
            inner += " WHERE " + " AND ".join(sub.where)
        on = " AND ".join(f"o{k}.v_{v} = {ctx.env[v]}" for v in shared) or "TRUE"
        joins += f" LEFT JOIN ({inner}) o{k} ON {on}"
        for name in sub.env:
            if name not in ctx.env:
                ctx.env[name] = f"o{k}.v_{name}"
    where = ctx.where + [_filter_sql(ctx, f) for f in group.filter_asts]
    if not projection:
        projection = [(name, "", "", False) for name in ctx.env]
        if not projection:
            raise QueryError("SELECT * needs a variable in the WHERE group (ASK is not supported)")
    cols: list[str] = []
    names: list[str] = []
    kinds: list[str] = []
    has_agg = any(agg for _, agg, _, _ in projection)
    for name, agg, arg, agg_distinct in projection:
        names.append(name)
        if not agg:
            if name not in ctx.env:
                raise QueryError(f"variable ?{name} is not bound by any triple pattern")
            if has_agg and name not in group_by:
                raise QueryError(
                    f"?{name} must appear in GROUP BY to be selected with an aggregate"
                )
            cols.append(f"{ctx.env[name]} AS {_col(name)}")
            kinds.append("symbol")
            continue
        d = "DISTINCT " if agg_distinct else ""
        if agg == "COUNT":
            inner = "*" if arg == "*" else f"{d}{ctx.term_sql(arg)}"
            cols.append(f"count({inner})::DOUBLE AS {_col(name)}")
        else:
            num = _NUM.format(t=ctx.decoded(ctx.term_sql(arg)))
            cols.append(f"{agg.lower()}({d}{num})::DOUBLE AS {_col(name)}")
        kinds.append("number")
    sql = f"SELECT {'DISTINCT ' if distinct else ''}{', '.join(cols)} FROM {', '.join(ctx.froms)}{joins}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if group_by:
        for var in group_by:
            if var not in ctx.env:
                raise QueryError(f"GROUP BY ?{var}: variable not bound")
        sql += " GROUP BY " + ", ".join(ctx.env[v] for v in group_by)
    if order:
        keys: list[str] = []
        for var, desc in order:
            direction = "DESC" if desc else "ASC"
            if var in names and kinds[names.index(var)] == "number":
                keys.append(f"{_col(var)} {direction}")
            elif var in ctx.env:
                dec = ctx.decoded(ctx.env[var])
                keys.append(f"{_NUM.format(t=dec)} {direction}")
                keys.append(f"{dec} {direction}")
            else:
                raise QueryError(f"ORDER BY ?{var}: variable not bound")
        sql += " ORDER BY " + ", ".join(keys)
    if limit is not None:
        sql += f" LIMIT {limit}"
    if offset:
        sql += f" OFFSET {offset}"
    why = _index_refusal(group, projection, order, limit, offset)
    if why:
        return sql, names, kinds, None, why
    lookup = engine.dictionary.lookup

    def slot(term: str) -> str | int:
        if term.startswith("?"):
            return term[1:]
        ident = lookup(term)
        return -1 if ident is None else ident

    patterns = tuple((slot(p.s), int(slot(p.p)), slot(p.o)) for p in group.patterns)
    by_name = {name: (agg, arg, agg_distinct) for name, agg, arg, agg_distinct in projection}
    columns = tuple(
        ("count", by_name[n][1].lstrip("?"), by_name[n][2])
        if by_name.get(n, ("", "", False))[0]
        else ("var", n, False)
        for n in names
    )
    bgp = BGPQuery(
        patterns=patterns,
        columns=columns,
        group_by=tuple(group_by),
        grouped=has_agg or bool(group_by),
        distinct=distinct,
    )
    return sql, names, kinds, bgp, ""


def _index_refusal(
    group: _Group,
    projection: list[tuple[str, str, str, bool]],
    order: list[tuple[str, bool]],
    limit: int | None,
    offset: int,
) -> str:
    """Why the index path does not answer a query ("" when it does)."""
    if group.optionals:
        return "OPTIONAL"
    if group.filter_asts:
        return "FILTER"
    if order or limit is not None or offset:
        return "ORDER BY / LIMIT / OFFSET"
    if any(p.p.startswith("?") for p in group.patterns):
        return "a variable in predicate position"
    for _, agg, _, _ in projection:
        if agg and agg != "COUNT":
            return f"the {agg} aggregate"
    return ""


def _col(name: str) -> str:
    return f'"v_{name}"'
