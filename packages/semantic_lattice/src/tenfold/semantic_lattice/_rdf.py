"""N-Triples and Turtle readers (W3C RDF 1.1) producing terms in canonical N-Triples form.

A term is a ``str`` in the N-Triples syntax that names it exactly once:
``<http://x/a>`` for an IRI, ``_:b3`` for a blank node, ``"lex"``,
``"lex"@en`` or ``"lex"^^<datatype>`` for a literal (``xsd:string`` literals are
written without their datatype, since RDF 1.1 makes the two the same term). The
lexical form escapes only ``\\``, ``"``, newline and carriage return. Holding
terms as these strings keeps the dictionary encoding a plain string -> int map.

Both readers report errors as ``source:line:column: message``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from tenfold.semantic_lattice.errors import RDFSyntaxError

__all__ = [
    "OWL",
    "RDF",
    "RDFS",
    "XSD",
    "Triple",
    "escape_lexical",
    "graphs_isomorphic",
    "is_literal",
    "literal",
    "parse_ntriples",
    "parse_turtle",
    "resolve_iri",
    "serialize_ntriples",
]

Triple = tuple[str, str, str]

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
OWL = "http://www.w3.org/2002/07/owl#"
_XSD_STRING = f"<{XSD}string>"
_RDF_FIRST = f"<{RDF}first>"
_RDF_REST = f"<{RDF}rest>"
_RDF_NIL = f"<{RDF}nil>"
_RDF_TYPE = f"<{RDF}type>"

# -- character classes from the Turtle grammar (section 6.5) -------------------
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

_WS_COMMENT = re.compile(r"(?:[ \t\r\n]+|#[^\r\n]*)*")
_IRIREF = re.compile(r"<((?:[^\x00-\x20<>\"{}|^`\\]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*)>")
_PNAME = re.compile(f"({_PN_PREFIX})?:({_PN_LOCAL})?")
_BNODE = re.compile(f"_:((?:[{_PN_CHARS_U}0-9])(?:[{_PN_CHARS}.]*[{_PN_CHARS}])?)")
_LANGTAG = re.compile(r"@([a-zA-Z]+(?:-[a-zA-Z0-9]+)*)")
_NUMBER = re.compile(
    r"[+-]?(?:(?P<double>(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)[eE][+-]?[0-9]+)"
    r"|(?P<decimal>[0-9]*\.[0-9]+)|(?P<integer>[0-9]+))"
)
_STRING_FORMS = (
    ('"""', re.compile(r'"""((?:(?:"|"")?(?:[^"\\]|\\.))*)"""', re.S)),
    ("'''", re.compile(r"'''((?:(?:'|'')?(?:[^'\\]|\\.))*)'''", re.S)),
    ('"', re.compile(r'"((?:[^"\\\n\r]|\\.)*)"')),
    ("'", re.compile(r"'((?:[^'\\\n\r]|\\.)*)'")),
)
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.S)
_ECHAR = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_LOCAL_ESC = re.compile(r"\\(.)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_KEYWORD = re.compile(r"(@prefix\b|@base\b|(?i:PREFIX|BASE)(?=[ \t\r\n<])|true\b|false\b)")


def escape_lexical(text: str) -> str:
    """Escape a lexical form for the canonical N-Triples term."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def literal(lexical: str, datatype: str | None = None, lang: str | None = None) -> str:
    """The canonical term of a literal (``datatype`` an IRI without brackets)."""
    body = f'"{escape_lexical(lexical)}"'
    if lang:
        return f"{body}@{lang}"
    if datatype and datatype != XSD + "string":
        return f"{body}^^<{datatype}>"
    return body


def is_literal(term: str) -> bool:
    return term.startswith('"')


def serialize_ntriples(triples: Iterator[Triple] | list[Triple]) -> str:
    """Write triples as an N-Triples document (terms are already in that syntax)."""
    return "".join(f"{s} {p} {o} .\n" for s, p, o in triples)


# -- RFC 3986 reference resolution (section 5.2) --------------------------------
_URI = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.S)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./") or path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            start = 1 if path.startswith("/") else 0
            cut = path.find("/", start)
            if cut < 0:
                cut = len(path)
            out.append(path[:cut])
            path = path[cut:]
    return "".join(out)


def resolve_iri(base: str, ref: str) -> str:
    """Resolve ``ref`` against ``base`` as RFC 3986 section 5.2 specifies."""
    rm = _URI.match(ref)
    assert rm is not None
    if rm.group(1) is not None:
        # An absolute IRI is kept as written: RFC 3986 would drop its dot segments, but
        # an IRI is an identifier here, and rewriting it would change which node it names.
        return ref
    if not base:
        return ref
    bm = _URI.match(base)
    assert bm is not None
    b_scheme, b_auth, b_path, b_query, _ = bm.groups()
    _, r_auth, r_path, r_query, r_frag = rm.groups()
    if r_auth is not None:
        auth, path, query = r_auth, _remove_dot_segments(r_path), r_query
    elif r_path == "":
        auth, path = b_auth, b_path
        query = r_query if r_query is not None else b_query
    else:
        if r_path.startswith("/"):
            path = _remove_dot_segments(r_path)
        else:
            if b_auth is not None and b_path == "":
                merged = "/" + r_path
            else:
                merged = b_path[: b_path.rfind("/") + 1] + r_path
            path = _remove_dot_segments(merged)
        auth, query = b_auth, r_query
    return _recompose(b_scheme, auth, path, query, r_frag)


def _recompose(
    scheme: str | None, auth: str | None, path: str, query: str | None, frag: str | None
) -> str:
    out = f"{scheme}:" if scheme else ""
    if auth is not None:
        out += "//" + auth
    out += path
    if query is not None:
        out += "?" + query
    if frag is not None:
        out += "#" + frag
    return out


# -- the reader -------------------------------------------------------------------
@dataclass
class _Reader:
    """A recursive-descent reader over one document; ``ntriples`` restricts it to N-Triples."""

    text: str
    source: str
    base: str
    ntriples: bool
    bnode_prefix: str
    pos: int = 0
    prefixes: dict[str, str] = field(default_factory=dict)
    bnodes: dict[str, str] = field(default_factory=dict)
    out: list[Triple] = field(default_factory=list)
    fresh: int = 0

    # errors ------------------------------------------------------------------
    def error(self, message: str, pos: int | None = None) -> RDFSyntaxError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return RDFSyntaxError(f"{self.source}:{line}:{column}: {message}")

    def near(self) -> str:
        snippet = self.text[self.pos : self.pos + 12].split("\n")[0]
        return repr(snippet) if snippet else "end of input"

    # lexing helpers -----------------------------------------------------------
    def skip(self) -> None:
        m = _WS_COMMENT.match(self.text, self.pos)
        if m:
            self.pos = m.end()

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        self.skip()
        if not self.text.startswith(char, self.pos):
            raise self.error(f"expected {char!r}, found {self.near()}")
        self.pos += len(char)

    def new_bnode(self) -> str:
        self.fresh += 1
        return f"_:{self.bnode_prefix}g{self.fresh}"

    # terms ---------------------------------------------------------------------
    def unescape(self, raw: str, start: int, *, iri: bool) -> str:
        def sub(m: re.Match[str]) -> str:
            hex_ = m.group(1) or m.group(2)
            if hex_:
                code = int(hex_, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise self.error(f"escape \\u{hex_} is not a Unicode scalar value", start)
                char = chr(code)
                if iri and (code <= 0x20 or char in '<>"{}|^`\\'):
                    raise self.error(
                        f"escaped character U+{code:04X} is not allowed in an IRI", start
                    )
                return char
            if iri:
                raise self.error(f"character escape '\\{m.group(3)}' not allowed in an IRI", start)
            echar = _ECHAR.get(m.group(3))
            if echar is None:
                raise self.error(f"unknown escape '\\{m.group(3)}' in a string", start)
            return echar

        return _ESCAPE.sub(sub, raw) if "\\" in raw else raw

    def iriref(self) -> str:
        start = self.pos
        m = _IRIREF.match(self.text, self.pos)
        if not m:
            raise self.error('malformed IRI (characters such as space, <, >, " are not allowed)')
        self.pos = m.end()
        iri = self.unescape(m.group(1), start, iri=True)
        if self.ntriples:
            if not _SCHEME.match(iri):
                raise self.error(f"relative IRI <{iri}> in N-Triples", start)
            return f"<{iri}>"
        return f"<{resolve_iri(self.base, iri)}>"

    def pname(self) -> str:
        start = self.pos
        m = _PNAME.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected an IRI or prefixed name, found {self.near()}")
        prefix = m.group(1) or ""
        if prefix not in self.prefixes:
            raise self.error(f"undeclared prefix {prefix + ':'!r}", start)
        self.pos = m.end()
        local = m.group(2) or ""
        if "\\" in local:
            local = _LOCAL_ESC.sub(r"\1", local)
        return f"<{self.prefixes[prefix]}{local}>"

    def iri(self) -> str:
        if self.peek() == "<":
            return self.iriref()
        if self.ntriples:
            raise self.error(f"expected an IRI, found {self.near()}")
        return self.pname()

    def blank_label(self) -> str:
        m = _BNODE.match(self.text, self.pos)
        if not m:
            raise self.error(f"malformed blank node label near {self.near()}")
        self.pos = m.end()
        label = m.group(1)
        node = self.bnodes.get(label)
        if node is None:
            node = self.bnodes[label] = f"_:{self.bnode_prefix}{label}"
        return node

    def string(self) -> str:
        start = self.pos
        forms = _STRING_FORMS[2:3] if self.ntriples else _STRING_FORMS
        for opener, pattern in forms:
            if self.text.startswith(opener, self.pos):
                m = pattern.match(self.text, self.pos)
                if not m:
                    raise self.error("unterminated or malformed string literal")
                self.pos = m.end()
                return self.unescape(m.group(1), start, iri=False)
        raise self.error(f"expected a string, found {self.near()}")

    def literal(self) -> str:
        lexical = self.string()
        if self.peek() == "@":
            m = _LANGTAG.match(self.text, self.pos)
            if not m:
                raise self.error("malformed language tag")
            self.pos = m.end()
            return literal(lexical, lang=m.group(1))
        if self.text.startswith("^^", self.pos):
            self.pos += 2
            datatype = self.iri()
            return literal(lexical, datatype=datatype[1:-1])
        return literal(lexical)

    def number(self) -> str | None:
        m = _NUMBER.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        kind = "double" if m.group("double") else "decimal" if m.group("decimal") else "integer"
        return literal(m.group(0), datatype=XSD + kind)

    # grammar -------------------------------------------------------------------
    def parse(self) -> list[Triple]:
        while True:
            self.skip()
            if self.pos >= len(self.text):
                return self.out
            if self.ntriples:
                self.ntriples_statement()
            else:
                self.statement()

    def ntriples_statement(self) -> None:
        char = self.peek()
        subject = self.iriref() if char == "<" else self.blank_label() if char == "_" else None
        if subject is None:
            raise self.error(f"expected a subject (IRI or blank node), found {self.near()}")
        self.skip()
        if self.peek() != "<":
            raise self.error(f"expected a predicate IRI, found {self.near()}")
        predicate = self.iriref()
        self.skip()
        char = self.peek()
        if char == "<":
            obj = self.iriref()
        elif char == "_":
            obj = self.blank_label()
        elif char == '"':
            obj = self.literal()
        else:
            raise self.error(f"expected an object, found {self.near()}")
        self.expect(".")
        # N-Triples: one triple per line; only a comment may follow on the same line.
        m = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:[\r\n]|$)").match(self.text, self.pos)
        if not m:
            raise self.error(f"expected end of line after '.', found {self.near()}")
        self.out.append((subject, predicate, obj))

    def statement(self) -> None:
        kw = _KEYWORD.match(self.text, self.pos)
        if kw and kw.group(1).lower() in ("@prefix", "prefix", "@base", "base"):
            word = kw.group(1)
            self.pos = kw.end()
            self.skip()
            if word.lower().endswith("prefix"):
                m = re.compile(f"({_PN_PREFIX})?:").match(self.text, self.pos)
                if not m:
                    raise self.error(f"expected a prefix name ending in ':', found {self.near()}")
                self.pos = m.end()
                self.skip()
                if self.peek() != "<":
                    raise self.error(f"expected an IRI for the prefix, found {self.near()}")
                self.prefixes[m.group(1) or ""] = self.iriref()[1:-1]
            else:
                self.skip()
                if self.peek() != "<":
                    raise self.error(f"expected an IRI after base, found {self.near()}")
                self.base = self.iriref()[1:-1]
            if word.startswith("@"):
                self.expect(".")
            return
        self.triples()
        self.expect(".")

    def triples(self) -> None:
        char = self.peek()
        if char == "[":
            subject = self.blank_node_property_list()
            self.skip()
            if self.peek() in (".", ""):
                return
            self.predicate_object_list(subject)
            return
        subject = self.subject()
        self.predicate_object_list(subject)

    def subject(self) -> str:
        char = self.peek()
        if char == "<":
            return self.iriref()
        if self.text.startswith("_:", self.pos):
            return self.blank_label()
        if char == "(":
            return self.collection()
        if char in "\"'" or (char and (char in "+-.0123456789")):
            raise self.error("a literal cannot be the subject of a triple")
        if _KEYWORD.match(self.text, self.pos) and self.text[self.pos : self.pos + 4] in (
            "true",
            "fals",
        ):
            raise self.error("a literal cannot be the subject of a triple")
        return self.pname()

    def predicate_object_list(self, subject: str) -> None:
        while True:
            self.skip()
            predicate = self.verb()
            self.object_list(subject, predicate)
            self.skip()
            if self.peek() != ";":
                return
            while self.peek() == ";":
                self.pos += 1
                self.skip()
            if self.peek() in (".", "]", ""):
                return

    def verb(self) -> str:
        if self.peek() == "a":
            nxt = self.text[self.pos + 1 : self.pos + 2]
            if nxt == "" or nxt in " \t\r\n<[(\"'#_":
                self.pos += 1
                return _RDF_TYPE
        if self.peek() == "[" or self.text.startswith("_:", self.pos):
            raise self.error("a blank node cannot be a predicate")
        if self.peek() in "\"'":
            raise self.error("a literal cannot be a predicate")
        return self.iri()

    def object_list(self, subject: str, predicate: str) -> None:
        while True:
            self.skip()
            obj = self.object()
            self.out.append((subject, predicate, obj))
            self.skip()
            if self.peek() != ",":
                return
            self.pos += 1

    def object(self) -> str:
        char = self.peek()
        if char == "<":
            return self.iriref()
        if self.text.startswith("_:", self.pos):
            return self.blank_label()
        if char == "(":
            return self.collection()
        if char == "[":
            return self.blank_node_property_list()
        if char in "\"'":
            return self.literal()
        if char and char in "+-.0123456789":
            number = self.number()
            if number is None:
                if char == ".":
                    raise self.error("expected an object, found '.'")
                raise self.error(f"malformed number near {self.near()}")
            return number
        for word in ("true", "false"):
            if self.text.startswith(word, self.pos):
                end = self.pos + len(word)
                if not _PNAME.match(self.text, self.pos) or self.text[end : end + 1] != ":":
                    self.pos = end
                    return literal(word, datatype=XSD + "boolean")
        if not char:
            raise self.error("unexpected end of input, expected an object")
        return self.pname()

    def blank_node_property_list(self) -> str:
        self.pos += 1  # '['
        self.skip()
        node = self.new_bnode()
        if self.peek() == "]":
            self.pos += 1
            return node
        self.predicate_object_list(node)
        self.expect("]")
        return node

    def collection(self) -> str:
        self.pos += 1  # '('
        items: list[str] = []
        while True:
            self.skip()
            if self.peek() == ")":
                self.pos += 1
                break
            if not self.peek():
                raise self.error("unterminated collection, expected ')'")
            items.append(self.object())
        if not items:
            return _RDF_NIL
        head = self.new_bnode()
        node = head
        for i, item in enumerate(items):
            self.out.append((node, _RDF_FIRST, item))
            nxt = self.new_bnode() if i + 1 < len(items) else _RDF_NIL
            self.out.append((node, _RDF_REST, nxt))
            node = nxt
        return head


def parse_turtle(
    text: str, *, base: str = "", source: str = "<turtle>", bnode_prefix: str = ""
) -> list[Triple]:
    """Parse a Turtle document into triples; raises :class:`RDFSyntaxError` with line:column."""
    return _Reader(text, source, base, False, bnode_prefix).parse()


_ABS_IRI = r"<[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20<>\"{}|^`\\]*>"
# A line already in canonical form: absolute IRIs, literals whose only escapes are the
# canonical ones, no blank nodes (their labels get the load's prefix), no xsd:string.
_CANONICAL_LINE = re.compile(
    f"({_ABS_IRI}) ({_ABS_IRI}) "
    f'({_ABS_IRI}|"(?:[^"\\\\\n\r]|\\\\[nr"\\\\])*"'
    f"(?:@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*|\\^\\^{_ABS_IRI})?) \\.[ \t]*\r?"
)


def parse_ntriples(
    text: str, *, source: str = "<ntriples>", bnode_prefix: str = ""
) -> list[Triple]:
    """Parse an N-Triples document into triples; raises :class:`RDFSyntaxError` with line:column.

    Lines already in canonical form (the common case for machine-written
    files) match one regular expression and are taken as they are; every
    other line goes through the full reader, which also reports the errors.
    """
    reader = _Reader(text, source, "", True, bnode_prefix)
    out = reader.out
    fast = _CANONICAL_LINE.fullmatch
    pos = 0
    for line in text.split("\n"):
        m = fast(line)
        if m is not None and not m.group(3).endswith(_XSD_STRING):
            out.append((m.group(1), m.group(2), m.group(3)))
        elif line.strip() and not line.lstrip().startswith("#"):
            reader.pos = pos
            reader.skip()
            if reader.pos < len(text):
                reader.ntriples_statement()
                reader.skip()
        pos += len(line) + 1
    return out


def graphs_isomorphic(left: list[Triple] | set[Triple], right: list[Triple] | set[Triple]) -> bool:
    """Whether two graphs are equal up to a renaming of blank nodes.

    Blank nodes are first coloured by iterated neighbourhood signatures (colour
    refinement); a backtracking search then tries only bijections that respect
    the colours. Exponential only on highly symmetric graphs, which tests avoid.
    """
    a, b = set(left), set(right)
    if len(a) != len(b):
        return False

    def blanks(graph: set[Triple]) -> set[str]:
        return {t for triple in graph for t in triple if t.startswith("_:")}

    ba, bb = blanks(a), blanks(b)
    if len(ba) != len(bb):
        return False
    if not ba:
        return a == b

    def colours(graph: set[Triple], nodes: set[str]) -> dict[str, int]:
        colour = dict.fromkeys(nodes, 0)
        for _ in range(len(nodes) + 1):
            sig: dict[str, list[tuple[object, ...]]] = {n: [] for n in nodes}
            for s, p, o in graph:
                cs = colour.get(s, s)
                co = colour.get(o, o)
                if s in sig:
                    sig[s].append(("s", p, co))
                if o in sig:
                    sig[o].append(("o", p, cs))
            new = {n: hash(tuple(sorted(map(repr, sig[n])))) for n in nodes}
            if len(set(new.values())) == len(set(colour.values())):
                colour = new
                break
            colour = new
        return colour

    ca, cb = colours(a, ba), colours(b, bb)
    if sorted(ca.values()) != sorted(cb.values()):
        return False
    order = sorted(ba, key=lambda n: sum(1 for m in ba if ca[m] == ca[n]))
    by_colour: dict[int, list[str]] = {}
    for n in bb:
        by_colour.setdefault(cb[n], []).append(n)

    def search(i: int, mapping: dict[str, str], used: set[str]) -> bool:
        if i == len(order):
            return {tuple(mapping.get(t, t) for t in triple) for triple in a} == b
        node = order[i]
        for cand in by_colour.get(ca[node], []):
            if cand in used:
                continue
            mapping[node] = cand
            used.add(cand)
            if search(i + 1, mapping, used):
                return True
            del mapping[node]
            used.discard(cand)
        return False

    return search(0, {}, set())
