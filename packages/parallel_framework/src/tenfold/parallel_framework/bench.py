"""Benchmark scenarios: the document's task-graph, work-stealing and memory rows.

Every op runs one whole graph and returns how many tasks it ran, so ops/s is
tasks/s. Graph results are checked against a sequential evaluation on both
sides (a mismatch raises). Peer start-up (a Ray instance, a Dask LocalCluster,
a process pool) happens in ``prepare``, outside the timer, once per scenario.

Latency: in the threaded stencil rows every task stamps the moment it
finishes, so a task's latency is from its last input finishing (the graph's
start, for a root) to its own finish, on both sides alike; the other rows time
whole graphs and are labelled per call.

Where tasks run in other processes (our process workers, Dask's workers, Ray's
processes, loky's pool) the harness counts the process tree's CPU per side;
those ops also add ``workers_cpu_pct`` and ``workers_cpu_us_per_task`` (the
worker processes' user + system CPU, read from ``/proc/<pid>/stat`` around each
op).
"""

from __future__ import annotations

import logging
import os
import time
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

from tenfold.core.bench import BenchContext, Mode, Op, Outcome, Scenario, Subject, doc_seed
from tenfold.core.declare import dist_version
from tenfold.core.errors import BenchError

TASK_TABLE = "Task Execution Performance"
STEAL_TABLE = "Work-Stealing Performance"
MEMORY_TABLE = "Resource Usage"
TRIVIAL = "trivial tasks (sum of inputs + 1); one op = one whole graph, compiled from a Dask dict"


def _row(n: int) -> str:
    return f"{n:,} tasks"


# -- inputs ----------------------------------------------------------------------------------------
def _stencil(ctx: BenchContext, n: int) -> tuple[dict[Any, Any], list[str], int]:
    from tenfold.parallel_framework._workloads import last_layer, stencil_dask, stencil_expected

    return ctx.once(f"stencil-{n}", lambda: (stencil_dask(n), last_layer(n), stencil_expected(n)))


class _Stamps:
    """Each task's finish time, so a task's latency runs from its last input's finish to its own.

    The stamped graph is the stencil with every task wrapped in a closure that
    computes ``inc_sum`` and stamps ``perf_counter()``; ours and the peer run the
    very same graph object in this process, one after the other.
    """

    def __init__(self, dsk: dict[Any, Any]) -> None:
        self.done: dict[Any, float] = {}
        self.t0 = 0.0
        self.deps = {key: tuple(deps) for key, (_, *deps) in dsk.items()}
        self.graph = {key: (self._task(key), *deps) for key, deps in self.deps.items()}

    def _task(self, key: Any) -> Callable[..., int]:
        done, clock = self.done, time.perf_counter

        def task(*values: int) -> int:
            out = sum(values) + 1
            done[key] = clock()
            return out

        return task

    def start(self) -> None:
        self.done.clear()
        self.t0 = time.perf_counter()

    def latencies_ms(self) -> list[float]:
        done, t0 = self.done, self.t0
        if len(done) != len(self.deps):
            raise BenchError(f"{len(done)} of {len(self.deps)} tasks stamped their finish")
        return [
            (done[key] - max((done[d] for d in deps), default=t0)) * 1000
            for key, deps in self.deps.items()
        ]


def _stamped(ctx: BenchContext, n: int) -> _Stamps:
    return ctx.once(f"stamped-{n}", lambda: _Stamps(_stencil(ctx, n)[0]))


def _check(total: int, expected: int, who: str) -> None:
    if total != expected:
        raise BenchError(f"{who}: stencil result {total} differs from the sequential {expected}")


class TreeCpu:
    """Accumulates the CPU time that worker processes spend during the timed ops."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self.pids = pids
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.tasks = 0
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu_now(self) -> float:
        """User + system seconds so far of the worker processes (ones gone count 0)."""
        ticks = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / self._tick

    def wrap(self, op: Callable[[], Outcome]) -> Callable[[], Outcome]:
        cores = os.cpu_count() or 1

        def measured() -> Outcome:
            c0, t0 = self.cpu_now(), time.perf_counter()
            outcome = op()
            self.wall_s += time.perf_counter() - t0
            self.cpu_s += self.cpu_now() - c0
            self.tasks += outcome.ops
            metrics = dict(outcome.metrics)
            metrics["workers_cpu_pct"] = round(100 * self.cpu_s / self.wall_s / cores, 1)
            metrics["workers_cpu_us_per_task"] = round(1e6 * self.cpu_s / max(1, self.tasks), 2)
            return Outcome(
                outcome.ops, metrics, latencies_ms=outcome.latencies_ms, result=outcome.result
            )

        return measured


def _ray_pids() -> list[int]:
    """Every process Ray started for this driver (GCS, raylet, workers)."""
    import psutil

    return [p.pid for p in psutil.Process().children(recursive=True)]


# -- ours ----------------------------------------------------------------------------------------------
def _ours_stencil(
    backend: str, size: Callable[[BenchContext], int], workers: int = 2
) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.parallel_framework._api import Executor

        dsk, sinks, expected = _stencil(ctx, size(ctx))
        stamps = _stamped(ctx, size(ctx)) if backend == "threads" else None
        executor = ctx.enter(Executor(backend, workers))
        executor.run({"warm": (int,)})  # worker processes / Ray connection up front

        def op() -> Outcome:
            if stamps is not None:
                stamps.start()
            result = executor.run(stamps.graph if stamps else dsk, keys=sinks)
            total = sum(result.values())
            _check(total, expected, "tenfold")
            m = result.metrics
            return Outcome(
                len(dsk),
                {"check": "equal", "steal_rate": m.steal_rate, "batches": m.batches},
                latencies_ms=stamps.latencies_ms() if stamps else None,
                result=total,
            )

        if backend == "processes":
            return TreeCpu(executor.worker_pids).wrap(op)
        if backend == "ray":
            pids = _ray_pids()
            return TreeCpu(lambda: pids).wrap(op)
        return op

    return prepare


def _ours_flat(size: Callable[[BenchContext], int]) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.parallel_framework._api import Executor
        from tenfold.parallel_framework._workloads import flat_dask

        n = size(ctx)
        dsk = ctx.once(f"flat-{n}", lambda: flat_dask(n))
        executor = ctx.enter(Executor("threads", 2))

        def op() -> Outcome:
            result = executor.run(dsk)
            if sum(result.values()) != n:
                raise BenchError("tenfold: flat graph result is wrong")
            return Outcome(n, {"check": "equal"}, result=n)

        return op

    return prepare


# -- peers -----------------------------------------------------------------------------------------------
def _dask_threaded_stencil(
    size: Callable[[BenchContext], int], workers: int = 2
) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        import dask.threaded

        dsk, sinks, expected = _stencil(ctx, size(ctx))
        stamps = _stamped(ctx, size(ctx))

        def op() -> Outcome:
            stamps.start()
            total = sum(dask.threaded.get(stamps.graph, sinks, num_workers=workers))
            _check(total, expected, "dask.threaded")
            return Outcome(
                len(dsk), {"check": "equal"}, latencies_ms=stamps.latencies_ms(), result=total
            )

        return op

    return prepare


def _dask_threaded_flat(size: Callable[[BenchContext], int]) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        import dask.threaded

        from tenfold.parallel_framework._workloads import flat_dask

        n = size(ctx)
        dsk = ctx.once(f"flat-{n}", lambda: flat_dask(n))
        keys = list(dsk)

        def op() -> Outcome:
            if sum(dask.threaded.get(dsk, keys, num_workers=2)) != n:
                raise BenchError("dask.threaded: flat graph result is wrong")
            return Outcome(n, {"check": "equal"}, result=n)

        return op

    return prepare


def _dask_cluster_stencil(size: Callable[[BenchContext], int]) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        import distributed as distributed_module

        distributed: Any = distributed_module
        dsk, sinks, expected = _stencil(ctx, size(ctx))
        try:
            cluster = ctx.enter(
                distributed.LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
                )
            )
            client = ctx.enter(distributed.Client(cluster))
        except Exception as exc:
            raise BenchError(f"Dask LocalCluster did not start: {exc}") from None

        def op() -> Outcome:
            total = sum(client.get(dsk, sinks, sync=True))
            _check(total, expected, "dask distributed")
            return Outcome(len(dsk), {"check": "equal"}, result=total)

        pids = list(client.run(os.getpid).values())  # the worker processes
        return TreeCpu(lambda: pids).wrap(op)

    return prepare


def _ray_init(ctx: BenchContext) -> Any:
    from tenfold.parallel_framework._remote import disable_uv_runtime_env

    disable_uv_runtime_env()
    import ray as ray_module

    ray: Any = ray_module

    def start() -> None:
        # Built once per scenario through ctx.once, so the harness counts Ray's processes
        # as shared by both sides, not as ours.
        if ray.is_initialized():
            return
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except Exception as exc:
            raise BenchError(f"Ray did not start: {exc}") from None
        # Left running for the next Ray scenario (start-up is 10 s or more here); Ray
        # shuts it down at exit, and the two-node scenario replaces it.

    ctx.once("ray-init", start)
    return ray


def _ray_per_task_stencil(size: Callable[[BenchContext], int]) -> Callable[[BenchContext], Op]:
    """Ray's own way: one remote task per graph task, ObjectRefs as dependencies."""

    def prepare(ctx: BenchContext) -> Op:
        from tenfold.parallel_framework._workloads import inc_sum

        dsk, sinks, expected = _stencil(ctx, size(ctx))
        ray = _ray_init(ctx)
        remote = ray.remote(inc_sum)
        ray.get(remote.remote(1))  # a warm worker

        def op() -> Outcome:
            refs: dict[Any, Any] = {}
            for key, (_, *deps) in dsk.items():  # insertion order is topological here
                refs[key] = remote.remote(*(refs[d] for d in deps))
            total = sum(ray.get([refs[k] for k in sinks]))
            _check(total, expected, "ray")
            return Outcome(len(dsk), {"check": "equal"}, result=total)

        pids = _ray_pids()
        return TreeCpu(lambda: pids).wrap(op)

    return prepare


def _ours_on_ray(size: Callable[[BenchContext], int]) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:

        _ray_init(ctx)
        return _ours_stencil("ray", size)(ctx)

    return prepare


# -- horizontal scaling on Ray --------------------------------------------------------------------------------
def _ray_nodes(pinned: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.parallel_framework._graph import as_plan
        from tenfold.parallel_framework._raycluster import LocalRayCluster
        from tenfold.parallel_framework._remote import RayBackend, disable_uv_runtime_env
        from tenfold.parallel_framework._workloads import sleep_ms, stencil_dask

        disable_uv_runtime_env()

        def start() -> Any:
            import ray

            if ray.is_initialized():
                ray.shutdown()  # the local instance the task-graph scenarios share
            try:
                cluster = ctx.enter(LocalRayCluster(nodes=2, cpus_per_node=2))
            except Exception as exc:
                raise BenchError(f"the local Ray cluster did not start: {exc}") from None
            ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)
            ctx.callback(ray.shutdown)
            return cluster

        cluster = ctx.once("ray-cluster", start)
        n = ctx.size(40, 1_000, 10_000)
        plan = ctx.once(f"sleep-stencil-{n}", lambda: as_plan(stencil_dask(n, sleep_ms(10))))
        backend = RayBackend(cluster.address, 4)
        if pinned:
            import ray

            head = ray.get_runtime_context().get_node_id()
            backend.pin_to_node(head)
        backend.run(as_plan({"warm": (int,)}), None)

        def op() -> Outcome:
            result = backend.run(plan, None)
            if not result.ok:
                raise BenchError(f"ray run failed: {next(iter(result.failures.values()))}")
            return Outcome(len(plan), {"batches": result.metrics.batches})

        return op

    return prepare


# -- work stealing ----------------------------------------------------------------------------------------
def _fan_out(n: int, fn: Callable[..., Any]) -> dict[Any, Any]:
    """One root and ``n`` tasks depending on it: every ready task lands on one deque first."""
    dsk: dict[Any, Any] = {"root": (int,)}
    for i in range(n):
        dsk[f"leaf-{i}"] = (fn, "root")
    return dsk


def _ours_fan(
    workers: int, backend: str, fn_name: str, n: Callable[[BenchContext], int]
) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.parallel_framework._api import Executor
        from tenfold.parallel_framework._workloads import sleep_ms, spin

        fn = sleep_ms(1) if fn_name == "sleep" else spin(20_000)
        dsk = _fan_out(n(ctx), fn)
        executor = ctx.enter(Executor(backend, workers))
        executor.run({"warm": (int,)})

        def op() -> Outcome:
            result = executor.run(dsk)
            m = result.metrics
            util = sum(m.utilisation) / max(1, len(m.utilisation))
            return Outcome(
                len(dsk),
                {"steal_rate": m.steal_rate, "steals": m.steals, "utilisation": round(util, 3)},
                result=sum(result.values()),
            )

        if backend == "processes":
            return TreeCpu(executor.worker_pids).wrap(op)
        return op

    return prepare


def _dask_fan(
    workers: int, fn_name: str, n: Callable[[BenchContext], int]
) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.parallel_framework._workloads import sleep_ms, spin

        fn = sleep_ms(1) if fn_name == "sleep" else spin(20_000)
        dsk = _fan_out(n(ctx), fn)
        keys = list(dsk)
        if fn_name == "sleep":
            import dask.threaded

            def op() -> Outcome:
                return Outcome(
                    len(dsk), result=sum(dask.threaded.get(dsk, keys, num_workers=workers))
                )

            return op
        import dask.multiprocessing
        from loky import get_reusable_executor

        pool = get_reusable_executor(max_workers=workers)
        dask.multiprocessing.get({"warm": (int,)}, "warm", pool=pool)

        def op_cpu() -> Outcome:
            return Outcome(len(dsk), result=sum(dask.multiprocessing.get(dsk, keys, pool=pool)))

        return TreeCpu(lambda: list(pool._processes)).wrap(op_cpu)

    return prepare


# -- memory -----------------------------------------------------------------------------------------------
def _ours_memory(ctx: BenchContext) -> Op:
    """Bytes per task for a whole graph in flight: compiled plan plus run state, before any task ran."""
    from tenfold.parallel_framework._engine import Run
    from tenfold.parallel_framework._graph import Plan
    from tenfold.parallel_framework._workloads import stencil_dask

    n = ctx.size(1_000, 100_000, 100_000)
    dsk = stencil_dask(n)

    def op() -> Outcome:
        tracemalloc.start()
        try:
            plan = Plan.from_dask(dsk)
            run = Run(plan, keys=None, workers=2, backend="threads")
            run.seed()
            in_flight, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del run, plan
        return Outcome(len(dsk), {"bytes_per_task": round(in_flight / len(dsk), 1)})

    return op


# -- the list ------------------------------------------------------------------------------------------------
def _fixed(smoke: int, n: int) -> Callable[[BenchContext], int]:
    return lambda ctx: ctx.size(smoke, n, n)


_SAME_GRAPH = "the sum of the last layer is compared with a sequential evaluation on both sides, on every call, and the harness compares the two sums"


def scenarios() -> list[Scenario]:
    dask_version, distributed_version, ray_version = (
        dist_version("dask"),
        dist_version("distributed"),
        dist_version("ray"),
    )
    threaded = f"dask {dask_version} threaded (2 workers)"
    out: list[Scenario] = []
    for n in (100, 1_000, 10_000, 100_000):
        modes: tuple[Mode, ...] = ("full",) if n == 100_000 else ("smoke", "quick", "full")
        size = _fixed(100, n)
        out.append(
            Scenario(
                name=f"stencil_{n}_threads",
                unit="tasks",
                ours=Subject("tenfold threads x2", _ours_stencil("threads", size)),
                peer=Subject(threaded, _dask_threaded_stencil(size)),
                table=TASK_TABLE,
                row=_row(n),
                counts=f"stencil graph, 3 deps per task; {TRIVIAL}",
                headline=n == 10_000,
                modes=modes,
                rounds=5 if n <= 10_000 else 3,
                full_rounds=5,
                fairness="both run the same stencil graph of the same stamped trivial tasks on 2 "
                "threads in this process; a task's latency runs from its last input's finish to "
                "its own",
                checks=_SAME_GRAPH,
            )
        )
    for n in (1_000, 10_000):
        modes = ("smoke", "quick", "full") if n == 1_000 else ("full",)
        size = _fixed(100, n)
        out.append(
            Scenario(
                name=f"stencil_{n}_processes",
                unit="tasks",
                ours=Subject("tenfold processes x2", _ours_stencil("processes", size)),
                peer=Subject(
                    f"dask distributed {distributed_version} LocalCluster(2)",
                    _dask_cluster_stencil(size),
                ),
                table=TASK_TABLE,
                row=_row(n),
                counts=f"stencil graph; {TRIVIAL}; both sides run tasks in 2 worker processes",
                modes=modes,
                rounds=3,
                full_rounds=3,
                fairness="both run the same graph in 2 worker processes started outside the timer "
                "(ours its process pool, Dask a LocalCluster of 2 single-thread workers); latency "
                "per call (one whole graph)",
                checks=_SAME_GRAPH,
            )
        )
        out.append(
            Scenario(
                name=f"stencil_{n}_ray_backend",
                unit="tasks",
                ours=Subject("tenfold on the Ray backend (batched, 2 CPUs)", _ours_on_ray(size)),
                peer=Subject(
                    f"ray {ray_version} local (task per node, 2 CPUs)", _ray_per_task_stencil(size)
                ),
                table=TASK_TABLE,
                row=_row(n),
                counts=f"stencil graph; {TRIVIAL}; same local Ray instance for both",
                modes=modes,
                rounds=3,
                full_rounds=3,
                fairness="both run the same graph on the same local Ray instance (2 CPUs, started "
                "outside the timer); ours groups tasks into batched Ray tasks, the peer submits one "
                "Ray task per graph task with ObjectRefs as dependencies, as Ray's own API does; "
                "latency per call (one whole graph)",
                checks=_SAME_GRAPH,
            )
        )
    for n in (10_000, 100_000):
        size = _fixed(100, n)
        out.append(
            Scenario(
                name=f"flat_{n}_threads",
                unit="tasks",
                ours=Subject("tenfold threads x2", _ours_flat(size)),
                peer=Subject(threaded, _dask_threaded_flat(size)),
                table=TASK_TABLE,
                row=f"{_row(n)} (flat)",
                counts=f"independent tasks; {TRIVIAL}",
                modes=("smoke", "quick", "full") if n == 10_000 else ("full",),
                rounds=5,
                doc_row=_row(n),
                fairness="both run the same independent trivial tasks on 2 threads in this "
                "process; latency per call (one whole graph)",
                checks="the sum of all results must equal the task count on both sides",
            )
        )
    out.append(
        Scenario(
            name="ray_two_nodes_10ms_tasks",
            unit="tasks",
            ours=Subject("tenfold on ray, 2 nodes x 2 CPUs", _ray_nodes(pinned=False)),
            peer=Subject("tenfold on ray, pinned to 1 node x 2 CPUs", _ray_nodes(pinned=True)),
            seed=doc_seed("Horizontal Scaling", "Parallel Framework"),
            table="Horizontal Scaling",
            row="Parallel Framework, 1 -> 2 nodes",
            counts="stencil graph of 10 ms sleep tasks on a local two-node Ray cluster "
            "(127.0.0.1); the peer is the same run pinned to one node, so speedup = scaling",
            # A cluster start takes 20-60 s here: kept out of make bench's quick run.
            modes=("full",),
            rounds=2,
            full_rounds=2,
            warmup=0,
            like_for_like=False,
            fairness="ours against ours: the same graph on two Ray nodes and pinned to one, so "
            "the ratio is the scaling from one node to two, not a speedup over a peer",
            checks="every task must succeed on both sides (a failure fails the row)",
        )
    )
    cpu_n = lambda ctx: ctx.size(20, 400, 2_000)  # noqa: E731
    out.append(
        Scenario(
            name="steal_2_workers_cpu",
            unit="tasks",
            ours=Subject("tenfold processes x2", _ours_fan(2, "processes", "cpu", cpu_n)),
            peer=Subject(
                f"dask {dask_version} multiprocessing (2 loky workers)", _dask_fan(2, "cpu", cpu_n)
            ),
            table=STEAL_TABLE,
            row="2",
            counts="CPU-bound tasks (~1 ms pure-Python loop) fanned out from one root; "
            "this machine has 2 cores, so CPU scaling beyond 2 workers cannot be shown here",
            rounds=3,
            fairness="both fan the same CPU-bound tasks out from one root to 2 worker processes "
            "started outside the timer; latency per call (one whole graph)",
            checks="the harness compares the sum of all task results of the two sides, call by call",
        )
    )
    sleep_n = lambda ctx: ctx.size(50, 1_000, 4_000)  # noqa: E731
    for w in (2, 4, 8, 16):
        out.append(
            Scenario(
                name=f"steal_{w}_workers_sleep",
                unit="tasks",
                ours=Subject(f"tenfold threads x{w}", _ours_fan(w, "threads", "sleep", sleep_n)),
                peer=Subject(
                    f"dask {dask_version} threaded ({w} workers)", _dask_fan(w, "sleep", sleep_n)
                ),
                table=STEAL_TABLE,
                row=str(w),
                counts="1 ms sleep tasks (an I/O stand-in that releases the GIL) fanned out "
                "from one root, so idle workers must steal; CPU-bound scaling beyond 2 cores "
                "cannot be shown on this 2-core machine",
                rounds=3,
                fairness=f"both fan the same 1 ms sleep tasks out from one root to {w} threads; "
                "latency per call (one whole graph)",
                checks="the harness compares the sum of all task results of the two sides, call "
                "by call",
            )
        )
    out.append(
        Scenario(
            name="memory_per_task_in_flight",
            unit="tasks",
            ours=Subject("tenfold", _ours_memory),
            seed=doc_seed("Memory Footprint", "Parallel Framework"),
            table=MEMORY_TABLE,
            row="Memory per task in flight (100K tasks)",
            counts="traced Python allocations of the compiled plan plus run state for a whole "
            "100K-task stencil, before any task ran, divided by the task count",
            rounds=2,
        )
    )
    from tenfold.parallel_framework._bench_nodes import node_scenarios

    out.extend(node_scenarios())
    return out
