"""Multi-node backends: the same plan on a Ray cluster or on Dask distributed.

A per-task remote call costs a millisecond or more on either system, so the
plan is first cut into *batches*: fused chains become one unit, units are
grouped by level (the longest path from a root, so units of one level never
depend on each other), and each level is split into at most
``2 x cluster CPUs`` contiguous batches. One batch is one remote task: on Ray
its inputs are the ObjectRefs of the batches it depends on (Ray resolves them
and moves the data between nodes); on Dask it is one key of the graph handed
to ``Client.get``. A batch returns ``{slot: result}`` for its tasks; a failed
task's entry is a :class:`RemoteFailure`, which its dependents turn into
upstream failures, so both backends report failures the way the local ones do.

A task with a timeout is never fused or grouped: it is a batch of its own, so
that when it overruns, the process running it can be stopped without losing
anything else. The worker notices the overrun (the call runs in a helper
thread) and reports the timeout at once; then the process goes: on Ray such a
batch runs as a ``max_calls=1`` task, so Ray ends its worker process after it
returns, and on Dask the driver restarts the worker that reported it
(``Client.restart_workers``; the nanny starts a fresh one). The abandoned call
dies with its process instead of running on in the cluster.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tenfold.parallel_framework._engine import (
    Failure,
    Metrics,
    RunResult,
    _local,
    call_with_options,
    make_error,
)
from tenfold.parallel_framework._graph import PLAIN, Plan, TaskOptions, substitute
from tenfold.parallel_framework._pickling import ship_module_by_value
from tenfold.parallel_framework.errors import BackendError, BackendUnavailable, TaskError

Key = Hashable
_run_ids = itertools.count()
WATCHDOG_GRACE_S = 2.0  # Ray: past a lone task's timeout, before the driver cancels it


@dataclass(frozen=True, slots=True)
class RemoteFailure:
    """A failed task's entry in a batch result (travels between workers)."""

    kind: str
    error: str
    traceback: str
    root: int
    worker: str = ""  # for a timeout on Dask: the worker to restart


# item: (slot, fn, template, deps, options, links); link: (slot, fn, template, options)
Item = tuple[int, Callable[..., Any], Any, tuple[int, ...], TaskOptions, tuple[Any, ...]]


class Items:
    """An opaque box for a batch's items, so Dask does not mistake them for tasks."""

    __slots__ = ("items",)

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    def __reduce__(self) -> tuple[type[Items], tuple[list[Item]]]:
        return (Items, (self.items,))


def run_batch(box: Items, *upstream: dict[int, Any]) -> dict[int, Any]:
    """Run one batch in a remote worker; ``upstream`` are the results of the batches it needs."""
    _local.inline_submit = True
    lookup: dict[int, Any] = {}
    for part in upstream:
        lookup.update(part)
    out: dict[int, Any] = {}
    for slot, fn, template, deps, options, links in box.items:
        failed = next((lookup[d] for d in deps if type(lookup.get(d)) is RemoteFailure), None)
        if failed is not None:
            marker = _upstream(failed, deps, lookup)
            out[slot] = marker
            for link in links:
                out[link[0]] = marker
            continue
        value = _call(fn, template, deps, options, lookup, slot)
        out[slot] = value
        prev = slot
        for lslot, lfn, ltemplate, loptions in links:
            if type(value) is RemoteFailure:
                out[lslot] = _upstream(value, (prev,), {prev: value})
                continue
            lookup[prev] = value
            value = _call(lfn, ltemplate, (prev,), loptions, lookup, lslot)
            out[lslot] = value
            prev = lslot
    return out


def _upstream(failed: RemoteFailure, deps: Sequence[int], lookup: dict[int, Any]) -> RemoteFailure:
    root = failed.root
    if failed.kind != "upstream":
        root = next(d for d in deps if lookup.get(d) is failed)
    return RemoteFailure("upstream", failed.error, failed.traceback, root)


def _call(
    fn: Callable[..., Any],
    template: Any,
    deps: tuple[int, ...],
    options: TaskOptions,
    lookup: dict[int, Any],
    slot: int,
) -> Any:
    try:
        args = tuple(lookup[d] for d in deps) if template is None else substitute(template, lookup)
        return call_with_options(fn, args, options)
    except Exception as exc:
        timed_out = isinstance(exc, TimeoutError) and options.timeout_s is not None
        f = Failure.from_exception(exc, "timeout" if timed_out else "failed")
        return RemoteFailure(
            f.kind, f.error, f.traceback, slot, _dask_worker() if timed_out else ""
        )


def _dask_worker() -> str:
    """The address of the Dask worker running this call, or ``""`` elsewhere."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


# -- partitioning --------------------------------------------------------------------------------------
@dataclass
class Batch:
    items: list[Item]
    deps: list[int]  # batch numbers, all earlier
    slots: list[int]
    alone: bool = False  # one task with a timeout: its process is stopped after it


def topological_order(plan: Plan) -> list[int]:
    pending = [len(d) for d in plan.deps]
    order = [i for i, p in enumerate(pending) if p == 0]
    for i in order:  # grows while iterating: Kahn's algorithm in FIFO order
        for s in plan.succ[i]:
            pending[s] -= 1
            if pending[s] == 0:
                order.append(s)
    return order


def partition(plan: Plan, parallelism: int) -> list[Batch]:
    """Cut ``plan`` into batches: chains fused, levels split into <= 2 x parallelism batches.

    A task with a timeout is neither fused nor grouped: it is a batch of its own.
    """
    chain = plan.chain_next
    alone = {s for s, o in plan.options.items() if o.timeout_s is not None}
    fused = bytearray(len(plan))
    for i, j in enumerate(chain):
        if j >= 0 and i not in alone and j not in alone:
            fused[j] = 1
    unit_of = [0] * len(plan)
    units: list[list[int]] = []
    level: list[int] = []
    for s in topological_order(plan):
        if fused[s]:
            continue
        u = len(units)
        members = [s]
        j = chain[s]
        while j >= 0 and fused[j]:
            members.append(j)
            j = chain[j]
        for m in members:
            unit_of[m] = u
        units.append(members)
        level.append(1 + max((level[unit_of[d]] for d in plan.deps[s]), default=-1))
    by_level: dict[int, list[int]] = {}
    for u, lv in enumerate(level):
        by_level.setdefault(lv, []).append(u)

    for fn in {id(f): f for f in plan.fns}.values():
        ship_module_by_value(fn)
    batches: list[Batch] = []
    batch_of_unit = [0] * len(units)
    for lv in sorted(by_level):
        ordered = sorted(by_level[lv], key=lambda u: units[u][0])
        group = [u for u in ordered if units[u][0] not in alone]
        k = max(1, min(len(group), 2 * parallelism))
        size = max(1, -(-len(group) // k))
        cuts = [group[start : start + size] for start in range(0, len(group), size)]
        cuts += [[u] for u in ordered if units[u][0] in alone]
        for cut in cuts:
            b = len(batches)
            items: list[Item] = []
            slots: list[int] = []
            deps: set[int] = set()
            for u in cut:
                batch_of_unit[u] = b
                head, *rest = units[u]
                links = tuple(
                    (j, plan.fns[j], plan.args[j], plan.options.get(j, PLAIN)) for j in rest
                )
                options = plan.options.get(head, PLAIN)
                items.append(
                    (head, plan.fns[head], plan.args[head], plan.deps[head], options, links)
                )
                slots.extend(units[u])
                deps.update(batch_of_unit[unit_of[d]] for d in plan.deps[head])
            batches.append(Batch(items, sorted(deps), slots, units[cut[0]][0] in alone))
    return batches


def collect(
    plan: Plan,
    backend: str,
    parallelism: int,
    batches: Sequence[Batch],
    values: Sequence[dict[int, Any]],
    keys: Iterable[Key] | None,
    wall_s: float,
) -> RunResult:
    """Turn batch results into a :class:`RunResult` (failures as the local backends report them)."""
    wanted = None if keys is None else {plan.index[k] for k in keys}
    out: dict[Key, Any] = {}
    failures: dict[Key, TaskError] = {}
    for part in values:
        for slot, value in part.items():
            if wanted is not None and slot not in wanted:
                continue
            key = plan.keys[slot]
            if type(value) is RemoteFailure:
                root_key = plan.keys[value.root] if value.kind == "upstream" else None
                failure = Failure(value.kind, value.error, value.traceback, value.root)
                failures[key] = make_error(key, failure, root_key)
            else:
                out[key] = value
    n = len(plan)
    metrics = Metrics(
        backend=backend,
        workers=parallelism,
        tasks=n,
        wall_s=wall_s,
        tasks_per_s=n / max(wall_s, 1e-9),
        batches=len(batches),
        fused=plan.fused,
        steals=0,
        stolen_tasks=0,
        steal_rate=0.0,
        max_queue_depth=0,
        mean_queue_depth=0.0,
        utilisation=(),
    )
    return RunResult(out, failures, metrics)


def _check_keys(plan: Plan, keys: Iterable[Key] | None) -> None:
    for k in keys or ():
        if k not in plan.index:
            raise BackendError(f"requested key {k!r} is not in the graph")


def _needed_batches(plan: Plan, batches: Sequence[Batch], keys: Iterable[Key] | None) -> list[int]:
    """The batches whose results are fetched: those holding a wanted key, and every task
    with a timeout (its report says where an overrunning call has to be stopped)."""
    if keys is None:
        return list(range(len(batches)))
    wanted = {plan.index[k] for k in keys}
    return [b for b, batch in enumerate(batches) if batch.alone or wanted.intersection(batch.slots)]


def probe(address: str, what: str) -> None:
    """Fail fast with a clear error when nothing listens at ``host:port``."""
    host, sep, port = address.removeprefix("tcp://").rpartition(":")
    if not sep or not port.isdigit():
        raise BackendUnavailable(f"{what} address must be host:port, got {address!r}")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot reach {what} at {address}: {exc.strerror or exc}"
        ) from None


# -- Ray ---------------------------------------------------------------------------------------------------
def disable_uv_runtime_env() -> None:
    """Stop Ray from re-running workers through ``uv run`` in a copy of the working dir.

    Ray >= 2.43 notices a driver started by ``uv run`` and gives every worker that
    command as its interpreter, with the current directory uploaded as working_dir:
    each worker then re-resolves the environment before it starts, which on a busy
    machine exceeds Ray's 60 s registration timeout, and tasks never run. The
    workers here already share our virtualenv, so plain ``python`` is right.
    """
    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    try:  # Ray reads the variable once, when it is imported
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - ray is a dependency
        return
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False


class RayBackend:
    """Runs plans on Ray: a local instance (``address=None``) or a running cluster."""

    def __init__(self, address: str | None, workers: int) -> None:
        disable_uv_runtime_env()
        try:
            import ray as ray_module
        except ImportError as exc:  # pragma: no cover - ray is a dependency
            raise BackendUnavailable(f"Ray is not installed: {exc}") from None
        ray: Any = ray_module  # partly typed: keep mypy out of its signatures
        self._ray = ray
        self._owned = False
        if address:
            probe(address, "Ray")
        if ray.is_initialized() and address:
            current = ray.get_runtime_context().gcs_address
            if current.rpartition(":")[2] != address.rpartition(":")[2]:
                raise BackendError(
                    f"this process is already connected to the Ray cluster at {current}; "
                    f"cannot also use {address}"
                )
        if not ray.is_initialized():
            if address:
                host = address.removeprefix("ray://").rpartition(":")[0]
                # A cluster bound to loopback only: the driver must say so, or Ray looks
                # for a local node on the machine's public address and waits for ever.
                local_ip = (
                    {"_node_ip_address": "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {}
                )
                try:
                    ray.init(
                        address=address,
                        log_to_driver=False,
                        logging_level=logging.ERROR,
                        **local_ip,
                    )
                except Exception as exc:
                    raise BackendUnavailable(f"cannot connect to Ray at {address}: {exc}") from None
            else:
                ray.init(
                    num_cpus=workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            self._owned = True
        # SPREAD: batches are few and coarse, so place them across nodes rather than
        # filling the driver's node first (Ray's default hybrid policy).
        self._remote = ray.remote(num_cpus=1, max_retries=3, scheduling_strategy="SPREAD")(
            run_batch
        )
        # A task with a timeout: Ray ends the worker process after the call, so an
        # overrunning call abandoned by its helper thread does not run on.
        self._remote_once = ray.remote(
            num_cpus=1, max_calls=1, max_retries=0, scheduling_strategy="SPREAD"
        )(run_batch)

    def parallelism(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def pin_to_node(self, node_id: str) -> None:
        """Run every batch on one node (hard affinity): the one-node baseline of a scaling test."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        self._remote = self._remote.options(scheduling_strategy=strategy)
        self._remote_once = self._remote_once.options(scheduling_strategy=strategy)

    def run(self, plan: Plan, keys: Iterable[Key] | None) -> RunResult:
        _check_keys(plan, keys)
        t0 = time.perf_counter()
        par = self.parallelism()
        batches = partition(plan, par)
        refs: list[Any] = []
        for batch in batches:
            remote = self._remote_once if batch.alone else self._remote
            refs.append(remote.remote(Items(batch.items), *(refs[d] for d in batch.deps)))
        needed = _needed_batches(plan, batches, keys)
        stuck = self._watch(plan, batches, refs)
        broken: dict[int, dict[int, Any]] = {}
        for b, batch in enumerate(batches):
            root = stuck.get(b)
            if root is None:
                roots = [broken[d] for d in batch.deps if d in broken]
                if not roots:
                    continue
                failure = next(iter(roots[0].values()))
                root = RemoteFailure("upstream", failure.error, "", failure.root)
            broken[b] = {slot: root for slot in batch.slots}
        self._lost_once(batches, refs, broken)
        for b, batch in enumerate(batches):  # what depends on a lost batch fails upstream
            if b not in broken and (roots := [broken[d] for d in batch.deps if d in broken]):
                failure = next(iter(roots[0].values()))
                up = RemoteFailure("upstream", failure.error, "", failure.root)
                broken[b] = {slot: up for slot in batch.slots}
        try:
            fetched = self._ray.get([refs[b] for b in needed if b not in broken])
        except Exception as exc:
            raise BackendError(
                f"Ray could not run the graph: {type(exc).__name__}: {exc}"
            ) from None
        parts = iter(fetched)
        values = [broken[b] if b in broken else next(parts) for b in needed]
        return collect(plan, "ray", par, batches, values, keys, time.perf_counter() - t0)

    def _lost_once(
        self, batches: Sequence[Batch], refs: list[Any], broken: dict[int, dict[int, Any]]
    ) -> None:
        """At-most-once batches (a task with a timeout: ``max_retries=0``) whose node or
        worker died under them: each becomes a ``crashed`` failure of its task, never a
        rerun. Every other batch is retried by Ray (``max_retries``, lineage
        reconstruction), so a lost node costs time, not results."""
        ray = self._ray
        for b, batch in enumerate(batches):
            if not batch.alone or b in broken:
                continue
            try:
                ray.get(refs[b])
            except (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError) as exc:
                error = f"{type(exc).__name__}: its node or worker died during the call"
                broken[b] = {
                    slot: RemoteFailure("crashed", error, "", slot) for slot in batch.slots
                }
            except Exception:
                continue  # anything else is reported by the fetch below

    def _watch(self, plan: Plan, batches: Sequence[Batch], refs: list[Any]) -> dict[int, Any]:
        """Cancel (``force=True``: Ray kills the worker) a lone timeout task that has not
        returned :data:`WATCHDOG_GRACE_S` after its deadline.

        The worker reports an overrun itself as soon as its helper thread notices; this
        covers a call that holds its worker so hard (C code keeping the GIL) that the
        report never comes. The clock starts when the batch's inputs are ready.
        """
        ray = self._ray
        watched = {b: batch for b, batch in enumerate(batches) if batch.alone}
        stuck: dict[int, Any] = {}
        started: dict[int, float] = {}
        while watched:
            now = time.monotonic()
            for b, batch in list(watched.items()):
                if b not in started:
                    inputs = [refs[d] for d in batch.deps]
                    ready, _ = ray.wait(inputs, num_returns=len(inputs), timeout=0)
                    if len(ready) == len(inputs):
                        started[b] = now
                    continue
                slot = batch.slots[0]
                limit = plan.options[slot].timeout_s or 0.0
                if now - started[b] > limit + WATCHDOG_GRACE_S:
                    ray.cancel(refs[b], force=True)
                    error = f"TimeoutError: ran longer than its timeout of {limit:g} s"
                    stuck[b] = RemoteFailure("timeout", error, "", slot)
                    del watched[b]
            if not watched:
                break
            done, _ = ray.wait([refs[b] for b in watched], num_returns=1, timeout=0.05)
            finished = {ref.hex() for ref in done}
            for b in [b for b in watched if refs[b].hex() in finished]:
                del watched[b]
        return stuck

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()


# -- Dask ----------------------------------------------------------------------------------------------------
def _count_keys(prefix: str, dask_scheduler: Any = None) -> int:
    """On the scheduler: how many of one run's keys it still holds."""
    return sum(1 for key in dask_scheduler.tasks if str(key).startswith(prefix))


class DaskBackend:
    """Runs plans with ``distributed.Client.get``: on a LocalCluster or a scheduler address."""

    def __init__(self, address: str | None, workers: int) -> None:
        try:
            import distributed as distributed_module
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise BackendUnavailable(f"Dask distributed is not installed: {exc}") from None
        distributed: Any = distributed_module
        self._cluster: Any = None
        self._client: Any = None
        if address:
            probe(address, "the Dask scheduler")
            try:
                self._client = distributed.Client(address, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise BackendUnavailable(
                    f"cannot connect to the Dask scheduler at {address}: {exc}"
                ) from None
        else:
            self._cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            self._client = distributed.Client(self._cluster)

    @property
    def client(self) -> Any:
        return self._client

    def parallelism(self) -> int:
        return max(1, int(sum(self._client.nthreads().values())))

    def run(self, plan: Plan, keys: Iterable[Key] | None) -> RunResult:
        _check_keys(plan, keys)
        t0 = time.perf_counter()
        par = self.parallelism()
        batches = partition(plan, par)
        prefix = f"tenfold-{os.getpid()}-{next(_run_ids)}"
        dsk: dict[str, Any] = {}
        for b, batch in enumerate(batches):
            deps = (f"{prefix}-{d}" for d in batch.deps)
            dsk[f"{prefix}-{b}"] = (run_batch, Items(batch.items), *deps)
        needed = _needed_batches(plan, batches, keys)
        try:
            futures = self._client.get(dsk, [f"{prefix}-{b}" for b in needed], sync=False)
            values = self._client.gather(futures)
        except Exception as exc:
            raise BackendError(
                f"Dask could not run the graph: {type(exc).__name__}: {exc}"
            ) from None
        self._stop_overrunning(values, futures, prefix)
        return collect(plan, "dask", par, batches, values, keys, time.perf_counter() - t0)

    def _stop_overrunning(
        self, values: Sequence[dict[int, Any]], futures: Any, prefix: str
    ) -> None:
        """Restart the workers where a call overran its timeout: the call dies with them.

        The run's keys are released on the scheduler first: a key still wanted when its
        worker goes would be recomputed elsewhere, running the overrunning call again.
        """
        workers = sorted(
            {
                v.worker
                for part in values
                for v in part.values()
                if type(v) is RemoteFailure and v.kind == "timeout" and v.worker
            }
        )
        if not workers:
            return
        self._client.cancel(futures, force=True)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and self._client.run_on_scheduler(
            _count_keys, prefix=f"{prefix}-"
        ):
            time.sleep(0.02)
        try:
            self._client.restart_workers(workers, timeout=60)
        except Exception as exc:
            raise BackendError(
                f"a task overran its timeout and its Dask worker could not be restarted: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def connect(backend: str, address: str | None, workers: int) -> RayBackend | DaskBackend:
    """Open the multi-node backend named ``backend`` (``ray`` or ``dask``)."""
    if backend == "ray":
        return RayBackend(address, workers)
    if backend == "dask":
        return DaskBackend(address, workers)
    raise BackendError(f"not a multi-node backend: {backend!r}")
