"""The compiled decode -> where -> join pass gives what the three stages give one by one."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.pipeline_engine import (
    Flow,
    MemoryDeadLetters,
    MemorySink,
    MemorySource,
    PipelineDefinitionError,
    SchemaError,
    TableLookup,
    Where,
    column_join,
)
from tenfold.pipeline_engine._fused import decode_filter_join
from tenfold.pipeline_engine._stages import DecodeJson, Filter


class Order(msgspec.Struct):
    id: int
    user_id: int
    kind: str
    amount: float


_KINDS = ["view", "buy", "cart", ""]

# Messages: well-formed orders, sometimes carrying the join's columns (null, a value,
# a wrong type), extra keys, escaped keys, and broken ones (None, not JSON, wrong types).
_good = st.fixed_dictionaries(
    {
        "id": st.integers(-5, 10_000),
        "user_id": st.integers(0, 12),
        "kind": st.sampled_from(_KINDS),
        "amount": st.floats(-100, 100, allow_nan=False),
    },
    optional={
        "country": st.one_of(st.none(), st.text(max_size=3), st.integers()),
        "tier": st.one_of(st.none(), st.integers(0, 5), st.text(max_size=2)),
        "extra": st.integers(),
    },
).map(msgspec.json.encode)
_escaped = st.integers(0, 12).map(
    lambda u: b'{"id":1,"user_id":%d,"kind":"buy","amount":1.0,"\\u0074ier":9}' % u
)
_bad = st.one_of(
    st.none(),
    st.just(b"{not json"),
    st.just(b'{"id":"x","user_id":1,"kind":"buy","amount":1.0}'),
    st.just(b'{"id":1,"user_id":1,"kind":"buy"}'),
    st.binary(max_size=8),
)
# Half the runs all well-formed (the fused pass then runs), half mixed (it often yields).
_messages = st.one_of(
    st.lists(_good, max_size=80),
    st.lists(st.one_of(_good, _good, _good, _good, _escaped, _bad), max_size=80),
)
# Rows for some users: the right length, empty (no row), or too short.
_tables = st.dictionaries(
    st.integers(0, 12),
    st.one_of(
        st.tuples(st.text(max_size=3), st.integers(0, 9)),
        st.tuples(st.none(), st.none()),
        st.just(()),
        st.tuples(st.text(max_size=2)),
    ),
    max_size=13,
)
_conditions = st.lists(
    st.one_of(
        st.sampled_from(_KINDS).map(lambda k: f"kind != {k!r}"),
        st.sampled_from(_KINDS).map(lambda k: f"kind == {k!r}"),
        st.integers(-10, 110).map(lambda v: f"amount >= {v}"),
        st.integers(0, 12).map(lambda v: f"user_id < {v}"),
        st.lists(st.integers(0, 12), max_size=4).map(lambda v: f"user_id in {v!r}"),
        st.lists(st.sampled_from(_KINDS), max_size=2).map(lambda v: f"kind not in {v!r}"),
    ),
    min_size=1,
    max_size=3,
)


def _run(
    messages: list[bytes | None],
    conditions: list[str],
    table: dict[int, tuple[Any, ...]],
    on_missing: str,
    batch_size: int,
    fused: bool,
) -> tuple[list[bytes], list[tuple[str, str]], int]:
    sink: MemorySink[Any] = MemorySink()
    dead = MemoryDeadLetters()
    pipeline = (
        Flow(MemorySource(messages))
        .decode(Order)
        .where(*conditions)
        .join(
            TableLookup(table),
            key="user_id",
            columns={"country": str, "tier": int},
            on_missing=on_missing,
        )
        .into(sink, batch_size=batch_size, dead_letters=dead)
    )
    assert bool(pipeline._fused) is True  # the three stages qualify
    if not fused:
        pipeline._fused.clear()
    report = pipeline.run()
    out = [msgspec.json.encode(e) + type(e).__name__.encode() for e in sink.events]
    letters = [(d.stage, d.reason) for d in dead.letters]
    return out, letters, report.events_written


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _messages,
    _conditions,
    _tables,
    st.sampled_from(["keep", "drop"]),
    st.integers(1, 40),
)
def test_fused_decode_where_join_equals_the_stages(
    messages: list[bytes | None],
    conditions: list[str],
    table: dict[int, tuple[Any, ...]],
    on_missing: str,
    batch_size: int,
) -> None:
    args = (messages, conditions, table, on_missing, batch_size)
    assert _run(*args, fused=True) == _run(*args, fused=False)


def test_the_fused_pass_runs_on_clean_batches_and_yields_on_others() -> None:
    table = {1: ("FR", 2)}
    stages = [
        DecodeJson(Order),
        Filter(Where("kind != 'view'", schema=Order)),
        column_join(Order, TableLookup(table), "user_id", {"country": str, "tier": int})[0],
    ]
    fused = decode_filter_join(*stages)
    assert fused is not None
    from tenfold.pipeline_engine import Batch

    clean = [
        b'{"id":1,"user_id":1,"kind":"buy","amount":2.5}',
        b'{"id":2,"user_id":3,"kind":"view","amount":1.0}',
        b'{"id":3,"user_id":3,"kind":"cart","amount":1.0,"country":null}',
    ]
    done = fused(Batch(list(clean), 0))
    assert done is not None
    batch, kept = done
    assert kept == 2
    assert [(e.id, e.country, e.tier) for e in batch.items] == [(1, "FR", 2), (3, None, None)]
    # An event without a row whose JSON set a column: the stages would drop that value.
    assert (
        fused(Batch([*clean, b'{"id":4,"user_id":3,"kind":"buy","amount":0,"tier":1}'], 0)) is None
    )
    # A message the stages make a dead letter.
    assert fused(Batch([*clean, None], 0)) is None
    assert fused(Batch([*clean, b"[1]"], 0)) is None


def test_no_fusion_where_it_would_not_be_the_same_thing() -> None:
    lookup = TableLookup({1: ("FR", 2)})
    join, _ = column_join(Order, lookup, "user_id", {"country": str, "tier": int})
    where = Filter(Where("kind != 'view'"))
    assert decode_filter_join(DecodeJson(Order), where, join) is not None
    # A predicate written as code: the engine cannot know what it reads.
    assert decode_filter_join(DecodeJson(Order), Filter(lambda o: True), join) is None
    # Dead letters for missing rows.
    dead_join, _ = column_join(Order, lookup, "user_id", {"country": str}, on_missing="dead")
    assert decode_filter_join(DecodeJson(Order), where, dead_join) is None
    # A schema that refuses unknown keys (the output type would accept the columns).

    class Strict(msgspec.Struct, forbid_unknown_fields=True):
        id: int
        user_id: int
        kind: str
        amount: float

    strict_join, _ = column_join(Strict, lookup, "user_id", {"country": str})
    assert decode_filter_join(DecodeJson(Strict), where, strict_join) is None
    # A filter on a field the decoded events do not have.
    assert decode_filter_join(DecodeJson(Order), Filter(Where("country == 'FR'")), join) is None


def test_where_and_join_check_their_fields() -> None:
    with pytest.raises(SchemaError, match="no field 'kinds'"):
        Where("kinds == 'x'", schema=Order)
    with pytest.raises(PipelineDefinitionError, match="cannot parse condition"):
        Where("amount")
    with pytest.raises(PipelineDefinitionError, match="is not a literal"):
        Where("kind == view")
    with pytest.raises(PipelineDefinitionError, match="decode stage before it"):
        Flow(MemorySource([b"{}"])).join(TableLookup({}), key="user_id", columns={"c": str})
    with pytest.raises(SchemaError, match="already exist"):
        column_join(Order, TableLookup({}), "user_id", {"kind": str})
    assert Where("amount > 1", "kind in ['a', 'b']")(Order(1, 1, "a", 2.0)) is True
    assert Where("amount > 1", "kind in ['a', 'b']")(Order(1, 1, "c", 2.0)) is False
