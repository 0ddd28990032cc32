"""Kafka source and sink over confluent-kafka (librdkafka).

Positions are ``"topic/partition" -> next offset``. The source assigns
partitions explicitly by default (fast, and what the tests use: Tansu's
consumer-group joins take seconds); with ``group`` and no ``partitions`` it
subscribes as a member of that consumer group, so N engine processes share
the topic's partitions (scale-out).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from tenfold.pipeline_engine._batch import Batch
from tenfold.pipeline_engine._sinks import Sink
from tenfold.pipeline_engine._sources import Source, idle_read
from tenfold.pipeline_engine.errors import ConnectorError

__all__ = ["KafkaSink", "KafkaSource"]

log = logging.getLogger("tenfold.pipeline_engine.kafka")

_QUIET = {"log_level": 3}  # librdkafka logs reconnects at level 6; errors still surface


class KafkaSource(Source[bytes | None]):
    """Messages of ``topic`` as raw value bytes (``None`` for a null value).

    ``stop_when_idle_s``: end the stream once no message arrived for that long
    (batch jobs and tests); ``None`` reads forever. A full downstream buffer
    ``pause()``\\ s every assigned partition until there is room again.
    """

    name = "kafka"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        partitions: list[int] | None = None,
        group: str | None = None,
        config: Mapping[str, Any] | None = None,
        stop_when_idle_s: float | None = None,
        commit: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.group = group
        self.subscribe = group is not None and partitions is None
        self.config = dict(config or {})
        self.stop_when_idle_s = stop_when_idle_s
        self.commit = commit
        self._consumer: Any = None
        self._positions: dict[str, int] = {}
        self._last_message = 0.0
        self.pauses = 0
        self._pending_commit: dict[str, int] | None = None
        # How many partitions this consumer holds; read() stops its position scan
        # once it has seen that many. Never below the truth (a stale, larger
        # value only costs a longer scan; a smaller one would lose positions).
        self._assigned = 1 << 30
        self.assignment: list[int] = []  # partitions held now (for observation)

    def _conf(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group or f"tenfold-{self.topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 16 << 20,
            # librdkafka stops prefetching once queued.min.messages are queued and
            # then backs off fetch.queue.backoff.ms (1 s by default): with 10K-event
            # batches that stalls the source for most of a second. Prefetch more,
            # bounded in bytes, and re-check the queue after a few ms instead.
            "queued.min.messages": 500_000,
            "queued.max.messages.kbytes": 64 << 10,
            "fetch.queue.backoff.ms": 5,
            **_QUIET,
            **self.config,
        }

    def _offset(self, partition: int, positions: Mapping[str, int]) -> int:
        stored = positions.get(f"{self.topic}/{partition}")
        if stored is not None:
            return stored
        return int(OFFSET_STORED if self.commit else OFFSET_BEGINNING)

    def topic_partitions(self, timeout_s: float = 10.0) -> list[int]:
        """The partitions of ``topic``, from the broker's metadata."""
        try:
            consumer = Consumer(self._conf())
            try:
                meta = consumer.list_topics(self.topic, timeout=timeout_s)
            finally:
                consumer.close()
        except KafkaException as exc:
            raise ConnectorError(f"kafka {self.bootstrap}: {exc}") from None
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise ConnectorError(
                f"kafka {self.bootstrap}: topic {self.topic!r} not found"
                + (f" ({topic.error})" if topic is not None and topic.error else "")
            )
        return sorted(topic.partitions)

    def use_partitions(self, partitions: list[int]) -> None:
        """Read exactly ``partitions`` (assigned, no group membership); before :meth:`open`."""
        self.partitions = list(partitions)
        self.subscribe = False

    def open(self, positions: dict[str, int]) -> None:
        # The streams this consumer holds: none until the group assigns some
        # (on_assign fills them in), its partitions when assigned explicitly.
        mine: set[str] = set()
        try:
            self._consumer = Consumer(self._conf())
            if self.subscribe:

                def on_assign(consumer: Any, parts: list[Any]) -> None:
                    # What the sink holds now: another engine may have written these
                    # partitions since this one started.
                    fresh = self.position_reader() if self.position_reader else None
                    now = positions if fresh is None else fresh
                    for tp in parts:
                        tp.offset = self._offset(tp.partition, now)
                        key = f"{self.topic}/{tp.partition}"
                        if key in now:
                            self._positions[key] = now[key]
                    self._assigned = max(len(parts), 1)
                    consumer.assign(parts)
                    self.assignment = sorted(tp.partition for tp in parts)

                def on_revoke(consumer: Any, parts: list[Any]) -> None:
                    # Later batches must not carry (and store) partitions now owned
                    # by another engine.
                    for tp in parts:
                        self._positions.pop(f"{self.topic}/{tp.partition}", None)
                    consumer.unassign()
                    self.assignment = []

                self._consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
            else:
                # Metadata first, even for known partitions: assigned before the
                # partition leaders are known, librdkafka waits 500 ms to retry.
                meta = self._consumer.list_topics(self.topic, timeout=10)
                topic = meta.topics.get(self.topic)
                if topic is None or topic.error is not None or not topic.partitions:
                    raise ConnectorError(
                        f"kafka {self.bootstrap}: topic {self.topic!r} not found"
                        + (f" ({topic.error})" if topic is not None and topic.error else "")
                    )
                parts = self.partitions
                if parts is None:
                    parts = sorted(topic.partitions)
                missing = sorted(set(parts) - set(topic.partitions))
                if missing:
                    raise ConnectorError(
                        f"kafka {self.bootstrap}: topic {self.topic!r} has no partition"
                        f" {missing[0]} (it has {len(topic.partitions)})"
                    )
                self._consumer.assign(
                    [TopicPartition(self.topic, p, self._offset(p, positions)) for p in parts]
                )
                self._assigned = max(len(parts), 1)
                self.assignment = sorted(parts)
                mine = {f"{self.topic}/{p}" for p in parts}
        except KafkaException as exc:
            raise ConnectorError(f"kafka {self.bootstrap}: {exc}") from None
        # Only this consumer's partitions: every batch carries its positions to the
        # sink, which stores them, and engines sharing an offsets table must never
        # write back another one's partitions.
        self._positions = {k: v for k, v in positions.items() if k in mine}
        self._last_message = time.monotonic()

    def read(self, max_events: int, linger_s: float) -> Batch[bytes | None] | None:
        consumer, topic = self._consumer, self.topic
        if self._pending_commit is not None:
            self._commit_pending()
        values: list[bytes | None] = []
        kept: list[Any] = []
        firsts: dict[int, int] = {}  # partition -> offset of its first message here
        assigned = self._assigned
        positions = self._positions
        deadline = time.monotonic() + max(linger_s, 0.001)
        while len(values) < max_events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                msgs = consumer.consume(max_events - len(values), remaining)
            except KafkaException as exc:
                raise ConnectorError(f"kafka {self.bootstrap}: {exc}") from None
            if not msgs:
                continue
            bad = [m for m in msgs if m.error() is not None]
            if bad:
                for m in bad:
                    err = m.error()
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise ConnectorError(f"kafka {self.bootstrap}: {err.str()}")
                    log.warning("kafka %s: %s (retrying)", self.bootstrap, err.str())
                msgs = [m for m in msgs if m.error() is None]
            values += [m.value() for m in msgs]
            kept += msgs
            if len(firsts) < assigned:
                for m in msgs:
                    firsts.setdefault(m.partition(), m.offset())
                    if len(firsts) >= assigned:
                        break
            # Messages of one partition arrive in offset order: the last one seen
            # per partition is its new position. Walk back from the end and stop
            # once every assigned partition is seen (usually a few messages).
            seen: set[int] = set()
            for m in reversed(msgs):
                part = m.partition()
                if part not in seen:
                    seen.add(part)
                    positions[f"{topic}/{part}"] = m.offset() + 1
                    if len(seen) >= self._assigned:
                        break
        now = time.monotonic()
        if not values:
            return idle_read(self.stop_when_idle_s, self._last_message, now)
        self._last_message = now

        def where(i: int) -> str:
            m = kept[i]
            return f"{m.topic()}/{m.partition()}@{m.offset()}"

        snapshot = dict(positions)
        starts = {f"{topic}/{p}": off for p, off in firsts.items()}
        return Batch(
            values, time.monotonic_ns(), snapshot, ack=snapshot, where=where, starts=starts
        )

    def pause(self) -> None:
        self.pauses += 1
        try:
            self._consumer.pause(self._consumer.assignment())
        except KafkaException as exc:
            log.warning("kafka pause: %s", exc)

    def resume(self) -> None:
        try:
            self._consumer.resume(self._consumer.assignment())
        except KafkaException as exc:
            log.warning("kafka resume: %s", exc)

    def acknowledge(self, ack: Any) -> None:
        # Called from the sink thread: only record the ack. The consumer handle is
        # used from the source thread alone (commit happens in read()), because
        # concurrent calls on one confluent-kafka Consumer are not safe.
        if self.commit and ack:
            self._pending_commit = ack

    def _commit_pending(self, asynchronous: bool = True) -> None:
        ack, self._pending_commit = self._pending_commit, None
        if not ack:
            return
        offsets = [
            TopicPartition(key.rsplit("/", 1)[0], int(key.rsplit("/", 1)[1]), off)
            for key, off in ack.items()
        ]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            log.warning("kafka commit: %s", exc)

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._commit_pending(asynchronous=False)
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("kafka close: %s", exc)
            self._consumer = None


class KafkaSink(Sink[Any]):
    """Writes events as JSON to ``topic`` (idempotent producer, acks=all), keyed by ``key``.

    At least once: ``write`` returns after every message of the batch is
    acknowledged by the broker; a replay after a crash may write a message
    twice, with the same key (consumers upsert by it).
    """

    name = "kafka"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        key: Callable[[Any], Any] | None = None,
        config: Mapping[str, Any] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.key = key
        self.config = dict(config or {})
        self.timeout_s = timeout_s
        self._producer: Any = None
        self._errors: list[str] = []
        self._encode = msgspec.json.Encoder().encode

    def open(self, pipeline: str) -> dict[str, int]:
        self._producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.num.messages": 10_000,
                **_QUIET,
                **self.config,
            }
        )
        return {}

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def write(self, batch: Batch[Any]) -> None:
        producer, enc, key, topic, cb = (
            self._producer,
            self._encode,
            self.key,
            self.topic,
            self._delivered,
        )
        for e in batch.items:
            k = None if key is None else str(key(e)).encode()
            while True:
                try:
                    producer.produce(topic, enc(e), k, on_delivery=cb)
                    break
                except BufferError:
                    producer.poll(0.05)
        left = producer.flush(self.timeout_s)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise ConnectorError(
                f"kafka {self.bootstrap}: {left} messages undelivered after {self.timeout_s:g} s"
                + (f"; {errors[0]}" if errors else "")
            )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None
