"""The Datalog language: syntax tree, parser, safety check and stratifier.

Syntax (one clause or directive per ``.``-terminated statement)::

    .prefix ex <http://example.org/>          % a prefix for IRI constants
    .decl edge(src, dst, weight: number)      % column types: symbol (default) or number
    .lattice dist(src, dst, d: min)           % last column is lattice-valued
    .latticetype bits "BIGINT" join "a | b" bottom "0"   % a user lattice (leq optional)
    edge(a, b, 1).                            % a fact
    path(X, Y) :- edge(X, Y, _).
    path(X, Z) :- path(X, Y), edge(Y, Z, _).
    lonely(X) :- node(X), !edge(X, _, _).     % stratified negation
    degree(X, count(Y)) :- edge(X, Y, _).     % aggregation in the head
    dist(X, Z, D) :- dist(X, Y, D1), edge(Y, Z, W), D = D1 + W, D < 100.
    ?- path(a, X).                            % a query

Variables start with an upper-case letter or ``_`` (``_`` alone is anonymous).
Constants are lower-case symbols, ``"strings"``, numbers, ``<iri>`` and
``prefix:local`` names (``rdf``, ``rdfs``, ``owl``, ``xsd`` are predeclared).
Comments run from ``%`` or ``//`` to the end of the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from tenfold.semantic_lattice._rdf import OWL, RDF, RDFS, XSD
from tenfold.semantic_lattice._rdf import literal as rdf_literal
from tenfold.semantic_lattice.errors import (
    DatalogSyntaxError,
    SchemaError,
    StratificationError,
    UnsafeRuleError,
)

__all__ = [
    "Agg",
    "Assign",
    "Atom",
    "BinOp",
    "Call",
    "Compare",
    "Const",
    "LatticeType",
    "Program",
    "Query",
    "Rule",
    "Var",
    "parse_program",
    "stratify",
]

ColumnType = Literal["symbol", "number"]
BUILTIN_LATTICES = ("min", "max", "set", "interval")


@dataclass(frozen=True)
class Var:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Const:
    """A constant: ``value`` is an RDF term (str, canonical N-Triples) or a number."""

    value: str | float

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]


Expr = Var | Const | BinOp | Call


@dataclass(frozen=True)
class Agg:
    """A head aggregate such as ``count(Y)``."""

    func: str
    var: Var


@dataclass(frozen=True)
class Atom:
    relation: str
    args: tuple[Var | Const | Agg, ...]
    negated: bool = False
    line: int = 0

    def __str__(self) -> str:
        inner = ", ".join(f"{a.func}({a.var})" if isinstance(a, Agg) else str(a) for a in self.args)
        return f"{'!' if self.negated else ''}{self.relation}({inner})"


@dataclass(frozen=True)
class Compare:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Assign:
    var: Var
    expr: Expr


Literal_ = Atom | Compare | Assign


@dataclass(frozen=True)
class Rule:
    head: Atom
    body: tuple[Literal_, ...]
    line: int = 0
    name: str = ""

    @property
    def positive(self) -> list[Atom]:
        return [b for b in self.body if isinstance(b, Atom) and not b.negated]

    def __str__(self) -> str:
        if not self.body:
            return f"{self.head}."
        parts = [str(b) if isinstance(b, Atom) else _lit_text(b) for b in self.body]
        return f"{self.head} :- {', '.join(parts)}."


def _expr_text(e: Expr) -> str:
    if isinstance(e, BinOp):
        return f"({_expr_text(e.left)} {e.op} {_expr_text(e.right)})"
    if isinstance(e, Call):
        return f"{e.func}({', '.join(_expr_text(a) for a in e.args)})"
    return str(e)


def _lit_text(b: Compare | Assign) -> str:
    if isinstance(b, Compare):
        return f"{_expr_text(b.left)} {b.op} {_expr_text(b.right)}"
    return f"{b.var} = {_expr_text(b.expr)}"


@dataclass(frozen=True)
class Query:
    body: tuple[Literal_, ...]
    line: int = 0


@dataclass(frozen=True)
class LatticeType:
    """A user lattice: SQL type, join of ``a`` and ``b``, optional order test and bottom."""

    name: str
    sql_type: str
    join: str
    leq: str = ""
    bottom: str = ""


@dataclass
class Relation:
    name: str
    columns: list[str]
    types: list[ColumnType]
    lattice: str | None = None  # lattice name of the last column, if any
    declared: bool = False

    @property
    def arity(self) -> int:
        return len(self.columns)


@dataclass
class Program:
    rules: list[Rule] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    relations: dict[str, Relation] = field(default_factory=dict)
    lattice_types: dict[str, LatticeType] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)

    def merge(self, other: Program) -> None:
        """Add another program's rules and declarations (a rule pack plus user rules)."""
        for name, rel in other.relations.items():
            mine = self.relations.get(name)
            if mine is None or (rel.declared and not mine.declared):
                self.relations[name] = rel
            elif (
                rel.declared
                and mine.declared
                and (rel.types, rel.lattice)
                != (
                    mine.types,
                    mine.lattice,
                )
            ):
                raise SchemaError(f"relation {name!r} declared twice with different columns")
        self.lattice_types.update(other.lattice_types)
        self.prefixes.update(other.prefixes)
        self.rules.extend(other.rules)
        self.queries.extend(other.queries)
        check_program(self)


# -- lexer ----------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+|%[^\n]*|//[^\n]*)
  | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<dt>\^\^)
  | (?P<lang>@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<directive>\.[a-z]+)
  | (?P<pname>[a-z][A-Za-z0-9_\-]*:[A-Za-z0-9_\-.]*[A-Za-z0-9_\-])
  | (?P<var>[A-Z_][A-Za-z0-9_]*)
  | (?P<ident>[a-z][A-Za-z0-9_]*)
  | (?P<op>:-|\?-|<=|>=|!=|==|[(),.!=<>+\-*/{}:])
    """,
    re.X,
)


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.toks: list[_Tok] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise self.error(f"unexpected character {text[pos]!r}", pos)
            kind = m.lastgroup or ""
            if kind != "ws":
                self.toks.append(_Tok(kind, m.group(), pos))
            pos = m.end()
        self.toks.append(_Tok("eof", "", len(text)))
        self.i = 0
        self.program = Program(
            prefixes={"rdf": RDF, "rdfs": RDFS, "owl": OWL, "xsd": XSD},
        )
        self.anon = 0

    def error(self, message: str, pos: int | None = None) -> DatalogSyntaxError:
        at = self.toks[self.i].pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        col = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return DatalogSyntaxError(f"{self.source}:{line}:{col}: {message}")

    def line(self) -> int:
        return self.text.count("\n", 0, self.toks[self.i].pos) + 1

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in ("op", "ident"):
            self.i += 1
            return True
        return False

    def expect(self, text: str, what: str = "") -> None:
        if not self.accept(text):
            found = self.tok.text or "end of input"
            raise self.error(f"expected {text!r}{' ' + what if what else ''}, found {found!r}")

    # statements ------------------------------------------------------------------
    def parse(self) -> Program:
        while self.tok.kind != "eof":
            if self.tok.kind == "directive":
                self.directive()
            elif self.accept("?-"):
                line = self.line()
                body = self.body()
                self.expect(".", "to end the query")
                self.program.queries.append(Query(tuple(body), line))
            else:
                self.clause()
        check_program(self.program)
        return self.program

    def directive(self) -> None:
        tok = self.next()
        if tok.text == ".prefix":
            name = self.next()
            if name.kind != "ident":
                raise self.error("expected a prefix name after .prefix", name.pos)
            self.accept(":")
            iri = self.next()
            if iri.kind != "iri":
                raise self.error("expected <iri> after the prefix name", iri.pos)
            self.program.prefixes[name.text] = iri.text[1:-1]
        elif tok.text in (".decl", ".lattice"):
            self.declaration(lattice=tok.text == ".lattice")
        elif tok.text == ".latticetype":
            name = self.next()
            if name.kind != "ident":
                raise self.error("expected a lattice name after .latticetype", name.pos)
            sql_type = self.string_token("the SQL type")
            opts: dict[str, str] = {}
            while self.tok.kind == "ident" and self.tok.text in ("join", "leq", "bottom"):
                key = self.next().text
                opts[key] = self.string_token(key)
            if "join" not in opts:
                raise self.error(f"lattice type {name.text!r} needs a join expression")
            self.program.lattice_types[name.text] = LatticeType(
                name.text, sql_type, opts["join"], opts.get("leq", ""), opts.get("bottom", "")
            )
        else:
            raise self.error(f"unknown directive {tok.text!r}", tok.pos)
        self.accept(".")

    def string_token(self, what: str) -> str:
        tok = self.next()
        if tok.kind != "string":
            raise self.error(f"expected a quoted string for {what}", tok.pos)
        return _unquote(tok.text)

    def declaration(self, *, lattice: bool) -> None:
        name = self.next()
        if name.kind != "ident":
            raise self.error("expected a relation name", name.pos)
        self.expect("(")
        columns: list[str] = []
        types: list[ColumnType] = []
        lat: str | None = None
        while True:
            col = self.next()
            if col.kind not in ("ident", "var"):
                raise self.error("expected a column name", col.pos)
            columns.append(col.text)
            kind = "symbol"
            if self.accept(":"):
                kind_tok = self.next()
                kind = kind_tok.text
            if kind not in ("symbol", "number"):
                if not lattice:
                    raise self.error(f"unknown column type {kind!r} (symbol or number)")
                lat = kind
                types.append("number")
            else:
                types.append(kind)  # type: ignore[arg-type]
            if not self.accept(","):
                break
        self.expect(")")
        if lattice:
            if lat is None:
                raise self.error(
                    f"lattice relation {name.text!r} needs a column typed by a lattice"
                )
            # The lattice column is the last one; its value type follows the lattice.
            types[-1] = "number"
        self.program.relations[name.text] = Relation(name.text, columns, types, lat, True)

    def clause(self) -> None:
        line = self.line()
        head = self.atom(head=True)
        body: list[Literal_] = []
        if self.accept(":-"):
            body = self.body()
        self.expect(".", "to end the clause")
        self.program.rules.append(Rule(head, tuple(body), line))

    def body(self) -> list[Literal_]:
        items = [self.literal()]
        while self.accept(","):
            items.append(self.literal())
        return items

    def literal(self) -> Literal_:
        if self.accept("!") or (self.tok.text == "not" and self.toks[self.i + 1].kind == "ident"):
            if self.tok.text == "not":
                self.i += 1
            atom = self.atom(head=False)
            return Atom(atom.relation, atom.args, True, atom.line)
        if self.tok.kind == "ident" and self.toks[self.i + 1].text == "(":
            return self.atom(head=False)
        left = self.expr()
        op = self.tok.text
        if op not in ("=", "==", "!=", "<", "<=", ">", ">="):
            raise self.error(f"expected an atom or a comparison, found {self.tok.text!r}")
        self.i += 1
        right = self.expr()
        if op == "=" and isinstance(left, Var) and left.name != "_":
            return Assign(left, right)
        return Compare("=" if op == "==" else op, left, right)

    def atom(self, *, head: bool) -> Atom:
        tok = self.next()
        if tok.kind != "ident":
            raise self.error(f"expected a relation name, found {tok.text!r}", tok.pos)
        line = self.text.count("\n", 0, tok.pos) + 1
        self.expect("(", f"after relation name {tok.text!r}")
        args: list[Var | Const | Agg] = []
        if not self.accept(")"):
            while True:
                args.append(self.arg(head))
                if self.accept(")"):
                    break
                self.expect(",", "between arguments")
        return Atom(tok.text, tuple(args), False, line)

    def arg(self, head: bool) -> Var | Const | Agg:
        tok = self.tok
        if head and tok.kind == "ident" and tok.text in _AGGS and self.toks[self.i + 1].text == "(":
            self.i += 2
            var = self.term()
            if not isinstance(var, Var):
                raise self.error(f"{tok.text}(...) takes a variable", tok.pos)
            self.expect(")")
            return Agg(tok.text, var)
        return self.term()

    def term(self) -> Var | Const:
        tok = self.next()
        if tok.kind == "var":
            if tok.text == "_":
                self.anon += 1
                return Var(f"_#{self.anon}")
            return Var(tok.text)
        if tok.kind == "number":
            num = float(tok.text)
            return Const(int(num) if num.is_integer() and "." not in tok.text else num)
        if tok.kind == "string":
            lexical = _unquote(tok.text)
            if self.tok.kind == "lang":
                return Const(rdf_literal(lexical, lang=self.next().text[1:]))
            if self.tok.kind == "dt":
                self.i += 1
                datatype = self.term()
                if not (isinstance(datatype, Const) and str(datatype.value).startswith("<")):
                    raise self.error("expected a datatype IRI after ^^")
                return Const(rdf_literal(lexical, datatype=str(datatype.value)[1:-1]))
            return Const(rdf_literal(lexical))
        if tok.kind == "iri":
            return Const(tok.text)
        if tok.kind == "pname":
            prefix, local = tok.text.split(":", 1)
            if prefix not in self.program.prefixes:
                raise self.error(f"undeclared prefix {prefix!r}", tok.pos)
            return Const(f"<{self.program.prefixes[prefix]}{local}>")
        if tok.kind == "ident":
            return Const(rdf_literal(tok.text))
        raise self.error(f"expected a term, found {tok.text or 'end of input'!r}", tok.pos)

    def expr(self) -> Expr:
        left = self.product()
        while self.tok.text in ("+", "-") and self.tok.kind == "op":
            op = self.next().text
            left = BinOp(op, left, self.product())
        return left

    def product(self) -> Expr:
        left = self.primary()
        while self.tok.text in ("*", "/") and self.tok.kind == "op":
            op = self.next().text
            left = BinOp(op, left, self.primary())
        return left

    def primary(self) -> Expr:
        if self.accept("("):
            inner = self.expr()
            self.expect(")")
            return inner
        if self.tok.kind == "ident" and self.toks[self.i + 1].text == "(":
            func = self.next().text
            if func not in _FUNCS:
                raise self.error(f"unknown function {func!r} (known: {', '.join(sorted(_FUNCS))})")
            self.expect("(")
            args = [self.expr()]
            while self.accept(","):
                args.append(self.expr())
            self.expect(")")
            return Call(func, tuple(args))
        return self.term()


_AGGS = {"count", "sum", "min", "max", "mean"}
_FUNCS = {"min", "max", "abs", "interval", "lo", "hi"}


def _unquote(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), body)


def parse_program(text: str, source: str = "<program>") -> Program:
    """Parse Datalog text; raises :class:`DatalogSyntaxError` (line:column), or the
    safety/schema/stratification errors of :func:`check_program`."""
    return _Parser(text, source).parse()


# -- checks ------------------------------------------------------------------------
def _expr_vars(e: Expr) -> set[str]:
    if isinstance(e, Var):
        return {e.name}
    if isinstance(e, BinOp):
        return _expr_vars(e.left) | _expr_vars(e.right)
    if isinstance(e, Call):
        return set().union(*(_expr_vars(a) for a in e.args))
    return set()


def bound_order(rule: Rule | Query) -> list[Assign]:
    """Assignments in an order where each one's inputs are bound; raise on unsafe variables."""
    where = f"rule at line {rule.line}" if isinstance(rule, Rule) else f"query at line {rule.line}"
    bound: set[str] = set()
    for b in rule.body:
        if isinstance(b, Atom) and not b.negated:
            bound |= {a.name for a in b.args if isinstance(a, Var)}
    pending = [b for b in rule.body if isinstance(b, Assign)]
    order: list[Assign] = []
    while pending:
        ready = [a for a in pending if _expr_vars(a.expr) <= bound]
        if not ready:
            names = sorted(set().union(*(_expr_vars(a.expr) for a in pending)) - bound)
            raise UnsafeRuleError(
                f"{where}: unsafe variable(s) {', '.join(names)}: "
                "not bound by any positive body atom"
            )
        for a in ready:
            pending.remove(a)
            if a.var.name in bound:
                raise UnsafeRuleError(
                    f"{where}: variable {a.var.name} is assigned but already bound "
                    "(use == to compare)"
                )
            bound.add(a.var.name)
            order.append(a)
    needed: set[str] = set()
    for b in rule.body:
        if isinstance(b, Compare):
            needed |= _expr_vars(b.left) | _expr_vars(b.right)
        elif isinstance(b, Atom) and b.negated:
            needed |= {a.name for a in b.args if isinstance(a, Var) and "#" not in a.name}
    if isinstance(rule, Rule):
        for arg in rule.head.args:
            if isinstance(arg, Var):
                needed.add(arg.name)
            elif isinstance(arg, Agg):
                needed.add(arg.var.name)
    unsafe = sorted(needed - bound)
    if unsafe:
        raise UnsafeRuleError(
            f"{where}: unsafe variable(s) {', '.join(unsafe)}: "
            f"not bound by any positive body atom in {rule}"
        )
    return order


def check_program(program: Program) -> None:
    """Infer column types and arities, check safety; raise on the first problem."""
    rels = program.relations

    def relation_for(atom: Atom, where: str) -> Relation:
        rel = rels.get(atom.relation)
        if rel is None:
            rel = Relation(
                atom.relation,
                [f"c{i}" for i in range(len(atom.args))],
                ["symbol"] * len(atom.args),
            )
            rels[atom.relation] = rel
        if rel.arity != len(atom.args):
            raise SchemaError(
                f"{where}: {atom.relation} has {rel.arity} columns, used with {len(atom.args)}"
            )
        return rel

    for rule in program.rules:
        where = f"rule at line {rule.line}"
        relation_for(rule.head, where)
        for b in rule.body:
            if isinstance(b, Atom):
                relation_for(b, where)
        if rule.head.negated:
            raise SchemaError(f"{where}: a head cannot be negated")
        bound_order(rule)
        aggs = [a for a in rule.head.args if isinstance(a, Agg)]
        if aggs and rels[rule.head.relation].lattice:
            raise SchemaError(f"{where}: aggregates go into plain relations, not lattice ones")
        if not rule.body and any(isinstance(a, Var) for a in rule.head.args):
            raise UnsafeRuleError(f"{where}: a fact cannot contain variables: {rule}")
    for query in program.queries:
        for b in query.body:
            if isinstance(b, Atom) and b.relation in rels:
                relation_for(b, f"query at line {query.line}")
        bound_order(query)
    for rel in rels.values():
        if rel.lattice and rel.lattice not in BUILTIN_LATTICES + tuple(program.lattice_types):
            raise SchemaError(f"relation {rel.name!r}: unknown lattice {rel.lattice!r}")
    _infer_types(program)


def _infer_types(program: Program) -> None:
    """Mark columns that receive numbers (constants, aggregates, arithmetic) as ``number``."""
    rels = program.relations
    changed = True
    while changed:
        changed = False
        for rule in program.rules:
            numeric: set[str] = set()
            for b in rule.body:
                if isinstance(b, Atom) and not b.negated:
                    rel = rels[b.relation]
                    for i, a in enumerate(b.args):
                        if isinstance(a, Var) and rel.types[i] == "number":
                            numeric.add(a.name)
                elif isinstance(b, Assign):
                    numeric.add(b.var.name)
            head = rels[rule.head.relation]
            for i, a in enumerate(rule.head.args):
                is_num = (
                    (isinstance(a, Agg) and (a.func != "count" or True))
                    or (isinstance(a, Var) and a.name in numeric)
                    or (isinstance(a, Const) and not isinstance(a.value, str))
                )
                if is_num and head.types[i] != "number":
                    if head.declared:
                        raise SchemaError(
                            f"rule at line {rule.line}: column {head.columns[i]!r} of "
                            f"{head.name} is declared symbol but receives a number"
                        )
                    head.types[i] = "number"
                    changed = True


# -- stratification -----------------------------------------------------------------
def stratify(program: Program) -> list[list[str]]:
    """Group relations into strata, lowest first; raise naming a cycle through negation.

    An edge body -> head is *negative* when the body atom is negated or the head
    aggregates. Lattice relations may recurse through their own merge (monotone),
    so that is not negative. A strongly connected component holding a negative
    edge has no stratification.
    """
    rels = set(program.relations)
    edges: dict[str, set[str]] = {r: set() for r in rels}
    negative: set[tuple[str, str]] = set()
    for rule in program.rules:
        head = rule.head.relation
        aggregating = any(isinstance(a, Agg) for a in rule.head.args)
        for b in rule.body:
            if isinstance(b, Atom):
                edges[b.relation].add(head)
                if b.negated or aggregating:
                    negative.add((b.relation, head))
    sccs = _tarjan(rels, edges)
    comp = {r: i for i, scc in enumerate(sccs) for r in scc}
    for src, dst in sorted(negative):
        if comp[src] == comp[dst]:
            path = _path(dst, src, edges, set(sccs[comp[src]]))
            kind = (
                "negation"
                if any(
                    b.relation == src and b.negated
                    for rule in program.rules
                    if rule.head.relation == dst
                    for b in rule.body
                    if isinstance(b, Atom)
                )
                else "aggregation"
            )
            cycle = " -> ".join([*path, f"!{dst}" if kind == "negation" else f"agg {dst}"])
            raise StratificationError(
                f"cycle through {kind} cannot be stratified: {cycle} "
                f"({dst} depends on {kind} of {src}, which depends on {dst})"
            )
    # Tarjan yields components in reverse topological order (sinks first).
    return [sorted(scc) for scc in reversed(sccs)]


def _tarjan(nodes: Iterable[str], edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, succ = work[-1]
            if succ:
                nxt = succ.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, sorted(edges[nxt])))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                scc: list[str] = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    scc.append(top)
                    if top == node:
                        break
                out.append(scc)
    return out


def _path(start: str, goal: str, edges: dict[str, set[str]], within: set[str]) -> list[str]:
    prev: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            if node == goal:
                path = [node]
                cur = prev[node]
                while cur is not None:
                    path.append(cur)
                    cur = prev[cur]
                return list(reversed(path))
            for succ in sorted(edges[node] & within):
                if succ not in prev:
                    prev[succ] = node
                    nxt.append(succ)
        frontier = nxt
    return [start, goal]
