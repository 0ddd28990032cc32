"""The Datalog language and its DuckDB evaluation: rules, negation, aggregation, lattices, budgets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.semantic_lattice._datalog import parse_program, stratify
from tenfold.semantic_lattice._engine import Budget, Engine
from tenfold.semantic_lattice.errors import (
    BudgetExceededError,
    DatalogSyntaxError,
    SchemaError,
    StratificationError,
    UnsafeRuleError,
)

GRAPH = """
.decl edge(src, dst, w: number)
edge(a, b, 1). edge(b, c, 2). edge(a, c, 5). edge(c, d, 1).
path(X, Y) :- edge(X, Y, _).
path(X, Z) :- path(X, Y), edge(Y, Z, _).
node(X) :- edge(X, _, _).
node(Y) :- edge(_, Y, _).
sink(X) :- node(X), !edge(X, _, _).
outdeg(X, count(Y)) :- edge(X, Y, _).
.lattice dist(src, dst, d: min)
dist(X, Y, W) :- edge(X, Y, W).
dist(X, Z, D) :- dist(X, Y, D1), edge(Y, Z, W), D = D1 + W.
"""


def _sym(*names: str) -> tuple[str, ...]:
    return tuple(f'"{n}"' for n in names)


def test_recursion_negation_aggregation_and_min_lattice() -> None:
    engine = Engine()
    engine.add_program(GRAPH)
    engine.materialize()
    assert set(engine.rows("path")) == {_sym(*p) for p in ["ab", "ac", "ad", "bc", "bd", "cd"]}
    assert engine.rows("sink") == [_sym("d")]
    assert sorted(engine.rows("outdeg")) == [(*_sym("a"), 2), (*_sym("b"), 1), (*_sym("c"), 1)]
    dist = {(s, d): v for s, d, v in engine.rows("dist")}
    assert dist[_sym("a", "c")] == 3 and dist[_sym("a", "d")] == 4


def test_set_interval_and_user_lattices() -> None:
    engine = Engine()
    engine.add_program(
        """
        edge(a, b). edge(b, c). edge(c, a).
        .lattice reach(src, s: set)
        reach(X, Y) :- edge(X, Y).
        reach(X, S) :- edge(X, Y), reach(Y, S).
        .decl reading(sensor, v: number)
        reading(t1, 3). reading(t1, 9). reading(t1, -2).
        .lattice span(sensor, i: interval)
        span(S, I) :- reading(S, V), I = interval(V, V).
        .latticetype bits "BIGINT" join "a | b" bottom "0"
        .lattice flags(n, f: bits)
        flags(x, 1). flags(x, 4). flags(y, 2).
        flags(N, F) :- flags(M, F), edge(M, N).
        """
    )
    engine.materialize()
    reach = dict(engine.rows("reach"))
    assert reach['"a"'] == frozenset(_sym("a", "b", "c"))
    assert engine.rows("span") == [('"t1"', (-2.0, 9.0))]
    assert dict(engine.rows("flags")) == {'"x"': 5, '"y"': 2}


def test_incremental_add_and_retract_match_a_fresh_run() -> None:
    engine = Engine()
    engine.add_program(GRAPH)
    engine.materialize()
    engine.add_facts("edge", [('"d"', '"e"', 1.0)])
    engine.materialize()
    assert _sym("a", "e") in set(engine.rows("path"))
    assert engine.rows("sink") == [_sym("e")]
    engine.retract_facts("edge", [('"c"', '"d"', 1.0)])
    engine.materialize()
    fresh = Engine()
    fresh.add_program(GRAPH.replace("edge(c, d, 1).", "") + "edge(d, e, 1).")
    fresh.materialize()
    for name in ("path", "sink", "outdeg", "dist"):
        assert set(engine.rows(name)) == set(fresh.rows(name)), name


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("p(X) :- q(Y).", UnsafeRuleError, r"unsafe variable\(s\) X"),
        ("p(X) :- q(X), !r(X, Y).", UnsafeRuleError, r"Y"),
        ("p(X) :- q(X), Y > 3.", UnsafeRuleError, r"Y"),
        ("p(X :- q(X).", DatalogSyntaxError, r"^<program>:1:5: expected ','"),
        ("p(X) :- q(X)\np(Y) :- q(Y).", DatalogSyntaxError, r":2:1: expected '\.'"),
        ("p(X) :- q(X, Y).\nr(X) :- q(X).", SchemaError, r"q has 2 columns, used with 1"),
        ("p(X) :- q(X) @", DatalogSyntaxError, r"1:14: unexpected character '@'"),
        (".lattice d(x, v: weird)\nd(a, 1).", SchemaError, r"unknown lattice 'weird'"),
    ],
)
def test_bad_programs_are_refused_with_a_clear_message(
    text: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        parse_program(text)


def test_stratifier_names_the_cycle_through_negation() -> None:
    program = parse_program("a(X) :- b(X), !c(X).\nc(X) :- a(X).\nb(x).")
    with pytest.raises(StratificationError, match=r"a -> c -> !a"):
        stratify(program)
    agg = parse_program("n(X, count(Y)) :- m(X, Y).\nm(X, Y) :- n(X, Y).")
    with pytest.raises(StratificationError, match=r"aggregation"):
        stratify(agg)


def test_row_and_round_budgets_abort_cleanly() -> None:
    engine = Engine()
    edges = " ".join(f"e(n{i}, n{j})." for i, j in itertools.product(range(30), repeat=2) if i != j)
    engine.add_program(
        edges
        + "\nt(X, Y) :- e(X, Y).\nt(X, Z) :- t(X, Y), e(Y, Z).\nw(X, Y, Z) :- t(X, Y), t(Y, Z)."
    )
    with pytest.raises(BudgetExceededError, match=r"row budget of 1000 exceeded"):
        engine.materialize(Budget(rows=1000))
    chain = Engine()
    chain.add_program(
        " ".join(f"e(n{i}, n{i + 1})." for i in range(50))
        + "\nt(X, Y) :- e(X, Y).\nt(X, Z) :- t(X, Y), e(Y, Z)."
    )
    with pytest.raises(BudgetExceededError, match=r"round budget of 5 exceeded"):
        chain.materialize(Budget(rounds=5))


PATHS = (
    ".decl edge(s, d, w: number)\n.lattice dist(s, d, v: min)\n"
    "path(X, Y) :- edge(X, Y, _).\npath(X, Z) :- path(X, Y), edge(Y, Z, _).\n"
    "dist(X, Y, W) :- edge(X, Y, W).\n"
    "dist(X, Z, D) :- dist(X, Y, A), edge(Y, Z, W), D = A + W."
)


@settings(max_examples=10, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=15),
    st.data(),
)
def test_retraction_by_delete_rederive_matches_a_fresh_run(
    edges: list[tuple[int, int]], data: st.DataObject
) -> None:
    gone = data.draw(st.lists(st.sampled_from(edges), max_size=4))
    program = "path(X, Y) :- e(X, Y).\npath(X, Z) :- path(X, Y), e(Y, Z)."
    engine = Engine()
    engine.add_program(program)
    engine.add_facts("e", [(f'"{s}"', f'"{d}"') for s, d in edges])
    engine.materialize()
    engine.retract_facts("e", [(f'"{s}"', f'"{d}"') for s, d in gone])
    engine.materialize()
    fresh = Engine()
    fresh.add_program(program)
    kept = [e for e in edges if e not in gone]
    fresh.add_facts("e", [(f'"{s}"', f'"{d}"') for s, d in kept])
    fresh.materialize()
    assert set(engine.rows("path")) == set(fresh.rows("path"))


edges_strategy = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(1, 9)), min_size=1, max_size=25
)


@settings(max_examples=12, deadline=None)
@given(edges_strategy)
def test_closure_and_shortest_paths_match_python(edges: list[tuple[int, int, int]]) -> None:
    engine = Engine()
    engine.add_program(PATHS)
    engine.add_facts("edge", [(f'"{s}"', f'"{d}"', w) for s, d, w in edges])
    engine.materialize()  # linear strata: one recursive DuckDB query each
    rounds = Engine()  # a round budget forces round-by-round semi-naive evaluation
    rounds.add_program(PATHS)
    rounds.add_facts("edge", [(f'"{s}"', f'"{d}"', w) for s, d, w in edges])
    rounds.materialize(Budget(rounds=10_000))
    assert set(rounds.rows("path")) == set(engine.rows("path"))
    assert set(rounds.rows("dist")) == set(engine.rows("dist"))
    # Floyd-Warshall over the same edges (paths of length >= 1).
    inf = float("inf")
    best = {(s, d): inf for s in range(8) for d in range(8)}
    for s, d, w in edges:
        best[s, d] = min(best[s, d], w)
    for k, i, j in itertools.product(range(8), repeat=3):
        if best[i, k] + best[k, j] < best[i, j]:
            best[i, j] = best[i, k] + best[k, j]
    want = {(f'"{s}"', f'"{d}"'): v for (s, d), v in best.items() if v < inf}
    assert {(s, d) for s, d in engine.rows("path")} == set(want)
    assert {(s, d): v for s, d, v in engine.rows("dist")} == want
