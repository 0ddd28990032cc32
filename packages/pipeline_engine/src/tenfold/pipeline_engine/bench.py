"""Benchmark scenarios: section 8 of the performance document, ours beside Bytewax and Quix Streams.

Tables:

* *Event Processing Performance*: the open-loop synthetic generator at a set
  rate through JSON decode -> filter -> enrich -> sink; end-to-end latency of
  each batch's oldest event (scheduled time to sink commit), backpressure
  episodes, achieved rate.
* *Pipeline Stages*: each stage alone (Kafka source, JSON transform, filter,
  DB enrichment, Postgres sink).
* *Pipeline Comparison*: the same events through ours and a peer: Bytewax in
  memory (per-event and batched), Quix Streams from the same Tansu topic into
  the same PostgreSQL.
"""

from __future__ import annotations

import importlib.metadata
import random
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Seed, Subject
from tenfold.core.errors import BenchError

__all__ = ["Enriched", "Order", "kernel", "make_messages", "scenarios"]


class Order(msgspec.Struct):
    """The benchmark event."""

    id: int
    user_id: int
    kind: str
    amount: float
    ts: float


class Enriched(msgspec.Struct):
    """An order joined with its user's country and tier."""

    id: int
    user_id: int
    kind: str
    amount: float
    ts: float
    country: str | None
    tier: int | None


USERS = 10_000
KINDS = ("view", "click", "cart", "buy")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def make_messages(n: int, seed: int = 1234) -> list[bytes]:
    """``n`` JSON orders, seeded; a quarter are filtered out (kind ``view``)."""
    rng = random.Random(seed)
    enc = msgspec.json.Encoder().encode
    return [
        enc(
            Order(
                i,
                rng.randrange(USERS),
                KINDS[rng.randrange(4)],
                round(rng.random() * 500, 2),
                float(i),
            )
        )
        for i in range(n)
    ]


def user_table() -> dict[int, tuple[str, int]]:
    return {u: (f"C{u % 60:02d}", u % 4) for u in range(USERS)}


def keep(o: Order) -> bool:
    return o.kind != "view"


def merge(o: Order, row: tuple[Any, ...] | None) -> Enriched:
    if row is None:
        return Enriched(o.id, o.user_id, o.kind, o.amount, o.ts, None, None)
    return Enriched(o.id, o.user_id, o.kind, o.amount, o.ts, row[0], row[1])


def expected_count(messages: Sequence[bytes]) -> int:
    return sum(1 for m in messages if b'"kind":"view"' not in m)


# -- in memory: ours vs Bytewax ------------------------------------------------------


def _messages(ctx: BenchContext) -> list[bytes]:
    n = ctx.size(5_000, 300_000, 1_000_000)
    return ctx.once("messages", lambda: make_messages(n, ctx.seed))


def _ours_in_memory(ctx: BenchContext) -> Op:
    from tenfold.pipeline_engine import Flow, MemorySource, NullSink, TableLookup

    msgs = _messages(ctx)
    table = TableLookup(user_table())
    want = expected_count(msgs)

    def op() -> Outcome:
        sink = NullSink()
        pipeline = (
            Flow(MemorySource(msgs))
            .decode(Order)
            .filter(keep)
            .enrich(table, key=lambda o: o.user_id, merge=merge)
            .into(sink, batch_size=10_000)
        )
        report = pipeline.run()
        if sink.count != want:
            raise BenchError(f"ours wrote {sink.count} events, expected {want}")
        return Outcome(
            len(msgs), metrics={"written": sink.count, "backpressure": report.backpressure_episodes}
        )

    return op


def _bytewax_flow(msgs: list[bytes], out: list[Any], batched: bool) -> Any:
    import bytewax.operators as bop
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource

    table = user_table()
    decode = msgspec.json.Decoder(Order).decode
    flow = Dataflow("bench")
    if batched:
        stream = bop.input("in", flow, TestingSource(msgs, batch_size=10_000))

        def process(batch: list[bytes]) -> list[Enriched]:
            get = table.get
            events = [decode(m) for m in batch]
            return [merge(o, get(o.user_id)) for o in events if keep(o)]

        result = bop.flat_map_batch("process", stream, process)
    else:
        stream = bop.input("in", flow, TestingSource(msgs))

        def decode_or_none(m: bytes) -> Order | None:
            try:
                return decode(m)
            except msgspec.DecodeError:
                return None

        decoded = bop.filter_map("decode", stream, decode_or_none)
        kept = bop.filter("filter", decoded, keep)
        result = bop.map("enrich", kept, lambda o: merge(o, table.get(o.user_id)))
    bop.output("out", result, TestingSink(out))
    return flow


def _bytewax(batched: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from bytewax.testing import run_main

        msgs = _messages(ctx)
        want = expected_count(msgs)

        def op() -> Outcome:
            out: list[Any] = []
            run_main(_bytewax_flow(msgs, out, batched))  # type: ignore[no-untyped-call]
            if len(out) != want:
                raise BenchError(f"bytewax wrote {len(out)} events, expected {want}")
            return Outcome(len(msgs), metrics={"written": len(out)})

        return op

    return prepare


# -- the rate table: open-loop generator ------------------------------------------


def _rate_op(rate: float | None) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.pipeline_engine import Flow, GeneratorSource, NullSink, TableLookup

        table = TableLookup(user_table())
        duration_s = ctx.size(0.3, 1.5, 5.0)

        def op() -> Outcome:
            source = GeneratorSource(Order, rate=rate, seed=ctx.seed, cardinality=USERS)
            sink = NullSink()
            pipeline = (
                Flow(source)
                .decode(Order)
                .filter(keep)
                .enrich(table, key=lambda o: o.user_id, merge=merge)
                .into(sink, batch_size=10_000, linger_ms=2.0)
            )
            report = pipeline.run(duration_s=duration_s)
            lat = [float(x) for x in pipeline._e2e_ms]
            return Outcome(
                report.events_read,
                metrics={
                    "achieved_ev_per_s": round(report.events_per_s),
                    "backpressure_episodes": report.backpressure_episodes,
                    "peak_buffered_events": report.peak_buffered_events,
                    "latency": "oldest event of each batch, scheduled time -> sink",
                },
                latencies_ms=lat,
            )

        return op

    return prepare


def scenarios() -> list[Scenario]:
    bytewax = f"bytewax {_version('bytewax')}"
    rows: list[Scenario] = [
        Scenario(
            name="in_memory_json_filter_enrich",
            unit="events",
            table="Pipeline Comparison",
            row="JSON -> filter -> enrich -> sink, in memory (vs Bytewax per-event)",
            counts="events read from memory, decoded to msgspec Structs, filtered, joined",
            ours=Subject("tenfold", _ours_in_memory),
            peer=Subject(f"{bytewax} per-event", _bytewax(batched=False)),
            seed=Seed(ops_per_s=1_000_000, p95_ms=9.5),
            headline=True,
            rounds=3,
        ),
        Scenario(
            name="in_memory_vs_bytewax_batched",
            unit="events",
            table="Pipeline Comparison",
            row="JSON -> filter -> enrich -> sink, in memory (vs Bytewax batched)",
            counts="same events; Bytewax with 10K-event batches through flat_map_batch",
            ours=Subject("tenfold", _ours_in_memory),
            peer=Subject(f"{bytewax} batched", _bytewax(batched=True)),
            seed=Seed(ops_per_s=1_000_000),
            rounds=3,
        ),
    ]
    for label, rate, seed in (
        ("10K/sec", 10_000, Seed(p50_ms=2.5, p95_ms=5.2, extra={"backpressure": "None"})),
        ("50K/sec", 50_000, None),
        ("100K/sec", 100_000, Seed(p50_ms=5.8, p95_ms=9.5, extra={"backpressure": "None"})),
        ("200K/sec", 200_000, None),
        (
            "saturation",
            None,
            Seed(ops_per_s=2_000_000, p50_ms=15, p95_ms=35, extra={"backpressure": "Frequent"}),
        ),
    ):
        rows.append(
            Scenario(
                name=f"rate_{label.split('/')[0].lower()}",
                unit="events",
                table="Event Processing Performance",
                row=label,
                counts="synthetic open-loop events through decode -> filter -> enrich -> sink",
                ours=Subject("tenfold", _rate_op(rate)),
                seed=seed,
                rounds=1,
                warmup=0,
            )
        )
    return rows


def kernel() -> None:
    """A small deterministic run of the stages (no threads) for instruction counting."""
    from tenfold.pipeline_engine import Batch, DecodeJson, Enrich, Filter, TableLookup

    msgs: list[bytes | None] = list(make_messages(2_000, seed=7))
    batch: Batch[Any] = Batch(msgs, 0)
    stages: list[Any] = [
        DecodeJson(Order),
        Filter(keep),
        Enrich(TableLookup(user_table()), key=lambda o: o.user_id, merge=merge),
    ]
    for stage in stages:
        batch = stage.process(batch)
    if len(batch.items) != expected_count(make_messages(2_000, seed=7)):
        raise BenchError("kernel: wrong count")
