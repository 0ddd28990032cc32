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

Invariants kept by :class:`Supervisor`:

* at most one live process per worker slot: a slot is restarted only after
  its previous process has been reaped;
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
    ) -> None:
        self.pipeline_file = Path(pipeline_file)
        self.workers = [WorkerState(i, list(p)) for i, p in enumerate(partitions)]
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
        w.proc = subprocess.Popen(
            self._argv(w),
            stdout=subprocess.PIPE,
            stderr=None,  # the worker's log lines go where ours go
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        w.started_at = time.monotonic()
        w.pids.append(w.proc.pid)
        self.on_event(
            f"worker {w.index} started: pid {w.proc.pid}, partitions {w.partitions}"
            + (f" (restart {w.restarts})" if w.restarts else "")
        )

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
            w.done = True
            self.on_event(f"worker {w.index} {'stopped' if self._stop.is_set() else 'finished'}")
            return
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if self._stop.is_set():
            self.on_event(f"worker {w.index} stopped ({how})")
            w.done = True
            return
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
        )

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
                        if time.monotonic() >= w.next_start:
                            self._start(w)
                        continue
                    code = w.proc.poll()
                    if code is not None:
                        self._reap(w, code)
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
                }
            )
        return {
            "workers": workers,
            "restarts": sum(w.restarts for w in self.workers),
            "stopped": all(w.proc is None for w in self.workers),
        }
