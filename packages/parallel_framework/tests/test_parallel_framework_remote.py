"""Multi-node backends on real clusters: Ray with two nodes on 127.0.0.1, and a Dask LocalCluster."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.parallel_framework import Executor, Graph, RunResult
from tenfold.parallel_framework._graph import as_plan
from tenfold.parallel_framework._raycluster import LocalRayCluster, free_port
from tenfold.parallel_framework._remote import partition
from tenfold.parallel_framework._workloads import last_layer, stencil_dask, stencil_expected
from tenfold.parallel_framework.errors import (
    BackendUnavailable,
    TaskFailed,
    TaskTimeout,
    UpstreamFailed,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalRayCluster]:
    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster:
        yield cluster
    assert cluster.stragglers() == []


@pytest.fixture(scope="module")
def on_ray(ray_cluster: LocalRayCluster) -> Iterator[Executor]:
    with Executor("ray", address=ray_cluster.address) as ex:
        yield ex


@pytest.fixture(scope="module")
def on_dask() -> Iterator[Executor]:
    with Executor("dask", 2) as ex:
        yield ex


def node_id(_: int) -> str:
    import ray

    time.sleep(0.05)
    return str(ray.get_runtime_context().get_node_id())


def boom(x: int) -> int:
    raise ValueError(f"bad input {x}")


def failing_graph() -> Graph:
    g = Graph()
    a = g.add("a", lambda: 1)
    bad = g.add("bad", boom, a)
    g.add("down", lambda x: x + 1, bad)
    g.add("ok", lambda x: x * 10, a)
    return g


def test_partition_keeps_dependencies_in_earlier_batches() -> None:
    plan = as_plan(stencil_dask(400))
    batches = partition(plan, parallelism=2)
    where = {}
    for b, batch in enumerate(batches):
        for slot in batch.slots:
            where[slot] = b
        assert all(d < b for d in batch.deps)
    assert sorted(where) == list(range(len(plan)))
    for slot, deps in enumerate(plan.deps):
        for d in deps:
            assert where[d] < where[slot] or (
                where[d] == where[slot] and plan.chain_next[d] == slot
            )
            if where[d] != where[slot]:
                assert where[d] in batches[where[slot]].deps
    assert len(batches) < len(plan) / 4  # batching really groups tasks


def test_ray_two_nodes_run_the_stencil(on_ray: Executor) -> None:
    n = 2500
    dsk = stencil_dask(n)
    result = on_ray.run(dsk, keys=last_layer(n))
    assert sum(result.values()) == stencil_expected(n)
    assert result.metrics.backend == "ray" and result.metrics.workers == 2
    assert result.metrics.batches < len(dsk)


def test_ray_spreads_batches_over_both_nodes(on_ray: Executor) -> None:
    g = Graph()
    for i in range(40):
        g.add(i, node_id, i)
    result = on_ray.run(g)
    assert len(set(result.values())) == 2


def test_ray_failures_and_chains(on_ray: Executor) -> None:
    result = on_ray.run(failing_graph())
    assert result["ok"] == 10
    with pytest.raises(TaskFailed, match="bad input 1") as info:
        result["bad"]
    assert "in boom" in info.value.traceback
    with pytest.raises(UpstreamFailed, match="upstream task 'bad'"):
        result["down"]
    chain = [("c0", lambda: 1, [])] + [
        (f"c{i}", lambda x: x + 1, [f"c{i - 1}"]) for i in range(1, 30)
    ]
    assert on_ray.run(chain, keys=["c29"])["c29"] == 30


def test_ray_retries_inside_a_batch(on_ray: Executor, tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(tmp_path, "once")

    def flaky() -> str:
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise ConnectionError("first attempt fails")
        return "second attempt"

    g = Graph()
    g.add("flaky", flaky, retries=2, backoff_s=0.01)
    assert on_ray.run(g)["flaky"] == "second attempt"


def test_ray_unreachable_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(BackendUnavailable, match=rf"cannot reach Ray at 127\.0\.0\.1:{port}"):
        Executor("ray", address=f"127.0.0.1:{port}").run({"a": (int,)})


def test_dask_local_cluster_runs_the_stencil_and_reports_failures(on_dask: Executor) -> None:
    n = 2500
    result = on_dask.run(stencil_dask(n), keys=last_layer(n))
    assert sum(result.values()) == stencil_expected(n)
    assert result.metrics.backend == "dask" and result.metrics.workers == 2
    failed = on_dask.run(failing_graph())
    assert failed["ok"] == 10
    with pytest.raises(UpstreamFailed, match="bad input 1"):
        failed["down"]


def test_dask_unreachable_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(
        BackendUnavailable, match=rf"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:{port}"
    ):
        Executor("dask", address=f"tcp://127.0.0.1:{port}").run({"a": (int,)})


def runaway(pid_file: str) -> int:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)
    return 1


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def overrunning_graph(pid_file: Path) -> Graph:
    g = Graph()
    slow = g.add("slow", runaway, str(pid_file), timeout_s=0.5)
    g.add("after", lambda x: x, slow)
    g.add("ok", lambda: 2)
    return g


def check_overrun_stopped(result: RunResult, pid_file: Path) -> None:
    assert result["ok"] == 2
    with pytest.raises(TaskTimeout, match="timeout"):
        result["slow"]
    with pytest.raises(UpstreamFailed, match="'slow'"):
        result["after"]
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    assert gone_within(pid, 30), f"the process {pid} running the overrunning call is still alive"


def test_ray_timeout_stops_the_process_running_the_call(on_ray: Executor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    check_overrun_stopped(
        on_ray.run(overrunning_graph(pid_file), keys=["ok", "slow", "after"]), pid_file
    )
    assert on_ray.run({"x": (int, "3")})["x"] == 3  # the cluster goes on


def test_dask_timeout_restarts_the_worker_running_the_call(
    on_dask: Executor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    check_overrun_stopped(on_dask.run(overrunning_graph(pid_file)), pid_file)
    assert on_dask.run({"x": (int, "3")})["x"] == 3  # a fresh worker took its place


def test_timeout_tasks_are_batches_of_their_own() -> None:
    g = Graph()
    a = g.add("a", lambda: 1)
    t = g.add("t", lambda x: x, a, timeout_s=5)
    g.add("b", lambda x: x, t)
    plan = as_plan(g)
    assert plan.fused == 1  # t -> b is a chain locally, cut remotely
    batches = partition(plan, parallelism=2)
    alone = [b for b in batches if b.alone]
    assert [b.slots for b in alone] == [[plan.index["t"]]]
    assert len(batches) == 3


def gil_hog(pid_file: str) -> bool:
    Path(pid_file).write_text(str(os.getpid()))
    # Catastrophic backtracking inside the C regex engine: it never gives the GIL
    # back, so the worker's own timeout thread cannot even report the overrun.
    return re.match(r"(a+)+$", "a" * 40 + "b") is not None


def test_ray_cancels_a_call_that_holds_its_worker(on_ray: Executor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    g = Graph()
    hog = g.add("slow", gil_hog, str(pid_file), timeout_s=0.5)
    g.add("after", lambda x: x, hog)
    g.add("ok", lambda: 2)
    check_overrun_stopped(on_ray.run(g), pid_file)
