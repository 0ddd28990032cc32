"""Horizontal Scaling rows: one graph on Ray and on Dask with one worker per node.

A node (:class:`tenfold.core.nodes.NodeSet`) is a network namespace with its own
address and a cgroup of ``NODE_CPU`` cores and ``NODE_MEMORY_MB`` MiB, the same
at every N. Ray: the head on the host (the nodes' host-side address, no CPUs of
its own) and one raylet per node with one CPU and a small object store. Dask:
the scheduler on the host and one single-threaded ``dask worker`` per node.

Ours runs the graph through the framework's Ray or Dask backend (fused and
batched before it leaves); the peer on the same cluster is plain Ray (one remote
task per graph task, ObjectRefs as dependencies) or plain Dask
(``Client.get`` of the same dict). CPU-bound rows use a pure-Python loop per
task, I/O-bound rows a 20 ms sleep. Both sides' sums of the last layer are
checked against a sequential run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Subject
from tenfold.core.declare import scaling_seed
from tenfold.core.errors import BenchError

__all__ = ["node_scenarios"]

NODE_CPU = 0.25  # cores per node: 8 nodes fill this machine's 2 cores
NODE_MEMORY_MB = 1024  # a raylet, its workers and a 80 MiB object store fit


def _graph(ctx: BenchContext, workload: str) -> tuple[dict[Any, Any], list[str], int]:
    import dask.local

    from tenfold.parallel_framework._workloads import last_layer, sleep_ms, spin, stencil_dask

    if workload == "cpu":
        n = ctx.size(16, 64, 256)
        fn = spin(50_000)
    else:
        n = ctx.size(16, 100, 400)
        fn = sleep_ms(20)
    dsk = stencil_dask(n, fn)
    sinks = last_layer(n)
    expected = sum(dask.local.get_sync(dsk, sinks))
    return dsk, sinks, expected


def _cluster(ctx: BenchContext, backend: str, nodes: int) -> Any:
    from tenfold.core.nodes import NodeSet

    node_set = ctx.enter(NodeSet(nodes, cpu=NODE_CPU, memory_mb=NODE_MEMORY_MB))
    host = node_set.host_address
    if backend == "dask":
        from tenfold.parallel_framework._daskcluster import NodeDaskCluster

        return ctx.enter(NodeDaskCluster(node_set.nodes, host))
    import ray

    from tenfold.parallel_framework._raycluster import LocalRayCluster
    from tenfold.parallel_framework._remote import disable_uv_runtime_env

    disable_uv_runtime_env()
    if ray.is_initialized():
        ray.shutdown()
    cluster = ctx.enter(
        LocalRayCluster(places=node_set.nodes, host=host, object_store_mb=80, start_timeout_s=180)
    )
    ray.init(address=cluster.address, _node_ip_address=host, log_to_driver=False)
    ctx.callback(ray.shutdown)
    return cluster


def _subject(backend: str, workload: str, nodes: int, ours: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.parallel_framework._graph import as_plan

        cluster = ctx.once("cluster", lambda: _cluster(ctx, backend, nodes))
        dsk, sinks, expected = ctx.once("graph", lambda: _graph(ctx, workload))
        run: Callable[[], int]
        if ours:
            from tenfold.parallel_framework._remote import DaskBackend, RayBackend

            plan = as_plan(dsk)
            runner = (RayBackend if backend == "ray" else DaskBackend)(cluster.address, nodes)
            if backend == "dask":
                ctx.callback(runner.close)

            def run() -> int:
                result = runner.run(plan, sinks)
                if not result.ok:
                    raise BenchError(
                        f"tenfold on {backend}: {next(iter(result.failures.values()))}"
                    )
                return sum(result[k] for k in sinks)

        elif backend == "ray":
            import ray

            from tenfold.parallel_framework._workloads import sleep_ms, spin

            fn = spin(50_000) if workload == "cpu" else sleep_ms(20)
            remote = ray.remote(num_cpus=1)(fn)

            def run() -> int:
                refs: dict[Any, Any] = {}
                for key, (_, *deps) in dsk.items():  # insertion order is topological
                    refs[key] = remote.remote(*(refs[d] for d in deps))
                return int(sum(ray.get([refs[k] for k in sinks])))

        else:
            import distributed as distributed_module

            distributed: Any = distributed_module
            client = ctx.enter(distributed.Client(cluster.address, timeout="30s"))

            def run() -> int:
                return int(sum(client.get(dsk, sinks, sync=True)))

        run()  # warm: worker processes up, functions shipped

        def op() -> Outcome:
            total = run()
            if total != expected:
                raise BenchError(f"{backend}: graph sum {total}, expected {expected}")
            return Outcome(
                len(dsk),
                {"nodes": nodes, "check": "equal"},
                result=total,
            )

        return op

    return prepare


def node_scenarios() -> list[Scenario]:
    """``<ray|dask>_<cpu|io>_<N>_nodes`` for N = 1, 2 (quick) and 4, 8 (--full)."""
    from tenfold.core.declare import dist_version

    rows = []
    for backend in ("ray", "dask"):
        label = "Ray" if backend == "ray" else "Dask"
        version = dist_version("ray" if backend == "ray" else "distributed")
        for workload in ("cpu", "io"):
            what = "pure-Python loop tasks" if workload == "cpu" else "20 ms sleep tasks"
            for n in (1, 2, 4, 8):
                rows.append(
                    Scenario(
                        name=f"{backend}_{workload}_{n}_nodes",
                        unit="tasks",
                        table="Horizontal Scaling",
                        row=f"Parallel Framework on {label}, {workload.upper()}-bound, {n} "
                        + ("node" if n == 1 else "nodes"),
                        counts=f"a stencil graph of {what} on {n} node(s) (netns + cgroup of "
                        f"{NODE_CPU:g} core, {NODE_MEMORY_MB} MiB), one "
                        + ("raylet" if backend == "ray" else "dask worker")
                        + " per node; head/scheduler on the host",
                        ours=Subject(
                            f"tenfold ({label} backend)", _subject(backend, workload, n, True)
                        ),
                        peer=Subject(
                            f"{'ray' if backend == 'ray' else 'distributed'} {version} "
                            + ("(a task per graph task)" if backend == "ray" else "(Client.get)"),
                            _subject(backend, workload, n, False),
                        ),
                        seed=scaling_seed("Horizontal Scaling", "Parallel Framework", n),
                        modes=("quick", "full") if n <= 2 else ("full",),
                        needs_root=True,
                        rounds=2,
                        full_rounds=3,
                        warmup=0,
                        fairness="the same cluster and graph; ours fuses chains and batches "
                        "each level before it leaves, the peer submits one task per graph task; "
                        "both warmed by one run before the timer",
                        checks="both sides' sum over the last layer must equal a sequential run",
                    )
                )
    return rows
