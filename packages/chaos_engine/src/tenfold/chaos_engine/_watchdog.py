"""The dead-man switch and crash recovery, both driven by the journal.

The watchdog is a separate process (its own session, so a Ctrl-C to the engine's
terminal does not reach it). It tails the journal and:

* reverts any fault still in place ``GRACE_S`` after its deadline (the engine's
  own timer should have done it; this covers a hung engine);
* when the engine process is gone, reverts every outstanding fault and
  releases every resource (worker pools, namespaces) at once, then exits;
* exits after the engine's ``close`` record once nothing is outstanding.

``recover`` does the same replay in the foreground, under the journal's lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.chaos_engine._journal import Outstanding, locked, read_records
from tenfold.chaos_engine._undo import run_steps
from tenfold.chaos_engine.errors import ChaosEngineError, JournalError
from tenfold.core.lifecycle import reap

GRACE_S = 0.5
POLL_S = 0.05


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[0:1]
    return state not in ([b"Z"], [b"X"])


def _append(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps({"t": time.time(), **record}, separators=(",", ":"), sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def undo_outstanding(path: Path, state: Outstanding, why: str, *, faults_only: bool) -> list[str]:
    errors: list[str] = []
    for key, record in list(state.faults.items()):
        try:
            run_steps(list(record.get("undo", [])))
        except ChaosEngineError as exc:
            errors.append(f"fault {key}: {exc}")
        _append(path, {"op": "reverted", "id": key, "why": why})
        state.faults.pop(key, None)
    if not faults_only:
        for key, record in list(state.resources.items()):
            try:
                run_steps(list(record.get("undo", [])))
            except ChaosEngineError as exc:
                errors.append(f"resource {key}: {exc}")
            _append(path, {"op": "released", "id": key, "why": why})
            state.resources.pop(key, None)
    return errors


def watch(path: Path, engine_pid: int) -> None:
    """The watchdog loop (runs in its own process)."""
    state = Outstanding()
    offset = 0
    while True:
        records, offset = read_records(path, offset)
        for record in records:
            state.apply(record)
        alive = pid_alive(engine_pid)
        if not alive:
            undo_outstanding(path, state, "watchdog: engine gone", faults_only=False)
            return
        now = time.time()
        expired = Outstanding(
            faults={
                k: r
                for k, r in state.faults.items()
                if float(r.get("deadline", 0)) + GRACE_S <= now
            }
        )
        if expired.faults:
            undo_outstanding(path, expired, "watchdog: ttl", faults_only=True)
            for key in expired.faults:
                state.faults.pop(key, None)
        if state.closed and not state.faults:
            return
        time.sleep(POLL_S)


@dataclass
class WatchdogProcess:
    """The engine's handle on its watchdog."""

    proc: subprocess.Popen[bytes]

    def wait_exit(self, timeout_s: float = 5.0) -> None:
        reap(self.proc, timeout_s)


def start_watchdog(path: Path, engine_pid: int) -> WatchdogProcess:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenfold.chaos_engine._watchdog", str(path), str(engine_pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return WatchdogProcess(proc)


@dataclass
class RecoveryReport:
    """What ``recover`` found and undid."""

    journal: str
    faults_reverted: list[str] = field(default_factory=list)
    resources_released: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "journal": self.journal,
            "faults_reverted": self.faults_reverted,
            "resources_released": self.resources_released,
            "errors": self.errors,
        }


def recover(path: Path) -> RecoveryReport:
    """Replay ``path`` after a crash: undo every fault and resource still outstanding.

    Takes the journal's lock first, so it refuses (:class:`JournalLocked`) while
    a live engine owns the journal.
    """
    if not path.exists():
        raise JournalError(f"no journal at {path}")
    if not path.is_file():
        raise JournalError(f"{path} is not a journal file")
    records, _ = read_records(path)
    if not records or records[0].get("op") != "open":
        raise JournalError(
            f"{path} is not a chaos journal (no journal record"
            + (" at its start)" if records else ")")
            + "; nothing was recovered"
        )
    report = RecoveryReport(str(path))
    with locked(path):
        state = Outstanding()
        records, _ = read_records(path)
        for record in records:
            state.apply(record)
        report.faults_reverted = sorted(state.faults)
        report.resources_released = sorted(state.resources)
        report.errors = undo_outstanding(path, state, "recover", faults_only=False)
        _append(path, {"op": "close", "pid": os.getpid(), "why": "recover"})
    return report


def main(argv: list[str]) -> int:
    path, pid = Path(argv[0]), int(argv[1])
    with contextlib.suppress(KeyboardInterrupt):
        watch(path, pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
