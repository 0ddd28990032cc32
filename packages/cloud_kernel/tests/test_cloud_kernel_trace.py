"""The syscall tracer against real workloads and against bpftrace on the same process."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tenfold.cloud_kernel import CloudKernelError, SyscallTracer
from tenfold.cloud_kernel._testing import root_only
from tenfold.cloud_kernel._tracebench import (
    GETPPID,
    BpftraceRun,
    LoopWorker,
    _alive,
    bpftrace_program,
)

pytestmark = [root_only, pytest.mark.root]


def test_counts_equal_bpftrace_on_the_same_process(tmp_path: Path) -> None:
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed")
    worker = LoopWorker()
    try:
        with SyscallTracer(pid=worker.pid) as tracer:
            run = BpftraceRun(bpftrace_program(worker.pid), tmp_path / "bt.out")
            try:
                worker.mix(50)
                worker.loop(3_000, 1_000)
                ours = {s.number: s.count for s in tracer.snapshot(histograms=False)}
                assert tracer.count(GETPPID) == 3_050
            finally:
                run.stop()
        theirs = {k: v for k, v in run.counts().items() if 0 <= k < 512}
        assert ours == theirs
        assert len(ours) >= 5  # read, write, openat, close, newfstatat, getppid ...
        assert not run.running
        assert not run.watchdog_running
    finally:
        worker.close()


def test_bpftrace_goes_when_its_owner_is_killed(tmp_path: Path) -> None:
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed")
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from tenfold.cloud_kernel._tracebench import BpftraceRun, bpftrace_program\n"
            f"run = BpftraceRun(bpftrace_program(1), Path({str(tmp_path / 'bt.out')!r}))\n"
            "print(run.pid, run.watchdog, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pid, watchdog = (int(x) for x in owner.stdout.readline().split())
        assert _alive(pid)
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 15
    while (_alive(pid) or _alive(watchdog)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid) and not _alive(watchdog)


def test_every_thread_is_counted_exactly_once() -> None:
    def spin() -> None:
        for _ in range(2_000):
            os.getppid()

    with SyscallTracer(pid=os.getpid()) as tracer:
        threads = [threading.Thread(target=spin) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert tracer.count(GETPPID) == 8_000
        stats = {s.name: s for s in tracer.snapshot()}
    assert sum(stats["getppid"].histogram) == 8_000


def test_latency_lands_in_its_log2_bucket() -> None:
    with SyscallTracer(pid=os.getpid()) as tracer:
        for _ in range(10):
            time.sleep(0.002)
        stats = {s.name: s for s in tracer.snapshot()}
    sleeps = stats["clock_nanosleep"]
    assert sleeps.count == 10
    assert sleeps.mean_ns >= 2_000_000
    # 2 ms is bucket 20 ([2**20, 2**21) ns); a loaded machine may overshoot, never undershoot.
    assert sum(sleeps.histogram[20:26]) == 10
    assert sleeps.percentile_ns(50) >= 2**21


def test_errors_are_counted_per_syscall() -> None:
    with SyscallTracer(pid=os.getpid()) as tracer:
        for _ in range(100):
            with contextlib.suppress(FileNotFoundError):
                os.stat("/nonexistent/tenfold")
        stats = {s.name: s for s in tracer.snapshot()}
    assert stats["newfstatat"].errors >= 100
    assert stats["newfstatat"].count >= stats["newfstatat"].errors


def test_count_refuses_a_number_out_of_range() -> None:
    with SyscallTracer(pid=os.getpid()) as tracer, pytest.raises(CloudKernelError):
        tracer.count(4096)
