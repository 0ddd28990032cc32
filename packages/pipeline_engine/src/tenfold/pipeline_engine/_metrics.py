"""Per-stage metrics and their Prometheus text exposition."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["StageMetrics", "percentile", "prometheus_text"]

_RESERVOIR = 16384  # latest per-batch latencies kept for p50/p95 (bounded: flat memory)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (0 for no values); ``q`` in [0, 100]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


@dataclass
class StageMetrics:
    """Counters of one stage (or of the source / sink): events, batches, time, latencies."""

    name: str
    events_in: int = 0
    events_out: int = 0
    batches: int = 0
    dead_letters: int = 0
    busy_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_RESERVOIR))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, n_in: int, n_out: int, duration_s: float) -> None:
        """Account one batch that took ``duration_s`` in this stage."""
        with self._lock:
            self.events_in += n_in
            self.events_out += n_out
            self.batches += 1
            self.busy_s += duration_s
            self.latencies_ms.append(duration_s * 1000.0)

    def snapshot(self, depth: int = 0) -> dict[str, float | str]:
        """A plain dict: rates over wall time, p50/p95 batch latency in ms, input buffer depth."""
        with self._lock:
            lat = list(self.latencies_ms)
            elapsed = max(time.monotonic() - self.started, 1e-9)
            return {
                "stage": self.name,
                "events_in": self.events_in,
                "events_out": self.events_out,
                "batches": self.batches,
                "dead_letters": self.dead_letters,
                "events_per_s": self.events_in / elapsed,
                "busy_events_per_s": self.events_in / self.busy_s if self.busy_s else 0.0,
                "p50_ms": percentile(lat, 50),
                "p95_ms": percentile(lat, 95),
                "depth": depth,
            }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(
    pipeline: str,
    stages: list[dict[str, float | str]],
    buffers: list[dict[str, float | str]],
    e2e: dict[str, float],
) -> str:
    """Render metrics in the Prometheus text exposition format (version 0.0.4)."""
    p = _label(pipeline)
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("tenfold_pipeline_stage_events_total", "counter", "Events that entered a stage.")
    for s in stages:
        lines.append(
            f'tenfold_pipeline_stage_events_total{{pipeline="{p}",stage="{_label(str(s["stage"]))}"}}'
            f" {s['events_in']}"
        )
    family("tenfold_pipeline_stage_dead_letters_total", "counter", "Events sent to dead letters.")
    for s in stages:
        lines.append(
            f'tenfold_pipeline_stage_dead_letters_total{{pipeline="{p}",stage="{_label(str(s["stage"]))}"}}'
            f" {s['dead_letters']}"
        )
    family("tenfold_pipeline_stage_events_per_second", "gauge", "Events per second since start.")
    for s in stages:
        lines.append(
            f'tenfold_pipeline_stage_events_per_second{{pipeline="{p}",stage="{_label(str(s["stage"]))}"}}'
            f" {float(s['events_per_s']):.3f}"
        )
    family(
        "tenfold_pipeline_stage_batch_latency_ms", "gauge", "Per-batch processing time quantiles."
    )
    for s in stages:
        for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms")):
            lines.append(
                f'tenfold_pipeline_stage_batch_latency_ms{{pipeline="{p}",'
                f'stage="{_label(str(s["stage"]))}",quantile="{q}"}} {float(s[key]):.6f}'
            )
    family("tenfold_pipeline_buffer_depth", "gauge", "Events waiting in a bounded buffer.")
    for b in buffers:
        lines.append(
            f'tenfold_pipeline_buffer_depth{{pipeline="{p}",buffer="{_label(str(b["buffer"]))}"}}'
            f" {b['depth']}"
        )
    family(
        "tenfold_pipeline_backpressure_episodes_total",
        "counter",
        "Times a producer blocked on a full buffer.",
    )
    for b in buffers:
        lines.append(
            f'tenfold_pipeline_backpressure_episodes_total{{pipeline="{p}",'
            f'buffer="{_label(str(b["buffer"]))}"}} {b["episodes"]}'
        )
    family("tenfold_pipeline_end_to_end_latency_ms", "gauge", "Source-to-sink latency quantiles.")
    for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms")):
        lines.append(
            f'tenfold_pipeline_end_to_end_latency_ms{{pipeline="{p}",quantile="{q}"}}'
            f" {e2e.get(key, 0.0):.6f}"
        )
    return "\n".join(lines) + "\n"
