"""The in-memory fixpoint for small positive programs: the same facts as the DuckDB path."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tenfold.semantic_lattice import (
    Budget,
    Engine,
    LatticeStore,
    SemanticLatticeError,
    generate_lubm,
    lubm_tbox,
)

_BASE = {"e": 2, "f": 2, "g": 1}
_DERIVED = {"r": 2, "s": 2, "t": 1}
_ARITY = {**_BASE, **_DERIVED}
_TERM = st.sampled_from(["A", "B", "C", "A", "B", '"a"', '"b"'])


@st.composite
def _rule(draw: st.DrawFn) -> str:
    body = []
    bound: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        rel = draw(st.sampled_from(sorted(_ARITY)))
        args = [draw(_TERM) for _ in range(_ARITY[rel])]
        bound += [a for a in args if not a.startswith('"')]
        body.append(f"{rel}({', '.join(args)})")
    # Mostly safe rules: the head and comparisons use the body's variables.
    usable = st.sampled_from(bound or ['"a"']) | st.sampled_from(['"a"', '"b"'])
    if draw(st.booleans()):
        op = draw(st.sampled_from(["!=", "<", ">="]))  # "=" with a fresh variable assigns
        other = draw(st.one_of(_TERM, st.sampled_from(["2", "7.5"])))
        body.append(f"{draw(usable)} {op} {other}")
    head = draw(st.sampled_from(sorted(_DERIVED)))
    args = ", ".join(draw(usable) for _ in range(_DERIVED[head]))
    return f"{head}({args}) :- {', '.join(body)}."


_FACTS = st.lists(
    st.tuples(st.sampled_from(sorted(_BASE)), st.lists(st.sampled_from("abcd"), min_size=2)),
    max_size=25,
)


def _closure(rules: list[str], facts: list[tuple[str, list[str]]], limit: int) -> dict[str, Any]:
    engine = Engine()
    engine.in_memory_max_rows = limit
    try:
        decls = "".join(
            f".decl {name}({', '.join(f'c{i}' for i in range(n))}).\n" for name, n in _ARITY.items()
        )
        engine.add_program(decls + "\n".join(rules))
        for name, values in facts:
            engine.add_facts(name, [tuple(f'"{v}"' for v in values[: _ARITY[name]])])
        engine.materialize()
        return {name: sorted(engine.rows(name)) for name in _ARITY}
    finally:
        engine.close()


@settings(
    max_examples=30,
    deadline=None,
    # Unsafe rule sets are drawn often and discarded (refused on both paths alike).
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.lists(_rule(), min_size=1, max_size=5), _FACTS)
def test_in_memory_fixpoint_equals_duckdb(
    rules: list[str], facts: list[tuple[str, list[str]]]
) -> None:
    try:
        in_duckdb = _closure(rules, facts, 0)
    except SemanticLatticeError:
        assume(False)  # unsafe variables: refused on both paths alike
        return
    assert _closure(rules, facts, 10**9) == in_duckdb


def test_owl_rl_closure_of_lubm_is_the_same_on_both_paths() -> None:
    triples = lubm_tbox() + generate_lubm(1_500, seed=3)
    closures = []
    for limit in (0, 10**9):
        with LatticeStore() as store:
            store.engine.in_memory_max_rows = limit
            store.add_triples(triples)
            store.add_rules("owl-rl")
            stats = store.reason()
            assert stats.derived > 0
            closures.append((set(store.triples()), store.inconsistencies()))
            # Incremental reasoning after the in-memory fixpoint continues in DuckDB.
            store.add_triples([("<http://e.org/x>", "<http://e.org/p>", "<http://e.org/y>")])
            assert store.reason().derived >= 0
    assert closures[0] == closures[1]


def test_in_memory_fixpoint_honours_the_time_budget() -> None:
    engine = Engine()
    engine.add_program(
        ".decl edge(a, b)\npath(X, Y) :- edge(X, Y).\npath(X, Z) :- path(X, Y), edge(Y, Z)."
    )
    engine.add_facts("edge", [(f'"n{i}"', f'"n{i + 1}"') for i in range(300)])
    try:
        engine.materialize(Budget(time_s=0.0))
    except SemanticLatticeError as exc:
        assert "time budget" in str(exc)
    else:
        raise AssertionError("a zero time budget must abort")
    engine.materialize()  # the next run starts over and completes
    assert engine.count("path") == 300 * 301 // 2
    engine.close()
