"""The fused filter -> in-memory join pass gives what the two stages give one after the other."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.pipeline_engine import (
    Batch,
    Enrich,
    Filter,
    Flow,
    Map,
    MemoryDeadLetters,
    MemorySink,
    MemorySource,
    TableLookup,
)
from tenfold.pipeline_engine._stages import filter_then_enrich


class Order(msgspec.Struct):
    id: int
    user_id: int
    kind: str


def _batch(items: list[Any]) -> Batch[Any]:
    return Batch(list(items), 7, {"t/0": len(items)}, ack="a", seq=3, starts={"t/0": 0})


_orders = st.lists(
    st.builds(Order, st.integers(0, 10_000), st.integers(0, 12), st.sampled_from(["a", "b", "c"])),
    max_size=60,
)
# Rows for some users: a tuple of columns, sometimes empty (treated as no row).
_tables = st.dictionaries(
    st.integers(0, 12), st.one_of(st.just(()), st.tuples(st.text(max_size=3))), max_size=13
)


def _stages(
    table: dict[int, tuple[Any, ...]], bad_pred: set[int], bad_merge: set[int]
) -> tuple[Filter[Order], Enrich[Order, Any]]:
    def pred(o: Order) -> bool:
        if o.id in bad_pred:
            raise ValueError(f"bad {o.id}")
        return o.kind != "a"

    def merge(o: Order, row: tuple[Any, ...] | None) -> tuple[int, Any]:
        if o.id in bad_merge:
            raise KeyError(o.id)
        return (o.id, row)

    return Filter(pred), Enrich(TableLookup(table), key=lambda o: o.user_id, merge=merge)


@settings(max_examples=200, deadline=None)
@given(orders=_orders, table=_tables, data=st.data())
def test_fused_pass_equals_filter_then_enrich(
    orders: list[Order], table: dict[int, tuple[Any, ...]], data: st.DataObject
) -> None:
    ids = sorted({o.id for o in orders})
    # Events the predicate or the merge raises on: usually none, sometimes a few.
    bad_pred = data.draw(st.sets(st.sampled_from(ids), max_size=2) if ids else st.just(set()))
    bad_merge = data.draw(st.sets(st.sampled_from(ids), max_size=2) if ids else st.just(set()))
    flt, enrich = _stages(table, bad_pred, bad_merge)
    fused = filter_then_enrich(flt, enrich, _batch(orders))
    kept = {o.id for o in orders if o.kind != "a" and o.id not in bad_pred}
    if kept & bad_merge:
        # The merge raising is the enrich stage failing, fused or not.
        assert fused is None
        with pytest.raises(KeyError):
            enrich.process(flt.process(_batch(orders)))
        return
    two = enrich.process(flt.process(_batch(orders)))
    if bad_pred:
        assert fused is None  # the caller runs the two stages, which dead-letter
        assert len(two.dead) == sum(o.id in bad_pred for o in orders)
    else:
        assert fused is not None
        assert fused.items == two.items
        assert not fused.dead and not two.dead
        assert (fused.born_ns, fused.positions, fused.ack, fused.seq, fused.starts) == (
            two.born_ns,
            two.positions,
            two.ack,
            two.seq,
            two.starts,
        )


def test_fusion_only_where_it_is_the_same_thing() -> None:
    flt, enrich = _stages({1: ("x",)}, set(), set())
    batch = _batch([Order(1, 1, "b")])
    assert filter_then_enrich(flt, enrich, batch) is not None
    # A map is not a filter; an enrich that drops or dead-letters missing keys
    # is not one output per event; a lookup that queries is not a table.
    assert filter_then_enrich(Map(lambda o: o), enrich, batch) is None
    dropping = Enrich(
        TableLookup({}), key=lambda o: o.user_id, merge=lambda o, r: o, on_missing="drop"
    )
    assert filter_then_enrich(flt, dropping, batch) is None

    class Subclassed(Filter[Order]):
        pass

    assert filter_then_enrich(Subclassed(lambda o: True), enrich, batch) is None


def test_a_pipeline_with_the_fused_pass_counts_and_dead_letters_like_the_stages() -> None:
    orders = [Order(i, i % 5, ("a", "b")[i % 2]) for i in range(1_000)]

    def keep(o: Order) -> bool:
        if o.id == 501:
            raise ValueError("poison")
        return o.kind != "a"

    sink: MemorySink[Any] = MemorySink()
    dead = MemoryDeadLetters()
    report = (
        Flow(MemorySource(orders))
        .filter(keep)
        .enrich(TableLookup({0: ("zero",)}), key=lambda o: o.user_id, merge=lambda o, r: (o.id, r))
        .into(sink, batch_size=100, dead_letters=dead)
        .run()
    )
    want = [(i, ("zero",) if i % 5 == 0 else None) for i in range(1, 1_000, 2) if i != 501]
    assert sink.events == want
    assert [d.stage for d in dead.letters] == ["filter"]
    by_stage = {s["stage"]: s for s in report.stages}
    assert by_stage["filter"]["events_in"] == 1_000
    assert by_stage["filter"]["events_out"] == len(want)
    assert by_stage["enrich"]["events_in"] == by_stage["enrich"]["events_out"] == len(want)
    assert by_stage["filter"]["dead_letters"] == 1
