"""Monitoring: a ring buffer of samples and counters, exposed as Prometheus text.

The ring holds the last ``monitoring_buffer_size`` samples (fault events, probe
results, PSI readings, cgroup stats); older ones fall off, so memory stays
bounded however long an experiment runs. Counters are cumulative and never fall
off.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tenfold.chaos_engine._record import Frozen

PSI_ROOT = Path("/proc/pressure")


class Sample(Frozen):
    """One observation: when, what kind, of what, and its value."""

    __slots__ = _fields = ("t", "kind", "name", "value")
    t: float
    kind: str
    name: str
    value: float

    def __init__(self, t: float, kind: str, name: str, value: float) -> None:
        setter = object.__setattr__  # frozen, with slots: as the generated __init__ did
        setter(self, "t", t)
        setter(self, "kind", kind)
        setter(self, "name", name)
        setter(self, "value", value)

    def as_dict(self) -> dict[str, float | str]:
        return {"t": self.t, "kind": self.kind, "name": self.name, "value": self.value}


class MetricsSnapshot(Frozen):
    """What :meth:`ChaosEngine.collect_metrics` returns."""

    _fields = ("counters", "gauges", "samples")
    counters: dict[str, float]
    gauges: dict[str, float]
    samples: list[Sample]

    def __init__(
        self, counters: dict[str, float], gauges: dict[str, float], samples: list[Sample]
    ) -> None:
        fields = self.__dict__
        fields["counters"] = counters
        fields["gauges"] = gauges
        fields["samples"] = samples

    def prometheus(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        return render_prometheus(self.counters, self.gauges)


def _split(key: str) -> tuple[str, str]:
    name, _, labels = key.partition("{")
    return name, ("{" + labels) if labels else ""


def render_prometheus(counters: dict[str, float], gauges: dict[str, float]) -> str:
    lines: list[str] = []
    for kind, table in (("counter", counters), ("gauge", gauges)):
        seen: set[str] = set()
        for key in sorted(table):
            name, labels = _split(key)
            metric = f"tenfold_chaos_{name}"
            if metric not in seen:
                seen.add(metric)
                lines.append(f"# TYPE {metric} {kind}")
            lines.append(f"{metric}{labels} {table[key]:g}")
    return "\n".join(lines) + "\n"


class KernelFiles:
    """Small kernel files (PSI, cgroup stats) kept open and re-read with ``pread`` at 0.

    procfs and cgroupfs regenerate a seq_file's text on a read from offset 0,
    so one open per file serves every sample: a sample costs a few syscalls,
    not a few opens.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def read(self, path: str) -> bytes | None:
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            self._fds[path] = fd
        try:
            return os.pread(fd, 4096, 0)
        except OSError:
            os.close(self._fds.pop(path))
            return None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _psi_avg10(text: bytes) -> float | None:
    first = text.split(b"\n", 1)[0]
    for part in first.split():
        if part.startswith(b"avg10="):
            return float(part[6:])
    return None


def read_psi(root: Path = PSI_ROOT, files: KernelFiles | None = None) -> dict[str, float]:
    """``some avg10`` per resource from /proc/pressure (empty where the kernel lacks PSI)."""
    reader = files or KernelFiles()
    out: dict[str, float] = {}
    try:
        for resource in ("cpu", "memory", "io"):
            text = reader.read(f"{root}/{resource}")
            value = _psi_avg10(text) if text else None
            if value is not None:
                out[resource] = value
    finally:
        if files is None:
            reader.close()
    return out


class Monitor:
    """Counters, gauges and the sample ring."""

    def __init__(self, buffer_size: int) -> None:
        self.ring: collections.deque[Sample] = collections.deque(maxlen=buffer_size)
        self.counters: dict[str, float] = collections.defaultdict(float)
        self.gauges: dict[str, float] = {}
        self.files = KernelFiles()
        self.listener: Callable[[Sample], None] | None = None
        """Called with every fault and probe event as it is recorded (the ``--events`` stream)."""

    def count(self, key: str, amount: float = 1.0) -> None:
        self.counters[key] += amount

    def record(self, kind: str, name: str, value: float) -> None:
        sample = Sample(time.time(), kind, name, value)
        self.ring.append(sample)
        if self.listener is not None:
            self.listener(sample)

    def sample_kernel(self, cgroup_stats: Iterable[tuple[str, float]] = ()) -> int:
        """Read PSI and the given cgroup figures into the ring; return how many samples."""
        now = time.time()
        n = 0
        for resource, value in read_psi(files=self.files).items():
            self.ring.append(Sample(now, "psi", resource, value))
            self.gauges[f'psi_some_avg10{{resource="{resource}"}}'] = value
            n += 1
        for name, value in cgroup_stats:
            self.ring.append(Sample(now, "cgroup", name, value))
            n += 1
        return n

    def snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot(dict(self.counters), dict(self.gauges), list(self.ring))
