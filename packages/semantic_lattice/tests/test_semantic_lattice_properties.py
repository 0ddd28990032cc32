"""Property tests for the readers and the Datalog parser: what is written reads back the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.semantic_lattice._datalog import Atom, Const, Rule, Var, parse_program
from tenfold.semantic_lattice._rdf import (
    XSD,
    graphs_isomorphic,
    literal,
    parse_ntriples,
    parse_turtle,
    serialize_ntriples,
)

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
_iri = st.from_regex(r"\Ahttp://ex\.org/[a-z0-9_~.\-/#]{0,10}\Z").map(lambda s: f"<{s}>")
_bnode = st.from_regex(r"\A[a-z][a-z0-9]{0,5}\Z").map(lambda s: f"_:{s}")
_literal = st.one_of(
    _text.map(literal),
    st.tuples(_text, st.from_regex(r"\A[a-z]{2}(-[A-Z]{2})?\Z")).map(
        lambda t: literal(t[0], lang=t[1])
    ),
    st.tuples(_text, st.sampled_from(["integer", "date", "boolean"])).map(
        lambda t: literal(t[0], XSD + t[1])
    ),
)
_triples = st.lists(
    st.tuples(st.one_of(_iri, _bnode), _iri, st.one_of(_iri, _bnode, _literal)), max_size=15
)


@settings(max_examples=40, deadline=None)
@given(_triples)
def test_ntriples_round_trip_through_both_readers(triples: list[tuple[str, str, str]]) -> None:
    text = serialize_ntriples(triples)
    from_nt = parse_ntriples(text)
    from_ttl = parse_turtle(text)
    assert graphs_isomorphic(from_nt, triples)
    assert graphs_isomorphic(from_ttl, triples)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(_iri, _iri, st.one_of(_iri, _literal)), min_size=1, max_size=8))
def test_turtle_abbreviations_mean_the_same_triples(triples: list[tuple[str, str, str]]) -> None:
    """Grouping by subject with ';' and ',' gives the same graph as one triple per line."""
    by_subject: dict[str, dict[str, list[str]]] = {}
    for s, p, o in triples:
        by_subject.setdefault(s, {}).setdefault(p, []).append(o)
    text = "".join(
        f"{s} " + " ;\n    ".join(f"{p} {', '.join(objs)}" for p, objs in preds.items()) + " .\n"
        for s, preds in by_subject.items()
    )
    assert set(parse_turtle(text)) == set(triples)


_names = st.sampled_from(["p", "q", "r", "edge", "node"])
_vars = st.sampled_from(["X", "Y", "Z", "W"])


@st.composite
def _rules(draw: st.DrawFn) -> Rule:
    body = draw(
        st.lists(
            st.builds(
                lambda rel, args: Atom(rel, tuple(args)),
                _names,
                st.lists(st.builds(Var, _vars), min_size=2, max_size=2),
            ),
            min_size=1,
            max_size=3,
        )
    )
    bound = sorted({a.name for atom in body for a in atom.args if isinstance(a, Var)})
    head_args = draw(
        st.lists(
            st.one_of(
                st.sampled_from(bound).map(Var),
                st.sampled_from(["a", "b"]).map(lambda s: Const(literal(s))),
            ),
            min_size=2,
            max_size=2,
        )
    )
    return Rule(Atom(draw(st.sampled_from(["out", "res"])), tuple(head_args)), tuple(body))


@settings(max_examples=50, deadline=None)
@given(st.lists(_rules(), min_size=1, max_size=5))
def test_datalog_rules_print_and_parse_back(rules: list[Rule]) -> None:
    text = "\n".join(str(r) for r in rules)
    parsed = parse_program(text)
    assert [str(r) for r in parsed.rules] == [str(r) for r in rules]
