"""The shared lifecycle shapes: Closing, Started (stop after a failed start), reap, stop_processes."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tenfold.core.lifecycle import Closing, Started, reap, stop_processes


class _Log(Started):
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        if self.fail:
            raise RuntimeError("half started")

    def stop(self) -> None:
        self.calls.append("stop")


def test_started_stops_after_the_block_and_after_a_failed_start() -> None:
    ok = _Log(fail=False)
    with ok as entered:
        assert entered is ok and ok.calls == ["start"]
    assert ok.calls == ["start", "stop"]
    bad = _Log(fail=True)
    with pytest.raises(RuntimeError, match="half started"), bad:
        pass
    assert bad.calls == ["start", "stop"]


def test_closing_closes_even_when_the_block_raises() -> None:
    closed: list[bool] = []

    class Thing(Closing):
        def close(self) -> None:
            closed.append(True)

    with pytest.raises(ValueError), Thing():
        raise ValueError
    assert closed == [True]


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_reap_kills_a_child_that_does_not_exit_in_time() -> None:
    proc = _child("import time; time.sleep(600)")
    assert reap(proc, 0.2) == -signal.SIGKILL
    assert reap(_child("raise SystemExit(3)"), 60) == 3


def test_stop_processes_signals_all_then_kills_those_that_ignore_it() -> None:
    ignores = _child(
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)"
    )
    obeys = _child("import time; time.sleep(600)")
    stop_processes([ignores, obeys], 2.0)
    assert obeys.returncode == -signal.SIGTERM
    # Killed whether or not it had set its handler before the signal came.
    assert ignores.returncode in (-signal.SIGKILL, -signal.SIGTERM)
