"""The document's syscall table (read, write, open, close, stat), timed per call.

Each syscall is issued from a tight loop and timed in batches with
``perf_counter_ns``; the figure includes CPython's call overhead (about 50-100 ns
here), which is what a Python caller pays. With the tracer attached, the same
calls are also measured inside the kernel (sys_enter to sys_exit).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SYSCALLS", "SyscallTiming", "time_syscall"]


@dataclass(frozen=True)
class SyscallTiming:
    name: str
    calls: int
    p50_ns: float
    p95_ns: float
    per_s: float
    samples_ns: tuple[float, ...] = ()
    """The mean ns per call of each batch, in the order run."""
    batch: int = 64


def _ops(workdir: str) -> dict[str, tuple[Callable[[], object], Callable[[], None]]]:
    path = os.path.join(workdir, "f")
    with open(path, "wb") as f:
        f.write(b"x" * 4096)
    rfd = os.open(path, os.O_RDONLY)
    wfd = os.open(os.devnull, os.O_WRONLY)
    opened: list[int] = []

    def do_open() -> int:
        fd = os.open(path, os.O_RDONLY)
        opened.append(fd)
        return fd

    def close_opened() -> None:
        while opened:
            os.close(opened.pop())

    def prepare_close() -> None:
        opened.extend(os.open(path, os.O_RDONLY) for _ in range(64))

    def do_close() -> None:
        os.close(opened.pop())

    return {
        "read": (lambda: os.pread(rfd, 64, 0), lambda: None),
        "write": (lambda: os.write(wfd, b"y" * 64), lambda: None),
        "open": (do_open, close_opened),
        "close": (do_close, prepare_close),
        "stat": (lambda: os.stat(path), lambda: None),
        "_cleanup": (lambda: None, lambda: _close_all(rfd, wfd)),
    }


def _close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


SYSCALLS = ("read", "write", "open", "close", "stat")


def time_syscall(name: str, batches: int = 200, batch: int = 64) -> SyscallTiming:
    """Per-call latency of ``name`` (p50/p95 over batches of ``batch`` calls) and calls/s."""
    with tempfile.TemporaryDirectory(prefix="tfk-sys-") as tmp:
        ops = _ops(tmp)
        call, between = ops[name]
        samples: list[float] = []
        in_order: list[float] = []
        total_ns = 0
        if name == "close":
            between()
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                call()
            dt = time.perf_counter_ns() - t0
            between()
            samples.append(dt / batch)
            total_ns += dt
        in_order = list(samples)
        ops["open"][1]()
        ops["_cleanup"][1]()
        samples.sort()
        p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
        return SyscallTiming(
            name,
            batches * batch,
            statistics.median(samples),
            p95,
            batches * batch / (total_ns / 1e9),
            tuple(in_order),
            batch,
        )
