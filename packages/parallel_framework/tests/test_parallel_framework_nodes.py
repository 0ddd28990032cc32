"""Ray and Dask across nodes (network namespaces with their own address and cgroup), with faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenfold.core.nodes import NodeSet
from tenfold.core.testing import needs_root
from tenfold.parallel_framework import Graph
from tenfold.parallel_framework._daskcluster import NodeDaskCluster
from tenfold.parallel_framework._graph import as_plan
from tenfold.parallel_framework._raycluster import LocalRayCluster
from tenfold.parallel_framework._remote import DaskBackend, RayBackend

pytestmark = [pytest.mark.slow, needs_root("network namespaces and cgroups for the nodes")]

WIDTH, DEPTH = 6, 8


def _node_ip() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


def step(log: str, key: str, *inputs: int) -> int:
    """A slow task that records where it starts and where it ends (key and node address)."""
    with open(log, "a") as fh:
        fh.write(f"start {key} {_node_ip()}\n")
    time.sleep(0.3)
    with open(log, "a") as fh:
        fh.write(f"end {key} {_node_ip()}\n")
    return sum(inputs) + 1


def once(log: str) -> int:
    """A task the graph runs at most once (it has a timeout: no retry, its own process)."""
    time.sleep(2.0)
    with open(log, "a") as fh:
        fh.write("ran\n")
    return 7


def _graph(log: Path, once_log: Path) -> tuple[Graph, list[str], int]:
    g = Graph()
    prev: list[Any] = []
    for layer in range(DEPTH):
        cur = []
        for i in range(WIDTH):
            deps = [prev[j] for j in (i - 1, i, i + 1) if 0 <= j < WIDTH] if prev else []
            key = f"s-{layer}-{i}"
            cur.append(g.add(key, step, str(log), key, *deps))
        prev = cur
    g.add("once", once, str(once_log), timeout_s=120)
    row = [1] * WIDTH
    for _ in range(1, DEPTH):
        row = [sum(row[max(0, i - 1) : i + 2]) + 1 for i in range(WIDTH)]
    return g, [f"s-{DEPTH - 1}-{i}" for i in range(WIDTH)], sum(row)


@pytest.fixture
def nodes() -> Iterator[NodeSet]:
    with NodeSet(3, cpu=0.5, memory_mb=1024) as node_set:
        yield node_set


def test_a_killed_raylet_mid_graph_reruns_its_tasks_elsewhere(tmp_path: Path, nodes) -> None:
    import ray

    log, once_log = tmp_path / "ran.log", tmp_path / "once.log"
    graph, sinks, expected = _graph(log, once_log)
    with LocalRayCluster(
        places=nodes.nodes, host=nodes.host_address, object_store_mb=80, start_timeout_s=180
    ) as cluster:
        # The cluster has turned off Ray's `uv run` runtime env (workers re-resolving the
        # environment on a busy machine never registered, and no task started).
        ray.init(address=cluster.address, _node_ip_address=nodes.host_address, log_to_driver=False)
        try:
            backend = RayBackend(cluster.address, 3)
            out: dict[str, Any] = {}
            runner = threading.Thread(
                target=lambda: out.update(result=backend.run(as_plan(graph), None)), daemon=True
            )
            runner.start()
            # The victim is whichever node Ray gave a task first (it may leave any one idle).
            deadline = time.monotonic() + 180
            victim = None
            while victim is None:
                assert runner.is_alive() and time.monotonic() < deadline, "no task started"
                text = log.read_text() if log.exists() else ""
                victim = next((n for n in nodes.nodes if n.address in text), None)
                time.sleep(0.05)
            victim.kill()  # its raylet, object store and workers: the node is lost
            killed_at = len(log.read_text().splitlines())
            runner.join(300)
            assert not runner.is_alive(), "the run did not finish after the node was lost"
        finally:
            ray.shutdown()
    result = out["result"]
    assert sum(result[k] for k in sinks) == expected
    runs = [line.split() for line in log.read_text().splitlines()]
    started: dict[str, set[str]] = {}
    ended: dict[str, set[str]] = {}
    for what, key, ip in runs:
        (started if what == "start" else ended).setdefault(key, set()).add(ip)
    assert set(ended) == {f"s-{la}-{i}" for la in range(DEPTH) for i in range(WIDTH)}
    # Nothing ran on the lost node after the kill; what it was running was rerun elsewhere.
    assert not [ip for _, _, ip in runs[killed_at + 1 :] if ip == victim.address]
    rerun = [
        k for k, ips in started.items() if victim.address in ips and ended[k] - {victim.address}
    ]
    assert rerun, runs
    # The at-most-once task ran once, or (its node lost mid-call) failed without a retry.
    once_runs = once_log.read_text().count("ran") if once_log.exists() else 0
    assert once_runs <= 1
    if once_runs == 0:
        assert "once" in result.failures


def test_dask_workers_in_nodes_run_the_graph(tmp_path: Path, nodes) -> None:
    from tenfold.parallel_framework._workloads import last_layer, stencil_dask, stencil_expected

    with NodeDaskCluster(nodes.nodes, nodes.host_address) as cluster:
        backend = DaskBackend(cluster.address, 3)
        try:
            dsk = stencil_dask(60)
            result = backend.run(as_plan(dsk), None)
            who = backend.client.run(lambda: __import__("socket").gethostname())
        finally:
            backend.close()
    assert sum(result[k] for k in last_layer(60)) == stencil_expected(60)
    assert {addr.split("://")[1].rsplit(":", 1)[0] for addr in who} == {
        n.address for n in nodes.nodes
    }
