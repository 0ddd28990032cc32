"""Syscall tracing: per-syscall counts and log2 latency histograms from raw_syscalls.

The BPF side (tp_btf programs on the sys_enter and sys_exit raw tracepoints)
stamps each thread's sys_enter in an array indexed by thread id and, at
sys_exit, adds the elapsed nanoseconds to the syscall's count, total and one of
32 power-of-two buckets, all in one per-CPU value. Filters (process, cgroup,
command) are read-only data fixed at load, applied in the kernel before anything
is recorded; a filter that is off costs nothing (the verifier removes it).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tenfold.cloud_kernel._build import build_object, ensure_mounts
from tenfold.cloud_kernel._libbpf import BpfObject
from tenfold.cloud_kernel._syscalls import syscall_name
from tenfold.cloud_kernel.errors import CloudKernelError
from tenfold.core.lifecycle import Closing

__all__ = ["SyscallStats", "SyscallTracer"]

MAX_SYSCALLS = 512
SLOTS = 32
_CONFIG = struct.Struct("<IIQ16s")  # struct trace_config, the whole .rodata section
_TOTALS = struct.Struct(f"<QQQ{SLOTS}Q")  # count, total_ns, errors, hist[SLOTS]
_PID_MAX = Path("/proc/sys/kernel/pid_max")


@dataclass(frozen=True)
class SyscallStats:
    """One syscall's figures: count, errors, mean and log2 histogram of latency."""

    number: int
    name: str
    count: int
    errors: int
    total_ns: int
    histogram: list[int] = field(default_factory=list)  # bucket i: [2**i, 2**(i+1)) ns

    @property
    def mean_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def percentile_ns(self, q: float) -> float:
        """An upper bound of the q-th percentile from the log2 buckets."""
        total = sum(self.histogram)
        if not total:
            return 0.0
        seen = 0
        for i, n in enumerate(self.histogram):
            seen += n
            if seen >= q / 100 * total:
                return float(2 ** (i + 1))
        return float(2**SLOTS)


def _pid_max() -> int:
    try:
        return max(1024, int(_PID_MAX.read_text()))
    except (OSError, ValueError):
        return 4_194_304  # the 64-bit kernel's upper limit


def _cgroup_id(path: str) -> int:
    # The cgroup id the kernel reports is the inode number of the cgroup directory.
    try:
        return os.stat(path).st_ino
    except OSError:
        raise CloudKernelError(f"no cgroup directory {path!r}") from None


class SyscallTracer(Closing):
    """Attach the tracer (root); read per-syscall stats; detach on close or process exit."""

    def __init__(
        self, *, pid: int | None = None, cgroup: str | None = None, comm: str | None = None
    ) -> None:
        if pid is not None and (pid <= 0 or not Path(f"/proc/{pid}").exists()):
            raise CloudKernelError(f"no process with pid {pid}")
        if comm is not None and not 0 < len(comm.encode()) <= 15:
            raise CloudKernelError(f"command name must be 1 to 15 bytes, got {comm!r}")
        ensure_mounts()
        self._obj = BpfObject(build_object("syscall_trace"))
        try:
            # One start slot per possible thread id: the lookup is a bounds check.
            self._obj.set_max_entries("starts", _pid_max())
            self._obj.set_initial_value(
                ".rodata",
                _CONFIG.pack(
                    pid or 0,
                    1 if comm else 0,
                    _cgroup_id(cgroup) if cgroup else 0,
                    (comm or "").encode(),
                ),
            )
            self._obj.load(["trace_enter", "trace_exit"])
            self._totals = self._obj.map("per_syscall", per_cpu=True)
            self._obj.program("trace_enter").attach()
            self._obj.program("trace_exit").attach()
        except BaseException:
            self._obj.close()
            raise

    def close(self) -> None:
        self._obj.close()

    def count(self, number: int) -> int:
        """How many calls of syscall ``number`` were seen so far (one map lookup)."""
        if not 0 <= number < MAX_SYSCALLS:
            raise CloudKernelError(f"syscall number must be in [0, {MAX_SYSCALLS}), got {number}")
        per_cpu = self._totals.lookup_per_cpu(struct.pack("<I", number))
        return sum(struct.unpack_from("<Q", raw)[0] for raw in per_cpu)

    def snapshot(self, *, histograms: bool = True) -> list[SyscallStats]:
        """Figures for every syscall seen so far, most frequent first (one batch read)."""
        out = []
        for key, per_cpu in self._totals.lookup_batch_per_cpu():
            if not any(struct.unpack_from("<Q", raw)[0] for raw in per_cpu):
                continue  # never called: skip the unpacking
            sums = [0] * (3 + SLOTS)
            for raw in per_cpu:
                for i, v in enumerate(_TOTALS.unpack(raw[: _TOTALS.size])):
                    sums[i] += v
            count, total, errors = sums[:3]
            if not count:
                continue
            number = struct.unpack("<I", key)[0]
            hist = sums[3:] if histograms else []
            out.append(SyscallStats(number, syscall_name(number), count, errors, total, hist))
        return sorted(out, key=lambda s: -s.count)
