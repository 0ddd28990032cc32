"""The W3C RDF 1.1 N-Triples and Turtle suites, read from their own manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenfold.semantic_lattice._rdf import RDF, graphs_isomorphic, parse_ntriples, parse_turtle
from tenfold.semantic_lattice.errors import RDFSyntaxError

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "w3c-rdf-tests"
MF = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#"
RDFT = "http://www.w3.org/ns/rdftest#"


def _manifest(suite: str) -> list[tuple[str, str, Path, Path | None]]:
    folder = DATA / suite
    if not folder.is_dir():
        pytest.skip(f"W3C test data not found at {folder}")
    base = f"https://w3c.github.io/rdf-tests/rdf/rdf11/{suite}/"
    triples = parse_turtle(
        (folder / "manifest.ttl").read_bytes().decode("utf-8"), base=base + "manifest.ttl"
    )
    by_subject: dict[str, dict[str, str]] = {}
    for s, p, o in triples:
        by_subject.setdefault(s, {})[p] = o
    tests = []
    for props in by_subject.values():
        kind = props.get(f"<{RDF}type>", "")
        if not kind.startswith(f"<{RDFT}Test"):
            continue
        action = props[f"<{MF}action>"][1:-1].removeprefix(base)
        result = props.get(f"<{MF}result>")
        name = props[f"<{MF}name>"].strip('"')
        expected = folder / result[1:-1].removeprefix(base) if result else None
        tests.append((name, kind[len(RDFT) + 1 : -1], folder / action, expected))
    return sorted(tests)


def _cases(suite: str) -> list[object]:
    try:
        return [pytest.param(*case, id=case[0]) for case in _manifest(suite)]
    except pytest.skip.Exception:
        return []


@pytest.mark.parametrize(("name", "kind", "action", "expected"), _cases("rdf-turtle"))
def test_turtle_suite(name: str, kind: str, action: Path, expected: Path | None) -> None:
    base = f"https://w3c.github.io/rdf-tests/rdf/rdf11/rdf-turtle/{action.name}"
    text = action.read_bytes().decode("utf-8")
    if "Negative" in kind:
        with pytest.raises(RDFSyntaxError, match=r":\d+:\d+: "):
            parse_turtle(text, base=base, source=action.name)
        return
    graph = parse_turtle(text, base=base, source=action.name)
    if kind == "TestTurtleEval":
        assert expected is not None
        want = parse_ntriples(
            expected.read_bytes().decode("utf-8"), source=expected.name, bnode_prefix="x"
        )
        assert graphs_isomorphic(graph, want), name


@pytest.mark.parametrize(("name", "kind", "action", "expected"), _cases("rdf-n-triples"))
def test_ntriples_suite(name: str, kind: str, action: Path, expected: Path | None) -> None:
    text = action.read_bytes().decode("utf-8")
    if "Negative" in kind:
        with pytest.raises(RDFSyntaxError, match=r":\d+:\d+: "):
            parse_ntriples(text, source=action.name)
        return
    assert isinstance(parse_ntriples(text, source=action.name), list)


def test_suites_are_complete() -> None:
    """Every test kind the manifests list is run (a renamed kind would silently skip)."""
    turtle = _manifest("rdf-turtle")
    ntriples = _manifest("rdf-n-triples")
    kinds = {k for _, k, _, _ in turtle + ntriples}
    assert kinds <= {
        "TestTurtleEval",
        "TestTurtleNegativeEval",
        "TestTurtlePositiveSyntax",
        "TestTurtleNegativeSyntax",
        "TestNTriplesPositiveSyntax",
        "TestNTriplesNegativeSyntax",
    }
    assert len(turtle) >= 290 and len(ntriples) >= 65


def test_error_names_line_and_column() -> None:
    with pytest.raises(RDFSyntaxError, match=r"^doc\.ttl:2:7: "):
        parse_turtle("<a:s> <a:p> <a:o> .\n<a:s> 'x' <a:o> .\n", source="doc.ttl")
    with pytest.raises(RDFSyntaxError, match=r"literal cannot be the subject"):
        parse_turtle('"lit" <a:p> <a:o> .')
