"""SPARQL 1.1 query parser: text -> a :class:`Query` holding the algebra of section 18.2.

Terms are the store's canonical N-Triples strings (``<iri>``, ``"lex"``,
``"lex"@lang``, ``"lex"^^<dt>``); variables are ``?name``. Blank nodes in a
query pattern and the intermediate nodes of ``[ ]``, ``( ... )`` and property
path sequences become variables no query can name (``?\\x00...``), so they
join like variables and never appear in ``SELECT *``.

Algebra nodes are tuples, the first item naming the operator:

* ``("bgp", patterns)``: each pattern ``(s, p, o)`` or ``("path", s, path, o)``
* ``("join", a, b)``, ``("leftjoin", a, b, expr | None)``, ``("union", a, b)``,
  ``("minus", a, b)``, ``("filter", expr, a)``, ``("extend", a, var, expr)``,
  ``("graph", term, a)``, ``("values", vars, rows)``, ``("sub", Query)``

Expressions: ``("var", name)``, ``("const", term)``, ``("op", name, args)``,
``("fn", name, args)``, ``("exists", negated, algebra)``,
``("agg", name, distinct, arg | None, separator)``.

Anything outside SPARQL 1.1 Query (SERVICE, DESCRIBE) raises
:class:`QueryError` starting ``unsupported:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tenfold.semantic_lattice._rdf import RDF, XSD, escape_lexical, resolve_iri
from tenfold.semantic_lattice.errors import QueryError

__all__ = ["HIDDEN", "Query", "parse_query"]

HIDDEN = "\x00"  # variables whose name starts with it come from blank nodes / paths

_PN_CHARS_BASE = (
    "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff"
    "\u200c-\u200d\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf"
    "\ufdf0-\ufffd\U00010000-\U000effff"
)
_PN_CHARS_U = _PN_CHARS_BASE + "_"
_PN_CHARS = _PN_CHARS_U + "\\-0-9\u00b7\u0300-\u036f\u203f-\u2040"
_PN_PREFIX = f"[{_PN_CHARS_BASE}](?:[{_PN_CHARS}.]*[{_PN_CHARS}])?"
_PLX = r"%[0-9A-Fa-f]{2}|\\[_~.\-!$&'()*+,;=/?#@%]"
_PN_LOCAL = (
    f"(?:[{_PN_CHARS_U}:0-9]|{_PLX})(?:(?:[{_PN_CHARS}.:]|{_PLX})*(?:[{_PN_CHARS}:]|{_PLX}))?"
)
_VARNAME = f"[{_PN_CHARS_U}0-9][{_PN_CHARS_U}0-9\u00b7\u0300-\u036f\u203f-\u2040]*"

_TOKEN = re.compile(
    r"(?P<ws>(?:\s+|\#[^\n]*)+)"
    r"|(?P<iri><(?:[^<>\"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>)"
    f"|(?P<var>[?$]{_VARNAME})"
    r"|(?P<string>'''(?:(?:'|'')?(?:[^'\\]|\\.))*'''|\"\"\"(?:(?:\"|\"\")?(?:[^\"\\]|\\.))*\"\"\""
    r"|'(?:[^'\\\n\r]|\\.)*'|\"(?:[^\"\\\n\r]|\\.)*\")"
    r"|(?P<double>(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)[eE][+-]?[0-9]+)"
    r"|(?P<decimal>[0-9]*\.[0-9]+)"
    r"|(?P<integer>[0-9]+)"
    f"|(?P<bnode>_:[{_PN_CHARS_U}0-9](?:[{_PN_CHARS}.]*[{_PN_CHARS}])?)"
    f"|(?P<pname>(?:{_PN_PREFIX})?:(?:{_PN_LOCAL})?)"
    r"|(?P<lang>@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\^\^|&&|\|\||<=|>=|!=|[{}()\[\].;,*/|^?+\-!=<>])",
    re.S,
)
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.S)
_ECHAR = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_LOCAL_ESC = re.compile(r"\\(.)")

_BUILTINS = {
    "STR", "LANG", "LANGMATCHES", "DATATYPE", "BOUND", "IRI", "URI", "BNODE", "RAND", "ABS",
    "CEIL", "FLOOR", "ROUND", "CONCAT", "STRLEN", "UCASE", "LCASE", "ENCODE_FOR_URI",
    "CONTAINS", "STRSTARTS", "STRENDS", "STRBEFORE", "STRAFTER", "YEAR", "MONTH", "DAY",
    "HOURS", "MINUTES", "SECONDS", "TIMEZONE", "TZ", "NOW", "UUID", "STRUUID", "MD5", "SHA1",
    "SHA256", "SHA384", "SHA512", "COALESCE", "IF", "STRLANG", "STRDT", "SAMETERM", "ISIRI",
    "ISURI", "ISBLANK", "ISLITERAL", "ISNUMERIC", "REGEX", "SUBSTR", "REPLACE",
}  # fmt: skip
_AGGREGATES = {"COUNT", "SUM", "MIN", "MAX", "AVG", "SAMPLE", "GROUP_CONCAT"}
_XSD_INTEGER = f"<{XSD}integer>"
_XSD_DECIMAL = f"<{XSD}decimal>"
_XSD_DOUBLE = f"<{XSD}double>"
_XSD_BOOLEAN = f"<{XSD}boolean>"
_RDF_TYPE = f"<{RDF}type>"
_RDF_FIRST = f"<{RDF}first>"
_RDF_REST = f"<{RDF}rest>"
_RDF_NIL = f"<{RDF}nil>"

Algebra = tuple[Any, ...]
Expr = tuple[Any, ...]


@dataclass
class Query:
    """A parsed query: its form, the WHERE algebra and the solution modifiers."""

    form: str  # SELECT, ASK, CONSTRUCT
    where: Algebra
    projection: list[tuple[str, Expr | None]] | None = None  # None: SELECT *
    distinct: bool = False
    reduced: bool = False
    group_by: list[tuple[Expr, str | None]] | None = None
    having: list[Expr] = field(default_factory=list)
    order_by: list[tuple[Expr, bool]] = field(default_factory=list)  # (expr, descending)
    limit: int | None = None
    offset: int = 0
    values: Algebra | None = None
    template: list[tuple[str, str, str]] = field(default_factory=list)
    from_graphs: list[str] = field(default_factory=list)
    from_named: list[str] = field(default_factory=list)
    uses_aggregates: bool = False
    base: str = ""  # the BASE in force at the end of the prologue

    def projected(self) -> list[str]:
        """The variables of the result, in order."""
        if self.projection is None:
            return self.in_scope()
        return [name for name, _ in self.projection]

    def in_scope(self) -> list[str]:
        """The variables ``SELECT *`` returns, in order of first appearance."""
        return [v for v in _vars_in(self.where) if not v.startswith(HIDDEN)]


def _vars_in(node: Algebra) -> list[str]:
    seen: dict[str, None] = {}

    def walk(n: Algebra) -> None:
        op = n[0]
        if op == "bgp":
            for pat in n[1]:
                items = (pat[1], pat[3]) if pat[0] == "path" else pat
                for t in items:
                    if t.startswith("?"):
                        seen.setdefault(t[1:])
        elif op in ("join", "union", "leftjoin"):
            walk(n[1])
            walk(n[2])
        elif op == "minus":
            walk(n[1])
        elif op == "filter":
            walk(n[2])
        elif op == "extend":
            walk(n[1])
            seen.setdefault(n[2])
        elif op == "graph":
            if n[1].startswith("?"):
                seen.setdefault(n[1][1:])
            walk(n[2])
        elif op == "values":
            for v in n[1]:
                seen.setdefault(v)
        elif op == "sub":
            q: Query = n[1]
            for v in q.projected():
                seen.setdefault(v)

    walk(node)
    return list(seen)


def _unescape_string(raw: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) or m.group(2):
            code = int(m.group(1) or m.group(2), 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise QueryError(f"escape \\u{code:X} is not a Unicode scalar value")
            return chr(code)
        ch = m.group(3)
        if ch not in _ECHAR:
            raise QueryError(f"bad escape \\{ch} in a string")
        return _ECHAR[ch]

    return _ESCAPE.sub(sub, raw)


def literal_term(lexical: str, datatype: str | None = None, lang: str | None = None) -> str:
    body = f'"{escape_lexical(lexical)}"'
    if lang:
        return f"{body}@{lang.lower()}"  # tags compare without case: one spelling
    if datatype and datatype != f"<{XSD}string>":
        return f"{body}^^{datatype}"
    return body


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


class _Parser:
    def __init__(self, text: str, base: str) -> None:
        self.text = text
        self.base = base
        self.prefixes: dict[str, str] = {}
        self.toks: list[_Tok] = []
        self.fresh = 0
        self.bnode_labels: set[str] = set()
        self.closed_labels: set[str] = set()
        self.aggregates_seen = False
        pos = 0
        n = len(text)
        while pos < n:
            m = _TOKEN.match(text, pos)
            if not m:
                raise self.error(f"unexpected character {text[pos]!r}", pos)
            kind = m.lastgroup or ""
            if kind != "ws":
                self.toks.append(_Tok(kind, m.group(), pos))
            pos = m.end()
        self.toks.append(_Tok("eof", "", n))
        self.i = 0

    # -- token helpers -----------------------------------------------------------
    def error(self, message: str, pos: int | None = None) -> QueryError:
        if pos is None:
            pos = self.toks[self.i].pos if self.i < len(self.toks) else len(self.text)
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return QueryError(f"<query>:{line}:{col}: {message}")

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def at_word(self, *words: str) -> bool:
        t = self.tok
        return t.kind == "word" and t.text.upper() in words

    def word(self, *words: str) -> bool:
        if self.at_word(*words):
            self.i += 1
            return True
        return False

    def expect_word(self, w: str) -> None:
        if not self.word(w):
            raise self.error(f"expected {w}, found {self.tok.text or 'end of query'!r}")

    def at_op(self, text: str) -> bool:
        t = self.tok
        return t.kind == "op" and t.text == text

    def op(self, text: str) -> bool:
        if self.at_op(text):
            self.i += 1
            return True
        return False

    def expect_op(self, text: str) -> None:
        if not self.op(text):
            raise self.error(f"expected {text!r}, found {self.tok.text or 'end of query'!r}")

    def new_var(self) -> str:
        self.fresh += 1
        return f"?{HIDDEN}{self.fresh}"

    # -- terms -------------------------------------------------------------------
    def iri_of(self, t: _Tok) -> str:
        if t.kind == "iri":
            raw = _unescape_string(t.text[1:-1]) if "\\" in t.text else t.text[1:-1]
            return f"<{resolve_iri(self.base, raw)}>"
        prefix, _, local = t.text.partition(":")
        if prefix not in self.prefixes:
            raise self.error(f"unknown prefix {prefix}:", t.pos)
        local = _LOCAL_ESC.sub(r"\1", local)
        return f"<{self.prefixes[prefix]}{local}>"

    def at_iri(self) -> bool:
        return self.tok.kind in ("iri", "pname")

    def iri(self) -> str:
        t = self.tok
        if t.kind not in ("iri", "pname"):
            raise self.error(f"expected an IRI, found {t.text or 'end of query'!r}")
        self.i += 1
        return self.iri_of(t)

    def string(self) -> str:
        t = self.tok
        if t.kind != "string":
            raise self.error(f"expected a string, found {t.text or 'end of query'!r}")
        self.i += 1
        q = 3 if t.text[:3] in ('"""', "'''") else 1
        return _unescape_string(t.text[q:-q])

    def rdf_literal(self) -> str:
        lexical = self.string()
        if self.tok.kind == "lang":
            self.i += 1
            return literal_term(lexical, lang=self.toks[self.i - 1].text[1:])
        if self.op("^^"):
            return literal_term(lexical, self.iri())
        return literal_term(lexical)

    def numeric(self, sign: str = "") -> str:
        t = self.tok
        self.i += 1
        dt = {"integer": _XSD_INTEGER, "decimal": _XSD_DECIMAL, "double": _XSD_DOUBLE}[t.kind]
        return literal_term(sign + t.text, dt)

    def at_numeric(self) -> bool:
        return self.tok.kind in ("integer", "decimal", "double")

    def blank(self, label: str) -> str:
        if label in self.closed_labels:
            raise self.error(f"blank node {label} used in two basic graph patterns")
        self.bnode_labels.add(label)
        return f"?{HIDDEN}b{label[2:]}"

    def var_or_term(self, *, allow_blank: bool = True) -> str:
        t = self.tok
        if t.kind == "var":
            self.i += 1
            return "?" + t.text[1:]
        if t.kind in ("iri", "pname"):
            self.i += 1
            return self.iri_of(t)
        if t.kind == "string":
            return self.rdf_literal()
        if self.at_numeric():
            return self.numeric()
        if (
            t.kind == "op"
            and t.text in ("+", "-")
            and self.peek().kind
            in (
                "integer",
                "decimal",
                "double",
            )
        ):
            self.i += 1
            return self.numeric("-" if t.text == "-" else "+")
        if t.kind == "word" and t.text.lower() in ("true", "false"):
            self.i += 1
            return literal_term(t.text.lower(), _XSD_BOOLEAN)
        if t.kind == "bnode":
            if not allow_blank:
                raise self.error("a blank node cannot stand here")
            self.i += 1
            return self.blank(t.text)
        if t.kind == "op" and t.text == "[" and self.peek().text == "]":
            self.i += 2
            return self.new_var()
        if t.kind == "op" and t.text == "(" and self.peek().text == ")":
            self.i += 2
            return _RDF_NIL
        raise self.error(f"expected a term, found {t.text or 'end of query'!r}")

    # -- query -------------------------------------------------------------------
    def parse(self) -> Query:
        self.prologue()
        if self.word("SELECT"):
            q = self.select_rest()
        elif self.word("ASK"):
            q = Query("ASK", ("bgp", []))
            self.dataset(q)
            q.where = self.where_clause()
            self.solution_modifiers(q)
        elif self.word("CONSTRUCT"):
            q = self.construct_rest()
        elif self.at_word("DESCRIBE"):
            raise self.error("unsupported: DESCRIBE")
        else:
            raise self.error(f"expected SELECT, ASK or CONSTRUCT, found {self.tok.text!r}")
        if self.word("VALUES"):
            q.values = self.data_block()
        if self.tok.kind != "eof":
            raise self.error(f"unexpected {self.tok.text!r} after the query")
        q.uses_aggregates = q.uses_aggregates or self.aggregates_seen
        q.base = self.base
        _check_query(q, self)
        return q

    def prologue(self) -> None:
        while True:
            if self.word("BASE"):
                t = self.tok
                if t.kind != "iri":
                    raise self.error("expected <iri> after BASE")
                self.i += 1
                self.base = self.iri_of(t)[1:-1]
            elif self.word("PREFIX"):
                name = self.tok
                if name.kind != "pname" or not name.text.endswith(":") or name.text.count(":") > 1:
                    raise self.error("expected a prefix name such as ex: after PREFIX")
                self.i += 1
                t = self.tok
                if t.kind != "iri":
                    raise self.error("expected <iri> after the prefix name")
                self.i += 1
                self.prefixes[name.text[:-1]] = self.iri_of(t)[1:-1]  # resolved against BASE
            else:
                return

    def select_rest(self) -> Query:
        q = Query("SELECT", ("bgp", []))
        q.distinct = self.word("DISTINCT")
        if not q.distinct:
            q.reduced = self.word("REDUCED")
        if self.op("*"):
            q.projection = None
        else:
            q.projection = []
            while True:
                if self.tok.kind == "var":
                    q.projection.append((self.tok.text[1:], None))
                    self.i += 1
                elif self.op("("):
                    e = self.expression()
                    self.expect_word("AS")
                    v = self.tok
                    if v.kind != "var":
                        raise self.error("expected ?var after AS")
                    self.i += 1
                    self.expect_op(")")
                    q.projection.append((v.text[1:], e))
                else:
                    break
            if not q.projection:
                raise self.error("expected variables, (expression AS ?var) or * after SELECT")
        self.dataset(q)
        q.where = self.where_clause()
        self.solution_modifiers(q)
        return q

    def dataset(self, q: Query) -> None:
        while self.word("FROM"):
            if self.word("NAMED"):
                q.from_named.append(self.iri())
            else:
                q.from_graphs.append(self.iri())

    def where_clause(self) -> Algebra:
        self.word("WHERE")
        return self.group_graph_pattern()

    def construct_rest(self) -> Query:
        q = Query("CONSTRUCT", ("bgp", []))
        if self.at_op("{"):
            self.i += 1
            q.template = self.template_triples()
            self.dataset(q)
            q.where = self.where_clause()
        else:
            self.dataset(q)
            self.expect_word("WHERE")
            self.expect_op("{")
            q.template = self.template_triples()
            if any(isinstance(t, tuple) and t[0] == "path" for t in q.template):
                raise self.error("CONSTRUCT WHERE takes triples without property paths")
            q.where = ("bgp", list(q.template))
        self.solution_modifiers(q)
        return q

    def template_triples(self) -> list[tuple[str, str, str]]:
        out: list[Any] = []
        while not self.op("}"):
            if self.tok.kind == "eof":
                raise self.error("unterminated template, expected '}'")
            self.triples_same_subject(out, paths=False)
            if not self.op("."):
                self.expect_op("}")
                break
        return out

    def solution_modifiers(self, q: Query) -> None:
        if self.word("GROUP"):
            self.expect_word("BY")
            q.group_by = []
            while True:
                if self.tok.kind == "var":
                    q.group_by.append((("var", self.tok.text[1:]), None))
                    self.i += 1
                elif self.op("("):
                    e = self.expression()
                    alias = None
                    if self.word("AS"):
                        v = self.tok
                        if v.kind != "var":
                            raise self.error("expected ?var after AS")
                        self.i += 1
                        alias = v.text[1:]
                    self.expect_op(")")
                    q.group_by.append((e, alias))
                elif self.at_builtin() or self.at_iri():
                    q.group_by.append((self.primary(), None))
                else:
                    break
            if not q.group_by:
                raise self.error("expected a group condition after GROUP BY")
        if self.word("HAVING"):
            while True:
                if self.at_op("("):
                    self.i += 1
                    q.having.append(self.expression())
                    self.expect_op(")")
                elif self.at_builtin() or self.at_iri():
                    q.having.append(self.primary())
                else:
                    break
            if not q.having:
                raise self.error("expected a constraint after HAVING")
            q.uses_aggregates = True
        if self.word("ORDER"):
            self.expect_word("BY")
            while True:
                if self.at_word("ASC", "DESC"):
                    desc = self.tok.text.upper() == "DESC"
                    self.i += 1
                    self.expect_op("(")
                    e = self.expression()
                    self.expect_op(")")
                    q.order_by.append((e, desc))
                elif self.tok.kind == "var":
                    q.order_by.append((("var", self.tok.text[1:]), False))
                    self.i += 1
                elif self.at_op("("):
                    self.i += 1
                    q.order_by.append((self.expression(), False))
                    self.expect_op(")")
                elif self.at_builtin() or self.at_iri():
                    q.order_by.append((self.primary(), False))
                else:
                    break
            if not q.order_by:
                raise self.error("expected an order condition after ORDER BY")
        for _ in range(2):
            if self.word("LIMIT"):
                q.limit = self.integer()
            elif self.word("OFFSET"):
                q.offset = self.integer()

    def integer(self) -> int:
        t = self.tok
        if t.kind != "integer":
            raise self.error(f"expected an integer, found {t.text or 'end of query'!r}")
        self.i += 1
        return int(t.text)

    def data_block(self) -> Algebra:
        rows: list[tuple[str | None, ...]] = []
        if self.tok.kind == "var":
            names = [self.tok.text[1:]]
            self.i += 1
            self.expect_op("{")
            while not self.op("}"):
                rows.append((self.data_value(),))
            return ("values", names, rows)
        self.expect_op("(")
        names = []
        while self.tok.kind == "var":
            names.append(self.tok.text[1:])
            self.i += 1
        self.expect_op(")")
        self.expect_op("{")
        while not self.op("}"):
            self.expect_op("(")
            row: list[str | None] = []
            while not self.op(")"):
                row.append(self.data_value())
            if len(row) != len(names):
                raise self.error(f"VALUES row has {len(row)} values for {len(names)} variables")
            rows.append(tuple(row))
        return ("values", names, rows)

    def data_value(self) -> str | None:
        if self.word("UNDEF"):
            return None
        if self.tok.kind in ("var", "bnode") or self.at_op("["):
            raise self.error("VALUES takes IRIs, literals and UNDEF only")
        return self.var_or_term()

    # -- group graph patterns -------------------------------------------------------
    def group_graph_pattern(self) -> Algebra:
        self.expect_op("{")
        if self.at_word("SELECT"):
            self.i += 1
            saved = self.aggregates_seen
            self.aggregates_seen = False
            sub = self.select_rest()
            sub.uses_aggregates = sub.uses_aggregates or self.aggregates_seen
            self.aggregates_seen = saved
            if self.word("VALUES"):
                sub.values = self.data_block()
            _check_query(sub, self)
            self.expect_op("}")
            return ("sub", sub)
        labels_before = set(self.bnode_labels)
        g: Algebra = ("bgp", [])
        filters: list[Expr] = []
        block: list[Any] = []

        def flush() -> None:
            nonlocal g, block
            if block:
                g = _join(g, ("bgp", block))
                block = []
            self.closed_labels |= self.bnode_labels - labels_before

        while True:
            t = self.tok
            if t.kind == "eof":
                raise self.error("unterminated group, expected '}'")
            if self.op("}"):
                break
            if self.word("FILTER"):
                filters.append(self.constraint())
                self.op(".")
                continue
            if self.word("OPTIONAL"):
                flush()
                inner = self.group_graph_pattern()
                if inner[0] == "filter":
                    g = ("leftjoin", g, inner[2], inner[1])
                else:
                    g = ("leftjoin", g, inner, None)
            elif self.word("MINUS"):
                flush()
                g = ("minus", g, self.group_graph_pattern())
            elif self.word("GRAPH"):
                flush()
                name = self.var_or_term(allow_blank=False)
                g = _join(g, ("graph", name, self.group_graph_pattern()))
            elif self.at_word("SERVICE"):
                raise self.error("unsupported: SERVICE (federated query)")
            elif self.word("BIND"):
                flush()
                self.expect_op("(")
                e = self.expression()
                self.expect_word("AS")
                v = self.tok
                if v.kind != "var":
                    raise self.error("expected ?var after AS")
                self.i += 1
                self.expect_op(")")
                name = v.text[1:]
                if name in _vars_in(g):
                    raise self.error(f"BIND: ?{name} is already in scope")
                g = ("extend", g, name, e)
            elif self.word("VALUES"):
                flush()
                g = _join(g, self.data_block())
            elif self.at_op("{"):
                flush()
                part = self.group_graph_pattern()
                while self.word("UNION"):
                    part = ("union", part, self.group_graph_pattern())
                g = _join(g, part)
            else:
                self.triples_same_subject(block, paths=True)
                if not self.op(".") and (
                    not self.at_op("}")
                    and not self.at_word(
                        "FILTER", "OPTIONAL", "MINUS", "GRAPH", "BIND", "VALUES", "SERVICE"
                    )
                    and not self.at_op("{")
                ):
                    raise self.error(
                        f"expected '.' or '}}' after a triple pattern, found {self.tok.text!r}"
                    )
                continue
            self.op(".")
        flush()
        for f in filters:
            g = ("filter", f, g)
        return g

    def constraint(self) -> Expr:
        if self.at_op("("):
            self.i += 1
            e = self.expression()
            self.expect_op(")")
            return e
        if self.at_builtin() or self.at_iri():
            return self.primary()
        raise self.error(f"expected a constraint after FILTER, found {self.tok.text!r}")

    # -- triples ------------------------------------------------------------------
    def triples_same_subject(self, out: list[Any], *, paths: bool) -> None:
        t = self.tok
        if t.kind == "op" and t.text == "[" and self.peek().text != "]":
            self.i += 1
            subject = self.new_var()
            self.property_list(subject, out, paths=paths)
            self.expect_op("]")
            if self.at_op(".") or self.at_op("}"):
                return
            self.property_list(subject, out, paths=paths)
            return
        if t.kind == "op" and t.text == "(" and self.peek().text != ")":
            subject = self.collection(out, paths=paths)
            if self.at_op(".") or self.at_op("}"):
                return
            self.property_list(subject, out, paths=paths)
            return
        subject = self.var_or_term()
        self.property_list(subject, out, paths=paths, required=True)

    def property_list(
        self, subject: str, out: list[Any], *, paths: bool, required: bool = True
    ) -> None:
        while True:
            if self.tok.kind == "var":
                verb: Any = "?" + self.tok.text[1:]
                self.i += 1
            elif paths:
                verb = self.path()
            elif self.tok.kind == "word" and self.tok.text == "a":
                self.i += 1
                verb = _RDF_TYPE
            else:
                verb = self.iri()
            while True:
                obj = self.graph_node(out, paths=paths)
                self.add_pattern(subject, verb, obj, out)
                if not self.op(","):
                    break
            if not self.op(";"):
                return
            while self.op(";"):
                pass
            if self.at_op(".") or self.at_op("]") or self.at_op("}") or self.tok.kind == "eof":
                return

    def graph_node(self, out: list[Any], *, paths: bool) -> str:
        t = self.tok
        if t.kind == "op" and t.text == "[" and self.peek().text != "]":
            self.i += 1
            node = self.new_var()
            self.property_list(node, out, paths=paths)
            self.expect_op("]")
            return node
        if t.kind == "op" and t.text == "(" and self.peek().text != ")":
            return self.collection(out, paths=paths)
        return self.var_or_term()

    def collection(self, out: list[Any], *, paths: bool) -> str:
        self.expect_op("(")
        items: list[str] = []
        while not self.op(")"):
            if self.tok.kind == "eof":
                raise self.error("unterminated collection, expected ')'")
            items.append(self.graph_node(out, paths=paths))
        head = self.new_var()
        node = head
        for k, item in enumerate(items):
            out.append((node, _RDF_FIRST, item))
            nxt = self.new_var() if k + 1 < len(items) else _RDF_NIL
            out.append((node, _RDF_REST, nxt))
            node = nxt
        return head

    def add_pattern(self, s: str, verb: Any, o: str, out: list[Any]) -> None:
        if isinstance(verb, str):
            out.append((s, verb, o))
            return
        # Translate simple paths (section 18.2.2.4): links, inverses and sequences become triples.
        kind = verb[0]
        if kind == "link":
            out.append((s, verb[1], o))
        elif kind == "inv" and verb[1][0] == "link":
            out.append((o, verb[1][1], s))
        elif kind == "seq":
            mid = self.new_var()
            self.add_pattern(s, verb[1], mid, out)
            self.add_pattern(mid, verb[2], o, out)
        else:
            out.append(("path", s, verb, o))

    # -- property paths ------------------------------------------------------------
    def path(self) -> Any:
        first = self.path_sequence()
        while self.op("|"):
            first = ("alt", first, self.path_sequence())
        return first

    def path_sequence(self) -> Any:
        first = self.path_elt_or_inverse()
        while self.op("/"):
            first = ("seq", first, self.path_elt_or_inverse())
        return first

    def path_elt_or_inverse(self) -> Any:
        if self.op("^"):
            return _inverse(self.path_elt())
        return self.path_elt()

    def path_elt(self) -> Any:
        prim = self.path_primary()
        t = self.tok
        if t.kind == "op" and t.text in ("?", "*", "+"):
            self.i += 1
            return {"?": "opt", "*": "star", "+": "plus"}[t.text], prim
        if t.kind == "op" and t.text == "{":
            raise self.error("unsupported: property path repetition {n,m} (not in SPARQL 1.1)")
        return prim

    def path_primary(self) -> Any:
        if self.tok.kind == "word" and self.tok.text == "a":
            self.i += 1
            return ("link", _RDF_TYPE)
        if self.at_iri():
            return ("link", self.iri())
        if self.op("!"):
            fwd: list[str] = []
            inv: list[str] = []

            def one() -> None:
                neg = self.op("^")
                if self.tok.kind == "word" and self.tok.text == "a":
                    self.i += 1
                    iri = _RDF_TYPE
                else:
                    iri = self.iri()
                (inv if neg else fwd).append(iri)

            if self.op("("):
                if not self.op(")"):
                    one()
                    while self.op("|"):
                        one()
                    self.expect_op(")")
            else:
                one()
            return ("nps", frozenset(fwd), frozenset(inv), bool(fwd) or not inv, bool(inv))
        if self.op("("):
            p = self.path()
            self.expect_op(")")
            return p
        raise self.error(f"expected a property path, found {self.tok.text or 'end of query'!r}")

    # -- expressions ----------------------------------------------------------------
    def expression(self) -> Expr:
        left = self.and_expr()
        while self.op("||"):
            left = ("op", "||", (left, self.and_expr()))
        return left

    def and_expr(self) -> Expr:
        left = self.relational()
        while self.op("&&"):
            left = ("op", "&&", (left, self.relational()))
        return left

    def relational(self) -> Expr:
        left = self.additive()
        t = self.tok
        if t.kind == "op" and t.text in ("=", "!=", "<", ">", "<=", ">="):
            self.i += 1
            return ("op", t.text, (left, self.additive()))
        if self.at_word("IN"):
            self.i += 1
            return ("op", "IN", (left, *self.expression_list()))
        if self.at_word("NOT") and self.peek().kind == "word" and self.peek().text.upper() == "IN":
            self.i += 2
            return ("op", "NOT IN", (left, *self.expression_list()))
        return left

    def expression_list(self) -> list[Expr]:
        self.expect_op("(")
        items: list[Expr] = []
        if self.op(")"):
            return items
        items.append(self.expression())
        while self.op(","):
            items.append(self.expression())
        self.expect_op(")")
        return items

    def additive(self) -> Expr:
        left = self.multiplicative()
        while True:
            t = self.tok
            if t.kind == "op" and t.text in ("+", "-"):
                self.i += 1
                left = ("op", t.text, (left, self.multiplicative()))
            elif False:
                break
            else:
                return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while True:
            t = self.tok
            if t.kind == "op" and t.text in ("*", "/"):
                self.i += 1
                left = ("op", t.text, (left, self.unary()))
            else:
                return left

    def unary(self) -> Expr:
        if self.op("!"):
            return ("op", "!", (self.unary(),))
        if self.op("-"):
            return ("op", "neg", (self.unary(),))
        if self.op("+"):
            return ("op", "pos", (self.unary(),))
        return self.primary()

    def at_builtin(self) -> bool:
        t = self.tok
        if t.kind != "word":
            return False
        up = t.text.upper()
        return up in _BUILTINS or up in _AGGREGATES or up in ("EXISTS", "NOT")

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "op" and t.text == "(":
            self.i += 1
            e = self.expression()
            self.expect_op(")")
            return e
        if t.kind == "var":
            self.i += 1
            return ("var", t.text[1:])
        if t.kind in ("iri", "pname"):
            self.i += 1
            iri = self.iri_of(t)
            if self.at_op("(") or (self.tok.kind == "op" and self.tok.text == "("):
                args = self.arg_list()
                return ("fn", iri, tuple(args))
            return ("const", iri)
        if t.kind == "word":
            up = t.text.upper()
            if up in ("TRUE", "FALSE"):
                self.i += 1
                return ("const", literal_term(up.lower(), _XSD_BOOLEAN))
            if up == "NOT" and self.peek().kind == "word" and self.peek().text.upper() == "EXISTS":
                self.i += 2
                return ("exists", True, self.group_graph_pattern())
            if up == "EXISTS":
                self.i += 1
                return ("exists", False, self.group_graph_pattern())
            if up in _AGGREGATES:
                return self.aggregate()
            if up in _BUILTINS:
                self.i += 1
                if up in ("RAND", "NOW", "UUID", "STRUUID"):
                    self.expect_op("(")
                    self.expect_op(")")
                    return ("fn", up, ())
                if up == "BNODE" and self.at_op("(") and self.peek().text == ")":
                    self.i += 2
                    return ("fn", up, ())
                return ("fn", up, tuple(self.arg_list()))
            raise self.error(f"unsupported: function {t.text}")
        if t.kind == "string" or t.kind in ("integer", "decimal", "double"):
            return ("const", self.var_or_term())
        raise self.error(f"expected an expression, found {t.text or 'end of query'!r}")

    def arg_list(self) -> list[Expr]:
        self.expect_op("(")
        args: list[Expr] = []
        if self.op(")"):
            return args
        self.word("DISTINCT")  # only meaningful for aggregates; custom functions ignore it
        args.append(self.expression())
        while self.op(","):
            args.append(self.expression())
        self.expect_op(")")
        return args

    def aggregate(self) -> Expr:
        name = self.tok.text.upper()
        self.i += 1
        self.aggregates_seen = True
        self.expect_op("(")
        distinct = self.word("DISTINCT")
        arg: Expr | None
        arg = None if name == "COUNT" and self.op("*") else self.expression()
        sep = " "
        if name == "GROUP_CONCAT" and self.op(";"):
            self.expect_word("SEPARATOR")
            self.expect_op("=")
            sep = self.string()
        self.expect_op(")")
        return ("agg", name, distinct, arg, sep)


def _inverse(p: Any) -> Any:
    return ("inv", p)


def _join(a: Algebra, b: Algebra) -> Algebra:
    if a == ("bgp", []):
        return b
    if b == ("bgp", []):
        return a
    if a[0] == "bgp" and b[0] == "bgp":
        return ("bgp", list(a[1]) + list(b[1]))
    return ("join", a, b)


def _has_agg(e: Expr | None) -> bool:
    if e is None:
        return False
    if e[0] == "agg":
        return True
    if e[0] in ("op", "fn"):
        return any(_has_agg(a) for a in e[2])
    return False


def _expr_vars(e: Expr | None) -> set[str]:
    if e is None:
        return set()
    if e[0] == "var":
        return {e[1]}
    if e[0] in ("op", "fn"):
        out: set[str] = set()
        for a in e[2]:
            out |= _expr_vars(a)
        return out
    if e[0] == "agg":
        return set()
    return set()


def _check_query(q: Query, p: _Parser) -> None:
    """The static rules of section 18.2.4.1 (projection and grouping)."""
    grouped = (
        q.group_by is not None
        or q.uses_aggregates
        or any(_has_agg(e) for _, e in q.projection or ())
    )
    if grouped and q.projection is None:
        raise p.error("SELECT * is not allowed with GROUP BY or aggregates")
    if q.projection is not None:
        seen: set[str] = set()
        in_scope = set(q.in_scope())
        for name, e in q.projection:
            if e is not None and (name in seen or name in in_scope):
                raise p.error(f"(... AS ?{name}): the variable is already in scope")
            seen.add(name)
        if grouped:
            keys: set[str] = set()
            for e, alias in q.group_by or ():
                if alias:
                    keys.add(alias)
                elif e[0] == "var":
                    keys.add(e[1])
            assigned: set[str] = set()
            for name, e in q.projection:
                if e is None:
                    if name not in keys:
                        raise p.error(f"?{name} is selected but neither grouped nor aggregated")
                else:
                    free = _free_outside_aggs(e)
                    bad = sorted(free - keys - assigned)
                    if bad:
                        raise p.error(f"?{bad[0]} is used outside an aggregate but not grouped")
                assigned.add(name)


def _free_outside_aggs(e: Expr) -> set[str]:
    if e[0] == "var":
        return {e[1]}
    if e[0] in ("op", "fn"):
        out: set[str] = set()
        for a in e[2]:
            out |= _free_outside_aggs(a)
        return out
    return set()


def parse_query(text: str, *, base: str = "") -> Query:
    """Parse a SPARQL 1.1 query; raises :class:`QueryError` naming line:column."""
    return _Parser(text, base).parse()
