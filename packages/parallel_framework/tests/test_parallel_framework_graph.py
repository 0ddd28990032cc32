"""Graph building and validation: the three input shapes, keys, cycles, missing deps, duplicates."""

from __future__ import annotations

import itertools
import operator
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.parallel_framework import Graph, Node, run, task
from tenfold.parallel_framework._graph import Plan, as_plan
from tenfold.parallel_framework.errors import (
    CycleError,
    DuplicateKeyError,
    GraphError,
    MissingDependencyError,
)


@task
def add(a: int, b: int) -> int:
    return a + b


@task(retries=2, timeout_s=5)
def double(a: int) -> int:
    return 2 * a


def test_builder_with_nodes_constants_and_nested_containers() -> None:
    g = Graph()
    a = g.add("a", lambda: 3)
    b = g.add("b", operator.mul, a, 10)
    c = g.add("c", lambda xs, d: sum(xs) + d["k"], [a, b], {"k": a})
    result = run(g, backend="inline")
    assert result["a"] == 3 and result["b"] == 30 and result["c"] == 36
    assert isinstance(c, Node) and c.key == "c"


def test_task_decorator_builds_nodes_inside_a_graph_and_runs_plainly_outside() -> None:
    assert add(1, 2) == 3
    with Graph() as g:
        x = add(1, 2)
        y = double(x)
        z = add(x, y)
    assert isinstance(z, Node)
    plan = g.compile()
    assert plan.options[plan.index[y.key]].retries == 2
    result = run(g, backend="threads", workers=2)
    assert result[z.key] == 9


def test_dask_dict_with_literals_aliases_lists_and_nested_tasks() -> None:
    dsk = {
        "x": 1,
        "y": (operator.add, "x", 10),
        "alias": "y",
        "total": (sum, ["x", "y", "alias"]),
        "nested": (operator.mul, (operator.add, "x", 1), "y"),
        "twice": (operator.add, "x", "x"),
    }
    result = run(dsk, backend="inline")
    assert result["y"] == 11 and result["alias"] == 11
    assert result["total"] == 23 and result["nested"] == 22 and result["twice"] == 2


def test_task_list_calls_fn_with_dep_results_in_order() -> None:
    tasks = [("a", lambda: 5, []), ("b", lambda: 7, []), ("c", operator.sub, ["b", "a"])]
    assert run(tasks, backend="threads", workers=2)["c"] == 2


def test_after_is_an_ordering_only_dependency() -> None:
    seen: list[str] = []
    g = Graph()
    g.add("first", seen.append, "first")
    g.add("second", seen.append, "second", after=["first"])
    run(g, backend="threads", workers=4)
    assert seen == ["first", "second"]


def test_duplicate_key_is_rejected() -> None:
    g = Graph()
    g.add("a", lambda: 1)
    with pytest.raises(DuplicateKeyError, match="'a'"):
        g.add("a", lambda: 2)


def test_missing_dependency_names_both_keys() -> None:
    with pytest.raises(MissingDependencyError, match=r"'b' depends on 'ghost'"):
        run([("a", lambda: 1, []), ("b", add, ["a", "ghost"])])
    g = Graph()
    g.add("a", lambda: 1, after=["nowhere"])
    with pytest.raises(MissingDependencyError, match="'nowhere'"):
        g.compile()


def test_cycle_is_rejected_before_running_with_its_path() -> None:
    ran: list[str] = []
    tasks = [
        ("root", lambda: ran.append("root"), []),
        ("a", lambda *_: ran.append("a"), ["root", "c"]),
        ("b", lambda *_: ran.append("b"), ["a"]),
        ("c", lambda *_: ran.append("c"), ["b"]),
    ]
    with pytest.raises(CycleError) as info:
        run(tasks)
    assert ran == []
    path = re.findall(r"'(\w+)'", str(info.value))
    assert path[0] == path[-1] and set(path) == {"a", "b", "c"}


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError, match="'x' -> 'x'"):
        as_plan({"x": (add, "x", 1)})


def test_bad_shapes_are_graph_errors() -> None:
    with pytest.raises(GraphError):
        as_plan([("a", lambda: 1)])  # type: ignore[list-item]
    with pytest.raises(GraphError):
        as_plan(42)  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="not callable"):
        Graph().add("a", 3)  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="retries"):
        task(retries=-1)


def test_chains_are_fused() -> None:
    tasks = [("c0", lambda: 0, [])] + [
        (f"c{i}", lambda x: x + 1, [f"c{i - 1}"]) for i in range(1, 50)
    ]
    plan = as_plan(tasks)
    assert plan.fused == 49
    result = run(plan, backend="threads", workers=2)
    assert result["c49"] == 49
    assert result.metrics.batches <= 2  # one hand-over for the whole chain


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[int, list[int]]]:
    n = draw(st.integers(1, 40))
    return [
        (i, draw(st.lists(st.integers(0, i - 1), max_size=4, unique=True)) if i else [])
        for i in range(n)
    ]


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_cycle_report_is_a_real_cycle(
    dag: list[tuple[int, list[int]]], data: st.DataObject
) -> None:
    # make src depend on itself or on one of its descendants: that closes a cycle
    n = len(dag)
    src = data.draw(st.integers(0, n - 1))
    below = {src}
    for k, deps in dag:
        if any(d in below for d in deps):
            below.add(k)
    dst = data.draw(st.sampled_from(sorted(below)))
    dag[src][1].append(dst)
    edges = {(k, d) for k, deps in dag for d in deps}
    tasks = [(k, inc_all, deps) for k, deps in dag]
    with pytest.raises(CycleError) as info:
        as_plan(tasks)
    with pytest.raises(CycleError):
        Plan.from_dask({k: (inc_all, *deps) for k, deps in dag})
    path = [int(x) for x in re.findall(r"\d+", str(info.value))]
    assert path[0] == path[-1]
    for a, b in itertools.pairwise(path):
        assert (b, a) in edges  # b depends on a: a runs before b


def inc_all(*xs: int) -> int:
    return sum(xs) + 1
