"""Backfill: re-score a historical window of ledger events with the current detector model.

A new model should be tried on what already happened before it decides anything
live: which sources would it have banned, and where does it differ from the
decisions the ledger recorded? :func:`backfill` reads a window of events (ledger
indexes ``[start, end)``) from a ledger directory, the running engine's HTTP API,
or a Parquet export, and scores them as a graph on the parallel framework:

    load (here) -> score partition 0 .. k-1 (tasks) -> merge (task)

The learned detector keeps one sliding window per source, and sources do not
share windows, so partitioning the events by source (a stable hash of the
subject) and scoring each partition in ledger order gives exactly the rows a
serial pass gives: :func:`score_events` is that serial pass, and the same
function is each partition's task. The rows (one per event: ledger index,
subject, kind, would-ban, reason) go to a Parquet file; the summary says how
many events were scored, which sources the model would ban, and how that
differs from the bans the ledger recorded from the learned detector in the
same window.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenfold.platform.errors import PlatformError

__all__ = ["backfill", "load_window", "score_events"]

# (ledger index, event_id, domain, kind, subject, time_ms, evidence): plain data, picklable.
Row = tuple[int, str, str, str, str, int, dict[str, Any]]
COLUMNS = ("index", "time_ms", "subject", "kind", "would_ban", "reason")


def load_window(
    *,
    ledger: Path | None = None,
    url: str | None = None,
    parquet: Path | None = None,
    start: int = 0,
    end: int | None = None,
) -> list[Row]:
    """The events with ledger index in ``[start, end)`` from one of the three sources."""
    if sum(x is not None for x in (ledger, url, parquet)) != 1:
        raise PlatformError("backfill reads one source: a ledger directory, an engine, or Parquet")
    if start < 0 or (end is not None and end < start):
        raise PlatformError(f"window [{start}, {end}) is not a range of ledger indexes")
    if parquet is not None:
        return _from_parquet(parquet, start, end)
    if url is not None:
        return _from_engine(url, start, end)
    assert ledger is not None
    from tenfold.autoblocker_ledger import AutoblockerLedgerError, EmbeddedLedger

    if not (ledger / "log.pub").exists():
        raise PlatformError(f"{ledger}: no ledger here")
    try:
        led = EmbeddedLedger(ledger, create=False)
    except AutoblockerLedgerError as exc:
        raise PlatformError(
            f"{ledger}: {exc} (while the platform runs, backfill reads its engine instead)"
        ) from None
    with led:
        stop = led.size if end is None else min(end, led.size)
        out = []
        for i in range(start, stop):
            ev = led.get(i).event
            out.append(
                (i, ev.event_id, ev.domain, ev.kind, ev.subject, ev.time_ms, dict(ev.evidence))
            )
        return out


def _from_engine(url: str, start: int, end: int | None) -> list[Row]:
    from tenfold.platform._engine import fetch

    size = int(json.loads(fetch(f"{url}/platform")[0])["entries"])
    stop = size if end is None else min(end, size)
    out = []
    for i in range(start, stop):
        e = json.loads(fetch(f"{url}/entries/{i}")[0])
        out.append(
            (
                i,
                e["event_id"],
                e["domain"],
                e["kind"],
                e["subject"],
                int(e["time_ms"]),
                e["evidence"],
            )
        )
    return out


def _from_parquet(path: Path, start: int, end: int | None) -> list[Row]:
    """An export with columns index, event_id, domain, kind, subject, time_ms, evidence (JSON)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise PlatformError(f"cannot read Parquet {path}: {exc}") from None
    need = ("index", "event_id", "domain", "kind", "subject", "time_ms", "evidence")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise PlatformError(f"{path}: no column {', '.join(missing)} (expected {', '.join(need)})")
    out = []
    for r in table.select(list(need)).to_pylist():
        i = int(r["index"])
        if i >= start and (end is None or i < end):
            ev = json.loads(r["evidence"]) if isinstance(r["evidence"], str) else r["evidence"]
            out.append(
                (i, r["event_id"], r["domain"], r["kind"], r["subject"], int(r["time_ms"]), ev)
            )
    out.sort(key=lambda row: row[0])
    return out


def export_parquet(rows: Sequence[Row], path: Path) -> None:
    """Write events in the form :func:`load_window` reads back (evidence as JSON text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ("index", "event_id", "domain", "kind", "subject", "time_ms")
    data: dict[str, list[Any]] = {c: [r[n] for r in rows] for n, c in enumerate(cols)}
    data["evidence"] = [json.dumps(r[6], sort_keys=True) for r in rows]
    pq.write_table(pa.table(data), path)


def score_events(
    model_path: str, rows: Sequence[Row], threshold: float = 0.9
) -> list[tuple[Any, ...]]:
    """The serial pass (and each partition's task): one result row per event, in ledger order."""
    from tenfold.auto_learner import Model
    from tenfold.autoblocker_ledger import SecurityEvent
    from tenfold.platform._detect import LearnedDetector

    detector = LearnedDetector(Model.load(Path(model_path)), threshold=threshold)
    out = []
    for i, event_id, domain, kind, subject, time_ms, evidence in rows:
        if domain == "decision" or kind.startswith("decision."):
            continue  # the ledger's own decisions are compared with, not scored
        d = detector(SecurityEvent(event_id, domain, kind, subject, time_ms, evidence))
        out.append((i, time_ms, subject, kind, d is not None, d.reason if d else ""))
    return out


def _merge(*parts: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted((r for part in parts for r in part), key=lambda r: r[0])


def partition(rows: Sequence[Row], k: int) -> list[list[Row]]:
    """Rows by source: a stable hash of the subject, each part in ledger order."""
    parts: list[list[Row]] = [[] for _ in range(k)]
    for r in rows:
        parts[zlib.crc32(r[4].encode()) % k].append(r)
    return parts


def backfill(
    model: Path,
    rows: Sequence[Row],
    *,
    partitions: int = 4,
    backend: str | None = None,
    workers: int | None = None,
    out: Path | None = None,
    threshold: float = 0.9,
) -> dict[str, Any]:
    """Score ``rows`` with ``model`` as a graph; write the rows to ``out``; return the summary."""
    from tenfold.auto_learner import Model
    from tenfold.parallel_framework import Executor, Graph, ParallelFrameworkError
    from tenfold.platform._detect import LearnedDetector

    if partitions < 1:
        raise PlatformError(f"partitions must be at least 1, not {partitions}")
    LearnedDetector(Model.load(model))  # refused here (wrong features, not binary) before the graph
    g = Graph()
    scored = [
        g.add(("score", n), score_events, str(model.resolve()), part, threshold)
        for n, part in enumerate(partition(rows, partitions))
    ]
    g.add("merge", _merge, *scored)
    try:
        with Executor(backend, workers) as ex:
            result = ex.run(g, keys=["merge"])
            merged: list[tuple[Any, ...]] = result["merge"]
            used = ex.backend
    except ParallelFrameworkError as exc:
        raise PlatformError(f"the backfill graph failed: {exc}") from None
    if out is not None:
        write_rows(merged, out)
    return summarize(rows, merged) | {
        "partitions": partitions,
        "backend": used,
        "out": None if out is None else str(out),
    }


def write_rows(rows: Sequence[tuple[Any, ...]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({c: [r[n] for r in rows] for n, c in enumerate(COLUMNS)}), path)


def summarize(events: Sequence[Row], scored: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """What the model would ban, and how that differs from the learned bans the ledger holds."""
    would: dict[str, int] = {}
    for i, _t, subject, _k, ban, _r in scored:
        if ban:
            would.setdefault(subject, i)  # the first event that would have banned it
    recorded = sorted(
        {r[4] for r in events if r[3] == "decision.ban" and str(r[6].get("rule", "")) == "learned"}
    )
    return {
        "window": {
            "start": events[0][0] if events else None,
            "end": events[-1][0] + 1 if events else None,
        },
        "events": len(events),
        "scored": len(scored),
        "would_ban": [{"subject": s, "at_index": i} for s, i in sorted(would.items())],
        "recorded_learned_bans": recorded,
        "differ": {
            "added": sorted(set(would) - set(recorded)),
            "dropped": sorted(set(recorded) - set(would)),
        },
    }
