"""The index path for small SPARQL queries: same rows as DuckDB and pyoxigraph, kept fresh."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyoxigraph
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tenfold.semantic_lattice import LatticeStore, QueryError
from tenfold.semantic_lattice._rdf import XSD, literal, serialize_ntriples

E = "http://e.org/"
SUBJECTS = [f"<{E}s{i}>" for i in range(4)]
PREDICATES = [f"<{E}p{i}>" for i in range(3)]
OBJECTS = [*SUBJECTS, literal("1", XSD + "integer"), literal("x"), literal("x", lang="en")]
VARS = ["?a", "?b", "?c"]

_triple = st.tuples(
    st.sampled_from(SUBJECTS), st.sampled_from(PREDICATES), st.sampled_from(OBJECTS)
)
# Every predicate has at least one triple: a predicate the store never saw is an error.
_graph = st.lists(_triple, max_size=30).map(
    lambda ts: [(SUBJECTS[0], p, OBJECTS[0]) for p in PREDICATES] + ts
)
_pattern = st.tuples(
    st.sampled_from([*VARS, SUBJECTS[0], SUBJECTS[1], f"<{E}unknown>"]),
    st.sampled_from(PREDICATES),
    st.sampled_from([*VARS, SUBJECTS[1], SUBJECTS[2], OBJECTS[4], OBJECTS[5]]),
)
_form = st.sampled_from(["star", "first", "distinct", "count", "count_distinct", "group", "bare"])


def _query(patterns: list[tuple[str, str, str]], form: str) -> tuple[str, set[str]]:
    """A SPARQL query over ``patterns``; also the names of its count columns."""
    seen = [t for p in patterns for t in (p[0], p[2]) if t.startswith("?")]
    names = list(dict.fromkeys(seen))
    where = " . ".join(" ".join(p) for p in patterns)
    first, last = names[0], names[-1]
    select = {
        "star": "*",
        "first": first,
        "distinct": f"DISTINCT {' '.join(names[:2])}",
        "count": "(COUNT(*) AS ?n)",
        "count_distinct": f"(COUNT(DISTINCT {last}) AS ?n)",
        "group": f"{first} (COUNT({last}) AS ?n)",
        "bare": first,
    }[form]
    group = f" GROUP BY {first}" if form in ("group", "bare") else ""
    counts = {"n"} if form in ("count", "count_distinct", "group") else set()
    return f"SELECT {select} WHERE {{ {where} }}{group}", counts


def _oxigraph_rows(
    store: pyoxigraph.Store, query: str, columns: list[str], counts: set[str]
) -> Counter[Any]:
    result = store.query(query)
    assert isinstance(result, pyoxigraph.QuerySolutions)
    assert sorted(v.value for v in result.variables) == sorted(columns)
    rows: Counter[Any] = Counter()
    for solution in result:
        row = []
        for name in columns:  # SELECT * orders variables differently: compare by name
            term = solution[name]
            row.append(None if term is None else str(term))
        rows[tuple(row)] += 1
    return rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graph, st.lists(st.tuples(st.lists(_pattern, min_size=1, max_size=4), _form), max_size=6))
def test_index_path_gives_the_rows_of_duckdb_and_pyoxigraph(
    graph: list[tuple[str, str, str]], queries: list[tuple[list[tuple[str, str, str]], str]]
) -> None:
    queries = [q for q in queries if any(t.startswith("?") for p in q[0] for t in (p[0], p[2]))]
    assume(queries)
    ox = pyoxigraph.Store()
    ox.load(input=serialize_ntriples(graph).encode(), format=pyoxigraph.RdfFormat.N_TRIPLES)
    with LatticeStore() as store:
        store.add_triples(graph)
        for patterns, form in queries:
            query, counts = _query(patterns, form)
            index = store.sparql(query, plan="index")
            sql = store.sparql(query, plan="sql")
            assert index.columns == sql.columns
            assert Counter(index.rows) == Counter(sql.rows), query
            assert Counter(store.sparql(query).rows) == Counter(sql.rows)
            assert Counter(store.sparql(query, plan="eval").rows) == Counter(sql.rows), query
            assert Counter(index.rows) == _oxigraph_rows(ox, query, index.columns, counts), query


def test_index_follows_every_write() -> None:
    query = f"SELECT ?x WHERE {{ ?x <{E}knows> <{E}bob> }}"
    with LatticeStore() as store:
        store.add_triples([(f"<{E}ann>", f"<{E}knows>", f"<{E}bob>")])
        assert store.sparql(query).rows == [(f"<{E}ann>",)]
        assert store.explain(query).startswith("path: index")
        store.add_triples([(f"<{E}cy>", f"<{E}knows>", f"<{E}bob>")])
        assert sorted(store.sparql(query).rows) == [(f"<{E}ann>",), (f"<{E}cy>",)]
        # Rules derive new triples: the index sees the closure after reasoning.
        store.add_rules(f".prefix e <{E}>\ntriple(Y, e:knows, X) :- triple(X, e:knows, Y).")
        store.reason()
        back = f"SELECT ?y WHERE {{ <{E}bob> <{E}knows> ?y }}"
        assert sorted(store.sparql(back).rows) == [(f"<{E}ann>",), (f"<{E}cy>",)]
        store.retract_triples([(f"<{E}ann>", f"<{E}knows>", f"<{E}bob>")])
        store.reason()
        assert store.sparql(query).rows == [(f"<{E}cy>",)]
        assert store.sparql(back).rows == [(f"<{E}cy>",)]
        assert store.sparql(back, plan="sql").rows == [(f"<{E}cy>",)]


def test_large_joins_stay_in_duckdb_and_the_subset_is_explained() -> None:
    with LatticeStore() as store:
        store.add_triples(
            [(f"<{E}n{i}>", f"<{E}p>", f"<{E}m{i % 50}>") for i in range(3_000)]
            + [(f"<{E}n{i}>", f"<{E}q>", f"<{E}n{i + 1}>") for i in range(3_000)]
        )
        cross = f"SELECT (COUNT(*) AS ?n) WHERE {{ ?a <{E}p> ?m . ?b <{E}p> ?m }}"
        plan = store.explain(cross)
        assert plan.startswith("path: DuckDB (estimated 186,001 binding steps")
        count = f'"{3_000 * 60}"^^<{XSD}integer>'  # 50 groups of 60: 60 * 60 * 50
        assert store.sparql(cross).rows == [(count,)]
        assert store.sparql(cross, plan="index").rows == [(count,)]
        assert store.sparql(cross, plan="eval").rows == [(count,)]
        chain = f"SELECT ?c WHERE {{ <{E}n7> <{E}q> ?b . ?b <{E}q> ?c }}"
        assert store.sparql(chain).rows == [(f"<{E}n9>",)]
        assert store.explain(chain).startswith("path: index")
        filtered = f"SELECT ?a WHERE {{ ?a <{E}p> ?m FILTER(?m = <{E}m1>) }}"
        assert store.explain(filtered).startswith("path: evaluator")
        assert "do not answer FILTER" in store.explain(filtered)
        with pytest.raises(QueryError, match="does not answer FILTER"):
            store.sparql(filtered, plan="index")
        assert len(store.sparql(filtered).rows) == 60
        ground = f"SELECT * WHERE {{ <{E}n7> <{E}q> <{E}n8> }}"
        assert store.sparql(ground).rows == [()]  # one solution that binds nothing
        assert store.sparql(f"ASK {{ <{E}n7> <{E}q> <{E}n8> }}").boolean is True
        with pytest.raises(QueryError, match="plan must be one of"):
            store.sparql(chain, plan="fast")
