"""The benchmark harness: runs a system's scenarios, ours beside the peer, interleaved.

The parent (``tenfold bench``) starts one child process per system
(``python -m tenfold.core._harness SYSTEM MODE``) so each system's peak RSS is
its own; the child prints one JSON object on its stdout's last line.

Within a scenario: both subjects are prepared (outside the timer), each op is
warmed up, then ours and the peer's ops are called alternately (A B A B ...).
Each call is timed with ``perf_counter_ns``. A latency sample is one unit when
the op stamped its units (or did one unit), the mean unit of a call whose units
ran one after another (a subject declared ``sequential``), and otherwise the
whole call, labelled per call (see :data:`tenfold.core.bench.LatencyKind`).
Latencies go into an HDR histogram (1 ns to 1 h, 3 significant digits); p95 and
p99 are quoted only from 20 and 100 samples.

Memory and CPU are each side's own (see :class:`_Footprint`): what its prepare
left in this process, the most a call grew it, and the process tree it started
(worker pools, servers, short-lived children); CPU counts this process, its
reaped children and its live workers over each call.
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

__all__ = ["machine_info", "refusal", "run_scenario", "run_system_in_process"]

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


_TICKS = os.sysconf("SC_CLK_TCK")
_SELF = os.getpid()


def _self_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


_PARENT_TIDS: set[str] = set()
"""Threads of this process that have had children: a walk reads only theirs, and a full
rescan of every thread (a process with a Ray client has dozens) runs every tenth walk."""
_WALKS = [0]
_TIDS_LOCK = threading.Lock()


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's), from /proc/PID/task/TID/children."""
    out: list[int] = []
    if pid == _SELF:
        _WALKS[0] += 1
        full = _WALKS[0] % 10 == 1 or not _PARENT_TIDS
    else:
        full = True
    try:
        if full:
            tids = os.listdir(f"/proc/{pid}/task")
        else:
            with _TIDS_LOCK:
                tids = list(_PARENT_TIDS)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            if pid == _SELF:
                with _TIDS_LOCK:
                    _PARENT_TIDS.discard(tid)
            continue
        if found and pid == _SELF:
            with _TIDS_LOCK:
                _PARENT_TIDS.add(tid)
        out.extend(found)
    return out


@dataclass(frozen=True)
class _Proc:
    cpu_s: float  # CPU of the process and of the children it reaped
    rss: int
    parent: int
    started: float  # seconds since boot


def _stat(pid: int, parent: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17,
        # starttime=22, rss=24.
        cpu = sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS
        return _Proc(cpu, int(fields[21]) * _PAGE, parent, int(fields[19]) / _TICKS)
    except (IndexError, ValueError):
        return None


def _descendants() -> dict[int, _Proc]:
    """Every live descendant of this process."""
    seen: dict[int, _Proc] = {}
    todo = [(pid, _SELF) for pid in _children(_SELF)]
    while todo:
        pid, parent = todo.pop()
        if pid in seen:
            continue
        st = _stat(pid, parent)
        if st is None:
            continue
        seen[pid] = st
        todo.extend((child, pid) for child in _children(pid))
    return seen


def _since_boot() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _children_maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def _cpu_now() -> float:
    """This process's CPU (every thread, ns resolution) plus its reaped children's."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


@dataclass
class _Side:
    """One side's footprint: memory it holds in this process and in the processes it started."""

    retained: int = 0  # RSS its prepare left behind (shared builds excluded)
    transient: int = 0  # the most a timed call grew RSS above the call's start
    children_peak: int = 0  # the most RSS its own child processes held at once
    cpu_s: float = 0.0

    @property
    def rss_bytes(self) -> int:
        return max(0, self.retained) + self.transient + self.children_peak


class _Footprint:
    """Each side's own memory and CPU, its process tree included.

    A sampler thread reads this process's RSS every ``interval_s`` and walks the
    process tree (``/proc/PID/task/*/children``) every other tick. A process is
    owned by the owner of the process that started it, or, started by this
    process, by the side that was active when it was first seen; it is *shared*
    when it appeared while a :meth:`BenchContext.once` input or service was being
    built, or before the scenario. Shared processes' memory is charged to
    neither side; their CPU during a side's call (a server doing that side's
    work) is charged to that side. A child too short-lived for the sampler is
    still counted when reaped: its CPU through this process's (or its tracked
    parent's) reaped-children times, its memory through ``RUSAGE_CHILDREN``'s
    largest reaped child. The sampler's own CPU is subtracted from the side it
    ran beside.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.sides: dict[str, _Side] = {}
        self.owner: dict[int, str] = {pid: "shared" for pid in _descendants()}
        self.active: str | None = None
        self.shared_depth = 0
        self.shared_growth = 0
        self.base = _self_rss()
        self.process_peak = self.base
        self._window_peak = 0
        self._last: dict[int, _Proc] = {}
        self.shared_children_peak = 0
        self._lock = threading.Lock()
        self._sampler_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tenfold-footprint")

    def __enter__(self) -> _Footprint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(1)

    def side(self, who: str) -> _Side:
        return self.sides.setdefault(who, _Side())

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(self.interval_s):
            t0 = time.thread_time()
            tick += 1
            rss = _self_rss()
            with self._lock:
                self._window_peak = max(self._window_peak, rss)
                self.process_peak = max(self.process_peak, rss)
            if tick % 2 == 0:
                self._walk()
            with self._lock:
                self._sampler_cpu += time.thread_time() - t0

    def _current_owner(self) -> str:
        if self.shared_depth or self.active is None:
            return "shared"
        return self.active

    def _walk(self) -> dict[int, _Proc]:
        tree = _descendants()
        with self._lock:
            owner_now = self._current_owner()
            per_owner: dict[str, int] = {}
            # Parents before children, so a child inherits its parent's owner.
            for pid, proc in sorted(tree.items(), key=lambda kv: kv[1].started):
                if pid not in self.owner:
                    self.owner[pid] = self.owner.get(proc.parent, owner_now)
                who = self.owner[pid]
                per_owner[who] = per_owner.get(who, 0) + proc.rss
                self._last[pid] = proc
            self.shared_children_peak = max(self.shared_children_peak, per_owner.get("shared", 0))
            for who, total in per_owner.items():
                if who != "shared":
                    side = self.side(who)
                    side.children_peak = max(side.children_peak, total)
            self.process_peak = max(self.process_peak, _self_rss() + sum(per_owner.values()))
        return tree

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """A build both sides use (input data, a service): neither side is charged for it."""
        before = _self_rss()
        self.shared_depth += 1
        try:
            yield
        finally:
            self._walk()
            self.shared_depth -= 1
            self.shared_growth += max(0, _self_rss() - before)

    @contextlib.contextmanager
    def preparing(self, who: str) -> Iterator[None]:
        self.active = who
        shared0 = self.shared_growth
        before = _self_rss()
        try:
            yield
        finally:
            self._walk()
            grown = _self_rss() - before - (self.shared_growth - shared0)
            self.side(who).retained += max(0, grown)
            self.active = None

    @contextlib.contextmanager
    def timing(self, who: str) -> Iterator[list[float]]:
        """Around one timed call: yields a one-item list that receives the call's CPU seconds."""
        side = self.side(who)
        out = [0.0]
        self.active = who
        maxrss0 = _children_maxrss()
        start_tree = self._walk()
        with self._lock:
            sampler0 = self._sampler_cpu
            start = {
                pid: proc.cpu_s
                for pid, proc in start_tree.items()
                if self.owner.get(pid) in (who, "shared")
            }
        began = _since_boot()
        rss0 = _self_rss()
        with self._lock:
            self._window_peak = rss0
        cpu0 = _cpu_now()
        try:
            yield out
        finally:
            cpu1 = _cpu_now()
            end_tree = self._walk()
            with self._lock:
                sampler_cpu = self._sampler_cpu - sampler0
                peak = max(self._window_peak, _self_rss())
                tree_cpu = 0.0
                for pid, proc in end_tree.items():
                    if self.owner.get(pid) not in (who, "shared"):
                        continue
                    if pid in start:
                        tree_cpu += proc.cpu_s - start[pid]
                    elif proc.started >= began - 1 / _TICKS:
                        tree_cpu += proc.cpu_s  # born during the call: all of it
                    # else: alive before the call but not seen then; its share is unknown
                # A process alive at the start and gone now was reaped by us or by a
                # tracked parent, whose reaped-children times now hold its whole life:
                # take back what it had used before the call.
                tree_cpu -= sum(cpu for pid, cpu in start.items() if pid not in end_tree)
            reaped_max = _children_maxrss()
            if reaped_max > maxrss0:
                side.children_peak = max(side.children_peak, reaped_max)
            side.transient = max(side.transient, peak - rss0)
            cpu = max(0.0, cpu1 - cpu0 - sampler_cpu) + tree_cpu
            out[0] = max(0.0, cpu)
            side.cpu_s += out[0]
            self.active = None


_MIN_SAMPLES = {"p50_ms": 1, "p95_ms": 20, "p99_ms": 100}
"""A percentile is quoted only from enough samples to mean something: p95 from
20, p99 from 100 (with fewer, p99 would be the worst call)."""


@dataclass
class _Tally:
    """What one subject did across its timed calls."""

    name: str
    sequential: bool = False
    hist: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 3_600_000_000_000, 3))
    ops: int = 0
    wall_ns: int = 0
    cpu_s: float = 0.0
    best_ops_per_s: float = 0.0
    metrics: dict[str, float | str] = field(default_factory=dict)
    calls: int = 0
    kinds: set[str] = field(default_factory=set)
    latency_units: set[str] = field(default_factory=set)
    results: list[object] = field(default_factory=list)

    def record(self, dt_ns: int, outcome: Outcome, cpu_s: float) -> None:
        ops = max(0, outcome.ops)
        self.ops += ops
        self.wall_ns += dt_ns
        self.cpu_s += cpu_s
        self.calls += 1
        if ops and dt_ns:
            self.best_ops_per_s = max(self.best_ops_per_s, ops * 1e9 / dt_ns)
        if outcome.latencies_ms:
            kind = outcome.latency_kind
            if kind is None:
                if outcome.latencies_sampled or (
                    len(outcome.latencies_ms) == ops and not outcome.latency_unit
                ):
                    kind = "per_unit"
                else:
                    # Fewer stamps than units: each covers a batch, whatever the op meant.
                    kind = "per_batch"
            self.kinds.add(kind)
            if outcome.latency_unit:
                self.latency_units.add(outcome.latency_unit)
            elif kind == "per_batch":
                self.latency_units.add(f"{ops // len(outcome.latencies_ms):,} units")
            for ms in outcome.latencies_ms:
                self.hist.record_value(max(1, int(ms * 1e6)))
        elif ops == 1:
            self.kinds.add("per_unit")
            self.hist.record_value(max(1, dt_ns))
        elif ops and self.sequential:
            # Units ran one after another: the call time over units is each one's mean.
            self.kinds.add("per_unit_mean")
            self.hist.record_value(max(1, dt_ns // ops))
        elif ops:
            # A batch, a stream or a pool: no unit was timed, so the call is what we have.
            self.kinds.add("per_call")
            self.hist.record_value(max(1, dt_ns))
        self.metrics.update(outcome.metrics)
        self.results.append(outcome.result)

    @property
    def latency_kind(self) -> str:
        """What the samples time; calls that timed different things get the coarsest label."""
        for kind in ("per_call", "per_batch", "per_unit_mean", "per_unit"):
            if kind in self.kinds:
                return kind
        return "per_call"

    def summary(self, side: _Side | None) -> dict[str, Any]:
        secs = self.wall_ns / 1e9
        samples = self.hist.get_total_count()
        out: dict[str, Any] = {
            "name": self.name,
            "ops_per_s": round(self.ops / secs, 3) if secs else 0.0,
            "best_ops_per_s": round(self.best_ops_per_s, 3),
        }
        for key, pct in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
            enough = samples >= _MIN_SAMPLES[key]
            out[key] = round(self.hist.get_value_at_percentile(pct) / 1e6, 6) if enough else None
        rss = side.rss_bytes if side else 0
        cpu_s = side.cpu_s if side else self.cpu_s
        out.update(
            {
                "mean_ms": round(secs * 1e3 / self.calls, 6) if self.calls else None,
                "latency_kind": self.latency_kind,
                "latency_samples": samples,
                "rss_mb": round(rss / 1024**2, 1),
                "cpu_pct": round(100 * cpu_s / secs / _CORES, 1) if secs else 0.0,
                "ops": self.ops,
                "calls": self.calls,
                "wall_s": round(secs, 4),
                "metrics": self.metrics,
            }
        )
        if self.latency_units:
            out["latency_unit"] = ", ".join(sorted(self.latency_units))
        if self.latency_kind == "per_unit_mean" and self.calls and not self.latency_units:
            out["units_per_call"] = self.ops // self.calls
        if side is not None:
            out["memory"] = {
                "retained_mb": round(max(0, side.retained) / 1024**2, 1),
                "working_mb": round(side.transient / 1024**2, 1),
                "children_mb": round(side.children_peak / 1024**2, 1),
            }
        return out


def _as_outcome(value: object) -> Outcome:
    if value is None:
        return Outcome(1)
    if isinstance(value, Outcome):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise BenchError(f"an op must return int, Outcome or None, not {type(value).__name__}")
    return Outcome(value)


def _timed(op: Op, tally: _Tally, footprint: _Footprint, who: str) -> None:
    gc_was = gc.isenabled()
    with footprint.timing(who) as cpu:
        t0 = time.perf_counter_ns()
        value = op()
        dt = time.perf_counter_ns() - t0
    if gc_was and not gc.isenabled():
        gc.enable()
    tally.record(dt, _as_outcome(value), cpu[0])


def _seed_dict(scenario: Scenario, system: str = "") -> dict[str, Any] | None:
    seed = scenario.seed
    if isinstance(seed, str):
        from tenfold.core._docfigures import doc_seed

        seed = doc_seed(system, scenario.table, scenario.doc_row or scenario.row)
    if seed is None:
        return None
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
    return out or None


def _prepare(subject: Subject, ctx: BenchContext) -> Op:
    op = subject.prepare(ctx)
    if not callable(op):
        raise BenchError(f"{subject.name}: prepare must return a callable op")
    return op


def refusal(scenario: Scenario) -> str | None:
    """Why the harness will not run a row, or ``None``: a peer row must say what
    both sides do and how their results are checked equal (or why they cannot be)."""
    if scenario.peer is None:
        return None
    if not scenario.fairness.strip():
        return "a row with a peer must state what both sides do and what differs (fairness)"
    if not (scenario.checks or "").strip() and not (scenario.unchecked_reason or "").strip():
        return (
            "a row with a peer must check the two results equal (checks) "
            "or say why it cannot (unchecked_reason)"
        )
    return None


def _compare_results(ours: _Tally, peer: _Tally) -> int:
    """Check the results both ops returned, call by call; returns how many pairs were compared."""
    compared = 0
    for i, (a, b) in enumerate(zip(ours.results, peer.results, strict=False)):
        if a is None or b is None:
            continue
        if a != b:
            raise BenchError(
                f"results differ on call {i + 1}: {ours.name} gave {_short(a)}, "
                f"{peer.name} gave {_short(b)}"
            )
        compared += 1
    return compared


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def run_scenario(
    scenario: Scenario, mode: Mode, *, workdir: Path, seed: int = 1234, system: str = ""
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
        "seed": _seed_dict(scenario, system),
        "ours": {"name": scenario.ours.name},
        "fairness": scenario.fairness,
        "checks": scenario.checks,
        "unchecked_reason": scenario.unchecked_reason,
        "comparison": scenario.comparison,
        "like_for_like": scenario.like_for_like and scenario.comparison == "speedup",
    }
    if mode not in scenario.modes:
        record["skipped"] = f"runs only in {', '.join(scenario.modes)} mode"
        return record
    if scenario.needs_root and os.geteuid() != 0:
        record["skipped"] = "needs root"
        return record
    refused = refusal(scenario)
    if refused is not None:
        record["error"] = f"refused: {refused}"
        return record
    rounds = {"smoke": 1, "quick": scenario.rounds, "full": scenario.full_rounds}[mode]
    warmup = 0 if mode == "smoke" else scenario.warmup
    ctx = BenchContext(mode=mode, workdir=workdir / scenario.name, seed=seed)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    ours_tally = _Tally(scenario.ours.name, scenario.ours.sequential)
    peer_tally: _Tally | None = None
    peer_error = ""
    started = time.monotonic()
    try:
        with ctx.stack, _Footprint() as fp:
            ctx.shared_hook = fp.shared
            with fp.preparing("ours"):
                ours_op = _prepare(scenario.ours, ctx)
            peer_op: Op | None = None
            if scenario.peer is not None:
                try:
                    with fp.preparing("peer"):
                        peer_op = _prepare(scenario.peer, ctx)
                    peer_tally = _Tally(scenario.peer.name, scenario.peer.sequential)
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
                    _timed(op, tally, fp, who)
            ours = ours_tally.summary(fp.sides.get("ours"))
            record["ours"] = {
                k: ours[k]
                for k in ("name", "rss_mb", "cpu_pct", "latency_kind", "memory")
                if k in ours
            }
            record.update({k: v for k, v in ours.items() if k not in ("name", "memory")})
            record["process_base_mb"] = round(fp.base / 1024**2, 1)
            record["process_peak_mb"] = round(fp.process_peak / 1024**2, 1)
            record["shared_mb"] = round(fp.shared_growth / 1024**2, 1)
            if fp.shared_children_peak:
                record["shared_processes_mb"] = round(fp.shared_children_peak / 1024**2, 1)
            if peer_tally is not None:
                record["peer"] = peer_tally.summary(fp.sides.get("peer"))
                compared = _compare_results(ours_tally, peer_tally)
                record["results_compared"] = compared
                _ratios(record, scenario)
            elif scenario.peer is not None:
                record["peer"] = {"name": scenario.peer.name, "error": peer_error}
            record["results_checked"] = bool(
                record.get("results_compared") or (scenario.checks or "").strip()
            )
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)
    record["elapsed_s"] = round(time.monotonic() - started, 3)
    return record


UNFINISHED_CALLS = "unfinished_calls"
"""A peer's :class:`Outcome` metric: how many of its calls were stopped at a cap (no result)."""


def _ratios(record: dict[str, Any], scenario: Scenario) -> None:
    """The speedup (same work), nothing (different work), or overhead over a baseline."""
    peer = record["peer"]
    if not record["ops_per_s"] or not peer.get("ops_per_s"):
        return
    unfinished = (peer.get("metrics") or {}).get(UNFINISHED_CALLS)
    if isinstance(unfinished, int | float) and unfinished > 0:
        # Some peer calls were stopped at a cap: a rate over the calls that finished is no
        # figure to divide by (the row's metrics say how many did not finish).
        record["speedup_vs_peer"] = None
        return
    if scenario.comparison == "speedup":
        record["speedup_vs_peer"] = round(record["ops_per_s"] / peer["ops_per_s"], 3)
    elif scenario.comparison == "overhead":
        # The peer is the baseline ours sits on top of (a direct connection beside a proxy).
        record["overhead_pct"] = round(100 * (peer["ops_per_s"] / record["ops_per_s"] - 1), 1)
        if record.get("p50_ms") is not None and peer.get("p50_ms") is not None:
            record["added_p50_ms"] = round(record["p50_ms"] - peer["p50_ms"], 6)


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
            results.append(run_scenario(scenario, mode, workdir=base, system=system))
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
