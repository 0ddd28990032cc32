"""The processes backend: loky-started worker processes fed whole sub-graphs over pipes.

The parent keeps the scheduler (the same slots, counters and per-worker deques
as the threads backend, see :mod:`._engine`) and hands each worker process a
batch at a time, at most two outstanding. A batch is a topologically ordered
piece of the graph: ready tasks taken from the worker's deque, their fused
chains, and then its *closure*, the dependents whose every dependency is
either done or in the batch, so a worker runs a whole region of the graph
(several levels of a stencil) from one message. How much goes into a batch is
adaptive: the workers report how long each function took, and the parent
fills a batch up to about :data:`TARGET_BATCH_S` of estimated work. A batch
always gets the fair share of ready tasks, ``ready / (2 x workers)`` capped
at ``batch_cap``, so slow tasks still spread over every worker; only tasks of
functions measured to be cheap go past that share or into the closure.
Functions travel once per worker, serialised with cloudpickle; arguments
with pickle.

Results come back through a per-worker shared-memory log (a memfd mapped by
both sides) rather than one pipe message per task: after each task the worker
appends its pickled report to the log and then advances the log's committed
length; at the end of the batch one short pipe message says "done" and
carries the timings. A result too large for the log goes over the pipe at
once instead.

Exactly-once bookkeeping survives that batching: a report is committed before
the next task starts, so when a worker dies (SIGKILL, OOM, a timeout kill) the
parent reads what the dead worker committed (log plus pipe) and knows
precisely which of its tasks completed, which one was running (the first
uncommitted one the worker would not have skipped) and which never started.
The running one fails with :class:`WorkerCrashed` unless it has retries left;
the never-started ones go back to the deques (or wait for their dependencies);
the worker is respawned. A task with a timeout travels alone, to an idle
worker, so its clock starts when it does.
"""

from __future__ import annotations

import contextlib
import heapq
import mmap
import os
import pickle
import select
import signal
import struct
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from tenfold.parallel_framework._engine import DONE, WAITING, Failure, Metrics, Run, _local
from tenfold.parallel_framework._graph import Plan, substitute
from tenfold.parallel_framework._pickling import ship_module_by_value
from tenfold.parallel_framework.errors import BackendError, UnpicklableTaskError

MAX_OUTSTANDING = 2
TARGET_BATCH_S = 0.01  # estimated work per batch once the task costs are known
MAX_BATCH = 4096  # tasks per batch, whatever the estimate
UNKNOWN_TASK_S = 0.001  # the cost assumed for a function not measured yet
TASK_OVERHEAD_S = 4e-6  # per task, on top of the function: report, log, bookkeeping
LOG_HALF = 1 << 20  # bytes of log per batch; two halves alternate (two batches outstanding)
_HEADER = struct.Struct("<QQ")  # committed bytes of entries after the header; started flag
_ENTRY = struct.Struct("<I")  # length of one pickled report

Item = tuple[int, int, tuple[int, ...], Any]  # slot, function id, deps, argument template


# -- the child side ---------------------------------------------------------------------------------
def worker_main(conn: Connection, log_path: str) -> None:
    """A worker process: run each batch in order, commit every report before the next task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _local.inline_submit = True
    fd = os.open(log_path, os.O_RDWR)
    try:
        log = mmap.mmap(fd, 2 * LOG_HALF)
    finally:
        os.close(fd)
    fns: dict[int, Callable[..., Any]] = {}
    send = conn.send_bytes
    dumps = pickle.dumps
    clock = time.perf_counter
    header, entry = _HEADER.pack_into, _ENTRY.pack_into
    batch_no = 0
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not raw:
            return
        defs, known, items = pickle.loads(raw)
        for fid, blob in defs:
            try:
                fns[fid] = cloudpickle.loads(blob)
            except Exception as exc:  # reported per task below
                fns[fid] = _broken(exc)
        base = (batch_no & 1) * LOG_HALF
        batch_no += 1
        header(log, base, 0, 1)  # nothing committed yet; the batch has started
        pos = base + _HEADER.size
        limit = base + LOG_HALF
        local: dict[int, Any] = known
        bad: set[int] = set()
        timings: dict[int, list[float]] = {}
        for slot, fid, deps, template in items:
            if bad and not bad.isdisjoint(deps):
                bad.add(slot)  # a dependency failed here: never run, never reported
                continue
            t = clock()
            try:
                args = (
                    tuple([local[d] for d in deps])
                    if template is None
                    else substitute(template, local)
                )
                ok, value = True, fns[fid](*args)
            except Exception as exc:
                ok, value = False, _failure(exc)
            spent = clock() - t
            timing = timings.get(fid)
            if timing is None:
                timings[fid] = [1.0, spent]
            else:
                timing[0] += 1.0
                timing[1] += spent
            if ok:
                local[slot] = value
            else:
                bad.add(slot)
            blob = _report(dumps, slot, ok, value)
            end = pos + _ENTRY.size + len(blob)
            if end <= limit:
                entry(log, pos, len(blob))
                log[pos + _ENTRY.size : end] = blob
                pos = end
                header(log, base, pos - base - _HEADER.size, 1)  # the commit
            else:
                send(b"R" + blob)
        send(b"D" + dumps(timings, 5))


def _broken(exc: Exception) -> Callable[..., Any]:
    def fail(*_: Any) -> Any:
        raise RuntimeError(f"cannot load the task's function in the worker: {exc}")

    return fail


def _failure(exc: Exception) -> tuple[str, str, str]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ("failed", f"{type(exc).__name__}: {exc}", tb)


def _report(dumps: Callable[..., bytes], slot: int, ok: bool, value: Any) -> bytes:
    try:
        return dumps((slot, ok, value), 5)
    except Exception as exc:
        try:
            blob: bytes = cloudpickle.dumps((slot, ok, value))
            return blob
        except Exception:
            error = f"the result cannot be sent back to the parent: {type(exc).__name__}: {exc}"
            return dumps((slot, False, ("failed", error, "")), 5)


def started(log: mmap.mmap, half: int) -> bool:
    """Whether the worker began the batch whose reports go to this half of its log."""
    return bool(_HEADER.unpack_from(log, half * LOG_HALF)[1])


def read_log(log: mmap.mmap, half: int) -> list[tuple[int, bool, Any]]:
    """The reports committed in one half of a worker's log (a torn tail is ignored)."""
    base = half * LOG_HALF
    used, _ = _HEADER.unpack_from(log, base)
    pos = base + _HEADER.size
    stop = pos + min(used, LOG_HALF - _HEADER.size)
    out = []
    view = memoryview(log)
    try:
        while pos + _ENTRY.size <= stop:
            (n,) = _ENTRY.unpack_from(log, pos)
            start = pos + _ENTRY.size
            if start + n > stop:
                break
            out.append(pickle.loads(view[start : start + n]))
            pos = start + n
    finally:
        view.release()
    return out


# -- the parent side --------------------------------------------------------------------------------
class _Batch:
    __slots__ = ("half", "since", "slots", "timeout_s")

    def __init__(self, slots: list[int], half: int, timeout_s: float | None) -> None:
        self.slots = slots  # in run order
        self.half = half  # which half of the log its reports go to
        self.timeout_s = timeout_s  # a lone task with a timeout
        self.since = 0.0  # when the worker started it (it is the oldest outstanding)


class _Proc:
    __slots__ = (
        "batches",
        "busy_since",
        "conn",
        "known",
        "log",
        "log_fd",
        "process",
        "sent",
        "stash",
    )

    def __init__(self, process: Any, conn: Connection, log: mmap.mmap, log_fd: int) -> None:
        self.process = process
        self.conn = conn
        self.log = log
        self.log_fd = log_fd
        self.known: set[int] = set()
        self.batches: deque[_Batch] = deque()  # sent and not finished, in run order
        self.stash: list[tuple[int, bool, Any]] = []  # reports that came over the pipe
        self.sent = 0
        self.busy_since = 0.0

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def release(self) -> None:
        self.conn.close()
        with contextlib.suppress(BufferError, ValueError):
            self.log.close()
        with contextlib.suppress(OSError):
            os.close(self.log_fd)


class ProcessPool:
    """Worker processes that survive between runs (start-up is paid once per pool).

    With ``cgroup`` set (a :class:`tenfold.core.governor.Cgroup`, already created)
    every worker, including respawned ones, is placed in it right after start.
    The pool also keeps what the workers measured: an estimate of each
    function's cost, which sizes the batches of later runs.
    """

    def __init__(self, workers: int, *, cgroup: Any = None) -> None:
        from loky.backend.context import get_context

        if workers < 1:
            raise BackendError(f"workers must be >= 1, got {workers}")
        self._ctx = get_context("loky")
        self.cgroup = cgroup
        self.procs: list[_Proc] = []
        self.respawns = 0
        self.estimate: dict[int, float] = {}  # function id -> seconds per call
        self._fn_ids: dict[int, tuple[Callable[..., Any], int]] = {}
        self._fn_blobs: dict[int, bytes] = {}
        self._next_fid = 0
        self._closed = False
        for _ in range(workers):
            self.procs.append(self._spawn())

    def _spawn(self) -> _Proc:
        log_fd = os.memfd_create("tenfold-parallel-log", os.MFD_CLOEXEC)
        try:
            os.ftruncate(log_fd, 2 * LOG_HALF)
            log = mmap.mmap(log_fd, 2 * LOG_HALF)
        except BaseException:
            os.close(log_fd)
            raise
        # The child reopens the memfd through the parent's fd table; it stays open
        # here until the worker is replaced, so the path is valid while it starts.
        path = f"/proc/{os.getpid()}/fd/{log_fd}"
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=worker_main, args=(child, path), daemon=True)
        process.start()
        child.close()
        if self.cgroup is not None:
            self.cgroup.add(process.pid)
        return _Proc(process, parent, log, log_fd)

    def respawn(self, index: int) -> None:
        old = self.procs[index]
        with contextlib.suppress(ProcessLookupError):
            os.kill(old.pid, signal.SIGKILL)
        old.process.join(5)
        old.release()
        self.procs[index] = self._spawn()
        self.respawns += 1

    def learn(self, timings: dict[int, list[float]]) -> None:
        """Fold one batch's measured calls into the per-function cost estimates."""
        estimate = self.estimate
        for fid, (calls, seconds) in timings.items():
            mean = seconds / calls + TASK_OVERHEAD_S
            old = estimate.get(fid)
            estimate[fid] = mean if old is None else 0.5 * (old + mean)

    def fid(self, fn: Callable[..., Any], key: Any) -> int:
        """The id under which ``fn`` travels; pickles it once (raises naming the task)."""
        entry = self._fn_ids.get(id(fn))
        if entry is not None and entry[0] is fn:
            return entry[1]
        ship_module_by_value(fn)
        try:
            blob = cloudpickle.dumps(fn)
        except Exception as exc:
            raise UnpicklableTaskError(
                f"task {key!r}: its function {getattr(fn, '__qualname__', fn)!r} cannot be "
                f"sent to a worker process: {type(exc).__name__}: {exc}"
            ) from None
        fid = self._next_fid
        self._next_fid += 1
        self._fn_ids[id(fn)] = (fn, fid)
        self._fn_blobs[fid] = blob
        return fid

    def blob(self, fid: int) -> bytes:
        return self._fn_blobs[fid]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self.procs:
            with contextlib.suppress(OSError):
                p.conn.send_bytes(b"")
        deadline = time.monotonic() + 2
        for p in self.procs:
            p.process.join(max(0.0, deadline - time.monotonic()))
            if p.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.process.join(2)
            p.release()


def check_picklable(plan: Plan, pool: ProcessPool) -> list[int]:
    """Pickle every task's function (once each) and constant arguments before running.

    Returns the function id per slot; raises :class:`UnpicklableTaskError` naming the
    first task that cannot travel.
    """
    fids = []
    checked_args: set[int] = set()
    for slot, fn in enumerate(plan.fns):
        fids.append(pool.fid(fn, plan.keys[slot]))
        template = plan.args[slot]
        if template is not None and id(template) not in checked_args:
            checked_args.add(id(template))
            try:
                pickle.dumps(template, 5)
            except Exception:
                try:
                    cloudpickle.dumps(template)
                except Exception as exc:
                    raise UnpicklableTaskError(
                        f"task {plan.keys[slot]!r}: its arguments cannot be sent to a worker "
                        f"process: {type(exc).__name__}: {exc}"
                    ) from None
    return fids


class ProcessRun(Run):
    """A run whose tasks execute in the worker processes of a :class:`ProcessPool`."""

    def __init__(
        self, plan: Plan, pool: ProcessPool, *, keys: Iterable[Any] | None, batch_cap: int
    ) -> None:
        super().__init__(
            plan, keys=keys, workers=len(pool.procs), backend="processes", batch_cap=batch_cap
        )
        self.pool = pool
        self.fids = check_picklable(plan, pool)
        self.respawns = 0
        self._poller: Any = None
        self._fds: dict[int, tuple[int, bool]] = {}  # fd -> (worker, is the death sentinel)
        self._poller_for = -1

    def seed(self) -> None:
        """Deal the roots in contiguous runs (neighbours share dependents: bigger closures)."""
        roots = [i for i, d in enumerate(self.deps) if not d]
        share = -(-len(roots) // self.W) if roots else 0
        for w in range(self.W):
            self.deques[w].extend(roots[w * share : (w + 1) * share])

    def execute(self, on_caller: bool = True) -> None:
        self.t0 = time.perf_counter()
        self.seed()
        respawns_before = self.pool.respawns
        for w, proc in enumerate(self.pool.procs):
            if not proc.process.is_alive():  # died while idle (killed, OOM): replace it now
                self.pool.respawn(w)
        try:
            if self.total:
                self._loop()
        finally:
            # Cancelled or interrupted: workers still busy would report into the next
            # run, so they are replaced.
            for w, proc in enumerate(self.pool.procs):
                if proc.batches:
                    self.pool.respawn(w)
            self.t1 = time.perf_counter()
            self.respawns = self.pool.respawns - respawns_before

    # The parent is single-threaded here, so the lock is only taken for the shared
    # helpers (_complete, _fail) that expect it.
    def _loop(self) -> None:
        procs = self.pool.procs
        while self.finished < self.total:
            if self.delayed:
                self._release_due_any()
            for w in range(len(procs)):
                while len(procs[w].batches) < MAX_OUTSTANDING and self._dispatch(w):
                    pass
            if self._poller_for != self.pool.respawns:
                self._build_poller()
            for fd, _ in self._poller.poll(self._wait_s() * 1000):
                w, sentinel = self._fds[fd]
                proc = procs[w]
                if not sentinel:
                    self._drain(w)
                elif not proc.process.is_alive() and self._poller_for == self.pool.respawns:
                    self._crashed(
                        w,
                        None,
                        f"worker process {proc.pid} died (exit code {proc.process.exitcode})",
                    )
            self._check_timeouts()

    def _build_poller(self) -> None:
        poller = select.poll()
        self._fds = {}
        for w, p in enumerate(self.pool.procs):
            for fd, sentinel in ((p.conn.fileno(), False), (p.process.sentinel, True)):
                poller.register(fd, select.POLLIN | select.POLLHUP)
                self._fds[fd] = (w, sentinel)
        self._poller = poller
        self._poller_for = self.pool.respawns

    def _wait_s(self) -> float:
        wait_s = 0.5
        now = time.monotonic()
        if self.delayed:
            wait_s = min(wait_s, max(0.0, self.delayed[0][0] - now))
        for p in self.pool.procs:
            limit = p.batches[0].timeout_s if p.batches else None
            if limit is not None:
                wait_s = min(wait_s, max(0.0, p.batches[0].since + limit - now))
        return wait_s

    def _release_due_any(self) -> None:
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            _, i = heapq.heappop(self.delayed)
            if self.state[i] == WAITING:
                self.deques[i % self.W].append(i)

    # -- hand-over ---------------------------------------------------------------------------------------
    def _dispatch(self, w: int) -> bool:
        """Send worker ``w`` its next batch: ready tasks, their chains and their closure."""
        dq = self.deques[w]
        if not dq and not self._steal(w):
            return False
        proc = self.pool.procs[w]
        stats = self.stats[w]
        stats.depth_sum += len(dq)
        stats.depth_max = max(stats.depth_max, len(dq))
        ready = sum(map(len, self.deques))
        share = max(1, min(self.batch_cap, ready // (2 * self.W)))
        estimate, fids, special, state, chain = (
            self.pool.estimate,
            self.fids,
            self.special,
            self.state,
            self.chain,
        )
        order: list[int] = []
        members: set[int] = set()
        cost = 0.0
        heads = 0
        timeout_s: float | None = None

        def add(i: int) -> float:
            spent = 0.0
            while i >= 0:  # the task and its fused chain
                order.append(i)
                members.add(i)
                spent += estimate.get(fids[i], UNKNOWN_TASK_S)
                i = chain[i]
            return spent

        while len(order) < MAX_BATCH:
            if not dq and (cost >= TARGET_BATCH_S or not self._steal(w)):
                break
            i = dq[0]
            if state[i] != WAITING:
                dq.popleft()
                continue
            options = special.get(i)
            if options is not None and options.timeout_s is not None:
                # Alone and to an idle worker, so that its clock starts when it does.
                if not order and not proc.batches:
                    dq.popleft()
                    order.append(i)
                    members.add(i)
                    timeout_s = options.timeout_s
                break
            if heads >= share and (cost >= TARGET_BATCH_S or fids[i] not in estimate):
                break  # past the fair share only for work measured to be small
            dq.popleft()
            heads += 1
            cost += add(i)
        if not order:
            return False
        if timeout_s is None and cost < TARGET_BATCH_S:
            self._close_over(order, members, cost)
        self._send(w, proc, order, members, timeout_s)
        return True

    def _close_over(self, order: list[int], members: set[int], cost: float) -> None:
        """Append the dependents whose every dependency is done or already in the batch.

        ``pending[s]`` counts the dependencies of ``s`` not done yet, so ``s`` joins
        once that many of its dependencies are members (each edge is looked at once).
        """
        estimate, fids, special, state, chain, succ, pending = (
            self.pool.estimate,
            self.fids,
            self.special,
            self.state,
            self.chain,
            self.succ,
            self.pending,
        )
        seen: dict[int, int] = {}
        k = 0
        while k < len(order) and cost < TARGET_BATCH_S and len(order) < MAX_BATCH:
            m = order[k]
            k += 1
            fused = chain[m]
            for s in succ[m]:
                if cost >= TARGET_BATCH_S or len(order) >= MAX_BATCH:
                    return  # the rest become ready (and spread) once this batch is done
                c = seen.get(s, 0) + 1
                seen[s] = c
                if c != pending[s] or s == fused or state[s] != WAITING or fids[s] not in estimate:
                    continue
                options = special.get(s)
                if options is not None and options.timeout_s is not None:
                    continue
                j = s
                while j >= 0:
                    order.append(j)
                    members.add(j)
                    cost += estimate.get(fids[j], UNKNOWN_TASK_S)
                    j = chain[j]

    def _send(
        self, w: int, proc: _Proc, order: list[int], members: set[int], timeout_s: float | None
    ) -> None:
        res, deps, args, fids, pool = self.res, self.deps, self.args, self.fids, self.pool
        defs: list[tuple[int, bytes]] = []
        known: dict[int, Any] = {}
        items: list[Item] = []
        for s in order:
            fid = fids[s]
            if fid not in proc.known:
                proc.known.add(fid)
                defs.append((fid, pool.blob(fid)))
            ds = deps[s]
            for d in ds:
                if d not in members:
                    known[d] = res[d]
            items.append((s, fid, ds, args[s]))
        try:
            payload = pickle.dumps((defs, known, items), 5)
        except Exception:
            payload = cloudpickle.dumps((defs, known, items))
        batch = _Batch(order, proc.sent & 1, timeout_s)
        proc.sent += 1
        # That half last held batch ``sent - 2``, already read: empty it here too, so a
        # worker that dies before starting this batch leaves no stale reports behind
        # (and the parent knows that none of its tasks was running).
        _HEADER.pack_into(proc.log, batch.half * LOG_HALF, 0, 0)
        if not proc.batches:
            batch.since = proc.busy_since = time.monotonic()
        proc.batches.append(batch)
        self.stats[w].batches += 1
        with contextlib.suppress(OSError):  # a dead worker: its sentinel fires, the batch requeues
            proc.conn.send_bytes(payload)

    # -- reports -----------------------------------------------------------------------------------------
    def _drain(self, w: int) -> None:
        """Read worker ``w``'s pipe: stash large reports, finish each batch it says is done."""
        proc = self.pool.procs[w]
        conn = proc.conn
        try:
            while conn.poll():
                message = conn.recv_bytes()
                if message[:1] == b"R":
                    proc.stash.append(pickle.loads(message[1:]))
                elif message[:1] == b"D" and proc.batches:
                    self.pool.learn(pickle.loads(message[1:]))
                    batch = proc.batches.popleft()
                    reports = read_log(proc.log, batch.half) + proc.stash
                    proc.stash = []
                    now = time.monotonic()
                    if proc.batches:
                        proc.batches[0].since = now
                    else:
                        self.stats[w].busy_s += now - proc.busy_since
                    self._record(w, reports)
        except (EOFError, OSError):
            pass

    def _record(self, w: int, reports: Sequence[tuple[int, bool, Any]]) -> None:
        """Apply reports: results stored, failures retried or failed, dependents released."""
        res, state = self.res, self.state
        done: list[int] = []
        failed: list[tuple[int, Failure]] = []
        for slot, ok, value in reports:
            if state[slot] != WAITING:
                continue
            if ok:
                res[slot] = value
                # Done before _complete walks the batch, so that the batch's own members
                # (already run) are not pushed onto a deque when their counter hits zero.
                state[slot] = DONE
                done.append(slot)
            elif not self._maybe_retry(slot):
                kind, error, tb = value
                failed.append((slot, Failure(kind, error, tb)))
        self.stats[w].tasks += len(reports)
        if done or failed:
            self._complete(w, done, failed)

    def _maybe_retry(self, slot: int) -> bool:
        options = self.special.get(slot)
        if options is None:
            return False
        attempt = self.attempts.get(slot, 0) + 1
        if attempt > options.retries:
            return False
        self.attempts[slot] = attempt
        self.retries += 1
        heapq.heappush(self.delayed, (time.monotonic() + options.delay_s(attempt), slot))
        return True

    # -- a worker lost -------------------------------------------------------------------------------------
    def _crashed(self, w: int, timed_out: int | None, reason: str) -> None:
        """Worker ``w`` is gone: keep what it committed, fail (or retry) its running task,
        requeue the rest, respawn it."""
        self._drain(w)  # reports and "done" messages it sent before dying
        proc = self.pool.procs[w]
        batches = list(proc.batches)
        reports: list[tuple[int, bool, Any]] = []
        begun = False
        if batches:
            reports = read_log(proc.log, batches[0].half) + proc.stash
            begun = started(proc.log, batches[0].half) or bool(reports)
        proc.batches.clear()
        proc.stash = []
        self.pool.respawn(w)
        if not batches:
            return
        self._record(w, reports)
        # Which task was running: the first of the batch that neither committed a report
        # nor was skipped by the worker (a dependency of it failed in this batch).
        reported = {slot for slot, _, _ in reports}
        bad = {slot for slot, ok, _ in reports if not ok}
        running = -1
        first = batches[0].slots
        rest: list[int] = [] if begun else list(first)
        for k, s in enumerate(first if begun else ()):
            if s in reported:
                continue
            if bad and not bad.isdisjoint(self.deps[s]):
                bad.add(s)
                continue
            running, rest = s, first[k + 1 :]
            break
        for b in batches[1:]:
            rest.extend(b.slots)
        if running >= 0 and self.state[running] == WAITING and not self._maybe_retry(running):
            kind = "timeout" if running == timed_out else "crashed"
            self._complete(w, [], [(running, Failure(kind, reason))])
        # Never started: back on the deque once ready; the others are released by their
        # dependencies as usual (nothing claims them any more). Members whose last
        # dependency was among the committed reports were already pushed by _complete.
        pending, state = self.pending, self.state
        queued = set().union(*self.deques)
        heads = [s for s in rest if state[s] == WAITING and pending[s] == 0 and s not in queued]
        self.deques[w].extendleft(reversed(heads))

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for w, proc in enumerate(self.pool.procs):
            if not proc.batches:
                continue
            batch = proc.batches[0]
            if batch.timeout_s is None or now - batch.since <= batch.timeout_s:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.process.join(5)
            reason = f"TimeoutError: ran longer than its timeout of {batch.timeout_s:g} s"
            self._crashed(w, batch.slots[0], reason)

    def metrics(self) -> Metrics:
        return replace(super().metrics(), respawns=self.respawns)
