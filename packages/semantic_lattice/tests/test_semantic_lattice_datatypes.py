"""D-entailment in the rdfs-full pack: ill-typed literals and datatype clashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenfold.semantic_lattice import LatticeStore, SchemaError
from tenfold.semantic_lattice._datatypes import is_well_typed, lexical_form
from tenfold.semantic_lattice._rdf import RDF, XSD, literal

E = "http://e.org/"
RANGE = "<http://www.w3.org/2000/01/rdf-schema#range>"
SUBCLASS = "<http://www.w3.org/2000/01/rdf-schema#subClassOf>"


@pytest.mark.parametrize(
    ("lexical", "datatype", "ok"),
    [
        ("25", "integer", True),
        ("-0", "integer", True),
        ("flargh", "integer", False),
        (" 3 ", "int", False),
        ("2147483647", "int", True),
        ("2147483648", "int", False),
        ("-129", "byte", False),
        ("0", "positiveInteger", False),
        ("1.5", "decimal", True),
        ("1.5e3", "decimal", False),
        ("1.5e3", "double", True),
        ("-INF", "float", True),
        ("maybe", "boolean", False),
        ("1", "boolean", True),
        ("2026-11-27", "date", True),
        ("2026-13-01", "date", False),
        ("2026-11-27T04:05:00Z", "dateTime", True),
        ("2026-11-27T04:05:00", "dateTimeStamp", False),
        ("P1Y2MT3S", "duration", True),
        ("P", "duration", False),
        ("P1Y", "dayTimeDuration", False),
        ("0fA1", "hexBinary", True),
        ("0fA", "hexBinary", False),
        ("a b", "token", True),
        (" a", "token", False),
        ("en-GB", "language", True),
        ("anything at all", "string", True),
    ],
)
def test_lexical_spaces(lexical: str, datatype: str, ok: bool) -> None:
    assert is_well_typed(lexical, XSD + datatype) is ok


def test_xml_literals_and_unknown_datatypes() -> None:
    assert not is_well_typed("<", RDF + "XMLLiteral")
    assert is_well_typed("<a x='1'>b</a> tail", RDF + "XMLLiteral")
    assert is_well_typed("flargh", "http://e.org/myType")  # not recognized: not checked


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_integer_types_follow_their_bounds(n: int) -> None:
    assert is_well_typed(str(n), XSD + "integer")
    assert is_well_typed(str(n), XSD + "int") is (-(2**31) <= n < 2**31)
    assert is_well_typed(str(n), XSD + "unsignedShort") is (0 <= n < 2**16)
    assert is_well_typed(f"{n}.0", XSD + "integer") is False


@given(st.text(max_size=20))
def test_lexical_form_reads_back_the_canonical_literal(text: str) -> None:
    assert lexical_form(literal(text, XSD + "string")) == text
    assert lexical_form(literal(text, lang="en")) == text


def _report(store: LatticeStore) -> set[tuple[str, tuple[tuple[str, str, str], ...]]]:
    store.reason()
    return {(i.rule, i.triples) for i in store.inconsistencies()}


def test_ill_typed_literals_and_clashes_are_inconsistencies() -> None:
    bad = literal("flargh", XSD + "integer")
    age = literal("25", XSD + "integer")
    with LatticeStore() as store:
        # Loaded before the pack: checked when the pack arrives.
        store.add_triples([(f"<{E}a>", f"<{E}p>", bad)])
        store.add_rules("rdfs-full")
        assert ("dt-not-type", ((f"<{E}a>", f"<{E}p>", bad),)) in _report(store)
        # Loaded after: checked as it loads. A range of another family types the literal.
        store.add_triples([(f"<{E}b>", f"<{E}age>", age), (f"<{E}age>", RANGE, f"<{XSD}string>")])
        clash = (
            "dt-clash",
            ((age, f"<{RDF}type>", f"<{XSD}string>"), (age, f"<{RDF}type>", f"<{XSD}integer>")),
        )
        assert clash in _report(store)
        store.add_triples([(f"<{XSD}int>", SUBCLASS, f"<{XSD}integer>")])  # a true subset
        assert not any(rule == "dt-subclass" for rule, _ in _report(store))
        store.add_triples([(f"<{XSD}integer>", SUBCLASS, f"<{XSD}int>")])
        assert ("dt-subclass", ((f"<{XSD}integer>", SUBCLASS, f"<{XSD}int>"),)) in _report(store)


def test_recognized_datatypes_are_chosen_per_store(tmp_path: Path) -> None:
    bad = literal("flargh", XSD + "integer")
    words = literal("words")
    data = [
        (f"<{E}a>", f"<{E}p>", bad),
        (f"<{E}b>", f"<{E}q>", words),
        (f"<{E}q>", RANGE, f"<{RDF}langString>"),
    ]
    path = tmp_path / "kb.duckdb"
    with LatticeStore(path, datatypes=[]) as store:
        store.add_triples(data)
        store.add_rules("rdfs-full")
        # xsd:integer not recognized: "flargh" is fine; xsd:string and rdf:langString
        # are always recognized, so the simple literal typed rdf:langString clashes.
        assert {rule for rule, _ in _report(store)} == {"dt-clash"}
    with LatticeStore(path) as store:  # reopened recognizing every known datatype
        assert {rule for rule, _ in _report(store)} == {"dt-clash", "dt-not-type"}
    with pytest.raises(SchemaError, match="unknown datatype <http://e.org/t>"):
        LatticeStore(datatypes=[f"{E}t"])
