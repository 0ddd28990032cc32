"""The engine: threads for the source, the stages and the sink, bounded buffers between them,
the sink committing in order."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from tenfold.pipeline_engine._batch import Batch

if TYPE_CHECKING:
    from tenfold.core.governor import Governor
from tenfold.pipeline_engine._buffer import BoundedBuffer, Closed
from tenfold.pipeline_engine._checkpoint import CheckpointStore
from tenfold.pipeline_engine._fused import DecodeFilterJoin, decode_filter_join
from tenfold.pipeline_engine._metrics import StageMetrics, percentile, prometheus_text
from tenfold.pipeline_engine._sinks import DeadLetterSink, MemoryDeadLetters, Sink
from tenfold.pipeline_engine._sources import Source
from tenfold.pipeline_engine._stages import (
    DecodeJson,
    Enrich,
    Filter,
    Lookup,
    Map,
    MapBatch,
    Stage,
    Where,
    Window,
    column_join,
    filter_then_enrich,
    per_event,
)
from tenfold.pipeline_engine.errors import (
    PipelineDefinitionError,
    PipelineEngineError,
    PipelineFailed,
)

T = TypeVar("T")
U = TypeVar("U")
S = TypeVar("S", bound=msgspec.Struct)

__all__ = ["Flow", "Pipeline", "RunReport"]

log = logging.getLogger("tenfold.pipeline_engine")

DEFAULT_BATCH_SIZE = 10_000
DEFAULT_LINGER_MS = 50.0
DEFAULT_BUFFER_EVENTS = 100_000
_E2E_RESERVOIR = 100_000


@dataclass
class RunReport:
    """What one run did: counts, end-to-end latency, backpressure, and per-stage metrics."""

    pipeline: str
    events_read: int
    events_written: int
    dead_letters: int
    elapsed_s: float
    e2e_p50_ms: float
    e2e_p95_ms: float
    e2e_p99_ms: float
    backpressure_episodes: int
    peak_buffered_events: int
    stages: list[dict[str, float | str]] = field(default_factory=list)
    buffers: list[dict[str, float | str]] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events_read / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Pipeline(Generic[T]):
    """A source, stages and a sink, run as threads joined by bounded buffers.

    Steps that wait on I/O (a broker, a database: ``blocking``) have a thread
    each; the CPU-bound steps between them share one (see :meth:`_lanes`), so an
    in-memory source, its stages and a null sink run on a single thread.

    Batches are cut by the source at ``batch_size`` events or ``linger_ms`` after
    their first event. Every buffer holds at most ``buffer_events`` events; a
    full buffer blocks its producer and, for the first one, pauses the source,
    so memory stays flat when the sink is slower than the source. The sink
    thread writes batches in source order and acknowledges each to the source
    only once it is durable; a sink with ``group_commit`` (PostgreSQL) takes
    every batch queued for it, up to ``group_commit_events`` events (4 batches
    by default), in one write, so it catches up when it falls behind. With ``checkpoints`` (a SQLite path), stateful
    stages are saved every ``checkpoint_interval_s`` at a batch boundary and
    restored on the next run, which then resumes the source from the oldest
    checkpointed position (outputs of stateful stages carry deterministic ids,
    so an upserting sink absorbs the replay). With ``governor`` (a
    :class:`tenfold.core.governor.Governor`), the source and the sink check the
    process's resident memory against the governor's limit before each batch
    (read or written: a sink that holds rows grows while the source waits) and the run
    stops with :class:`PipelineFailed` naming the limit once it is reached.
    """

    def __init__(
        self,
        source: Source[Any],
        stages: Sequence[Stage[Any, Any]],
        sink: Sink[T],
        *,
        name: str = "pipeline",
        batch_size: int = DEFAULT_BATCH_SIZE,
        linger_ms: float = DEFAULT_LINGER_MS,
        buffer_events: int = DEFAULT_BUFFER_EVENTS,
        dead_letters: DeadLetterSink | None = None,
        checkpoints: str | Path | CheckpointStore | None = None,
        checkpoint_interval_s: float = 5.0,
        group_commit_events: int | None = None,
        governor: Governor | None = None,
    ) -> None:
        if batch_size <= 0:
            raise PipelineDefinitionError(f"batch_size must be positive, got {batch_size}")
        if linger_ms < 0:
            raise PipelineDefinitionError(f"linger_ms must be >= 0, got {linger_ms}")
        if buffer_events <= 0:
            raise PipelineDefinitionError(f"buffer_events must be positive, got {buffer_events}")
        self.name = name
        self.source = source
        self.stages = list(stages)
        self.sink = sink
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000.0
        self.buffer_events = buffer_events
        if group_commit_events is not None and group_commit_events <= 0:
            raise PipelineDefinitionError(
                f"group_commit_events must be positive, got {group_commit_events}"
            )
        # Never more than a buffer holds: a group is made of batches already queued.
        self.group_commit_events = min(
            group_commit_events or 4 * batch_size, max(buffer_events, batch_size)
        )
        self.dead_letters = dead_letters if dead_letters is not None else MemoryDeadLetters()
        if isinstance(checkpoints, str | Path):
            checkpoints = CheckpointStore(checkpoints)
        self.checkpoints = checkpoints
        self.checkpoint_interval_s = checkpoint_interval_s
        self.governor = governor
        seen: dict[str, int] = {}
        self._stage_names = []
        for stage in self.stages:
            n = seen.get(stage.name, 0) + 1
            seen[stage.name] = n
            self._stage_names.append(stage.name if n == 1 else f"{stage.name}#{n}")
        # Stage i starting a decode -> Where filter -> column join run: its fused pass.
        self._fused: dict[int, DecodeFilterJoin] = {}
        for i in range(len(self.stages) - 2):
            fused = decode_filter_join(*self.stages[i : i + 3])
            if fused is not None:
                self._fused[i] = fused
        self._stop = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._buffers: list[BoundedBuffer[Batch[Any]]] = []
        self._buffer_of: dict[int, int] = {}
        self._metrics: list[StageMetrics] = []
        self._e2e_ms: deque[float] = deque(maxlen=_E2E_RESERVOIR)
        self._written = 0
        self._dead = 0
        self._started = 0.0

    # -- control -------------------------------------------------------------
    def stop(self) -> None:
        """Ask the pipeline to stop reading; what was read is still written (graceful drain)."""
        self._stop.set()

    def _fail(self, where: str, exc: BaseException) -> None:
        if self._error is None:
            self._error = (where, exc)
        self._stop.set()
        for buf in self._buffers:
            buf.close()

    # -- threads ---------------------------------------------------------------
    # Steps are numbered like the metrics: 0 the source, i + 1 stage i, then the sink.
    def _lanes(self) -> list[list[int]]:
        """The steps grouped into the runs that share one thread.

        A step joins the thread of the step before it unless one of the two is
        ``blocking`` (waits on I/O: a broker, a database, a timer). Under the GIL
        a thread per CPU-bound step adds no parallelism; it only hands every
        batch (and its objects' cache lines) from core to core and back, which
        measured as a third more CPU per event than one thread doing the same
        steps. A blocking step keeps a thread of its own, so the steps around
        it run while it waits.
        """
        blocking = [self.source.blocking, *(s.blocking for s in self.stages), self.sink.blocking]
        lanes: list[list[int]] = []
        for k, b in enumerate(blocking):
            if lanes and not b and not blocking[k - 1]:
                lanes[-1].append(k)
            else:
                lanes.append([k])
        return lanes

    def _where(self, step: int) -> str:
        if step == 0:
            return self.source.name
        if step <= len(self.stages):
            return f"stage {self._stage_names[step - 1]!r}"
        return f"sink {self.sink.name!r}"

    def _read(
        self, m: StageMetrics, max_events: int | None, deadline: float | None
    ) -> Iterator[Batch[Any]]:
        """The source's batches, numbered, until it ends, ``max_events``, the deadline or stop()."""
        src = self.source
        read = 0
        seq = 0
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            want = (
                self.batch_size if max_events is None else min(self.batch_size, max_events - read)
            )
            if want <= 0:
                return
            if self.governor is not None:
                # The hard memory bound: stop reading with a clear error, not an OOM kill.
                self.governor.check_rss(f"pipeline {self.name!r}")
            t0 = time.perf_counter()
            batch = src.read(want, self.linger_s)
            if batch is None:
                return
            n = len(batch.items)
            if not n and not batch.dead:
                continue
            m.record(n, n, time.perf_counter() - t0)
            batch.seq = seq
            seq += 1
            read += n
            yield batch
            del batch  # freed before the next read (see _run_lane)

    def _through(self, stages: Sequence[int], batch: Batch[Any], at: list[int]) -> Batch[Any]:
        """``batch`` through the stages ``stages`` in order, accounting each one;
        ``at[0]`` is the step running (named in the error if it fails).

        A filter followed by an in-memory join runs as one pass when
        :func:`filter_then_enrich` says that is the same thing; the filter then
        reports its counts (events in, events kept) and the join the time of both.
        A decode, a :class:`Where` filter and a :func:`column_join` in a row run as
        one compiled pass (``_fused``) when it vouches for the batch; the join then
        reports the time of the three.
        """
        metrics = self._metrics
        k = 0
        while k < len(stages):
            i = stages[k]
            at[0] = i + 1
            m = metrics[i + 1]
            t0 = time.perf_counter()
            n_in, n_dead = len(batch.items), len(batch.dead)
            triple = self._fused.get(i)
            if triple is not None and k + 2 < len(stages) and stages[k + 2] == i + 2:
                done = triple(batch)
                if done is not None:
                    batch, n_kept = done
                    m.record(n_in, n_in, 0.0)
                    metrics[i + 2].record(n_in, n_kept, 0.0)
                    n_out = len(batch.items)
                    metrics[i + 3].record(n_kept, n_out, time.perf_counter() - t0)
                    k += 3
                    continue
            if k + 1 < len(stages) and stages[k + 1] == i + 1:
                fused = filter_then_enrich(self.stages[i], self.stages[i + 1], batch)
                if fused is not None:
                    batch = fused
                    n_out = len(batch.items)
                    m.record(n_in, n_out, 0.0)
                    metrics[i + 2].record(n_out, n_out, time.perf_counter() - t0)
                    k += 2
                    continue
            batch = self.stages[i].process(batch)
            m.record(n_in, len(batch.items), time.perf_counter() - t0)
            m.dead_letters += len(batch.dead) - n_dead
            k += 1
        return batch

    def _write(self, group: list[Batch[Any]], m: StageMetrics) -> None:
        """One sink write of ``group`` (consecutive batches), then its acks and accounting."""
        sink, src = self.sink, self.source
        if self.governor is not None:
            self.governor.check_rss(f"pipeline {self.name!r}")
        batch = Batch.merge(group) if len(group) > 1 else group[0]
        t0 = time.perf_counter()
        sink.write(batch)
        if batch.dead and not sink.handles_dead_letters:
            self.dead_letters.write(batch.dead)
        # Acks in source order, each only after its rows are durable.
        for b in group:
            if b.ack is not None:
                src.acknowledge(b.ack)
        now_ns = time.monotonic_ns()
        n = len(batch.items)
        m.record(n, n, time.perf_counter() - t0)
        self._written += n
        self._dead += len(batch.dead)
        self._e2e_ms.extend((now_ns - b.born_ns) / 1e6 for b in group)

    def _run_lane(
        self,
        steps: list[int],
        inbuf: BoundedBuffer[Batch[Any]] | None,
        out: BoundedBuffer[Batch[Any]] | None,
        max_events: int | None,
        deadline: float | None,
    ) -> None:
        """One thread: read (from the source or ``inbuf``), run this lane's stages, then
        write to the sink or hand over to ``out``; the end of the stream travels as ``None``."""
        sink_step = len(self.stages) + 1
        stages = [k - 1 for k in steps if 0 < k < sink_step]
        stateful = [i for i in stages if self.stages[i].stateful]
        store = self.checkpoints if stateful else None
        # Per stateful stage: the source positions its state covers (those of the
        # last batch it processed), saved with its snapshot.
        positions: dict[int, dict[str, int]] = {i: {} for i in stateful}
        last_saved = time.monotonic()
        at = [steps[0]]
        src = self.source
        on_block = src.pause if steps[0] == 0 else None
        on_unblock = src.resume if steps[0] == 0 else None
        sink_m = self._metrics[-1]

        def save(i: int) -> None:
            if store is not None:
                at[0] = i + 1
                store.save(self.name, self._stage_names[i], self.stages[i].snapshot(), positions[i])

        def emit(batch: Batch[Any]) -> None:
            if out is None:
                at[0] = sink_step
                self._write([batch], sink_m)
            else:
                out.put(batch, len(batch.items), on_block=on_block, on_unblock=on_unblock)

        try:
            if steps == [sink_step]:
                assert inbuf is not None
                self._run_sink(inbuf, sink_m)
                return
            if steps[0] == 0:
                batches: Iterator[Batch[Any] | None] = self._read(
                    self._metrics[0], max_events, deadline
                )
            else:
                assert inbuf is not None
                batches = iter(inbuf.get, None)
            for batch in batches:
                assert batch is not None
                at[0] = steps[0]
                if store is None:
                    result = self._through(stages, batch, at)
                else:
                    result = batch
                    for i in stages:
                        result = self._through((i,), result, at)
                        if i in positions:
                            positions[i] = result.positions
                    if time.monotonic() - last_saved >= self.checkpoint_interval_s:
                        for i in stateful:
                            save(i)
                        last_saved = time.monotonic()
                emit(result)
                # Let go of this batch's events before the next is read: the
                # allocator then reuses their warm memory for the next batch's
                # events instead of mapping fresh arenas (and unmapping these a
                # batch later), which measured as a third of the in-memory
                # row's CPU per event.
                del batch, result
            # The end: each stage's tail goes through the stages after it, in
            # order, before their own tails (as if it had arrived as a batch).
            for j, i in enumerate(stages):
                at[0] = i + 1
                tail = self.stages[i].flush()
                if tail:
                    born = Batch(tail, time.monotonic_ns(), dict(positions.get(i, {})))
                    emit(self._through(stages[j + 1 :], born, at))
                if i in positions:
                    save(i)
            if out is not None:
                out.put(None, 0)
        except Closed:
            return
        except BaseException as exc:
            self._fail(self._where(at[0]), exc)

    def _run_sink(self, inbuf: BoundedBuffer[Batch[Any]], m: StageMetrics) -> None:
        """The sink's own thread: batches as they come, or with ``group_commit`` all those
        queued (up to ``group_commit_events``) in one write."""
        group_max = self.group_commit_events if self.sink.group_commit else 0
        while True:
            # get_many stops after the end marker (None), so it can only be last.
            group = inbuf.get_many(group_max) if group_max else [inbuf.get()]
            end = group[-1] is None
            if end:
                group.pop()
            if group:
                self._write(group, m)  # type: ignore[arg-type]
            # Not held while waiting for the next (see _run_lane).
            del group
            if end:
                return

    # -- run -------------------------------------------------------------------
    def _start_positions(self) -> dict[str, int]:
        positions = self.sink.open(self.name)
        if self.checkpoints is None:
            return positions
        stateful = [(i, s) for i, s in enumerate(self.stages) if s.stateful]
        if not stateful:
            return positions
        merged: dict[str, int] | None = None
        for i, stage in stateful:
            saved = self.checkpoints.load(self.name, self._stage_names[i])
            if saved is None:
                # No state saved yet: replay from the start so the state is complete.
                return {}
            state, at = saved
            stage.restore(state)
            if merged is None:
                merged = dict(at)
            else:
                merged = {k: min(v, merged.get(k, v)) for k, v in at.items()} | {
                    k: v for k, v in merged.items() if k not in at
                }
        return merged or {}

    def run(
        self,
        *,
        max_events: int | None = None,
        duration_s: float | None = None,
        on_progress: Callable[[Pipeline[T]], None] | None = None,
        progress_interval_s: float = 1.0,
    ) -> RunReport:
        """Run until the source ends, ``max_events`` are read, ``duration_s`` passes or stop().

        Raises :class:`PipelineFailed` (or the connector's own error) if a stage
        or connector fails; everything is closed either way.
        """
        self._stop.clear()
        self._error = None
        names = [self.source.name, *self._stage_names, self.sink.name]
        lanes = self._lanes()
        # A buffer runs into the first step of each thread but the first.
        heads = [lane[0] for lane in lanes[1:]]
        self._buffers = [
            BoundedBuffer(f"{names[h - 1]}->{names[h]}", self.buffer_events) for h in heads
        ]
        self._buffer_of = {h: k for k, h in enumerate(heads)}
        self._metrics = [StageMetrics(n) for n in names]
        self._e2e_ms.clear()
        self._written = 0
        self._dead = 0
        self._started = time.monotonic()
        deadline = None if duration_s is None else self._started + duration_s
        threads: list[threading.Thread] = []
        try:
            start = self._start_positions()
            self.source.position_reader = self.sink.stored_positions
            self.source.open(start)
            bufs: list[BoundedBuffer[Batch[Any]] | None] = [None, *self._buffers, None]
            for k, lane in enumerate(lanes):
                threads.append(
                    threading.Thread(
                        target=self._run_lane,
                        args=(lane, bufs[k], bufs[k + 1], max_events, deadline),
                        name=f"{self.name}-{'+'.join(names[i] for i in lane)}",
                        daemon=True,
                    )
                )
            for t in threads:
                t.start()
            next_progress = time.monotonic() + progress_interval_s
            try:
                for t in threads:
                    while t.is_alive():
                        t.join(0.05)
                        if on_progress is not None and time.monotonic() >= next_progress:
                            on_progress(self)
                            next_progress = time.monotonic() + progress_interval_s
            except KeyboardInterrupt:
                self.stop()
                for t in threads:
                    t.join()
        finally:
            self._close_all()
        if self._error is not None:
            where, exc = self._error
            if isinstance(exc, PipelineEngineError):
                raise exc
            raise PipelineFailed(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        return self.report()

    def _close_all(self) -> None:
        closers: list[Callable[[], None]] = [self.source.close, self.sink.close]
        closers += [s.close for s in self.stages]
        closers.append(self.dead_letters.close)
        for close in closers:
            try:
                close()
            except Exception as exc:
                log.warning("closing %s: %s", close, exc)

    # -- observation -----------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Per-stage and per-buffer figures now (safe to call while running)."""
        bufs, buffer_of = self._buffers, self._buffer_of
        stages = [
            m.snapshot(bufs[buffer_of[i]].depth if i in buffer_of else 0)
            for i, m in enumerate(self._metrics)
        ]
        buffers: list[dict[str, float | str]] = [
            {
                "buffer": b.name,
                "depth": b.depth,
                "capacity": b.capacity,
                "peak_depth": b.peak_depth,
                "episodes": b.episodes,
                "blocked_s": b.blocked_s,
            }
            for b in self._buffers
        ]
        lat = list(self._e2e_ms)
        e2e = {
            "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95),
            "p99_ms": percentile(lat, 99),
        }
        return {"stages": stages, "buffers": buffers, "e2e": e2e}

    def prometheus(self) -> str:
        """The current metrics in Prometheus text exposition format."""
        m = self.metrics()
        return prometheus_text(self.name, m["stages"], m["buffers"], m["e2e"])

    def report(self) -> RunReport:
        m = self.metrics()
        return RunReport(
            pipeline=self.name,
            events_read=self._metrics[0].events_in if self._metrics else 0,
            events_written=self._written,
            dead_letters=self._dead,
            elapsed_s=time.monotonic() - self._started,
            e2e_p50_ms=m["e2e"]["p50_ms"],
            e2e_p95_ms=m["e2e"]["p95_ms"],
            e2e_p99_ms=m["e2e"]["p99_ms"],
            backpressure_episodes=sum(b.episodes for b in self._buffers),
            peak_buffered_events=max((b.peak_depth for b in self._buffers), default=0),
            stages=m["stages"],
            buffers=m["buffers"],
        )


class Flow(Generic[T]):
    """A typed builder: ``Flow(source).decode(Order).filter(...).enrich(...).into(sink)``.

    Each step returns a new ``Flow`` whose type parameter is the event type
    flowing at that point, so a type checker catches a stage fed the wrong type.
    The flow also knows the Struct flowing at run time after a decode (kept through
    filters and joins), which :meth:`where` and :meth:`join` check their fields against.
    """

    def __init__(
        self,
        source: Source[T],
        stages: Sequence[Stage[Any, Any]] = (),
        schema: type[msgspec.Struct] | None = None,
    ) -> None:
        self.source = source
        self.stages = list(stages)
        self.schema = schema

    def then(self, stage: Stage[T, U], *, schema: type[msgspec.Struct] | None = None) -> Flow[U]:
        """Append any stage (a user :class:`Stage` subclass included); ``schema``: the
        Struct it emits, when known."""
        return Flow(self.source, [*self.stages, stage], schema)  # type: ignore[arg-type]

    def decode(self: Flow[Any], schema: type[S], *, max_bytes: int = 1 << 20) -> Flow[S]:
        return self.then(DecodeJson(schema, max_bytes=max_bytes), schema=schema)

    def filter(self, predicate: Callable[[T], bool], *, name: str = "filter") -> Flow[T]:
        return self.then(Filter(predicate, name=name), schema=self.schema)

    def where(self, *conditions: str, name: str = "filter") -> Flow[T]:
        """Keep the events for which every ``"field OP literal"`` condition holds
        (a :class:`Where` filter: the engine can fuse it with a decode and a join)."""
        return self.filter(Where(*conditions, schema=self.schema), name=name)

    def join(
        self,
        lookup: Lookup[Any],
        key: str,
        columns: Mapping[str, type] | Sequence[tuple[str, type]],
        **options: Any,
    ) -> Flow[Any]:
        """Join each event on its field ``key`` with the lookup's rows, as new optional
        ``columns`` (see :func:`column_join`); needs a decode before it."""
        if self.schema is None:
            raise PipelineDefinitionError(
                "join needs a known input schema (put a decode stage before it)"
            )
        stage, out = column_join(self.schema, lookup, key, columns, **options)
        return self.then(stage, schema=out)

    def map(self, fn: Callable[[T], U], *, name: str = "map") -> Flow[U]:
        return self.then(Map(fn, name=name))

    def map_batch(self, fn: Callable[[list[T]], list[U]], *, name: str | None = None) -> Flow[U]:
        return self.then(MapBatch(fn, name=name))

    def per_event(self, fn: Callable[[T], U | None], *, name: str | None = None) -> Flow[U]:
        return self.then(per_event(fn, name=name))

    def enrich(
        self,
        lookup: Lookup[Any],
        key: Callable[[T], Any],
        merge: Callable[[T, tuple[Any, ...] | None], U],
        **options: Any,
    ) -> Flow[U]:
        return self.then(Enrich(lookup, key, merge, **options))

    def window(self, **options: Any) -> Flow[Any]:
        return self.then(Window(**options))

    def into(self, sink: Sink[T], **options: Any) -> Pipeline[T]:
        """Finish the flow with ``sink``; ``options`` go to :class:`Pipeline`."""
        return Pipeline(self.source, self.stages, sink, **options)
