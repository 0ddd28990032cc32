"""Redis Streams source with a real redis-server: consumer groups, XACK after the sink, XAUTOCLAIM."""

import uuid

import msgspec
import pytest
import redis

from tenfold.pipeline_engine import (
    Batch,
    Flow,
    MemoryDeadLetters,
    MemorySink,
    PipelineFailed,
    RedisStreamSource,
    Sink,
)

pytestmark = pytest.mark.service


class Order(msgspec.Struct):
    id: int
    amount: float


def _fill(url: str, n: int, poison: dict[int, bytes] | None = None) -> str:
    stream = f"orders-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    pipe = client.pipeline()
    for i in range(n):
        data = (poison or {}).get(i, msgspec.json.encode(Order(i, float(i))))
        pipe.xadd(stream, {"data": data})
    pipe.execute()
    return stream


def _pending(url: str, stream: str, group: str = "tenfold") -> int:
    return int(redis.Redis.from_url(url).xpending(stream, group)["pending"])


def test_redis_stream_to_sink_acks_everything_and_dead_letters_poison(redis_server) -> None:
    stream = _fill(
        redis_server.url, 5_000, poison={7: b"{not json", 8: b'{"id": "x", "amount": 1}'}
    )
    sink: MemorySink = MemorySink(key=lambda o: o.id)
    dead = MemoryDeadLetters()
    source = RedisStreamSource(redis_server.url, stream, stop_when_idle_s=0.5)
    report = Flow(source).decode(Order).into(sink, batch_size=700, dead_letters=dead).run()
    assert sorted(sink.by_key) == [i for i in range(5_000) if i not in (7, 8)]
    assert [d.reason.split(":")[0] for d in dead.letters] == ["malformed JSON", "wrong type"]
    assert all(d.source.startswith(f"{stream}@") for d in dead.letters)
    assert report.events_read == 5_000
    assert _pending(redis_server.url, stream) == 0


class FailAfter(Sink[Order]):
    name = "flaky"

    def __init__(self, batches: int) -> None:
        self.left = batches
        self.seen: list[int] = []

    def write(self, batch: Batch[Order]) -> None:
        if self.left == 0:
            raise RuntimeError("sink crashed")
        self.left -= 1
        self.seen += [o.id for o in batch.items]


def test_unacked_entries_are_redelivered_after_a_crash(redis_server) -> None:
    stream = _fill(redis_server.url, 3_000)
    crashing = FailAfter(batches=2)
    source = RedisStreamSource(redis_server.url, stream, consumer="c1", stop_when_idle_s=0.5)
    with pytest.raises(PipelineFailed, match="sink crashed"):
        Flow(source).decode(Order).into(crashing, batch_size=500).run()
    assert len(crashing.seen) == 1_000
    assert _pending(redis_server.url, stream) > 0  # read but never acknowledged
    # The same consumer restarts: its pending entries come first, then new ones.
    sink: MemorySink = MemorySink(key=lambda o: o.id)
    again = RedisStreamSource(redis_server.url, stream, consumer="c1", stop_when_idle_s=0.5)
    Flow(again).decode(Order).into(sink, batch_size=500).run()
    assert set(sink.by_key) | set(crashing.seen) == set(range(3_000))
    assert set(sink.by_key) >= set(range(1_000, 3_000))
    assert _pending(redis_server.url, stream) == 0


def test_another_consumer_claims_entries_of_a_dead_one(redis_server) -> None:
    stream = _fill(redis_server.url, 1_000)
    crashing = FailAfter(batches=0)
    dead_consumer = RedisStreamSource(
        redis_server.url, stream, consumer="dead", stop_when_idle_s=0.5
    )
    with pytest.raises(PipelineFailed):
        Flow(dead_consumer).decode(Order).into(crashing, batch_size=400).run()
    assert _pending(redis_server.url, stream) > 0
    sink: MemorySink = MemorySink(key=lambda o: o.id)
    rescuer = RedisStreamSource(
        redis_server.url, stream, consumer="rescuer", claim_idle_ms=0, stop_when_idle_s=0.5
    )
    Flow(rescuer).decode(Order).into(sink, batch_size=400).run()
    assert sorted(sink.by_key) == list(range(1_000))
    assert _pending(redis_server.url, stream) == 0
