"""The embedded executor: slots with indegree counters, per-worker deques, work stealing.

One :class:`Run` holds the mutable state of one graph execution as parallel
lists indexed by slot (see :mod:`._graph`): results, remaining-dependency
counters (``pending``), a state byte per task. Workers (the calling thread is
worker 0; the ``threads`` backend adds ``workers - 1`` threads) repeat:

1. take a batch from the head of their own deque, sized ``ready / (2 x workers)``
   and capped at ``batch_cap``; if their deque is empty, steal the newer half of
   the longest other deque (its tail); if every deque is empty, sleep on the
   condition variable;
2. run the batch outside any lock, following fused chains (``chain_next``);
3. take the run lock once for the whole batch: decrement the dependents'
   counters, push the ones that reached zero onto their own deque, wake idle
   workers.

Invariants, all under ``lock``: ``pending[s]`` counts the dependencies of ``s``
not yet done; a slot is pushed onto a deque exactly once, when its counter
reaches zero and its state is still ``WAITING`` (fused slots are never pushed,
their predecessor's worker runs them); ``finished`` counts slots whose state
left ``WAITING``, and the run ends when it equals ``total``. Deque operations
themselves rely on ``collections.deque`` appends and pops being atomic.
"""

from __future__ import annotations

import heapq
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenfold.parallel_framework._graph import PLAIN, Plan, Ref, TaskOptions, substitute
from tenfold.parallel_framework.errors import (
    Cancelled,
    ParallelFrameworkError,
    TaskError,
    TaskFailed,
    TaskTimeout,
    UpstreamFailed,
    WorkerCrashed,
)

Key = Hashable

WAITING, DONE, FAILED, SKIPPED = 0, 2, 3, 4

DEFAULT_BATCH_CAP = 64


# -- failures -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Failure:
    """Why a slot has no result: ``kind`` is failed, timeout, crashed, upstream or cancelled."""

    kind: str
    error: str
    traceback: str = ""
    root: int = -1  # for upstream: the slot that failed first

    @staticmethod
    def from_exception(exc: BaseException, kind: str = "failed") -> Failure:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return Failure(kind, f"{type(exc).__name__}: {exc}", tb)


def make_error(key: Key, failure: Failure, root_key: Key | None) -> TaskError:
    """The exception a user sees for a slot without a result (original traceback attached)."""
    error: TaskError
    if failure.kind == "upstream":
        error = UpstreamFailed(
            f"task {key!r} did not run: upstream task {root_key!r} failed: {failure.error}",
            key=key,
            traceback=failure.traceback,
        )
    elif failure.kind == "cancelled":
        error = Cancelled(f"task {key!r} did not run: the run was cancelled", key=key)
    else:
        cls: type[TaskError] = {"timeout": TaskTimeout, "crashed": WorkerCrashed}.get(
            failure.kind, TaskFailed
        )
        error = cls(f"task {key!r} failed: {failure.error}", key=key, traceback=failure.traceback)
    if failure.traceback:
        error.add_note("original traceback:\n" + failure.traceback.rstrip())
    return error


# -- metrics ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metrics:
    """What one run did: throughput, work stealing, queue depths and per-worker utilisation.

    ``steal_rate`` is the share of a worker's acquisitions of work that were steals
    (steals / (steals + batches taken from its own deque)); ``stolen_tasks`` counts
    task moves, so a task stolen twice counts twice. ``utilisation`` is each worker's
    time running tasks over the run's wall time.
    """

    backend: str
    workers: int
    tasks: int
    wall_s: float
    tasks_per_s: float
    batches: int
    fused: int
    steals: int
    stolen_tasks: int
    steal_rate: float
    max_queue_depth: int
    mean_queue_depth: float
    utilisation: tuple[float, ...]
    retries: int = 0
    respawns: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "tasks": self.tasks,
            "wall_s": round(self.wall_s, 6),
            "tasks_per_s": round(self.tasks_per_s, 1),
            "batches": self.batches,
            "fused": self.fused,
            "steals": self.steals,
            "stolen_tasks": self.stolen_tasks,
            "steal_rate": round(self.steal_rate, 4),
            "max_queue_depth": self.max_queue_depth,
            "mean_queue_depth": round(self.mean_queue_depth, 2),
            "utilisation": [round(u, 3) for u in self.utilisation],
            "retries": self.retries,
            "respawns": self.respawns,
        }


@dataclass
class WorkerStats:
    busy_s: float = 0.0
    tasks: int = 0
    batches: int = 0
    steals: int = 0
    stolen: int = 0
    depth_sum: int = 0
    depth_max: int = 0


# -- results ------------------------------------------------------------------------------------------
class RunResult(Mapping[Key, Any]):
    """Results by key. Indexing a key that failed raises its :class:`TaskError`."""

    def __init__(
        self,
        values: dict[Key, Any],
        failures: dict[Key, TaskError],
        metrics: Metrics,
    ) -> None:
        self._values = values
        self.failures = failures
        self.metrics = metrics

    @property
    def ok(self) -> bool:
        return not self.failures

    def __getitem__(self, key: Key) -> Any:
        if key in self._values:
            return self._values[key]
        if key in self.failures:
            raise self.failures[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[Key]:
        yield from self._values
        yield from self.failures

    def __len__(self) -> int:
        return len(self._values) + len(self.failures)

    def __contains__(self, key: object) -> bool:
        return key in self._values or key in self.failures

    def raise_first(self) -> None:
        """Raise the first task failure (not an upstream one when there is a choice), if any."""
        if not self.failures:
            return
        own = [e for e in self.failures.values() if not isinstance(e, UpstreamFailed | Cancelled)]
        raise (own or list(self.failures.values()))[0]

    def __repr__(self) -> str:
        return f"RunResult({len(self._values)} results, {len(self.failures)} failures)"


# -- dynamic submission -------------------------------------------------------------------------------
_local = threading.local()


class Future:
    """The eventual result of a task submitted with :func:`submit` from inside a running task."""

    __slots__ = ("_run", "_value", "slot")

    def __init__(self, run: Run | None, slot: int, value: Any = None) -> None:
        self._run = run
        self.slot = slot
        self._value = value

    def done(self) -> bool:
        return self._run is None or self._run.state[self.slot] != WAITING

    def result(self, timeout_s: float | None = None) -> Any:
        """Wait for the result (a waiting worker runs other ready tasks meanwhile)."""
        run = self._run
        if run is None:
            return self._value
        run.wait_slot(self.slot, timeout_s)
        state = run.state[self.slot]
        if state == DONE:
            return run.res[self.slot]
        raise run.error_for(self.slot)

    def __repr__(self) -> str:
        return f"Future(slot={self.slot}, done={self.done()})"


def submit(
    fn: Callable[..., Any], *args: Any, retries: int = 0, timeout_s: float | None = None
) -> Future:
    """Add a task to the running graph from inside a task; :class:`Future` args are dependencies.

    On the inline and threads backends the task joins the run's deques; inside a
    process, Ray or Dask worker it runs at once in that worker.
    """
    run: Run | None = getattr(_local, "run", None)
    options = PLAIN if not retries and timeout_s is None else TaskOptions(retries, 0.05, timeout_s)
    if run is None:
        if getattr(_local, "inline_submit", False):
            resolved = [a.result() if isinstance(a, Future) else a for a in args]
            return Future(None, -1, call_with_options(fn, tuple(resolved), options))
        raise ParallelFrameworkError("submit() can only be called from inside a running task")
    return run.add_dynamic(fn, args, options, getattr(_local, "worker", 0))


def call_with_options(fn: Callable[..., Any], args: tuple[Any, ...], options: TaskOptions) -> Any:
    """Call ``fn`` honouring retries (with backoff) and a timeout, in the calling thread."""
    attempt = 0
    while True:
        try:
            if options.timeout_s is None:
                return fn(*args)
            return call_with_timeout(fn, args, options.timeout_s)
        except Exception:
            attempt += 1
            if attempt > options.retries:
                raise
            time.sleep(options.delay_s(attempt))


class _TimedOut(Exception):
    pass


def call_with_timeout(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Run ``fn`` in a helper thread; raise TimeoutError when it overruns.

    A Python thread cannot be stopped: an overrunning call is abandoned (daemon
    thread) and its eventual result discarded. Process workers are killed instead.
    """
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as exc:
            box.append((False, exc))

    helper = threading.Thread(target=target, daemon=True, name="tenfold-task-timeout")
    helper.start()
    helper.join(timeout_s)
    if not box:
        raise TimeoutError(f"ran longer than its timeout of {timeout_s:g} s")
    ok, value = box[0]
    if ok:
        return value
    raise value


# -- the run ---------------------------------------------------------------------------------------------
class Run:
    """The state of one graph execution on the inline or threads backend."""

    def __init__(
        self,
        plan: Plan,
        *,
        keys: Iterable[Key] | None,
        workers: int,
        backend: str,
        batch_cap: int = DEFAULT_BATCH_CAP,
    ) -> None:
        if workers < 1:
            raise ParallelFrameworkError(f"workers must be >= 1, got {workers}")
        n = len(plan)
        self.plan = plan
        self.backend = backend
        self.W = workers
        self.batch_cap = max(1, batch_cap)
        # Copies so that dynamic submission can grow them without touching the plan.
        self.keys: list[Key] = list(plan.keys)
        self.fns = list(plan.fns)
        self.args = list(plan.args)
        self.deps = list(plan.deps)
        self.succ = list(plan.succ)
        self.chain = list(plan.chain_next)
        self.special: dict[int, TaskOptions] = dict(plan.options)
        self.res: list[Any] = [None] * n
        self.pending = [len(d) for d in plan.deps]
        self.state = bytearray(n)
        self.failures: dict[int, Failure] = {}
        self.attempts: dict[int, int] = {}
        self.delayed: list[tuple[float, int]] = []
        self.retries = 0
        self.total = n
        self.finished = 0
        self.cancelled = False
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.idle = 0
        self.deques: list[deque[int]] = [deque() for _ in range(workers)]
        self.stats = [WorkerStats() for _ in range(workers)]
        self.crash: BaseException | None = None
        # Results are released once every dependent has run, unless the key was asked for.
        self.release = keys is not None
        if keys is not None:
            self.keep = bytearray(n)
            for key in keys:
                if key not in plan.index:
                    raise ParallelFrameworkError(f"requested key {key!r} is not in the graph")
                self.keep[plan.index[key]] = 1
            self.consumers = [len(s) for s in plan.succ]
        else:
            self.keep = bytearray(b"\x01") * n
            self.consumers = []
        self.t0 = 0.0
        self.t1 = 0.0

    # -- public driving -------------------------------------------------------------------------------
    def seed(self) -> None:
        """Deal the roots round-robin over the workers' deques."""
        roots = [i for i, d in enumerate(self.deps) if not d]
        for w in range(self.W):
            self.deques[w].extend(roots[w :: self.W])

    def execute(self, on_caller: bool = True) -> None:
        """Run to completion: the caller is worker 0 (unless ``on_caller`` is false)."""
        self.t0 = time.perf_counter()
        self.seed()
        if self.total == 0:
            self.t1 = self.t0
            return
        first = 1 if on_caller else 0
        threads = [
            threading.Thread(
                target=self._thread_main, args=(w,), daemon=True, name=f"tenfold-worker-{w}"
            )
            for w in range(first, self.W)
        ]
        for t in threads:
            t.start()
        if on_caller:
            self._thread_main(0)
        for t in threads:
            t.join()
        self.t1 = time.perf_counter()
        if self.crash is not None:
            raise self.crash

    def cancel(self) -> None:
        """Stop the run: every task not finished yet is reported as cancelled."""
        with self.lock:
            if self.finished >= self.total:
                return
            self.cancelled = True
            for i in range(self.total):
                if self.state[i] == WAITING:
                    self.state[i] = SKIPPED
                    self.failures[i] = Failure("cancelled", "cancelled")
            self.finished = self.total
            self.cv.notify_all()

    def _thread_main(self, w: int) -> None:
        prev_run, prev_worker = getattr(_local, "run", None), getattr(_local, "worker", 0)
        _local.run, _local.worker = self, w
        try:
            self._work(w)
        except BaseException as exc:  # a scheduler bug: stop everybody, re-raise in execute()
            with self.lock:
                self.crash = exc
                self.finished = self.total
                self.cv.notify_all()
        finally:
            _local.run, _local.worker = prev_run, prev_worker

    # -- the worker loop ------------------------------------------------------------------------------
    def _work(self, w: int) -> None:
        stats = self.stats[w]
        clock = time.perf_counter
        while True:
            batch = self._take(w, block=True)
            if batch is None:
                return
            t = clock()
            done: list[int] = []
            failed: list[tuple[int, Failure]] = []
            self._run_batch(batch, done, failed)
            stats.busy_s += clock() - t
            stats.batches += 1
            stats.tasks += len(done) + len(failed)
            self._complete(w, done, failed)

    def _take(self, w: int, *, block: bool) -> list[int] | None:
        deques = self.deques
        dq = deques[w]
        stats = self.stats[w]
        while True:
            if self.finished >= self.total:
                return None
            if self.delayed:
                self._release_due(w)
            n = len(dq)
            if n:
                ready = n if self.W == 1 else sum(map(len, deques))
                size = ready // (2 * self.W)
                size = 1 if size < 1 else (self.batch_cap if size > self.batch_cap else size)
                stats.depth_sum += n
                stats.depth_max = max(stats.depth_max, n)
                batch = []
                pop = dq.popleft
                try:
                    for _ in range(size):
                        batch.append(pop())
                except IndexError:
                    pass
                if batch:
                    return batch
                continue
            if self.W > 1 and self._steal(w):
                continue
            if not block:
                return []
            with self.lock:
                if self.finished >= self.total:
                    return None
                if any(deques) or (self.delayed and self.delayed[0][0] <= time.monotonic()):
                    continue
                wait_s = 0.05
                if self.delayed:
                    wait_s = max(0.0, min(wait_s, self.delayed[0][0] - time.monotonic()))
                self.idle += 1
                self.cv.wait(wait_s)
                self.idle -= 1

    def _steal(self, w: int) -> bool:
        """Move the newer half (the tail) of the longest other deque onto our own."""
        victim = max(self.deques, key=len)
        k = (len(victim) + 1) // 2
        if k == 0 or victim is self.deques[w]:
            return False
        stolen: list[int] = []
        pop = victim.pop
        try:
            for _ in range(k):
                stolen.append(pop())
        except IndexError:
            pass
        if not stolen:
            return False
        stolen.reverse()
        self.deques[w].extend(stolen)
        stats = self.stats[w]
        stats.steals += 1
        stats.stolen += len(stolen)
        return True

    def _run_batch(
        self, batch: Sequence[int], done: list[int], failed: list[tuple[int, Failure]]
    ) -> None:
        fns, args, deps, res, chain, special = (
            self.fns,
            self.args,
            self.deps,
            self.res,
            self.chain,
            self.special,
        )
        drop = self.release
        keep = self.keep
        for head in batch:
            i, prev = head, -1
            while True:
                if special and i in special:
                    ok = self._run_special(i, failed)
                    if not ok:
                        break
                else:
                    try:
                        a = args[i]
                        if a is None:
                            d = deps[i]
                            if not d:
                                res[i] = fns[i]()
                            elif len(d) == 1:
                                res[i] = fns[i](res[d[0]])
                            else:
                                res[i] = fns[i](*[res[x] for x in d])
                        else:
                            res[i] = fns[i](*substitute(a, res))
                    except Exception as exc:
                        failed.append((i, Failure.from_exception(exc)))
                        break
                done.append(i)
                if prev >= 0 and drop and not keep[prev]:
                    res[prev] = None  # a fused link's only consumer has run
                j = chain[i]
                if j < 0 or self.cancelled:
                    break
                prev, i = i, j

    def _call(self, i: int) -> Any:
        a = self.args[i]
        if a is None:
            return self.fns[i](*[self.res[x] for x in self.deps[i]])
        return self.fns[i](*substitute(a, self.res))

    def _run_special(self, i: int, failed: list[tuple[int, Failure]]) -> bool:
        """A task with retries or a timeout; a failure with attempts left is re-queued later."""
        options = self.special[i]
        try:
            if options.timeout_s is None:
                self.res[i] = self._call(i)
            else:
                self.res[i] = call_with_timeout(self._call, (i,), options.timeout_s)
            return True
        except Exception as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) and options.timeout_s else "failed"
            failure = Failure.from_exception(exc, kind)
        attempt = self.attempts.get(i, 0) + 1
        if attempt <= options.retries:
            with self.lock:
                self.attempts[i] = attempt
                self.retries += 1
                heapq.heappush(self.delayed, (time.monotonic() + options.delay_s(attempt), i))
                self.cv.notify()
        else:
            failed.append((i, failure))
        return False

    def _release_due(self, w: int) -> None:
        now = time.monotonic()
        with self.lock:
            while self.delayed and self.delayed[0][0] <= now:
                _, i = heapq.heappop(self.delayed)
                if self.state[i] == WAITING:
                    self.deques[w].append(i)

    # -- completion (one lock acquisition per batch) ------------------------------------------------
    def _complete(self, w: int, done: list[int], failed: list[tuple[int, Failure]]) -> None:
        succ, pending, state, chain = self.succ, self.pending, self.state, self.chain
        new: list[int] = []
        with self.lock:
            if self.cancelled:
                return
            for i in done:
                state[i] = DONE
                nxt = chain[i]
                for s in succ[i]:
                    p = pending[s] - 1
                    pending[s] = p
                    if p == 0 and s != nxt and state[s] == WAITING:
                        new.append(s)
            self.finished += len(done)
            if self.release:
                self._release_results(done)
            for i, failure in failed:
                self._fail(i, failure)
            if new:
                self.deques[w].extend(new)
                if self.idle:
                    self.cv.notify(min(self.idle, len(new)))
            if self.finished >= self.total or (failed and self.idle):
                self.cv.notify_all()

    def _release_results(self, done: list[int]) -> None:
        consumers, keep, res, deps = self.consumers, self.keep, self.res, self.deps
        for i in done:
            for d in deps[i]:
                c = consumers[d] - 1
                consumers[d] = c
                if c == 0 and not keep[d]:
                    res[d] = None
            if not self.succ[i] and not keep[i]:
                res[i] = None

    def _fail(self, i: int, failure: Failure) -> None:
        """Record ``i`` failed and mark everything downstream upstream-failed (lock held)."""
        state = self.state
        if state[i] != WAITING:
            return
        state[i] = FAILED
        self.failures[i] = failure
        self.finished += 1
        upstream = Failure("upstream", failure.error, failure.traceback, root=i)
        stack = list(self.succ[i])
        while stack:
            s = stack.pop()
            if state[s] != WAITING:
                continue
            state[s] = SKIPPED
            self.failures[s] = upstream
            self.finished += 1
            stack.extend(self.succ[s])

    # -- dynamic tasks ----------------------------------------------------------------------------------
    def add_dynamic(
        self, fn: Callable[..., Any], args: tuple[Any, ...], options: TaskOptions, w: int
    ) -> Future:
        found: list[int] = []

        def conv(value: Any) -> Any:
            if isinstance(value, Future):
                if value._run is not self:
                    return value.result()
                found.append(value.slot)
                return Ref(value.slot)
            return value

        template = tuple(conv(a) for a in args)
        deps = tuple(dict.fromkeys(found))
        with self.lock:
            slot = len(self.fns)
            self.keys.append(("submitted", slot, getattr(fn, "__name__", "task")))
            self.fns.append(fn)
            self.args.append(template)
            self.deps.append(deps)
            self.succ.append([])
            self.chain.append(-1)
            self.res.append(None)
            self.state.append(WAITING)
            self.keep.append(1)
            if self.release:
                self.consumers.append(0)
            if not options.plain:
                self.special[slot] = options
            self.total += 1
            waiting = 0
            root = -1
            for d in deps:
                sd = self.state[d]
                if sd == WAITING:
                    waiting += 1
                    self.succ[d] = [
                        *self.succ[d],
                        slot,
                    ]  # copy-on-write: the plan's lists are shared
                    if self.release:
                        self.consumers[d] += 1
                elif sd != DONE:
                    root = d
            self.pending.append(waiting)
            if root >= 0:
                f = self.failures[root]
                self._fail(
                    slot,
                    Failure("upstream", f.error, f.traceback, root=f.root if f.root >= 0 else root),
                )
                self.state[slot] = SKIPPED
            elif waiting == 0:
                self.deques[w].append(slot)
                if self.idle:
                    self.cv.notify()
        return Future(self, slot)

    def wait_slot(self, slot: int, timeout_s: float | None) -> None:
        """Block until ``slot`` finishes; a worker of this run helps by running ready tasks."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        mine = getattr(_local, "run", None) is self
        w = getattr(_local, "worker", 0)
        while self.state[slot] == WAITING:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"task {self.keys[slot]!r} did not finish within {timeout_s:g} s"
                )
            if mine:
                batch = self._take(w, block=False)
                if batch is None:
                    break
                if batch:
                    done: list[int] = []
                    failed: list[tuple[int, Failure]] = []
                    self._run_batch(batch, done, failed)
                    self._complete(w, done, failed)
                    continue
            with self.lock:
                if self.state[slot] == WAITING:
                    self.cv.wait(0.01)

    # -- reporting --------------------------------------------------------------------------------------
    def error_for(self, slot: int) -> TaskError:
        failure = self.failures[slot]
        root_key = self.keys[failure.root] if failure.root >= 0 else None
        return make_error(self.keys[slot], failure, root_key)

    def metrics(self) -> Metrics:
        wall = max(self.t1 - self.t0, 1e-9)
        tasks = sum(s.tasks for s in self.stats)
        batches = sum(s.batches for s in self.stats)
        stolen = sum(s.stolen for s in self.stats)
        steals = sum(s.steals for s in self.stats)
        depth_sum = sum(s.depth_sum for s in self.stats)
        return Metrics(
            backend=self.backend,
            workers=self.W,
            tasks=tasks,
            wall_s=wall,
            tasks_per_s=tasks / wall,
            batches=batches,
            fused=self.plan.fused,
            steals=steals,
            stolen_tasks=stolen,
            steal_rate=steals / (steals + batches) if batches else 0.0,
            max_queue_depth=max((s.depth_max for s in self.stats), default=0),
            mean_queue_depth=depth_sum / batches if batches else 0.0,
            utilisation=tuple(min(1.0, s.busy_s / wall) for s in self.stats),
            retries=self.retries,
        )

    def result(self) -> RunResult:
        values: dict[Key, Any] = {}
        failures: dict[Key, TaskError] = {}
        keys, state, keep, res = self.keys, self.state, self.keep, self.res
        n = len(self.plan)  # dynamic tasks are reached through their futures
        for i in range(n):
            if not keep[i]:
                continue
            if state[i] == DONE:
                values[keys[i]] = res[i]
            else:
                failures[keys[i]] = self.error_for(i)
        return RunResult(values, failures, self.metrics())


@dataclass
class _Handle:
    run: Run
    thread: threading.Thread
    box: list[BaseException] = field(default_factory=list)
