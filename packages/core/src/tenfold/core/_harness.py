"""The benchmark harness: runs a system's scenarios, ours beside the peer, interleaved.

The parent (``tenfold bench``) starts one child process per system
(``python -m tenfold.core._harness SYSTEM MODE``) so each system's peak RSS is
its own; the child prints one JSON object on its stdout's last line.

Within a scenario: both subjects are prepared (outside the timer), each op is
warmed up, then ours and the peer's ops are called alternately (A B A B ...).
Each call is timed with ``perf_counter_ns``; the unit latency is the call time
divided by the units it reports, unless the op measured per-unit latencies
itself. Latencies go into an HDR histogram (1 ns to 1 h, 3 significant digits).
A sampler thread records the peak RSS while each subject runs; CPU% is
process CPU time (including reaped children) over wall time, over all cores.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from tenfold.core.bench import BenchContext, Mode, Op, Outcome, Scenario, Subject
from tenfold.core.errors import BenchError

__all__ = ["machine_info", "run_scenario", "run_system_in_process"]

_PAGE = os.sysconf("SC_PAGE_SIZE")
_CORES = os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024**2
    return {
        "cores": _CORES,
        "python": platform.python_version(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
    }


def _rss_bytes(with_children: bool = False) -> int:
    """This process's RSS, plus its live descendants' (worker pools, peers' servers) if asked."""
    total = 0
    try:
        with open("/proc/self/statm") as f:
            total = int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0
    if with_children:
        import psutil

        try:
            for child in psutil.Process().children(recursive=True):
                try:
                    total += child.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        except psutil.Error:
            pass
    return total


class _RssSampler:
    """Tracks the peak RSS of this process and its descendants while a subject is active.

    Every tick reads our own RSS; every tenth also walks the process tree, so a
    subject's worker processes count towards its memory.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak: dict[str, int] = {}
        self.active: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tenfold-rss")

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(1)

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(self.interval_s):
            tick += 1
            self.sample(with_children=tick % 10 == 0)

    def sample(self, with_children: bool = False) -> None:
        who = self.active
        if who is not None:
            rss = _rss_bytes(with_children)
            if rss > self.peak.get(who, 0):
                self.peak[who] = rss

    @contextlib.contextmanager
    def track(self, who: str) -> Iterator[None]:
        self.active = who
        self.sample()
        try:
            yield
        finally:
            self.sample()
            self.active = None


@dataclass
class _Tally:
    """What one subject did across its timed calls."""

    name: str
    hist: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 3_600_000_000_000, 3))
    ops: int = 0
    wall_ns: int = 0
    cpu_s: float = 0.0
    best_ops_per_s: float = 0.0
    metrics: dict[str, float | str] = field(default_factory=dict)
    calls: int = 0

    def record(self, dt_ns: int, outcome: Outcome, cpu_s: float) -> None:
        ops = max(0, outcome.ops)
        self.ops += ops
        self.wall_ns += dt_ns
        self.cpu_s += cpu_s
        self.calls += 1
        if ops and dt_ns:
            self.best_ops_per_s = max(self.best_ops_per_s, ops * 1e9 / dt_ns)
        if outcome.latencies_ms:
            for ms in outcome.latencies_ms:
                self.hist.record_value(max(1, int(ms * 1e6)))
        elif ops:
            self.hist.record_value(max(1, dt_ns // ops), count=1)
        self.metrics.update(outcome.metrics)

    def summary(self, rss_bytes: int) -> dict[str, Any]:
        secs = self.wall_ns / 1e9
        return {
            "name": self.name,
            "ops_per_s": round(self.ops / secs, 3) if secs else 0.0,
            "best_ops_per_s": round(self.best_ops_per_s, 3),
            "p50_ms": round(self.hist.get_value_at_percentile(50) / 1e6, 6),
            "p95_ms": round(self.hist.get_value_at_percentile(95) / 1e6, 6),
            "p99_ms": round(self.hist.get_value_at_percentile(99) / 1e6, 6),
            "rss_mb": round(rss_bytes / 1024**2, 1),
            "cpu_pct": round(100 * self.cpu_s / secs / _CORES, 1) if secs else 0.0,
            "ops": self.ops,
            "calls": self.calls,
            "wall_s": round(secs, 4),
            "metrics": self.metrics,
        }


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _as_outcome(value: object) -> Outcome:
    if value is None:
        return Outcome(1)
    if isinstance(value, Outcome):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise BenchError(f"an op must return int, Outcome or None, not {type(value).__name__}")
    return Outcome(value)


def _timed(op: Op, tally: _Tally) -> None:
    gc_was = gc.isenabled()
    cpu0 = _cpu_now()
    t0 = time.perf_counter_ns()
    value = op()
    dt = time.perf_counter_ns() - t0
    cpu1 = _cpu_now()
    if gc_was and not gc.isenabled():
        gc.enable()
    tally.record(dt, _as_outcome(value), cpu1 - cpu0)


def _seed_dict(scenario: Scenario) -> dict[str, Any] | None:
    if scenario.seed is None:
        return None
    seed = scenario.seed
    out: dict[str, Any] = {
        k: v
        for k, v in (
            ("ops_per_s", seed.ops_per_s),
            ("p50_ms", seed.p50_ms),
            ("p95_ms", seed.p95_ms),
            ("p99_ms", seed.p99_ms),
        )
        if v is not None
    }
    out.update(seed.extra)
    return out


def _prepare(subject: Subject, ctx: BenchContext) -> Op:
    op = subject.prepare(ctx)
    if not callable(op):
        raise BenchError(f"{subject.name}: prepare must return a callable op")
    return op


def run_scenario(
    scenario: Scenario, mode: Mode, *, workdir: Path, seed: int = 1234
) -> dict[str, Any]:
    """Run one scenario (ours and the peer, interleaved) and return its JSON record."""
    record: dict[str, Any] = {
        "name": scenario.name,
        "unit": scenario.unit,
        "table": scenario.table,
        "row": scenario.row,
        "counts": scenario.counts,
        "headline": scenario.headline,
        "mode": mode,
        "seed": _seed_dict(scenario),
    }
    if mode not in scenario.modes:
        record["skipped"] = f"runs only in {', '.join(scenario.modes)} mode"
        return record
    if scenario.needs_root and os.geteuid() != 0:
        record["skipped"] = "needs root"
        return record
    rounds = {"smoke": 1, "quick": scenario.rounds, "full": scenario.full_rounds}[mode]
    warmup = 0 if mode == "smoke" else scenario.warmup
    ctx = BenchContext(mode=mode, workdir=workdir / scenario.name, seed=seed)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    ours_tally = _Tally(scenario.ours.name)
    peer_tally: _Tally | None = None
    peer_error = ""
    started = time.monotonic()
    try:
        with ctx.stack, _RssSampler() as rss:
            with rss.track("ours"):
                ours_op = _prepare(scenario.ours, ctx)
            peer_op: Op | None = None
            if scenario.peer is not None:
                try:
                    with rss.track("peer"):
                        peer_op = _prepare(scenario.peer, ctx)
                    peer_tally = _Tally(scenario.peer.name)
                except (ImportError, BenchError) as exc:
                    if not scenario.peer_optional:
                        raise
                    peer_error = f"{type(exc).__name__}: {exc}"
            for _ in range(warmup):
                ours_op()
                if peer_op is not None:
                    peer_op()
            for i in range(rounds):
                # A B, then B A on the next round, so neither side always goes first.
                order: Sequence[tuple[str, Op, _Tally]] = [("ours", ours_op, ours_tally)]
                if peer_op is not None and peer_tally is not None:
                    pair = ("peer", peer_op, peer_tally)
                    order = [order[0], pair] if i % 2 == 0 else [pair, order[0]]
                for who, op, tally in order:
                    with rss.track(who):
                        _timed(op, tally)
            ours = ours_tally.summary(rss.peak.get("ours", 0))
            record.update({k: v for k, v in ours.items() if k != "name"})
            if peer_tally is not None:
                record["peer"] = peer_tally.summary(rss.peak.get("peer", 0))
                if record["peer"]["ops_per_s"]:
                    record["speedup_vs_peer"] = round(
                        record["ops_per_s"] / record["peer"]["ops_per_s"], 3
                    )
            elif scenario.peer is not None:
                record["peer"] = {"name": scenario.peer.name, "error": peer_error}
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)
    record["elapsed_s"] = round(time.monotonic() - started, 3)
    return record


def _load_plugin(system: str, timeout_s: float = 60.0) -> Any:
    from tenfold.core.errors import PluginError
    from tenfold.core.plugins import load_system

    try:
        return load_system(system, timeout_s=timeout_s)
    except PluginError as exc:
        raise BenchError(str(exc)) from None


def run_system_in_process(
    system: str, mode: Mode, only: Sequence[str] = (), workdir: Path | None = None
) -> dict[str, Any]:
    plugin = _load_plugin(system)
    scenarios: list[Scenario] = list(plugin.scenarios()) if plugin.scenarios else []
    if only:
        unknown = sorted(set(only) - {s.name for s in scenarios})
        if unknown:
            raise BenchError(f"{system}: unknown scenario(s) {', '.join(unknown)}")
        scenarios = [s for s in scenarios if s.name in only]
    results = []
    with contextlib.ExitStack() as stack:
        base = workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tenfold-bench-"))
        )
        for scenario in scenarios:
            print(f"[{system}] {scenario.name} ...", file=sys.stderr, flush=True)
            results.append(run_scenario(scenario, mode, workdir=base))
            gc.collect()
    import resource

    return {
        "title": plugin.title,
        "summary": plugin.summary,
        "built": bool(scenarios),
        "scenarios": results,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child_main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="tenfold-bench-child")
    parser.add_argument("system")
    parser.add_argument("mode", choices=["smoke", "quick", "full"])
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument(
        "--kernel", type=int, default=0, help="run the system's callgrind kernel N times"
    )
    parser.add_argument("--profile", default="", help="run one scenario's op (ours) for profiling")
    args = parser.parse_args(argv)
    if args.kernel:
        # Under valgrind, imports run some fifty times slower than natively.
        plugin = _load_plugin(args.system, timeout_s=1200.0)
        if plugin.kernel is not None:
            for _ in range(args.kernel):
                plugin.kernel()
        return 0
    if args.profile:
        plugin = _load_plugin(args.system)
        scenarios = {s.name: s for s in plugin.scenarios()} if plugin.scenarios else {}
        if args.profile not in scenarios:
            raise BenchError(f"{args.system}: unknown scenario {args.profile!r}")
        scenario = scenarios[args.profile]
        with tempfile.TemporaryDirectory(prefix="tenfold-profile-") as tmp:
            ctx = BenchContext(mode=args.mode, workdir=Path(tmp))
            with ctx.stack:
                op = _prepare(scenario.ours, ctx)
                for _ in range(max(1, scenario.rounds)):
                    op()
        return 0
    result = run_system_in_process(args.system, args.mode, args.only)
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_child_main(sys.argv[1:]))
    except BenchError as exc:
        print(f"tenfold: error: {exc}", file=sys.stderr)
        sys.exit(2)
