"""Tracing overhead, ours beside bpftrace, measured so that neither pays for the other.

Two tracers cannot be attached to the same tracepoints for a fair A/B: every
syscall would run both programs. bpftrace cannot be paused either (its
programs run as long as the process lives), and starting it takes a good part
of a second, far too long to hide inside a timed call. So the rig gives each
tracer its own process to trace:

- two loop workers, A and B, each a small Python process that issues ``n``
  ``getppid()`` calls on request and reports the time they took;
- our tracer filtered (in the kernel) to A, bpftrace filtered to B, both
  attached for the whole timed phase; each worker then pays its own tracer in
  full and the other's filter check only (a comparison and an early return).

Before the timed phase the rig also measures, one tracer at a time, the
overhead with every syscall on the machine traced, and checks that both
tracers count the same syscalls of the same process (both attached to B while
B runs a fixed mix of syscalls; counts must be equal per syscall number).

bpftrace runs detached from this process (its parent exits at once), so the
harness's RSS figure for our side never includes it; its own RSS is reported
as a metric.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tenfold.cloud_kernel._trace import SyscallTracer
from tenfold.cloud_kernel.errors import CloudKernelError
from tenfold.core.lifecycle import Started, reap

__all__ = ["BpftraceRun", "LoopWorker", "TraceRig", "bpftrace_program"]

GETPPID = 110  # x86-64
BATCH = (
    1_000  # getppid() calls timed together inside a worker (short enough to fit in a time slice)
)

_WORKER = r"""
import os, sys, time
getppid = os.getppid
out = sys.stdout
while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd, n, batch = line.split()
    n, batch = int(n), int(batch)
    if cmd == "loop":
        spans = []
        for _ in range(n // batch):
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                getppid()
            spans.append(str(time.perf_counter_ns() - t0))
        out.write(" ".join(spans) + "\n")
    else:  # "mix": a fixed set of syscalls, some failing, for the count check
        for _ in range(n):
            getppid()
            fd = os.open("/proc/self/stat", os.O_RDONLY)
            os.read(fd, 64)
            os.close(fd)
            os.stat("/")
            try:
                os.stat("/nonexistent-tenfold")
            except OSError:
                pass
        out.write("0\n")
    out.flush()
"""


class LoopWorker:
    """A child process that times ``n`` getppid() calls on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.loop(1_000, 1_000)  # imports done, pages touched

    def _ask(self, cmd: str, n: int, batch: int = 1) -> list[int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{cmd} {n} {batch}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise CloudKernelError(f"loop worker {self.pid} exited with {self.proc.wait()}")
        return [int(x) for x in line.split()]

    def loop(self, n: int, batch: int = BATCH) -> list[float]:
        """ns per getppid() in each batch of ``batch`` calls (``n // batch`` batches)."""
        batch = min(batch, n)
        return [span / batch for span in self._ask("loop", n, batch)]

    def mix(self, n: int) -> None:
        self._ask("mix", n)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        reap(self.proc, 5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def bpftrace_program(pid: int | None) -> str:
    """The bpftrace equivalent of our tracer: counts and log2 latency histograms per syscall."""
    enter = f"/pid == {pid}/ " if pid else ""
    exit_ = f"/pid == {pid} && @start[tid]/" if pid else "/@start[tid]/"
    return (
        f"tracepoint:raw_syscalls:sys_enter {enter}{{ @start[tid] = nsecs; }}"
        f" tracepoint:raw_syscalls:sys_exit {exit_}"
        " { @count[args->id] = count(); @lat[args->id] = hist(nsecs - @start[tid]);"
        " delete(@start[tid]); }"
    )


_COUNT_LINE = re.compile(r"^@count\[(-?\d+)\]: (\d+)$", re.MULTILINE)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


_LAUNCH = """
"$0" -e "$1" >"$2" 2>&1 </dev/null &
bt=$!
(
  while kill -0 "$bt" 2>/dev/null; do
    if ! kill -0 "$3" 2>/dev/null; then
      kill -INT "$bt"; sleep 3; kill -KILL "$bt" 2>/dev/null; break
    fi
    sleep 0.2
  done
) >/dev/null 2>&1 </dev/null &
echo "$bt $!"
"""


class BpftraceRun:
    """bpftrace running ``program`` detached from us (not our child), output to a file."""

    def __init__(self, program: str, output: Path, probes: int = 2) -> None:
        tool = shutil.which("bpftrace")
        if tool is None:
            raise CloudKernelError("bpftrace is not installed (Debian package bpftrace)")
        self.output = output
        # The outer shell exits at once, so bpftrace is not our child; a small watchdog
        # (also detached) stops it if this process dies without stopping it.
        started = subprocess.run(
            ["sh", "-c", _LAUNCH, tool, program, str(output), str(os.getpid())],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BPFTRACE_MAX_MAP_KEYS": "65536"},
        )
        self.pid, self.watchdog = (int(x) for x in started.stdout.split())
        try:
            self._wait_attached(probes)
        except BaseException:
            self.stop()
            raise

    def _wait_attached(self, probes: int) -> None:
        # bpftrace prints "Attaching N probes..." before it attaches; each attached
        # tracepoint holds a perf event fd, so count those.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not _alive(self.pid):
                raise CloudKernelError(f"bpftrace exited: {self.text()[-500:]}")
            with contextlib.suppress(OSError):
                fds = os.listdir(f"/proc/{self.pid}/fd")
                events = sum(
                    1 for fd in fds if "perf_event" in _readlink(f"/proc/{self.pid}/fd/{fd}")
                )
                if events >= probes and "Attaching" in self.text():
                    time.sleep(0.05)
                    return
            time.sleep(0.01)
        raise CloudKernelError("bpftrace did not attach within 60 s")

    @property
    def running(self) -> bool:
        return _alive(self.pid)

    @property
    def watchdog_running(self) -> bool:
        return _alive(self.watchdog)

    def text(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except OSError:
            return ""

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return 0.0

    def stop(self) -> str:
        """SIGINT (bpftrace prints its maps and exits); SIGKILL if it will not go."""
        deadline = time.monotonic() + 20
        while _alive(self.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            # A SIGINT that lands before bpftrace waits for events can be missed: repeat.
            for _ in range(50):
                if not _alive(self.pid):
                    break
                time.sleep(0.01)
        if _alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            while _alive(self.pid):
                time.sleep(0.01)
        deadline = time.monotonic() + 5  # the watchdog notices within 0.2 s
        while _alive(self.watchdog) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.text()

    def counts(self) -> dict[int, int]:
        """@count per syscall number from the output (after :meth:`stop`)."""
        return {int(k): int(v) for k, v in _COUNT_LINE.findall(self.text())}


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


@dataclass
class TraceRig(Started):
    """Workers A (ours) and B (bpftrace), the baselines, the count check, then both tracers on."""

    workdir: Path
    n: int
    alone_rounds: int = 2
    untraced_ns: dict[str, float] = field(default_factory=dict)
    machine_wide_ns: dict[str, float] = field(default_factory=dict)
    counts_checked: int = 0
    ours: SyscallTracer | None = None
    peer: BpftraceRun | None = None

    def start(self) -> None:
        self._stack = contextlib.ExitStack()
        self.a = LoopWorker()
        self._stack.callback(self.a.close)
        self.b = LoopWorker()
        self._stack.callback(self.b.close)
        self._baselines()
        self._check_counts()
        self.ours = SyscallTracer(pid=self.a.pid)
        self._stack.callback(self.ours.close)
        self.peer = BpftraceRun(bpftrace_program(self.b.pid), self.workdir / "bpftrace.out")
        self._stack.callback(self.peer.stop)

    def stop(self) -> None:
        self._stack.close()

    def _best(self, worker: LoopWorker) -> float:
        """The fastest batch's ns per call: the figure least disturbed by other load."""
        return min(worker.loop(self.n))

    def _baselines(self) -> None:
        self.untraced_ns = {"a": self._best(self.a), "b": self._best(self.b)}
        ours: list[float] = []
        peer: list[float] = []
        for i in range(self.alone_rounds):
            with SyscallTracer():
                ours.append(self._best(self.a))
            run = BpftraceRun(bpftrace_program(None), self.workdir / f"bpftrace-all-{i}.out")
            try:
                peer.append(self._best(self.a))
            finally:
                run.stop()
        base = self.untraced_ns["a"]
        self.machine_wide_ns = {"ours": min(ours) - base, "peer": min(peer) - base}

    def _check_counts(self) -> None:
        """Both tracers on worker B at once; a fixed syscall mix; equal counts per syscall."""
        with SyscallTracer(pid=self.b.pid) as tracer:
            run = BpftraceRun(bpftrace_program(self.b.pid), self.workdir / "bpftrace-check.out")
            try:
                self.b.mix(200)
                self.b.loop(1_000, 1_000)
                ours = {s.number: s.count for s in tracer.snapshot(histograms=False)}
            finally:
                run.stop()
        theirs = {k: v for k, v in run.counts().items() if 0 <= k < 512}
        if ours != theirs or ours.get(GETPPID) != 1_200:
            diff = {
                k: (ours.get(k, 0), theirs.get(k, 0))
                for k in sorted(set(ours) | set(theirs))
                if ours.get(k, 0) != theirs.get(k, 0)
            }
            raise CloudKernelError(
                f"syscall counts differ from bpftrace's (ours, bpftrace): {diff}"
            )
        self.counts_checked = sum(ours.values())
