"""Multi-node backends on real clusters: Ray with two nodes on 127.0.0.1, and a Dask LocalCluster."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tenfold.parallel_framework import Executor, Graph
from tenfold.parallel_framework._graph import as_plan
from tenfold.parallel_framework._raycluster import LocalRayCluster, free_port
from tenfold.parallel_framework._remote import partition
from tenfold.parallel_framework._workloads import last_layer, stencil_dask, stencil_expected
from tenfold.parallel_framework.errors import BackendUnavailable, TaskFailed, UpstreamFailed

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
