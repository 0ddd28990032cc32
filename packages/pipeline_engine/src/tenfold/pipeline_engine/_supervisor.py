"""A supervisor for N engine processes sharing one Kafka topic.

Each worker is a separate ``python -m tenfold.pipeline_engine run`` process
(its own GIL, its own librdkafka consumer) reading a fixed share of the
topic's partitions, all under the pipeline's consumer group id. The split is
static, partition ``p`` going to worker ``p % N``, in the spirit of Kafka's
static membership (KIP-345): a restarted worker takes back exactly the
partitions it had, so a crash never triggers a rebalance (slow on Tansu) and
two live workers never read the same partition. With a PostgreSQL sink the
restarted worker resumes from the offsets stored with its rows, so a crash
neither loses nor duplicates a row.

With ``rebalance=True`` the group changes instead when a worker dies: its
partitions go to the live workers at once, and it rejoins when it is started
again. Each change is a stop-the-world rebalance, as in Kafka's eager
protocol: every live worker is asked to stop (SIGTERM: drain, commit, exit),
and only once all have exited are the partitions split again over the
members and the workers started with their new shares. No two processes ever
hold one partition, and each new owner resumes from the offsets stored with
the rows, so a death still neither loses nor duplicates a row; what it costs
is a pause of the whole group instead of the dead worker's partitions alone.
This is what keeps the group going when a worker's *place* is gone (a node
whose processes cannot be started again).

Each worker runs in a :class:`tenfold.core.placement.Place` (worker ``i`` in
place ``i % len(places)``): this host by default, or a node with its own
address and CPU and memory budget.

Invariants kept by :class:`Supervisor`:

* at most one live process per worker slot: a slot is restarted only after
  its previous process has been reaped;
* at most one live process per partition: with ``rebalance``, new shares are
  handed out only after every process of the previous generation has been
  reaped;
* every worker dies with the supervisor: workers ask for ``PR_SET_PDEATHSIG``
  (SIGTERM) as they start, and run in their own session, so a terminal's Ctrl-C reaches the
  supervisor alone, which then stops them in order;
* :meth:`Supervisor.run` returns (or raises) only after every worker it
  started has exited and been reaped; stragglers past ``stop_timeout_s`` are
  SIGKILLed.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.core.errors import TenfoldError
from tenfold.core.placement import Place, place_name
from tenfold.pipeline_engine.errors import SupervisorError

__all__ = ["Supervisor", "WorkerState", "die_with_supervisor", "split_partitions"]

log = logging.getLogger("tenfold.pipeline_engine.supervisor")

_PR_SET_PDEATHSIG = 1


def split_partitions(partitions: Sequence[int], workers: int) -> list[list[int]]:
    """Partition ``p`` (in sorted order, index ``i``) goes to worker ``i % workers``.

    Every partition lands in exactly one share and the shares differ in size
    by at most one. Asking for more workers than partitions is an error: the
    extra workers would have nothing to read.
    """
    if workers <= 0:
        raise SupervisorError(f"--workers must be positive, got {workers}")
    parts = sorted(set(partitions))
    if not parts:
        raise SupervisorError("the topic has no partitions to share")
    if workers > len(parts):
        raise SupervisorError(
            f"{workers} workers for {len(parts)} partitions: each worker needs at least one"
            " partition (add partitions to the topic or run fewer workers)"
        )
    return [parts[i::workers] for i in range(workers)]


SUPERVISOR_ENV = "TENFOLD_PIPELINE_SUPERVISOR"


def die_with_supervisor() -> None:
    """In a worker: ask the kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG).

    Called first thing by ``python -m tenfold.pipeline_engine`` when the
    supervisor's pid is in the environment; exits at once if the supervisor
    is already gone (it died before the request took effect).
    """
    parent = os.environ.get(SUPERVISOR_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != parent:
        os._exit(1)


@dataclass
class WorkerState:
    """One worker slot: its partitions, its current process, and what happened to it."""

    index: int
    partitions: list[int]
    proc: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    restarts: int = 0
    pids: list[int] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    done: bool = False
    report: dict[str, Any] | None = None
    next_start: float = 0.0
    backoff_s: float = 0.0
    place: Place | None = None
    member: bool = True
    draining: bool = False
    events_written: int = 0


class Supervisor:
    """Runs ``workers`` engine processes for ``pipeline_file`` and keeps them running.

    A worker that exits 0 has finished its stream (``stop_when_idle_s``,
    ``--max-events``) and is not restarted; any other exit (a crash, SIGKILL,
    a connector error) restarts it after ``restart_delay_s``, doubling up to
    ``max_restart_delay_s`` while it keeps failing within ``stable_s`` of its
    start. More than ``max_restarts`` restarts of one slot stops everything
    with :class:`SupervisorError`. :meth:`stop` (or SIGTERM/SIGINT through
    :meth:`install_signal_handlers`) sends SIGTERM to every worker, which
    drains what it read and exits; :meth:`run` then returns.

    ``places`` puts worker ``i`` in ``places[i % len(places)]`` (default: this
    host). ``rebalance`` hands a dead worker's partitions to the others until
    it is back (see the module's docstring).
    """

    def __init__(
        self,
        pipeline_file: str | Path,
        partitions: Sequence[Sequence[int]],
        *,
        worker_args: Sequence[str] = (),
        restart_delay_s: float = 0.2,
        max_restart_delay_s: float = 5.0,
        stable_s: float = 10.0,
        max_restarts: int = 100,
        stop_timeout_s: float = 30.0,
        metrics_port: int | None = None,
        python: str = sys.executable,
        on_event: Callable[[str], None] | None = None,
        places: Sequence[Place] = (),
        rebalance: bool = False,
    ) -> None:
        self.pipeline_file = Path(pipeline_file)
        places = list(places)
        self.workers = [
            WorkerState(i, list(p), place=places[i % len(places)] if places else None)
            for i, p in enumerate(partitions)
        ]
        self.all_partitions = sorted({p for share in partitions for p in share})
        self.rebalance = rebalance
        self.generation = 0
        self.rebalances = 0
        self._want_rebalance = False
        self._draining = False
        self.worker_args = list(worker_args)
        self.restart_delay_s = restart_delay_s
        self.max_restart_delay_s = max_restart_delay_s
        self.stable_s = stable_s
        self.max_restarts = max_restarts
        self.stop_timeout_s = stop_timeout_s
        self.metrics_port = metrics_port
        self.python = python
        self.on_event = on_event or (lambda line: log.info("%s", line))
        self._stop = threading.Event()

    # -- control -----------------------------------------------------------------
    def stop(self) -> None:
        """Ask every worker to finish (SIGTERM: drain, commit, exit); safe from a signal handler."""
        self._stop.set()

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM and SIGINT call :meth:`stop`; returns a function restoring the old handlers."""

        def handler(signum: int, frame: Any) -> None:
            self.stop()

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore

    def pids(self) -> list[int]:
        """Process ids of the workers running now."""
        return [w.proc.pid for w in self.workers if w.proc is not None and w.proc.poll() is None]

    # -- processes -------------------------------------------------------------
    def _argv(self, w: WorkerState) -> list[str]:
        return [
            self.python,
            "-m",
            "tenfold.pipeline_engine",
            "run",
            str(self.pipeline_file),
            "--partitions",
            ",".join(map(str, w.partitions)),
            "--no-progress",
            "--json",
            *self.worker_args,
            *(
                ["--metrics-port", str(self.metrics_port + w.index)]
                if self.metrics_port is not None
                else []
            ),
        ]

    def _start(self, w: WorkerState) -> None:
        env = dict(os.environ, TENFOLD_PIPELINE_WORKER=str(w.index))
        env[SUPERVISOR_ENV] = str(os.getpid())
        popen_kw: dict[str, Any] = {
            "stdout": subprocess.PIPE,
            "stderr": None,  # the worker's log lines go where ours go
            "stdin": subprocess.DEVNULL,
            "text": True,
            "env": env,
            "start_new_session": True,
        }
        w.started_at = time.monotonic()
        try:
            if w.place is not None:
                w.proc = w.place.spawn(self._argv(w), **popen_kw)
            else:
                w.proc = subprocess.Popen(self._argv(w), **popen_kw)
        except (OSError, subprocess.SubprocessError, TenfoldError) as exc:
            # The place is gone or refuses processes: counted like a crash at start.
            self.on_event(f"worker {w.index} could not start in {self._where(w)}: {exc}")
            w.proc = None
            self._failed(w, "a failed start")
            return
        w.pids.append(w.proc.pid)
        self.on_event(
            f"worker {w.index} started: pid {w.proc.pid}, partitions {w.partitions}"
            + (f" in {place_name(w.place)}" if w.place is not None else "")
            + (f" (restart {w.restarts})" if w.restarts else "")
        )

    @staticmethod
    def _where(w: WorkerState) -> str:
        return place_name(w.place) if w.place is not None else "this host"

    def _reap(self, w: WorkerState, code: int) -> None:
        assert w.proc is not None
        out = w.proc.stdout.read() if w.proc.stdout is not None else ""
        if w.proc.stdout is not None:
            w.proc.stdout.close()
        w.proc = None
        w.exit_codes.append(code)
        if code == 0:
            try:
                w.report = json.loads(out) if out.strip() else None
            except json.JSONDecodeError:
                w.report = None
            w.events_written += int((w.report or {}).get("events_written") or 0)
        if w.draining:
            # Stopped for a rebalance: it drained and committed (or died trying, which the
            # stored offsets make safe); it is started again with its new share.
            w.draining = False
            return
        if code == 0:
            w.done = True
            self.on_event(f"worker {w.index} {'stopped' if self._stop.is_set() else 'finished'}")
            return
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if self._stop.is_set():
            self.on_event(f"worker {w.index} stopped ({how})")
            w.done = True
            return
        self._failed(w, how)

    def _failed(self, w: WorkerState, how: str) -> None:
        """A worker died (or could not start): schedule its restart; with ``rebalance``
        its partitions go to the others meanwhile."""
        if w.restarts >= self.max_restarts:
            raise SupervisorError(
                f"worker {w.index} (partitions {w.partitions}) failed {w.restarts + 1} times,"
                f" last with {how}; giving up after --max-restarts {self.max_restarts}"
            )
        ran_s = time.monotonic() - w.started_at
        if ran_s >= self.stable_s or w.backoff_s == 0:
            w.backoff_s = self.restart_delay_s
        else:
            w.backoff_s = min(w.backoff_s * 2, self.max_restart_delay_s)
        w.restarts += 1
        w.next_start = time.monotonic() + w.backoff_s
        self.on_event(
            f"worker {w.index} died ({how}) after {ran_s:.1f} s; restarting in {w.backoff_s:g} s"
            + (f"; partitions {w.partitions} go to the others meanwhile" if self.rebalance else "")
        )
        if self.rebalance and w.member:
            w.member = False
            self._want_rebalance = True

    def _place_ready(self, w: WorkerState) -> bool:
        """Can ``w``'s place start a process (``true``)? A failure counts as a failed restart."""
        if w.place is None:
            return True
        try:
            probe = w.place.spawn(["true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            ok = probe.wait(10) == 0
        except (OSError, subprocess.SubprocessError, TenfoldError) as exc:
            self.on_event(f"worker {w.index} could not start in {self._where(w)}: {exc}")
            ok = False
        if not ok:
            self._failed(w, "a failed start")
        return ok

    def _rebalance_step(self) -> None:
        """Advance a rebalance: rejoin restarted members, drain the group, hand out shares."""
        now = time.monotonic()
        for w in self.workers:
            if not w.done and not w.member and w.proc is None and now >= w.next_start:
                if not self._place_ready(w):
                    continue  # still gone: no rebalance for a member that cannot start
                w.member = True  # back after its backoff: it rejoins the group,
                # in the split under way if there is one, else in a new rebalance
                self._want_rebalance = self._want_rebalance or not self._draining
        if self._want_rebalance and not self._draining:
            self._want_rebalance = False
            self._draining = True
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is None:
                    w.draining = True
                    w.proc.send_signal(signal.SIGTERM)
        if not self._draining or any(w.proc is not None for w in self.workers):
            return
        # Every process of the previous generation is reaped: no partition has an owner.
        self._draining = False
        members = [w for w in self.workers if w.member and not w.done]
        if not members:
            return  # every worker is waiting for its restart; the rejoin rebalances again
        shares = split_partitions(self.all_partitions, min(len(members), len(self.all_partitions)))
        self.generation += 1
        self.rebalances += 1
        self.on_event(
            f"rebalance {self.rebalances}: {len(members)} member(s),"
            + " ".join(f" worker {w.index} <- {s}" for w, s in zip(members, shares, strict=False))
        )
        for w, share in zip(members, shares, strict=False):
            w.partitions = share
            self._start(w)

    def _stop_all(self) -> None:
        live = [w for w in self.workers if w.proc is not None]
        for w in live:
            assert w.proc is not None
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for w in live:
            assert w.proc is not None
            try:
                w.proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                self.on_event(f"worker {w.index} ignored SIGTERM for {self.stop_timeout_s:g} s")
                w.proc.kill()
                w.proc.wait()
            code = w.proc.returncode
            self._reap(w, code)

    # -- run -----------------------------------------------------------------------
    def run(self, poll_s: float = 0.05) -> dict[str, Any]:
        """Start the workers and supervise them until all finish or :meth:`stop` is called."""
        try:
            for w in self.workers:
                self._start(w)
            while not self._stop.is_set():
                pending = False
                for w in self.workers:
                    if w.done:
                        continue
                    pending = True
                    if w.proc is None:
                        if not self.rebalance and time.monotonic() >= w.next_start:
                            self._start(w)
                        continue
                    code = w.proc.poll()
                    if code is not None:
                        self._reap(w, code)
                if self.rebalance:
                    self._rebalance_step()
                if not pending:
                    break
                self._stop.wait(poll_s)
        finally:
            self._stop.set()
            self._stop_all()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        workers = []
        for w in self.workers:
            r = w.report or {}
            workers.append(
                {
                    "worker": w.index,
                    "partitions": w.partitions,
                    "pids": w.pids,
                    "restarts": w.restarts,
                    "exit_codes": w.exit_codes,
                    "events_read": r.get("events_read"),
                    "events_written": r.get("events_written"),
                    "events_written_total": w.events_written,
                    "place": self._where(w),
                }
            )
        return {
            "workers": workers,
            "restarts": sum(w.restarts for w in self.workers),
            "rebalances": self.rebalances,
            "stopped": all(w.proc is None for w in self.workers),
        }
