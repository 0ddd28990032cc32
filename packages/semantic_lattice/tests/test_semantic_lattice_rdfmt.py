"""The RDFS-regime entailment tests of the W3C RDF 1.1 semantics suite (rdf-mt/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenfold.semantic_lattice import LatticeStore
from tenfold.semantic_lattice._rdf import RDF, Triple, parse_ntriples, parse_turtle

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "w3c-rdf-tests" / "rdf-mt"
MF = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#"
BASE = "https://w3c.github.io/rdf-tests/rdf/rdf11/rdf-mt/"

# Every test passes, each run with the recognized datatypes its manifest entry names
# (mf:recognizedDatatypes): the datatype-clash and ill-typed-literal tests need them.


def _read(path: Path, prefix: str) -> list[Triple]:
    text = path.read_bytes().decode("utf-8")
    if path.suffix == ".nt":
        return parse_ntriples(text, source=path.name, bnode_prefix=prefix)
    return parse_turtle(text, base=BASE + path.name, source=path.name, bnode_prefix=prefix)


def _entails(closure: set[Triple], goal: list[Triple]) -> bool:
    """Whether some mapping of the goal's blank nodes makes every goal triple a closure triple."""
    index: dict[str, list[Triple]] = {}
    for t in closure:
        index.setdefault(t[1], []).append(t)
    goal = sorted(goal, key=lambda t: sum(x.startswith("_:") for x in t))

    def match(i: int, env: dict[str, str]) -> bool:
        if i == len(goal):
            return True
        for cand in index.get(goal[i][1], []) if not goal[i][1].startswith("_:") else closure:
            new = dict(env)
            for want, got in zip(goal[i], cand, strict=True):
                if want.startswith("_:"):
                    if new.setdefault(want, got) != got:
                        break
                elif want != got:
                    break
            else:
                if match(i + 1, new):
                    return True
        return False

    return match(0, {})


def _rdf_list(head: str, by_subject: dict[str, dict[str, str]]) -> list[str]:
    items = []
    while head != f"<{RDF}nil>":
        items.append(by_subject[head][f"<{RDF}first>"])
        head = by_subject[head][f"<{RDF}rest>"]
    return items


def _cases() -> list[tuple[str, str, Path, Path | None, list[str]]]:
    if not (DATA / "manifest.ttl").is_file():
        return []
    text = (DATA / "manifest.ttl").read_bytes().decode("utf-8")
    by_subject: dict[str, dict[str, str]] = {}
    for s, p, o in parse_turtle(text, base=BASE + "manifest.ttl"):
        by_subject.setdefault(s, {})[p] = o
    out = []
    for props in by_subject.values():
        kind = props.get(f"<{RDF}type>", "")
        if "EntailmentTest" not in kind or props.get(f"<{MF}entailmentRegime>") != '"RDFS"':
            continue
        action = DATA / props[f"<{MF}action>"][1:-1].removeprefix(BASE)
        result = props[f"<{MF}result>"]
        expected = None if result.startswith('"false"') else DATA / result[1:-1].removeprefix(BASE)
        positive = "Positive" in kind
        recognized = _rdf_list(props[f"<{MF}recognizedDatatypes>"], by_subject)
        out.append(
            (
                props[f"<{MF}name>"].strip('"'),
                "positive" if positive else "negative",
                action,
                expected,
                recognized,
            )
        )
    return sorted(out)


def _passes(kind: str, action: Path, expected: Path | None, recognized: list[str]) -> bool:
    with LatticeStore(datatypes=recognized) as store:
        store.add_triples(_read(action, "p"))
        store.add_rules("rdfs-full")
        store.reason()
        closure = set(store.triples())
        inconsistent = bool(store.inconsistencies())
    entailed = inconsistent if expected is None else _entails(closure, _read(expected, "c"))
    return entailed == (kind == "positive")


@pytest.mark.slow
def test_rdfs_entailment_suite_passes() -> None:
    cases = _cases()
    if not cases:
        pytest.skip(f"W3C rdf-mt data not found at {DATA}")
    assert len(cases) >= 25
    failures = {
        name
        for name, kind, action, expected, dts in cases
        if not _passes(kind, action, expected, dts)
    }
    assert not failures, sorted(failures)
