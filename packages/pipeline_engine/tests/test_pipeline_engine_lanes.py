"""However the engine spreads the steps over threads (one for the CPU-bound ones, one
per step that waits on I/O), a run writes what processing each event on its own,
in order, would write."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.pipeline_engine import Flow, MemoryDeadLetters, MemorySink, MemorySource, TableLookup
from tenfold.pipeline_engine.bench import Enriched, Order

KINDS = ("view", "click", "buy")
TABLE = {u: (f"C{u}",) for u in range(0, 20, 2)}  # odd users have no row
DECODE = msgspec.json.Decoder(Order).decode


def keep(o: Order) -> bool:
    return o.kind != "view"


def merge(o: Order, row: tuple[Any, ...] | None) -> Enriched:
    return Enriched(o.id, o.user_id, o.kind, o.amount, o.ts, row[0] if row else None, None)


def tag(e: Enriched) -> tuple[int, str | None]:
    return (e.id, e.country)


def _order(i: int, user: int, kind: int, amount: float) -> bytes:
    return msgspec.json.encode(Order(i, user, KINDS[kind], amount, float(i)))


# An event: a good order, or one of the bad messages the decoder dead-letters.
_events = st.lists(
    st.one_of(
        st.tuples(
            st.integers(0, 19),
            st.integers(0, 2),
            st.floats(0, 1e6, allow_nan=False),
        ),
        st.sampled_from([None, b"{oops", b'{"id": "x"}', b"[1, 2]", b""]),
    ),
    max_size=120,
)


def _messages(events: list[Any]) -> list[bytes | None]:
    return [
        _order(i, *e) if isinstance(e, tuple) else e  # type: ignore[misc]
        for i, e in enumerate(events)
    ]


def _one_by_one(messages: list[bytes | None]) -> tuple[list[tuple[int, str | None]], int]:
    """The reference: each message on its own through decode, filter, enrich and map."""
    out = []
    dead = 0
    for m in messages:
        try:
            if m is None:
                raise ValueError
            o = DECODE(m)
        except (msgspec.DecodeError, ValueError):
            dead += 1
            continue
        if keep(o):
            out.append(tag(merge(o, TABLE.get(o.user_id))))
    return out, dead


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=_events,
    batch_size=st.integers(1, 40),
    blocking=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_any_thread_layout_writes_what_one_event_at_a_time_would(
    events: list[Any], batch_size: int, blocking: list[bool]
) -> None:
    messages = _messages(events)
    source = MemorySource(messages)
    sink: MemorySink[tuple[int, str | None]] = MemorySink()
    dead = MemoryDeadLetters()
    pipeline = (
        Flow(source)
        .decode(Order)
        .filter(keep)
        .enrich(TableLookup(TABLE), key=lambda o: o.user_id, merge=merge)
        .map(tag)
        .into(sink, batch_size=batch_size, buffer_events=max(batch_size, 8), dead_letters=dead)
    )
    # Declare any subset of the steps as waiting on I/O: each then gets a thread.
    steps: list[Any] = [source, *pipeline.stages, sink]
    for step, b in zip(steps, blocking, strict=True):
        step.blocking = b
    report = pipeline.run()
    want, want_dead = _one_by_one(messages)
    assert sink.events == want
    assert len(dead.letters) == report.dead_letters == want_dead
    assert report.events_read == len(messages)
    assert report.events_written == len(want)
    threads = sum(1 for k, b in enumerate(blocking) if k == 0 or b or blocking[k - 1])
    assert len(report.buffers) == threads - 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    users=st.lists(st.integers(0, 5), max_size=80),
    batch_size=st.integers(1, 30),
    blocking=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_window_tails_reach_the_sink_through_the_stages_after_the_window(
    users: list[int], batch_size: int, blocking: list[bool]
) -> None:
    orders = [Order(i, u, "buy", 1.0, float(i)) for i, u in enumerate(users)]
    source = MemorySource(orders)
    sink: MemorySink[tuple[Any, float, float]] = MemorySink()
    pipeline = (
        Flow(source)
        .window(
            key=lambda o: o.user_id,
            time=lambda o: o.ts,
            size_s=10.0,
            aggregates={"n": ("count", None)},
        )
        .map(lambda w: (w.key, w.window_start, w.n))
        .into(sink, batch_size=batch_size)
    )
    for step, b in zip([source, *pipeline.stages, sink], blocking, strict=True):
        step.blocking = b
    pipeline.run()
    want: dict[tuple[int, float], float] = {}
    for o in orders:
        start = (o.ts // 10) * 10
        want[(o.user_id, start)] = want.get((o.user_id, start), 0.0) + 1
    assert sorted(sink.events) == sorted((k, s, n) for (k, s), n in want.items())
