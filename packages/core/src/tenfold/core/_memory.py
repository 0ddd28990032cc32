"""The document's Memory Footprint table, measured: one fresh process per measurement.

For each system the document lists (Chaos Engine, Contract Compiler, Auto
Learner, Semantic Lattice, Parallel Framework, Pipeline Engine) a *probe* does
``size`` operations of the system's unit (a fault, a contract, a sample, a
fact, a task, an event) through its public API. ``python -m
tenfold.core._memory SYSTEM SIZE`` runs one probe in a fresh interpreter and
prints one JSON line: the resident set after the system is imported and set up
(``baseline``), and the process's peak resident set after the operations
(``peak``, from ``getrusage``, so nothing between two samples is missed).

:func:`measure` runs each system at three sizes or more, each in its own
process, and derives the table: baseline (the median of the runs' baselines),
per-operation growth (the least-squares slope of peak over size) and the
maximum (the peak at the largest size). Inputs are generated as the
operations go where the system allows it (a generator source, facts added in
chunks), so the slope is the system's, not the input list's; where the input
must be whole (a training frame), the row says so.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.core.errors import BenchError

__all__ = ["PROBES", "Probe", "measure", "memory_rows", "slope"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass(frozen=True)
class Probe:
    """One system's unit of memory growth: ``setup`` returns the op that does ``size`` of them."""

    system: str
    row: str  # the document's row ("Chaos Engine")
    unit: str  # "fault", "contract", ...
    what: str  # what one operation is, said in the table
    sizes: Mapping[str, tuple[int, ...]]  # by mode
    setup: Callable[[int, Path], Callable[[], object]]


# -- probes ------------------------------------------------------------------------------


def _chaos(size: int, work: Path) -> Callable[[], object]:
    from tenfold.chaos_engine import ChaosEngine, PerformanceConfig, PointFault
    from tenfold.chaos_engine._config import load_config

    # The configured limits (file, then TENFOLD_CHAOS_ENGINE__PERFORMANCE__*), with the cap
    # on active faults lifted to hold every fault of the probe at once.
    configured = load_config().performance.model_dump()
    configured["max_concurrent_faults"] = max(configured["max_concurrent_faults"], size + 1)
    perf = PerformanceConfig.model_validate(configured)
    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(
        ChaosEngine.create(perf, journal_dir=work, watchdog=False, experiment="mem")
    )

    def op() -> object:
        async def inject() -> int:
            handles = [
                await engine.inject_fault(
                    PointFault(point=f"mem.p{i}", probability=0.5, duration_s=3600)
                )
                for i in range(size)
            ]
            return len(handles)

        n = loop.run_until_complete(inject())
        if engine.active_faults != size:
            raise BenchError(f"chaos probe: {engine.active_faults} of {size} faults active")
        return n

    return op


def _contract(size: int, work: Path) -> Callable[[], object]:
    from tenfold.contract_compiler import (
        CompileOptions,
        compile_source,
        generate_contract,
        load_config,
        shutdown_pool,
    )

    sources = [generate_contract(60, seed=i).ours for i in range(size)]
    # The configured options ([compiler.performance]: parallel_jobs, cache_size_mb...).
    options = CompileOptions.from_config(load_config(), verify=False)

    def op() -> object:
        held = [compile_source(src, f"c{i}.ct", options) for i, src in enumerate(sources)]
        shutdown_pool()  # reap the workers, so their peak counts among the children
        return held

    return op


def _learner(size: int, work: Path) -> Callable[[], object]:
    from tenfold.auto_learner import AutoLearner, synthetic
    from tenfold.auto_learner._config import load_config

    config = load_config()  # [auto_learner.performance]: num_workers, max_cache_mb...

    def op() -> object:
        df = synthetic(size, features=20, seed=1)
        result = AutoLearner(config).fit(df, "target", time="t", budget_s=1.0, families=("linear",))
        return result.model

    return op


def _lattice(size: int, work: Path) -> Callable[[], object]:
    from tenfold.semantic_lattice import LatticeStore

    store = LatticeStore(None, threads=1)
    chunk = 10_000

    def op() -> object:
        added = 0
        for start in range(0, size, chunk):
            triples = [
                (
                    f"<http://example.org/s{i}>",
                    f"<http://example.org/p{i % 16}>",
                    f'"value {i}"',
                )
                for i in range(start, min(size, start + chunk))
            ]
            added += store.add_triples(triples)
        if added != size:
            raise BenchError(f"lattice probe: {added} of {size} facts added")
        return store

    return op


def _parallel(size: int, work: Path) -> Callable[[], object]:
    from tenfold.parallel_framework import Graph, run, task

    @task
    def square(x: int) -> int:
        return x * x

    def op() -> object:
        with Graph() as g:
            outs: list[Any] = [square(i) for i in range(size)]
        result = run(g, backend="threads", workers=2)
        total = sum(result[t.key] for t in outs)
        if total != sum(i * i for i in range(size)):
            raise BenchError("parallel probe: wrong results")
        return result

    return op


def _pipeline(size: int, work: Path) -> Callable[[], object]:
    import msgspec

    from tenfold.pipeline_engine import Flow, GeneratorSource, NullSink

    class Event(msgspec.Struct):
        id: int
        user_id: int
        kind: str
        amount: float

    def op() -> object:
        sink = NullSink()
        pipeline = (
            Flow(GeneratorSource(Event, count=size, seed=1))
            .decode(Event)
            .filter(lambda e: e.amount >= 100.0)
            .into(sink, name="mem")
        )
        pipeline.run()
        return sink.count

    return op


PROBES: dict[str, Probe] = {
    p.system: p
    for p in (
        Probe(
            "chaos_engine",
            "Chaos Engine",
            "fault",
            "active in-process fault points (PointFault), all held at once",
            {"smoke": (100, 200, 400), "quick": (1000, 2000, 4000), "full": (5000, 20000, 80000)},
            _chaos,
        ),
        Probe(
            "contract_compiler",
            "Contract Compiler",
            "contract",
            "generated 60-line contracts compiled to objects (no proofs), with the configured "
            "options, results held",
            {"smoke": (1, 2, 4), "quick": (2, 4, 8), "full": (8, 16, 32)},
            _contract,
        ),
        Probe(
            "auto_learner",
            "Auto Learner",
            "sample",
            "training rows of 20 features, one linear-family fit (frame included)",
            {
                "smoke": (2000, 4000, 8000),
                "quick": (10_000, 20_000, 40_000),
                "full": (50_000, 100_000, 200_000),
            },
            _learner,
        ),
        Probe(
            "semantic_lattice",
            "Semantic Lattice",
            "fact",
            "triples added to an in-memory store, 10,000 at a time",
            {
                "smoke": (5000, 10_000, 20_000),
                "quick": (25_000, 50_000, 100_000),
                "full": (250_000, 500_000, 1_000_000),
            },
            _lattice,
        ),
        Probe(
            "parallel_framework",
            "Parallel Framework",
            "task",
            "independent tasks in one graph, run on 2 threads, results held",
            {
                "smoke": (500, 1000, 2000),
                "quick": (5000, 10_000, 20_000),
                "full": (25_000, 50_000, 100_000),
            },
            _parallel,
        ),
        Probe(
            "pipeline_engine",
            "Pipeline Engine",
            "event",
            "generated JSON events decoded and filtered into a counting sink (streamed)",
            {
                "smoke": (20_000, 40_000, 80_000),
                "quick": (100_000, 200_000, 400_000),
                "full": (500_000, 1_000_000, 2_000_000),
            },
            _pipeline,
        ),
    )
}


# -- one measurement (child) --------------------------------------------------------------


def _child(system: str, size: int) -> dict[str, Any]:
    probe = PROBES.get(system)
    if probe is None:
        raise BenchError(f"no memory probe for {system!r} (known: {', '.join(PROBES)})")
    with tempfile.TemporaryDirectory(prefix="tenfold-mem-") as tmp:
        op = probe.setup(size, Path(tmp))
        gc.collect()
        baseline = _rss()
        t0 = time.perf_counter()
        held = op()
        elapsed = time.perf_counter() - t0
        now = _rss()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        del held
    return {
        "system": system,
        "size": size,
        "baseline": baseline,
        "peak": max(peak, now),
        "children_peak": children,
        "seconds": round(elapsed, 4),
    }


# -- the table (parent) -----------------------------------------------------------------------


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``y`` over ``x``."""
    n = len(points)
    if n < 2:
        raise BenchError("a slope needs at least two sizes")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    if den == 0:
        raise BenchError("a slope needs at least two different sizes")
    return sum((x - mx) * (y - my) for x, y in points) / den


def _one(system: str, size: int, env: Mapping[str, str] | None, timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tenfold.core._memory", system, str(size)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=dict(env) if env is not None else None,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"memory probe {system} at {size:,}: {tail}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def measure(
    systems: Sequence[str],
    mode: str = "quick",
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 300.0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure each system's footprint (fresh process per size); one record per system."""
    from tenfold.core._docfigures import doc_row

    records: list[dict[str, Any]] = []
    for system in systems:
        probe = PROBES.get(system)
        if probe is None:
            continue
        sizes = probe.sizes[mode]
        record: dict[str, Any] = {
            "system": system,
            "row": probe.row,
            "unit": probe.unit,
            "what": probe.what,
            "sizes": list(sizes),
            "doc": doc_row("Memory Footprint", "", probe.row) or {},
        }
        try:
            runs = []
            for size in sizes:
                if progress is not None:
                    progress(f"{system} at {size:,} {probe.unit}s")
                runs.append(_one(system, size, env, timeout_s))
            baselines = sorted(r["baseline"] for r in runs)
            record["runs"] = runs
            record["baseline_mb"] = round(baselines[len(baselines) // 2] / 1024**2, 1)
            record["per_op_kb"] = round(slope([(r["size"], r["peak"]) for r in runs]) / 1024, 3)
            record["max_mb"] = round(runs[-1]["peak"] / 1024**2, 1)
            record["max_size"] = runs[-1]["size"]
            record["seconds"] = [r["seconds"] for r in runs]
            children = max(r.get("children_peak", 0) for r in runs)
            if children:
                record["children_max_mb"] = round(children / 1024**2, 1)
        except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
            record["error"] = str(exc)
        records.append(record)
    return records


MEMORY_HEADERS = [
    "Component",
    "Baseline (ours)",
    "Per-operation (ours)",
    "Maximum (ours, at size)",
    "Document",
    "One operation",
]


def memory_rows(records: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for r in records:
        doc = r.get("doc") or {}
        doc_text = " / ".join(
            doc[k] for k in ("Baseline", "Per-Operation", "Maximum") if doc.get(k)
        )
        if r.get("error"):
            rows.append([r["row"], "error", r["error"], "", doc_text, r["what"]])
            continue
        rows.append(
            [
                r["row"],
                f"{r['baseline_mb']:,.1f} MB",
                f"{r['per_op_kb']:+,.2f} KB/{r['unit']}",
                f"{r['max_mb']:,.1f} MB at {r['max_size']:,} {r['unit']}s"
                + (
                    f" (+ child processes of up to {r['children_max_mb']:,.1f} MB each, pages shared with the parent counted)"
                    if r.get("children_max_mb")
                    else ""
                ),
                doc_text,
                r["what"] + f" (sizes {', '.join(f'{s:,}' for s in r['sizes'])})",
            ]
        )
    return rows


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m tenfold.core._memory SYSTEM SIZE", file=sys.stderr)
        return 2
    out = _child(argv[0], int(argv[1]))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except BenchError as exc:
        print(f"tenfold: error: {exc}", file=sys.stderr)
        sys.exit(2)
