import math
from collections import Counter, defaultdict

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.pipeline_engine import (
    Batch,
    DecodeJson,
    Enrich,
    Filter,
    Map,
    PipelineDefinitionError,
    SchemaError,
    TableLookup,
    Window,
    per_event,
)
from tenfold.pipeline_engine.bench import Order


def _batch(items: list) -> Batch:
    return Batch(list(items), 0, {"t/0": len(items)}, where=lambda i: f"t/0@{i}")


def _enc(o: Order) -> bytes:
    return msgspec.json.encode(o)


def test_decode_fast_path_keeps_order_and_bookkeeping() -> None:
    orders = [Order(i, i % 7, "buy", i * 1.5, float(i)) for i in range(100)]
    out = DecodeJson(Order).process(_batch([_enc(o) for o in orders]))
    assert out.items == orders
    assert out.dead == []
    assert out.positions == {"t/0": 100}


def test_decode_sends_each_kind_of_poison_to_dead_letters_with_a_reason() -> None:
    good = _enc(Order(1, 2, "buy", 3.0, 4.0))
    bad = [
        b'{"id": 1, "user_id": ',  # truncated
        b"\x00\xff\xfe binary",  # garbage
        None,  # null message
        b'{"id": "one", "user_id": 2, "kind": "buy", "amount": 3.0, "ts": 4.0}',  # wrong type
        b"null",  # JSON null
        b'{"id": 1}',  # missing fields
        b"[" + b"1," * 400 + b"1]",  # oversized for max_bytes=512
    ]
    stage = DecodeJson(Order, max_bytes=512)
    out = stage.process(_batch([good, *bad, good]))
    assert len(out.items) == 2
    reasons = [d.reason for d in out.dead]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1].startswith("malformed JSON")
    assert reasons[2] == "null message"
    assert reasons[3].startswith("wrong type") and "id" in reasons[3]
    assert reasons[4].startswith("wrong type")
    assert reasons[5].startswith("wrong type") and "user_id" in reasons[5]
    assert reasons[6].startswith("oversized message")
    assert [d.source for d in out.dead] == [f"t/0@{i}" for i in range(1, 8)]
    assert out.dead[1].payload == b"\x00\xff\xfe binary"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.binary(max_size=80),
            st.builds(
                lambda i, a: _enc(Order(i, i, "k", a, 0.0)),
                st.integers(-(2**63), 2**63 - 1),
                st.floats(allow_nan=False, allow_infinity=False),
            ),
        ),
        max_size=40,
    )
)
def test_decode_never_loses_or_invents_a_message(messages: list) -> None:
    out = DecodeJson(Order).process(_batch(messages))
    assert len(out.items) + len(out.dead) == len(messages)
    assert all(isinstance(e, Order) for e in out.items)
    assert all(d.reason for d in out.dead)


def test_decode_requires_a_struct_schema() -> None:
    with pytest.raises(SchemaError):
        DecodeJson(dict)  # type: ignore[arg-type]


def test_filter_and_map_turn_a_raising_event_into_a_dead_letter() -> None:
    items = [1, 2, 0, 4]
    f = Filter(lambda x: 10 / x > 3)
    out = f.process(_batch(items))
    assert out.items == [1, 2]
    assert len(out.dead) == 1 and "ZeroDivisionError" in out.dead[0].reason
    m = Map(lambda x: 12 // x)
    out = m.process(_batch(items))
    assert out.items == [12, 6, 3]
    assert out.dead[0].stage == "map"


def test_per_event_stage_drops_none() -> None:
    st_ = per_event(lambda x: x * 2 if x % 2 else None, name="odd_double")
    out = st_.process(_batch([1, 2, 3]))
    assert out.items == [2, 6]
    assert st_.name == "odd_double"


class CountingLookup:
    def __init__(self, rows: dict) -> None:
        self.rows = rows
        self.calls: list[list] = []

    def fetch(self, keys):
        keys = list(keys)
        self.calls.append(sorted(keys))
        return {k: self.rows[k] for k in keys if k in self.rows}

    def close(self) -> None:
        pass


def test_enrich_fetches_each_missing_key_once_per_batch_and_caches() -> None:
    lookup = CountingLookup({1: ("fr",), 2: ("de",)})
    stage = Enrich(
        lookup, key=lambda e: e, merge=lambda e, row: (e, row[0] if row else None), cache_size=2
    )
    out = stage.process(_batch([1, 2, 1, 3, 2]))
    assert out.items == [(1, "fr"), (2, "de"), (1, "fr"), (3, None), (2, "de")]
    assert lookup.calls == [[1, 2, 3]]
    stage.process(_batch([2, 3]))
    assert lookup.calls == [[1, 2, 3]]  # 2 and 3 are the two most recent keys: cached
    stage.process(_batch([1]))
    assert lookup.calls[-1] == [1]  # 1 was evicted (LRU, size 2)


def test_enrich_missing_modes() -> None:
    table = TableLookup({1: ("fr",)})
    drop = Enrich(table, key=lambda e: e, merge=lambda e, r: (e, r), on_missing="drop")
    assert drop.process(_batch([1, 5])).items == [(1, ("fr",))]
    dead = Enrich(table, key=lambda e: e, merge=lambda e, r: (e, r), on_missing="dead")
    out = dead.process(_batch([1, 5]))
    assert out.items == [(1, ("fr",))]
    assert "no enrichment row for key 5" in out.dead[0].reason
    with pytest.raises(PipelineDefinitionError):
        Enrich(table, key=lambda e: e, merge=lambda e, r: e, on_missing="ignore")


def _reference_windows(events, size, slide):
    acc: dict = defaultdict(list)
    for key, t, v in events:
        start = math.floor(t / slide) * slide
        while start > t - size:
            acc[(key, start)].append(v)
            start -= slide
    return {k: (len(vs), sum(vs), min(vs), max(vs)) for k, vs in acc.items()}


class Ev(msgspec.Struct):
    key: str
    t: float
    v: float


def _window(size: float, slide: float | None) -> Window:
    return Window(
        key=lambda e: e.key,
        time=lambda e: e.t,
        size_s=size,
        slide_s=slide,
        aggregates={
            "n": ("count", None),
            "total": ("sum", "v"),
            "lo": ("min", "v"),
            "hi": ("max", "v"),
            "avg": ("mean", "v"),
        },
        allowed_lateness_s=1000.0,
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 50), st.integers(-5, 5)), max_size=60
    ),
    st.sampled_from([(4.0, None), (4.0, 2.0), (6.0, 2.0), (5.0, 5.0), (3.0, 1.0)]),
    st.integers(1, 7),
)
def test_windows_match_a_brute_force_reference(events, shape, chunk) -> None:
    size, slide = shape
    w = _window(size, slide)
    evs = [Ev(k, float(t), float(v)) for k, t, v in events]
    results = []
    for i in range(0, len(evs), chunk):
        results += w.process(_batch(evs[i : i + chunk])).items
    results += w.flush()
    got = {(r.key, r.window_start): (r.n, r.total, r.lo, r.hi) for r in results}
    want = _reference_windows([(e.key, e.t, e.v) for e in evs], size, slide or size)
    assert got == want
    assert len({r.id for r in results}) == len(results)
    for r in results:
        assert r.avg == pytest.approx(r.total / r.n)


def test_window_closes_on_watermark_and_sends_late_events_to_dead_letters() -> None:
    w = Window(
        key=lambda e: e.key, time=lambda e: e.t, size_s=10, aggregates={"n": ("count", None)}
    )
    out = w.process(_batch([Ev("a", 1, 0), Ev("a", 5, 0), Ev("a", 12, 0)]))
    assert [(r.key, r.window_start, r.n) for r in out.items] == [("a", 0.0, 2.0)]
    late = w.process(_batch([Ev("a", 3, 0)]))
    assert late.items == [] and "late event" in late.dead[0].reason


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("xy"), st.integers(0, 40), st.integers(0, 9)),
        min_size=2,
        max_size=50,
    ),
    st.data(),
)
def test_window_snapshot_restore_gives_the_same_results(events, data) -> None:
    evs = [Ev(k, float(t), float(v)) for k, t, v in events]
    cut = data.draw(st.integers(1, len(evs) - 1))
    whole = _window(6.0, 3.0)
    expected = whole.process(_batch(evs)).items + whole.flush()
    first = _window(6.0, 3.0)
    part1 = first.process(_batch(evs[:cut])).items
    second = _window(6.0, 3.0)
    second.restore(first.snapshot())
    part2 = second.process(_batch(evs[cut:])).items + second.flush()
    key = lambda r: (r.key, r.window_start)  # noqa: E731
    assert sorted(map(msgspec.structs.astuple, part1 + part2), key=str) == sorted(
        map(msgspec.structs.astuple, expected), key=str
    )
    assert Counter(map(key, part1 + part2)) == Counter(map(key, expected))


def test_window_rejects_bad_shapes() -> None:
    with pytest.raises(PipelineDefinitionError):
        Window(key=str, time=float, size_s=0, aggregates={})
    with pytest.raises(PipelineDefinitionError):
        Window(key=str, time=float, size_s=5, slide_s=6, aggregates={})
    with pytest.raises(PipelineDefinitionError, match="unknown function"):
        Window(key=str, time=float, size_s=5, aggregates={"x": ("median", "v")})
