"""Monitoring: a ring buffer of samples and counters, exposed as Prometheus text.

The ring holds the last ``monitoring_buffer_size`` samples (fault events, probe
results, PSI readings, cgroup stats); older ones fall off, so memory stays
bounded however long an experiment runs. Counters are cumulative and never fall
off.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PSI_ROOT = Path("/proc/pressure")


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation: when, what kind, of what, and its value."""

    t: float
    kind: str
    name: str
    value: float

    def as_dict(self) -> dict[str, float | str]:
        return {"t": self.t, "kind": self.kind, "name": self.name, "value": self.value}


@dataclass(frozen=True)
class MetricsSnapshot:
    """What :meth:`ChaosEngine.collect_metrics` returns."""

    counters: dict[str, float]
    gauges: dict[str, float]
    samples: list[Sample]

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


def read_psi(root: Path = PSI_ROOT) -> dict[str, float]:
    """``some avg10`` per resource from /proc/pressure (empty where the kernel lacks PSI)."""
    out: dict[str, float] = {}
    for resource in ("cpu", "memory", "io"):
        try:
            text = (root / resource).read_text()
        except OSError:
            continue
        first = text.split("\n", 1)[0]
        for part in first.split():
            if part.startswith("avg10="):
                out[resource] = float(part[6:])
    return out


class Monitor:
    """Counters, gauges and the sample ring."""

    def __init__(self, buffer_size: int) -> None:
        self.ring: collections.deque[Sample] = collections.deque(maxlen=buffer_size)
        self.counters: dict[str, float] = collections.defaultdict(float)
        self.gauges: dict[str, float] = {}

    def count(self, key: str, amount: float = 1.0) -> None:
        self.counters[key] += amount

    def record(self, kind: str, name: str, value: float) -> None:
        self.ring.append(Sample(time.time(), kind, name, value))

    def sample_kernel(self, cgroup_stats: Iterable[tuple[str, float]] = ()) -> int:
        """Read PSI and the given cgroup figures into the ring; return how many samples."""
        now = time.time()
        n = 0
        for resource, value in read_psi().items():
            self.ring.append(Sample(now, "psi", resource, value))
            self.gauges[f'psi_some_avg10{{resource="{resource}"}}'] = value
            n += 1
        for name, value in cgroup_stats:
            self.ring.append(Sample(now, "cgroup", name, value))
            n += 1
        return n

    def snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot(dict(self.counters), dict(self.gauges), list(self.ring))
