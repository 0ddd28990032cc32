"""The processes backend: loky-started worker processes fed batches over pipes.

The parent keeps the scheduler (the same slots, counters and per-worker deques
as the threads backend, see :mod:`._engine`) and sends each worker process a
batch at a time, at most two outstanding. Functions travel once per worker,
serialised with cloudpickle; arguments and results with pickle.

Exactly-once bookkeeping: a worker runs its batches in order and reports every
task as soon as it finishes, before starting the next. So when a worker dies
(SIGKILL, OOM) the parent knows precisely which of its in-flight tasks
completed (reported), which one was running (the first unreported one) and
which never started (the rest). The running one fails with
:class:`WorkerCrashed` unless it has retries left; the never-started ones are
requeued; the worker is respawned. Timeouts use the same path: the parent kills
the worker whose running task overran.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import pickle
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from tenfold.parallel_framework._engine import WAITING, Failure, Metrics, Run, _local
from tenfold.parallel_framework._graph import Plan, substitute
from tenfold.parallel_framework._pickling import ship_module_by_value
from tenfold.parallel_framework.errors import BackendError, UnpicklableTaskError

MAX_OUTSTANDING = 2


# -- the child side ---------------------------------------------------------------------------------
def worker_main(conn: Connection) -> None:
    """A worker process: run batches in order, report each task as it finishes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _local.inline_submit = True
    fns: dict[int, Callable[..., Any]] = {}
    send = conn.send_bytes
    dumps = pickle.dumps
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not raw:
            return
        defs, items = pickle.loads(raw)
        for fid, blob in defs:
            try:
                fns[fid] = cloudpickle.loads(blob)
            except Exception as exc:  # reported per task below
                fns[fid] = _broken(exc)
        for slot, fid, args, chain in items:
            ok, value = _run_one(fns[fid], args)
            send(_report(dumps, slot, ok, value))
            prev_slot, prev = slot, value
            for nslot, nfid, template in chain:
                if not ok:
                    break
                call_args = (prev,) if template is None else substitute(template, {prev_slot: prev})
                ok, value = _run_one(fns[nfid], call_args)
                send(_report(dumps, nslot, ok, value))
                prev_slot, prev = nslot, value


def _broken(exc: Exception) -> Callable[..., Any]:
    def fail(*_: Any) -> Any:
        raise RuntimeError(f"cannot load the task's function in the worker: {exc}")

    return fail


def _run_one(fn: Callable[..., Any], args: Sequence[Any]) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except Exception as exc:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return False, ("failed", f"{type(exc).__name__}: {exc}", tb)


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


# -- the parent side --------------------------------------------------------------------------------
class _Proc:
    __slots__ = ("busy_since", "conn", "head_since", "inflight", "known", "outstanding", "process")

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.known: set[int] = set()
        self.inflight: deque[int] = deque()  # slots sent and not yet reported, in run order
        self.outstanding: deque[int] = deque()  # tasks per batch sent, not yet fully reported
        self.head_since = 0.0
        self.busy_since = 0.0

    @property
    def pid(self) -> int:
        return int(self.process.pid)


class ProcessPool:
    """Worker processes that survive between runs (start-up is paid once per pool).

    With ``cgroup`` set (a :class:`tenfold.core.governor.Cgroup`, already created)
    every worker, including respawned ones, is placed in it right after start.
    """

    def __init__(self, workers: int, *, cgroup: Any = None) -> None:
        from loky.backend.context import get_context

        if workers < 1:
            raise BackendError(f"workers must be >= 1, got {workers}")
        self._ctx = get_context("loky")
        self.cgroup = cgroup
        self.procs: list[_Proc] = []
        self.respawns = 0
        self._fn_ids: dict[int, tuple[Callable[..., Any], int]] = {}
        self._fn_blobs: dict[int, bytes] = {}
        self._next_fid = 0
        self._closed = False
        for _ in range(workers):
            self.procs.append(self._spawn())

    def _spawn(self) -> _Proc:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=worker_main, args=(child,), daemon=True)
        process.start()
        child.close()
        if self.cgroup is not None:
            self.cgroup.add(process.pid)
        return _Proc(process, parent)

    def respawn(self, index: int) -> None:
        old = self.procs[index]
        with contextlib.suppress(ProcessLookupError):
            os.kill(old.pid, signal.SIGKILL)
        old.process.join(5)
        old.conn.close()
        self.procs[index] = self._spawn()
        self.respawns += 1

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
            p.conn.close()


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

    def execute(self, on_caller: bool = True) -> None:
        self.t0 = time.perf_counter()
        self.seed()
        respawns_before = self.pool.respawns
        try:
            if self.total:
                self._loop()
        finally:
            # Cancelled or interrupted: workers still busy would report into the next
            # run, so they are replaced.
            for w, proc in enumerate(self.pool.procs):
                if proc.inflight:
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
                while len(procs[w].outstanding) < MAX_OUTSTANDING and self._dispatch(w):
                    pass
            waitables: list[Any] = []
            for p in procs:
                waitables.append(p.conn)
                waitables.append(p.process.sentinel)
            ready = wait(waitables, timeout=self._wait_s())
            for w, p in enumerate(list(procs)):
                if p.conn in ready:
                    self._drain(w)
                if p.process.sentinel in ready and not p.process.is_alive():
                    self._drain(w)
                    self._crashed(
                        w,
                        "crashed",
                        f"worker process {p.pid} died (exit code {p.process.exitcode})",
                    )
            self._check_timeouts()

    def _wait_s(self) -> float:
        wait_s = 0.5
        now = time.monotonic()
        if self.delayed:
            wait_s = min(wait_s, max(0.0, self.delayed[0][0] - now))
        for p in self.pool.procs:
            if p.inflight:
                opts = self.special.get(p.inflight[0])
                if opts is not None and opts.timeout_s is not None:
                    wait_s = min(wait_s, max(0.0, p.head_since + opts.timeout_s - now))
        return wait_s

    def _release_due_any(self) -> None:
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            _, i = heapq.heappop(self.delayed)
            if self.state[i] == WAITING:
                self.deques[i % self.W].append(i)

    def _dispatch(self, w: int) -> bool:
        dq = self.deques[w]
        if not dq and not self._steal(w):
            return False
        ready = sum(map(len, self.deques))
        size = max(1, min(self.batch_cap, ready // (2 * self.W)))
        stats = self.stats[w]
        stats.depth_sum += len(dq)
        stats.depth_max = max(stats.depth_max, len(dq))
        proc = self.pool.procs[w]
        defs: list[tuple[int, bytes]] = []
        items = []
        sent: list[int] = []
        res, deps, args, fids = self.res, self.deps, self.args, self.fids
        for _ in range(min(size, len(dq))):
            i = dq.popleft()
            links = []
            for s in [i, *self._chain_of(i)]:
                fid = fids[s]
                if fid not in proc.known:
                    proc.known.add(fid)
                    defs.append((fid, self.pool.blob(fid)))
                sent.append(s)
                if s != i:
                    links.append((s, fid, args[s]))
            template = args[i]
            call_args = (
                tuple(res[d] for d in deps[i]) if template is None else substitute(template, res)
            )
            items.append((i, fids[i], call_args, tuple(links)))
        if not items:
            return False
        try:
            payload = pickle.dumps((defs, items), 5)
        except Exception:
            payload = cloudpickle.dumps((defs, items))
        if not proc.inflight:
            proc.head_since = proc.busy_since = time.monotonic()
        proc.inflight.extend(sent)
        proc.outstanding.append(len(sent))
        stats.batches += 1
        with contextlib.suppress(OSError):  # a dead worker: its sentinel fires, the batch requeues
            proc.conn.send_bytes(payload)
        return True

    def _chain_of(self, i: int) -> list[int]:
        out = []
        j = self.chain[i]
        while j >= 0:
            out.append(j)
            j = self.chain[j]
        return out

    def _drain(self, w: int) -> None:
        proc = self.pool.procs[w]
        done: list[int] = []
        failed: list[tuple[int, Failure]] = []
        conn = proc.conn
        try:
            while conn.poll():
                slot, ok, value = pickle.loads(conn.recv_bytes())
                head = proc.inflight.popleft()
                while head != slot:
                    # a chain broken by a failure: its remaining links were never run
                    head = proc.inflight.popleft()
                    self._pop_outstanding(proc)
                self._pop_outstanding(proc)
                proc.head_since = time.monotonic()
                if ok:
                    self.res[slot] = value
                    done.append(slot)
                else:
                    kind, error, tb = value
                    if not self._maybe_retry(slot):
                        failed.append((slot, Failure(kind, error, tb)))
                    # the worker broke out of the chain: its remaining links never run
                    link = self.chain[slot]
                    while link >= 0 and proc.inflight and proc.inflight[0] == link:
                        proc.inflight.popleft()
                        self._pop_outstanding(proc)
                        link = self.chain[link]
        except (EOFError, OSError):
            pass
        stats = self.stats[w]
        if done or failed:
            stats.tasks += len(done) + len(failed)
            self._complete(w, done, failed)
        if not proc.inflight and proc.busy_since:
            stats.busy_s += time.monotonic() - proc.busy_since
            proc.busy_since = 0.0
        # a failed chain head leaves its links unreported: drop them from in-flight
        while proc.inflight and self.state[proc.inflight[0]] != WAITING:
            proc.inflight.popleft()
            self._pop_outstanding(proc)

    @staticmethod
    def _pop_outstanding(proc: _Proc) -> None:
        if proc.outstanding:
            proc.outstanding[0] -= 1
            if proc.outstanding[0] <= 0:
                proc.outstanding.popleft()

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

    def _crashed(self, w: int, kind: str, reason: str) -> None:
        """Worker ``w`` is gone: fail (or retry) its running task, requeue the rest, respawn."""
        proc = self.pool.procs[w]
        inflight = list(proc.inflight)
        self.pool.respawn(w)
        if not inflight:
            return
        running, rest = inflight[0], inflight[1:]
        failed: list[tuple[int, Failure]] = []
        if not self._maybe_retry(running):
            failed.append((running, Failure(kind, reason)))
        # Fused links re-enter through their chain head; only heads go back on the deque.
        heads = [s for s in rest if not self._is_link(s, inflight)]
        self.deques[w].extendleft(reversed(heads))
        if failed:
            self._complete(w, [], failed)

    def _is_link(self, s: int, batch: Sequence[int]) -> bool:
        deps = self.deps[s]
        return len(deps) == 1 and self.chain[deps[0]] == s and deps[0] in batch

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for w, proc in enumerate(self.pool.procs):
            if not proc.inflight:
                continue
            head = proc.inflight[0]
            opts = self.special.get(head)
            if opts is None or opts.timeout_s is None:
                continue
            if now - proc.head_since > opts.timeout_s:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.process.join(5)
                self._drain(w)
                overran = bool(proc.inflight) and proc.inflight[0] == head
                reason = f"TimeoutError: ran longer than its timeout of {opts.timeout_s:g} s"
                self._crashed(w, "timeout" if overran else "crashed", reason)

    def metrics(self) -> Metrics:
        return replace(super().metrics(), respawns=self.respawns)
