"""The W3C SPARQL 1.1 query-evaluation suite, read from its own manifests.

Every ``mf:QueryEvaluationTest`` (and ``mf:CSVResultFormatTest``) of the
query-language folders runs through the same path a user takes: the data is
loaded into a :class:`LatticeStore` (named graphs into a dataset beside it) and
the query goes through ``store.sparql``. Results are compared as the suite
defines them: a bag of solutions, in order only where the query has ORDER BY,
blank nodes up to a consistent renaming, numeric literals of the same datatype
by value, language tags without regard to case. CONSTRUCT results are compared
as graphs up to blank node renaming.

``EXPECTED_FAILURES`` lists the tests that do not pass, each with its reason.
A test on that list that passes fails the run (so the list can only shrink),
and a test on it must fail with an ``unsupported:`` error, never with a wrong
answer, unless its reason says why not. Missing test data fails loudly.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from tenfold.semantic_lattice import LatticeStore, QueryError
from tenfold.semantic_lattice._rdf import RDF, XSD, graphs_isomorphic, parse_turtle
from tenfold.semantic_lattice._sparql_eval import lit_parts, numeric_value
from tenfold.semantic_lattice._sparql_parse import literal_term, parse_query
from tenfold.semantic_lattice._sparql_results import serialize_result

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "w3c-sparql11"
MF = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#"
QT = "http://www.w3.org/2001/sw/DataAccess/tests/test-query#"
RS = "http://www.w3.org/2001/sw/DataAccess/tests/result-set#"
W3C_BASE = "http://www.w3.org/2009/sparql/docs/tests/data-sparql11/"
FOLDERS = (
    "aggregates", "bind", "bindings", "cast", "construct", "exists", "functions", "grouping",
    "negation", "project-expression", "property-path", "subquery", "csv-tsv-res", "json-res",
    "service",
)  # fmt: skip
SYNTAX_FOLDERS = ("syntax-query",)

# test name -> why it does not pass. May only shrink.
_SERVICE = "unsupported: SERVICE (federated query: the engine calls no remote endpoint)"
EXPECTED_FAILURES: dict[str, str] = {
    "service/SERVICE test 1": _SERVICE,
    "service/SERVICE test 2": _SERVICE,
    "service/SERVICE test 3": _SERVICE,
    "service/SERVICE test 4a with VALUES clause": _SERVICE,
    "service/SERVICE test 5": _SERVICE,
    "service/SERVICE test 6": _SERVICE,
    "service/SERVICE test 7": _SERVICE,
}

Row = tuple[str | None, ...]


def _require_data() -> Path:
    if not (DATA / "manifest-sparql11-query.ttl").is_file():
        raise RuntimeError(
            f"W3C SPARQL 1.1 test data not found at {DATA.resolve()}: "
            "the conformance suite cannot run (expected ../shared/data/w3c-sparql11)"
        )
    return DATA


def _manifest(folder: str) -> list[dict[str, object]]:
    path = DATA / folder / "manifest.ttl"
    base = f"{W3C_BASE}{folder}/manifest.ttl"
    triples = parse_turtle(path.read_text("utf-8"), base=base)
    props: dict[str, dict[str, list[str]]] = {}
    for s, p, o in triples:
        props.setdefault(s, {}).setdefault(p, []).append(o)

    def one(s: str, p: str) -> str | None:
        vals = props.get(s, {}).get(p)
        return vals[0] if vals else None

    entries: list[str] = []
    node = one(f"<{base}>", f"<{MF}entries>")
    while node and node != f"<{RDF}nil>":
        first = one(node, f"<{RDF}first>")
        if first:
            entries.append(first)
        node = one(node, f"<{RDF}rest>")
    tests = []
    for entry in entries:
        kind = (one(entry, f"<{RDF}type>") or "")[len(MF) + 1 : -1]
        if kind not in (
            "QueryEvaluationTest", "CSVResultFormatTest",
            "PositiveSyntaxTest11", "NegativeSyntaxTest11",
        ):  # fmt: skip
            continue
        action = one(entry, f"<{MF}action>") or ""
        name = lit_parts(one(entry, f"<{MF}name>") or '""')[0]
        local = (one(entry, f"<{MF}result>") or "<>")[1:-1]
        if kind.endswith("SyntaxTest11"):
            tests.append(
                {"id": f"{folder}/{name}", "folder": folder, "kind": kind, "query": _file(action)}
            )
            continue
        tests.append(
            {
                "id": f"{folder}/{name}",
                "folder": folder,
                "kind": kind,
                "query": _file(one(action, f"<{QT}query>")),
                "data": [_file(d) for d in props.get(action, {}).get(f"<{QT}data>", [])],
                "graph_data": props.get(action, {}).get(f"<{QT}graphData>", []),
                "result": _file(f"<{local}>") if local else None,
                "service": bool(props.get(action, {}).get(f"<{QT}serviceData>")),
            }
        )
    return tests


_RDFNS = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_XMLNS = "{http://www.w3.org/XML/1998/namespace}"


def _read_rdfxml(text: str, base: str) -> list[tuple[str, str, str]]:
    """The RDF/XML the suite's data files use: node elements, resource and literal properties.

    A test-side reader (the store reads N-Triples and Turtle): rdf:about,
    rdf:nodeID, rdf:resource, rdf:datatype, xml:lang, typed node elements and
    nested node elements; anything else in a file fails the test.
    """
    from tenfold.semantic_lattice._rdf import resolve_iri

    out: list[tuple[str, str, str]] = []
    fresh = iter(range(1_000_000))

    def iri(tag: str) -> str:
        ns, _, local = tag[1:].partition("}")
        return f"<{ns}{local}>"

    def node(el: ET.Element) -> str:
        about = el.get(f"{_RDFNS}about")
        node_id = el.get(f"{_RDFNS}nodeID")
        subject = (
            f"<{resolve_iri(base, about)}>" if about is not None
            else f"_:{node_id}" if node_id else f"_:x{next(fresh)}"
        )  # fmt: skip
        if el.tag != f"{_RDFNS}Description":
            out.append((subject, f"<{RDF}type>", iri(el.tag)))
        for key in el.attrib:
            if not key.startswith((_RDFNS, _XMLNS)):
                out.append((subject, iri(key), literal_term(el.attrib[key])))
        for prop in el:
            res = prop.get(f"{_RDFNS}resource")
            ref = prop.get(f"{_RDFNS}nodeID")
            if res is not None:
                obj = f"<{resolve_iri(base, res)}>"
            elif ref is not None:
                obj = f"_:{ref}"
            elif len(prop):
                obj = node(prop[0])
            else:
                dt = prop.get(f"{_RDFNS}datatype")
                obj = literal_term(
                    prop.text or "", f"<{dt}>" if dt else None, prop.get(f"{_XMLNS}lang")
                )
            out.append((subject, iri(prop.tag), obj))
        return subject

    for el in ET.fromstring(text):
        node(el)
    return out


def _read_graph(path: Path, base: str, prefix: str) -> list[tuple[str, str, str]]:
    if path.suffix == ".rdf":
        return _read_rdfxml(path.read_text("utf-8"), base)
    return parse_turtle(path.read_text("utf-8"), base=base, bnode_prefix=prefix)


def _file(iri: str | None) -> Path:
    assert iri is not None
    return DATA / iri[1:-1].removeprefix(W3C_BASE)


def _iri_of(path: Path) -> str:
    return f"<{W3C_BASE}{path.relative_to(DATA).as_posix()}>"


def _cases(folders: tuple[str, ...] = FOLDERS) -> list[object]:
    _require_data()
    cases = []
    for folder in folders:
        for test in _manifest(folder):
            cases.append(pytest.param(test, id=str(test["id"])))
    return cases


# -- expected results -----------------------------------------------------------------------
def _term_from_json(b: dict[str, str]) -> str:
    kind = b["type"]
    if kind == "uri":
        return f"<{b['value']}>"
    if kind == "bnode":
        return f"_:{b['value']}"
    if "xml:lang" in b:
        return literal_term(b["value"], lang=b["xml:lang"])
    dt = b.get("datatype")
    return literal_term(b["value"], f"<{dt}>" if dt else None)


def _read_srj(text: str) -> tuple[list[str], list[Row], bool | None]:
    doc = json.loads(text)
    if "boolean" in doc:
        return [], [], bool(doc["boolean"])
    names = list(doc["head"].get("vars", []))
    rows = []
    for b in doc["results"]["bindings"]:
        for extra in b:
            if extra not in names:
                names.append(extra)
        rows.append(tuple(_term_from_json(b[n]) if n in b else None for n in names))
    width = len(names)
    return names, [r + (None,) * (width - len(r)) for r in rows], None


def _read_srx(text: str) -> tuple[list[str], list[Row], bool | None]:
    ns = "{http://www.w3.org/2005/sparql-results#}"
    root = ET.fromstring(text)
    boolean = root.find(f"{ns}boolean")
    if boolean is not None:
        return [], [], (boolean.text or "").strip() == "true"
    names = [v.get("name", "") for v in root.iter(f"{ns}variable")]
    rows = []
    for result in root.iter(f"{ns}result"):
        row: dict[str, str] = {}
        for binding in result.findall(f"{ns}binding"):
            node = binding[0]
            tag = node.tag[len(ns) :]
            value = node.text or ""
            if tag == "uri":
                row[binding.get("name", "")] = f"<{value}>"
            elif tag == "bnode":
                row[binding.get("name", "")] = f"_:{value}"
            else:
                lang = node.get("{http://www.w3.org/XML/1998/namespace}lang")
                dt = node.get("datatype")
                row[binding.get("name", "")] = literal_term(value, f"<{dt}>" if dt else None, lang)
        rows.append(tuple(row.get(n) for n in names))
    return names, rows, None


def _read_tsv(text: str) -> tuple[list[str], list[Row], bool | None]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header = lines[0].rstrip("\r")
    names = [v.lstrip("?$") for v in header.split("\t")] if header else []
    rows = []
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        fields = line.split("\t") if names else []
        row: list[str | None] = []
        for f in fields:
            if f == "":
                row.append(None)
            elif f[0] in '<_"':
                row.append(_parse_term(f.replace("\\t", "\t")))
            else:
                kind = "double" if "e" in f.lower() else "decimal" if "." in f else "integer"
                row.append(literal_term(f, f"<{XSD}{kind}>"))
        rows.append(tuple(row))
    return names, rows, None


def _parse_term(text: str) -> str:
    if text.startswith("_:"):
        return text
    triples = parse_turtle(f"<x:s> <x:p> {text} .")
    return triples[0][2]


def _read_ttl_results(
    path: Path,
) -> tuple[list[str], list[Row], bool | None] | list[tuple[str, str, str]]:
    triples = parse_turtle(path.read_text("utf-8"), base=_iri_of(path)[1:-1])
    if not any(o == f"<{RS}ResultSet>" for _, _, o in triples):
        return triples
    props: dict[str, dict[str, list[str]]] = {}
    for s, p, o in triples:
        props.setdefault(s, {}).setdefault(p, []).append(o)
    rs_node = next(s for s, p, o in triples if o == f"<{RS}ResultSet>")
    boolean = props[rs_node].get(f"<{RS}boolean>")
    if boolean:
        return [], [], lit_parts(boolean[0])[0] == "true"
    names = [lit_parts(v)[0] for v in props[rs_node].get(f"<{RS}resultVariable>", [])]
    rows = []
    for sol in props[rs_node].get(f"<{RS}solution>", []):
        row: dict[str, str] = {}
        for b in props.get(sol, {}).get(f"<{RS}binding>", []):
            var = lit_parts(props[b][f"<{RS}variable>"][0])[0]
            row[var] = props[b][f"<{RS}value>"][0]
        rows.append(tuple(row.get(n) for n in names))
    return names, rows, None


# -- comparison -----------------------------------------------------------------------------
def _same_literal(a: str, b: str) -> bool:
    if a == b:
        return True
    if a[0] != '"' or b[0] != '"':
        return False
    la, da, ga = lit_parts(a)
    lb, db, gb = lit_parts(b)
    if da != db:
        return False
    if ga or gb:
        return la == lb and ga.lower() == gb.lower()
    na, nb = numeric_value(a), numeric_value(b)
    return na is not None and nb is not None and na[1] == nb[1]


def _rows_match(ours: Sequence[Row], expected: Sequence[Row], ordered: bool) -> bool:
    if len(ours) != len(expected):
        return False

    def cells_match(
        x: str | None, y: str | None, m: dict[str, str], used: set[str]
    ) -> bool | dict[str, str]:
        if x is None or y is None:
            return x is None and y is None
        if x.startswith("_:") or y.startswith("_:"):
            if not (x.startswith("_:") and y.startswith("_:")):
                return False
            if x in m:
                return m[x] == y
            if y in used:
                return False
            return {x: y}
        return _same_literal(x, y)

    def row_match(r: Row, e: Row, m: dict[str, str], used: set[str]) -> dict[str, str] | None:
        added: dict[str, str] = {}
        for x, y in zip(r, e, strict=True):
            res = cells_match(x, y, {**m, **added}, used | set(added.values()))
            if res is False:
                return None
            if isinstance(res, dict):
                added.update(res)
        return added

    if ordered:
        m: dict[str, str] = {}
        for r, e in zip(ours, expected, strict=True):
            added = row_match(r, e, m, set(m.values()))
            if added is None:
                return False
            m.update(added)
        return True
    remaining = list(expected)

    def search(i: int, m: dict[str, str]) -> bool:
        if i == len(ours):
            return True
        for k, e in enumerate(remaining):
            if e is None:
                continue
            added = row_match(ours[i], e, m, set(m.values()))
            if added is None:
                continue
            remaining[k] = None  # type: ignore[call-overload]
            if search(i + 1, {**m, **added}):
                return True
            remaining[k] = e
            if not added:
                break  # no blank nodes involved: this row's match choice does not matter
        return False

    return search(0, {})


def _project(names: list[str], want: list[str], rows: list[Row]) -> list[Row]:
    return [tuple(r[names.index(n)] if n in names else None for n in want) for r in rows]


def _run(test: dict[str, object]) -> None:
    query_path = test["query"]
    assert isinstance(query_path, Path)
    query = query_path.read_text("utf-8")
    base = _iri_of(query_path)[1:-1]
    store = LatticeStore(None)
    try:
        for data in test["data"]:  # type: ignore[attr-defined]
            store.add_triples(_read_graph(data, _iri_of(data)[1:-1], "d_"))
        named = {}
        for g in test["graph_data"]:  # type: ignore[attr-defined]
            named[g] = _read_graph(_file(g), g[1:-1], f"g{len(named)}_")

        def load_graph(iri: str) -> list[tuple[str, str, str]]:
            return _read_graph(_file(iri), iri[1:-1], "f_")

        result = store.sparql(query, base=base, named_graphs=named, load_graph=load_graph)
    finally:
        store.close()
    expected_path = test["result"]
    assert isinstance(expected_path, Path)
    suffix = expected_path.suffix
    if result.kind == "graph":
        expected = _read_ttl_results(expected_path)
        assert isinstance(expected, list)
        assert graphs_isomorphic(list(result.rows), expected), (
            f"graphs differ:\nours {sorted(result.rows)}\nexpected {sorted(expected)}"
        )
        return
    if suffix == ".csv":
        text = serialize_result("csv", result.columns, result.rows, result.boolean)
        ours_csv = list(csv.reader(io.StringIO(text)))
        exp_csv = list(csv.reader(io.StringIO(expected_path.read_text("utf-8"))))
        assert ours_csv[0] == exp_csv[0]
        to_row = [tuple(c or None for c in r) for r in ours_csv[1:]]
        exp_rows = [tuple(c or None for c in r) for r in exp_csv[1:]]
        assert _rows_match(to_row, exp_rows, False), f"\nours {to_row}\nexpected {exp_rows}"
        return
    text = expected_path.read_text("utf-8")
    if suffix == ".srx":
        names, rows, boolean = _read_srx(text)
    elif suffix == ".srj":
        names, rows, boolean = _read_srj(text)
    elif suffix == ".tsv":
        names, rows, boolean = _read_tsv(text)
    else:
        parsed = _read_ttl_results(expected_path)
        assert not isinstance(parsed, list), "a SELECT/ASK test with a graph result"
        names, rows, boolean = parsed
    if boolean is not None:
        assert result.boolean is boolean, f"ASK: ours {result.boolean}, expected {boolean}"
        return
    ours = _project(result.columns, names, list(result.rows))
    assert sorted(result.columns) == sorted(names) or suffix == ".ttl", (
        f"variables: ours {result.columns}, expected {names}"
    )
    ordered = result.ordered and suffix != ".ttl"
    assert _rows_match(ours, rows, ordered), (
        f"\nours     ({len(ours)}) {sorted(map(str, ours))[:20]}"
        f"\nexpected ({len(rows)}) {sorted(map(str, rows))[:20]}"
    )
    # The result writers round-trip through the suite's own readers.
    back = _read_srj(serialize_result("json", result.columns, result.rows))
    assert _rows_match(_project(back[0], names, back[1]), rows, ordered)
    back = _read_srx(serialize_result("xml", result.columns, result.rows))
    assert _rows_match(_project(back[0], names, back[1]), rows, ordered)
    back = _read_tsv(serialize_result("tsv", result.columns, result.rows))
    assert Counter(map(len, back[1])) == Counter(len(names) for _ in rows) or not rows


@pytest.mark.parametrize("test", _cases())
def test_sparql11_query_evaluation(test: dict[str, object]) -> None:
    if str(test["kind"]).endswith("SyntaxTest11"):
        _check_syntax(test)  # the evaluation folders hold a few syntax tests too
        return
    reason = EXPECTED_FAILURES.get(str(test["id"]))
    if reason is None:
        _run(test)
        return
    try:
        _run(test)
    except (AssertionError, QueryError) as exc:
        if reason.startswith("unsupported:"):
            assert "unsupported:" in str(exc), f"expected an unsupported error, got: {exc}"
        return
    pytest.fail(f"{test['id']} passes now: remove it from EXPECTED_FAILURES ({reason})")


@pytest.mark.parametrize("test", _cases(SYNTAX_FOLDERS))
def test_sparql11_query_syntax(test: dict[str, object]) -> None:
    _check_syntax(test)


def _check_syntax(test: dict[str, object]) -> None:
    path = test["query"]
    assert isinstance(path, Path)
    text = path.read_bytes().decode("utf-8")
    reason = EXPECTED_FAILURES.get(str(test["id"]))
    try:
        parse_query(text, base=_iri_of(path)[1:-1])
        ok = True
    except QueryError:
        ok = False
    want = test["kind"] == "PositiveSyntaxTest11"
    if reason is None:
        assert ok == want, f"{'refused' if want else 'accepted'}: {text}"
    elif ok == want:
        pytest.fail(f"{test['id']} passes now: remove it from EXPECTED_FAILURES ({reason})")


def test_expected_failures_name_real_tests() -> None:
    ids = {str(t["id"]) for folder in FOLDERS + SYNTAX_FOLDERS for t in _manifest(folder)}
    assert set(EXPECTED_FAILURES) <= ids, sorted(set(EXPECTED_FAILURES) - ids)
