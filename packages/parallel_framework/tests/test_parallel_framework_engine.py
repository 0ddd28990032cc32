"""The embedded executor (inline and threads): results, stealing, failures, retries, futures."""

from __future__ import annotations

import itertools
import threading
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.parallel_framework import Executor, Future, Graph, run, submit, task
from tenfold.parallel_framework._workloads import (
    flat_dask,
    last_layer,
    sleep_ms,
    stencil_dask,
    stencil_expected,
)
from tenfold.parallel_framework.errors import (
    Cancelled,
    ParallelFrameworkError,
    TaskFailed,
    TaskTimeout,
    UpstreamFailed,
)


def weighted(i: int) -> Any:
    def fn(*xs: int) -> int:
        return (sum(xs) * 31 + i) % 1_000_003

    return fn


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[int, list[int]]]:
    n = draw(st.integers(1, 120))
    fan = draw(st.integers(0, 5))
    out = []
    for i in range(n):
        deps = (
            draw(st.lists(st.integers(max(0, i - 20), i - 1), max_size=fan, unique=True))
            if i
            else []
        )
        out.append((i, deps))
    return out


def reference(dag: list[tuple[int, list[int]]]) -> dict[int, int]:
    res: dict[int, int] = {}
    for i, deps in dag:  # keys are in topological order by construction
        res[i] = weighted(i)(*(res[d] for d in deps))
    return res


@settings(max_examples=40, deadline=None)
@given(
    dags(),
    st.sampled_from([("inline", 1), ("threads", 1), ("threads", 2), ("threads", 7)]),
    st.integers(1, 9),
)
def test_every_backend_matches_a_sequential_evaluation(
    dag: list[tuple[int, list[int]]], backend: tuple[str, int], cap: int
) -> None:
    tasks = [(i, weighted(i), deps) for i, deps in dag]
    with Executor(backend[0], backend[1], batch_cap=cap) as ex:
        result = ex.run(tasks)
    assert dict(result) == reference(dag)
    assert result.metrics.tasks == len(dag)


def test_each_task_runs_exactly_once_under_stealing() -> None:
    counts = [0] * 5000
    lock = threading.Lock()

    def mark(i: int) -> int:
        with lock:
            counts[i] += 1
        return i

    g = Graph()
    for i in range(5000):
        g.add(i, mark, i)
    result = run(g, backend="threads", workers=8)
    assert counts == [1] * 5000
    assert result.metrics.tasks == 5000


def test_stencil_result_and_metrics() -> None:
    n = 10_000
    with Executor("threads", 4) as ex:
        result = ex.run(stencil_dask(n), keys=last_layer(n))
    assert sum(result.values()) == stencil_expected(n)
    m = result.metrics
    assert m.tasks == 10_000 and m.tasks_per_s > 0
    assert len(m.utilisation) == 4 and all(0 <= u <= 1 for u in m.utilisation)
    assert m.max_queue_depth >= 1 and 0 <= m.steal_rate <= 1
    assert set(result) == set(last_layer(n))  # only the requested keys are kept


def test_idle_workers_steal_from_the_busy_one() -> None:
    # every root lands on worker 0's deque when workers == roots... use 1 root fanning out
    g = Graph()
    root = g.add("root", lambda: 0)
    for i in range(200):
        g.add(i, sleep_ms(1), root)
    result = run(g, backend="threads", workers=4)
    m = result.metrics
    assert m.steals >= 1 and m.stolen_tasks >= 1
    assert sum(1 for u in m.utilisation if u > 0) >= 2


def test_failure_marks_dependents_upstream_failed_with_original_traceback() -> None:
    def explode(_: int) -> int:
        raise ValueError("boom at the source")

    tasks = [
        ("a", lambda: 1, []),
        ("bad", explode, ["a"]),
        ("child", lambda x: x, ["bad"]),
        ("grandchild", lambda x, y: x + y, ["child", "a"]),
        ("fine", lambda x: x + 1, ["a"]),
    ]
    for backend in ("inline", "threads"):
        result = run(tasks, backend=backend, workers=2)
        assert not result.ok
        assert result["fine"] == 2
        with pytest.raises(TaskFailed, match="boom at the source") as own:
            result["bad"]
        assert "explode" in own.value.traceback and own.value.key == "bad"
        with pytest.raises(UpstreamFailed, match="upstream task 'bad' failed") as up:
            result["grandchild"]
        assert "boom at the source" in up.value.traceback and "explode" in up.value.traceback
        with pytest.raises(TaskFailed, match="boom"):
            result.raise_first()


def test_retries_with_backoff_then_success() -> None:
    attempts: list[float] = []

    @task(retries=3, backoff_s=0.02)
    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("transient")
        return "ok"

    with Graph() as g:
        node = flaky()
    result = run(g, backend="threads", workers=2)
    assert result[node.key] == "ok"
    assert len(attempts) == 3 and result.metrics.retries == 2
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04  # exponential backoff


def test_retries_exhausted_is_a_failure_and_no_retry_without_opt_in() -> None:
    calls = {"opt": 0, "plain": 0}

    def always(kind: str) -> None:
        calls[kind] += 1
        raise RuntimeError(kind)

    g = Graph()
    g.add("opt", always, "opt", retries=2, backoff_s=0.001)
    g.add("plain", always, "plain")
    result = run(g, backend="inline")
    assert calls == {"opt": 3, "plain": 1}
    with pytest.raises(TaskFailed):
        result["opt"]


def test_timeout_fails_the_task_and_its_dependents() -> None:
    g = Graph()
    slow = g.add("slow", time.sleep, 2.0, timeout_s=0.1)
    g.add("after", lambda _: 1, slow)
    g.add("other", lambda: 7)
    t = time.monotonic()
    result = run(g, backend="threads", workers=2)
    assert time.monotonic() - t < 1.5
    with pytest.raises(TaskTimeout, match=r"timeout of 0\.1 s"):
        result["slow"]
    with pytest.raises(UpstreamFailed):
        result["after"]
    assert result["other"] == 7


def test_cancellation_stops_the_run() -> None:
    started = threading.Event()
    ran: list[int] = []

    def step(i: int) -> int:
        started.set()
        time.sleep(0.005)
        ran.append(i)
        return i

    tasks = [(i, step, []) for i in range(2000)]
    g = Graph()
    for key, fn, _ in tasks:
        g.add(key, fn, key)
    with Executor("threads", 2) as ex:
        handle = ex.start(g)
        assert started.wait(5)
        handle.cancel()
        result = handle.wait(10)
    assert handle.done()
    cancelled = [k for k, e in result.failures.items() if isinstance(e, Cancelled)]
    assert cancelled and len(ran) < 2000
    with pytest.raises(Cancelled):
        result[cancelled[0]]


def test_futures_for_dynamic_submission() -> None:
    def fib(n: int) -> int:
        if n < 2:
            return n
        a = submit(fib, n - 1)
        b = submit(fib, n - 2)
        return int(a.result()) + int(b.result())

    def fan_out(n: int) -> int:
        parts = [submit(lambda i: i * i, i) for i in range(n)]
        total = submit(lambda *xs: sum(xs), *parts)  # futures as dependencies
        assert isinstance(total, Future)
        return int(total.result())

    for backend, workers in (("inline", 1), ("threads", 1), ("threads", 3)):
        g = Graph()
        g.add("fib", fib, 12)
        g.add("fan", fan_out, 50)
        result = run(g, backend=backend, workers=workers)
        assert result["fib"] == 144
        assert result["fan"] == sum(i * i for i in range(50))


def test_submit_outside_a_task_is_an_error() -> None:
    with pytest.raises(ParallelFrameworkError, match="inside a running task"):
        submit(print)


def test_future_of_a_failed_task_raises_its_error() -> None:
    def parent() -> str:
        fut = submit(lambda: 1 / 0)
        try:
            fut.result()
        except TaskFailed as exc:
            return str(exc)
        return "no error"

    result = run({"p": (parent,)}, backend="threads", workers=2)
    assert "ZeroDivisionError" in result["p"]


def test_unknown_backend_and_bad_worker_count() -> None:
    from tenfold.parallel_framework.errors import BackendError

    with pytest.raises(BackendError, match="unknown backend 'gpu'"):
        Executor("gpu")
    with pytest.raises(BackendError, match="workers"):
        Executor("threads", 0)
    with pytest.raises(ParallelFrameworkError, match="not in the graph"):
        run({"a": (int,)}, keys=["zzz"])


def test_results_are_released_when_only_sinks_are_kept() -> None:
    # a 20K-task chain of 10 KB payloads: holding every result would need 200 MB
    n = 20_000
    tasks = [(0, lambda: bytes(10_000), [])]
    tasks += [(i, lambda b: bytes(len(b)), [i - 1]) for i in range(1, n)]
    g = Graph.from_tasks(tasks)
    tracemalloc.start()
    try:
        result = run(g, keys=[n - 1], backend="threads", workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result[n - 1]) == 10_000
    assert peak < 40_000_000


@pytest.mark.slow
def test_million_task_graph_runs_in_bounded_memory() -> None:
    import resource

    n = 1_000_000
    dsk = flat_dask(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = run(dsk, keys=["f-0", f"f-{n - 1}"], backend="threads", workers=2)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert result["f-0"] == 1 and result[f"f-{n - 1}"] == 1
    assert result.metrics.tasks == n
    assert (after - before) / n < 1024  # under 1 KB per task in flight, graph included
