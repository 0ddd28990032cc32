"""Syscall tracing: per-syscall counts and log2 latency histograms from raw_syscalls.

The BPF side stamps each thread's sys_enter and, at sys_exit, adds the elapsed
nanoseconds to the syscall's totals and to one of 32 power-of-two buckets.
Filters (process, cgroup, command) are applied in the kernel before anything
is recorded.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from tenfold.cloud_kernel._build import build_object, ensure_mounts
from tenfold.cloud_kernel._libbpf import BpfObject
from tenfold.cloud_kernel._syscalls import syscall_name
from tenfold.cloud_kernel.errors import CloudKernelError

__all__ = ["SyscallStats", "SyscallTracer"]

MAX_SYSCALLS = 512
SLOTS = 32
_FILTER = struct.Struct("<IIQ16s")
_TOTALS = struct.Struct("<QQQ")


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


def _cgroup_id(path: str) -> int:
    # The cgroup id the kernel reports is the inode number of the cgroup directory.
    try:
        return os.stat(path).st_ino
    except OSError:
        raise CloudKernelError(f"no cgroup directory {path!r}") from None


class SyscallTracer:
    """Attach the tracer (root); read per-syscall stats; detach on close or process exit."""

    def __init__(
        self, *, pid: int | None = None, cgroup: str | None = None, comm: str | None = None
    ) -> None:
        if pid is not None and (pid <= 0 or not Path(f"/proc/{pid}").exists()):
            raise CloudKernelError(f"no process with pid {pid}")
        if comm is not None and not 0 < len(comm.encode()) <= 15:
            raise CloudKernelError(f"command name must be 1 to 15 bytes, got {comm!r}")
        ensure_mounts()
        self._obj = BpfObject(build_object("syscall_trace")).load(["trace_enter", "trace_exit"])
        try:
            self._filter = self._obj.map("trace_filter")
            self._totals = self._obj.map("per_syscall", per_cpu=True)
            self._hist = self._obj.map("histogram", per_cpu=True)
            self._filter.update(
                struct.pack("<I", 0),
                _FILTER.pack(
                    pid or 0,
                    1 if comm else 0,
                    _cgroup_id(cgroup) if cgroup else 0,
                    (comm or "").encode(),
                ),
            )
            self._obj.program("trace_enter").attach()
            self._obj.program("trace_exit").attach()
        except BaseException:
            self._obj.close()
            raise

    def close(self) -> None:
        self._obj.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def snapshot(self, *, histograms: bool = True) -> list[SyscallStats]:
        """Figures for every syscall seen so far, most frequent first."""
        out = []
        for number in range(MAX_SYSCALLS):
            per_cpu = self._totals.lookup_per_cpu(struct.pack("<I", number))
            count = errors = total = 0
            for raw in per_cpu:
                c, t, e = _TOTALS.unpack(raw[: _TOTALS.size])
                count, total, errors = count + c, total + t, errors + e
            if not count:
                continue
            hist: list[int] = []
            if histograms:
                for slot in range(SLOTS):
                    cells = self._hist.lookup_per_cpu(struct.pack("<I", number * SLOTS + slot))
                    hist.append(sum(struct.unpack("<Q", c[:8])[0] for c in cells))
            out.append(SyscallStats(number, syscall_name(number), count, errors, total, hist))
        return sorted(out, key=lambda s: -s.count)
