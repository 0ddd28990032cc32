import statistics
import threading
import time

import msgspec
import pytest

from tenfold.pipeline_engine import (
    Batch,
    CheckpointStore,
    Flow,
    GeneratorSource,
    MemoryDeadLetters,
    MemorySink,
    MemorySource,
    NullSink,
    PipelineDefinitionError,
    PipelineFailed,
    Sink,
    Source,
    TableLookup,
)
from tenfold.pipeline_engine.bench import Enriched, Order


def _messages(n: int) -> list[bytes | None]:
    return [
        msgspec.json.encode(Order(i, i % 100, ("buy", "view")[i % 2], float(i), float(i)))
        for i in range(n)
    ]


def test_json_filter_enrich_sink_counts_every_event_once() -> None:
    msgs = _messages(25_000)
    msgs[10] = b"{oops"
    msgs[11] = None
    table = TableLookup({u: (f"C{u % 5}",) for u in range(50)})
    sink: MemorySink[Enriched] = MemorySink(key=lambda e: e.id)
    dead = MemoryDeadLetters()
    pipeline = (
        Flow(MemorySource(msgs))
        .decode(Order)
        .filter(lambda o: o.kind == "buy")
        .enrich(
            table,
            key=lambda o: o.user_id,
            merge=lambda o, row: Enriched(
                o.id, o.user_id, o.kind, o.amount, o.ts, row[0] if row else None, None
            ),
        )
        .into(sink, batch_size=1000, dead_letters=dead)
    )
    report = pipeline.run()
    buys = [i for i in range(25_000) if i % 2 == 0 and i not in (10,)]
    assert sorted(sink.by_key) == buys
    assert sink.by_key[0].country == "C0"
    assert sink.by_key[60].country is None  # user 60 is not in the table
    assert [d.reason.split(":")[0] for d in dead.letters] == ["malformed JSON", "null message"]
    assert [d.source for d in dead.letters] == ["memory/0@10", "memory/0@11"] or all(
        d.source for d in dead.letters
    )
    assert report.events_read == 25_000
    assert report.events_written == len(buys)
    assert report.dead_letters == 2
    names = [s["stage"] for s in report.stages]
    assert names == ["memory", "decode", "filter", "enrich", "memory"]


class SlowSink(Sink[object]):
    name = "slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.count = 0

    def write(self, batch: Batch[object]) -> None:
        time.sleep(self.delay_s)
        self.count += len(batch.items)


class PausingGenerator(GeneratorSource):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.paused = 0
        self.resumed = 0

    def pause(self) -> None:
        self.paused += 1

    def resume(self) -> None:
        self.resumed += 1


def test_a_slow_sink_blocks_the_source_instead_of_growing_buffers() -> None:
    source = PausingGenerator(Order, rate=None, count=60_000, encode=True)
    sink = SlowSink(0.01)
    pipeline = Flow(source).decode(Order).into(sink, batch_size=500, buffer_events=2_000)
    report = pipeline.run()
    assert sink.count == 60_000
    assert report.backpressure_episodes > 0
    assert source.paused > 0 and source.paused == source.resumed
    # Bounded: no buffer ever held more than its capacity.
    assert all(int(b["peak_depth"]) <= 2_000 for b in report.buffers)
    first = report.buffers[0]
    assert int(first["episodes"]) == source.paused


def test_batches_are_cut_by_linger_when_the_rate_is_low() -> None:
    sizes: list[int] = []

    class Recorder(Sink[object]):
        def write(self, batch: Batch[object]) -> None:
            sizes.append(len(batch.items))

    source = GeneratorSource(Order, rate=2_000, count=400, encode=False)
    report = Flow(source).into(Recorder(), batch_size=10_000, linger_ms=20).run()
    assert sum(sizes) == 400
    # 2,000 ev/s with 20 ms linger: batches of about 40, never the 10,000 batch size
    # (the median, so a scheduler stall on a busy machine cannot fail the test).
    assert statistics.median(sizes) < 200
    assert len(sizes) >= 5
    assert report.e2e_p50_ms >= 0


def test_batches_are_cut_by_size_when_the_source_is_fast() -> None:
    sizes: list[int] = []

    class Recorder(Sink[object]):
        def write(self, batch: Batch[object]) -> None:
            sizes.append(len(batch.items))

    Flow(MemorySource(list(range(2_500)))).into(Recorder(), batch_size=1_000).run()
    assert sizes == [1_000, 1_000, 500]


def test_open_loop_generator_holds_its_rate() -> None:
    source = GeneratorSource(Order, rate=20_000, encode=False)
    sink = NullSink()
    report = Flow(source).into(sink, linger_ms=5).run(duration_s=1.0)
    assert 14_000 <= sink.count <= 21_000
    assert report.events_read == sink.count


def test_generator_is_seeded() -> None:
    a = GeneratorSource(Order, count=50, seed=7)
    b = GeneratorSource(Order, count=50, seed=7)
    c = GeneratorSource(Order, count=50, seed=8)
    for s in (a, b, c):
        s.open({})
    ra, rb, rc = (s.read(50, 0) for s in (a, b, c))
    assert ra is not None and rb is not None and rc is not None
    strip = lambda items: [msgspec.json.decode(m, type=Order).user_id for m in items]  # noqa: E731
    assert strip(ra.items) == strip(rb.items)
    assert strip(ra.items) != strip(rc.items)


def test_a_broken_stage_stops_the_pipeline_with_its_name() -> None:
    def boom(items: list[int]) -> list[int]:
        raise RuntimeError("disk on fire")

    pipeline = Flow(MemorySource(list(range(10)))).map_batch(boom, name="burner").into(NullSink())
    with pytest.raises(PipelineFailed, match="burner.*disk on fire"):
        pipeline.run()


def test_stop_drains_what_was_read() -> None:
    source = GeneratorSource(Order, rate=50_000, encode=False)
    sink = NullSink()
    pipeline = Flow(source).into(sink, linger_ms=5)
    threading.Timer(0.3, pipeline.stop).start()
    report = pipeline.run()
    assert report.events_read == sink.count > 0


class WaitingNullSink(NullSink):
    """A null sink declared as waiting on I/O: the engine gives it a thread and a buffer."""

    blocking = True


def test_prometheus_exposition_has_every_stage_and_buffer() -> None:
    pipeline = (
        Flow(MemorySource(_messages(100))).decode(Order).into(WaitingNullSink(), name="orders")
    )
    pipeline.run()
    text = pipeline.prometheus()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    for ln in lines:
        name_labels, value = ln.rsplit(" ", 1)
        float(value)
        assert name_labels.startswith("tenfold_pipeline_")
    assert 'tenfold_pipeline_stage_events_total{pipeline="orders",stage="decode"} 100' in text
    assert 'buffer="decode->null"' in text
    assert "# TYPE tenfold_pipeline_backpressure_episodes_total counter" in text


def test_bad_options_are_rejected_before_running() -> None:
    with pytest.raises(PipelineDefinitionError):
        Flow(MemorySource([1])).into(NullSink(), batch_size=0)
    with pytest.raises(PipelineDefinitionError):
        Flow(MemorySource([1])).into(NullSink(), buffer_events=-1)


class Ev(msgspec.Struct):
    id: int
    key: str
    t: float


class CrashAfter(Source[Ev]):
    """A memory source whose pipeline 'crashes' (raises) after reading ``limit`` events."""

    def __init__(self, events: list[Ev], limit: int | None) -> None:
        self.inner = MemorySource(events)
        self.limit = limit
        self.read_count = 0

    def open(self, positions: dict[str, int]) -> None:
        self.inner.open(positions)
        self.started_at = positions.get("memory/0", 0)

    def read(self, max_events: int, linger_s: float) -> Batch[Ev] | None:
        if self.limit is not None and self.read_count >= self.limit:
            raise RuntimeError("crash")
        batch = self.inner.read(max_events, linger_s)
        if batch is not None:
            self.read_count += len(batch.items)
        return batch


def test_window_state_is_checkpointed_and_restored(tmp_path) -> None:
    events = [Ev(i, "ab"[i % 2], float(i)) for i in range(2_000)]
    window = dict(
        key=lambda e: e.key, time=lambda e: e.t, size_s=100.0, aggregates={"n": ("count", None)}
    )
    # Reference: one clean run.
    ref = MemorySink(key=lambda r: r.id)
    Flow(MemorySource(events)).window(**window).into(ref, batch_size=100).run()
    # A run that crashes part-way, then a restart from the checkpoint.
    store = tmp_path / "ckpt.db"
    sink = MemorySink(key=lambda r: r.id)
    crashing = CrashAfter(events, limit=1_300)
    p1 = (
        Flow(crashing)
        .window(**window)
        .into(sink, batch_size=100, checkpoints=store, checkpoint_interval_s=0.0)
    )
    with pytest.raises(PipelineFailed):
        p1.run()
    saved = CheckpointStore(store).load("pipeline", "window")
    assert saved is not None and 0 < saved[1]["memory/0"] <= 1_300
    resumed = CrashAfter(events, limit=None)
    Flow(resumed).window(**window).into(sink, batch_size=100, checkpoints=store).run()
    assert resumed.started_at == saved[1]["memory/0"]  # resumed from the checkpoint, not 0
    assert {k: (r.n, r.window_start) for k, r in sink.by_key.items()} == {
        k: (r.n, r.window_start) for k, r in ref.by_key.items()
    }


class _LeakySink(Sink[Order]):
    """Keeps a megabyte per batch: a sink that grows until something stops it."""

    name = "leaky"

    def __init__(self) -> None:
        self.kept: list[bytes] = []
        self.count = 0

    def write(self, batch: Batch[Order]) -> None:
        self.kept.append(b"x" * (1 << 20))
        self.count += len(batch.items)


def test_governor_memory_bound_stops_a_growing_pipeline_with_a_clear_error() -> None:
    import os

    from tenfold.core.governor import Governor, GovernorConfig

    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    governor = Governor(
        GovernorConfig.model_validate({"memory_limit_bytes": rss + (48 << 20)}),
        start_sampler=False,
    )
    sink = _LeakySink()
    pipeline = Flow(GeneratorSource(Order, encode=False)).into(
        sink, name="leaky", batch_size=100, governor=governor
    )
    with pytest.raises(PipelineFailed, match=r"pipeline 'leaky': memory limit of [\d,]+ MiB"):
        pipeline.run(duration_s=60)
    # Stopped near the limit: about 48 one-megabyte batches, not a runaway.
    assert 10 <= len(sink.kept) <= 200
    sink.kept.clear()


class _Recording:
    """Stage and sink hooks noting the thread each step ran on."""

    def __init__(self) -> None:
        self.threads: dict[str, set[str]] = {}

    def note(self, step: str) -> None:
        self.threads.setdefault(step, set()).add(threading.current_thread().name)


def test_cpu_bound_steps_share_one_thread_and_no_buffer() -> None:
    seen = _Recording()

    class Sink_(NullSink):
        def write(self, batch: Batch[object]) -> None:
            seen.note("sink")
            super().write(batch)

    def keep(o: Order) -> bool:
        seen.note("filter")
        return o.kind == "buy"

    sink = Sink_()
    report = (
        Flow(MemorySource(_messages(5_000)))
        .decode(Order)
        .filter(keep)
        .enrich(TableLookup({1: ("x",)}), key=lambda o: o.user_id, merge=lambda o, r: o)
        .into(sink, batch_size=500)
        .run()
    )
    assert sink.count == 2_500
    assert report.buffers == []
    assert len(seen.threads["filter"] | seen.threads["sink"]) == 1


class _SlowLookup:
    """A lookup that waits (as a database would) and notes its thread."""

    def __init__(self, seen: _Recording) -> None:
        self.seen = seen

    def fetch(self, keys: object) -> dict[int, tuple[str]]:
        self.seen.note("lookup")
        time.sleep(0.001)
        return {k: (f"C{k}",) for k in keys}  # type: ignore[attr-defined]

    def close(self) -> None:
        pass


def test_a_blocking_stage_gets_a_thread_of_its_own() -> None:
    seen = _Recording()

    def keep(o: Order) -> bool:
        seen.note("filter")
        return True

    def after(o: object) -> object:
        seen.note("map")
        return o

    sink = MemorySink[object]()
    report = (
        Flow(MemorySource(_messages(2_000)))
        .decode(Order)
        .filter(keep)
        .enrich(_SlowLookup(seen), key=lambda o: o.user_id, merge=lambda o, r: (o.id, r))
        .map(after)
        .into(sink, batch_size=100)
        .run()
    )
    assert sorted(i for i, _ in sink.events) == list(range(2_000))  # type: ignore[misc]
    assert all(r == (f"C{i % 100}",) for i, r in sink.events)  # type: ignore[misc]
    (filter_thread,) = seen.threads["filter"]
    (lookup_thread,) = seen.threads["lookup"]
    (map_thread,) = seen.threads["map"]
    assert len({filter_thread, lookup_thread, map_thread}) == 3
    assert [b["buffer"] for b in report.buffers] == ["filter->enrich", "enrich->map"]


def test_a_window_tail_goes_through_the_stages_after_it_on_the_same_thread() -> None:
    events = [Order(i, i % 3, "buy", 1.0, float(i)) for i in range(30)]
    sink = MemorySink[object]()
    report = (
        Flow(MemorySource(events))
        .window(
            key=lambda o: o.user_id,
            time=lambda o: o.ts,
            size_s=100.0,
            aggregates={"n": ("count", None)},
        )
        .map(lambda w: (w.key, w.n))
        .into(sink, batch_size=7)
        .run()
    )
    # Every window is still open when the stream ends: all come from the flush,
    # and each went through the map after the window.
    assert sorted(sink.events) == [(0, 10.0), (1, 10.0), (2, 10.0)]  # type: ignore[type-var]
    assert report.buffers == []
