"""Redis Streams source: XREADGROUP in a consumer group, XACK after the sink, XAUTOCLAIM for orphans."""

from __future__ import annotations

import time
from typing import Any

import redis

from tenfold.pipeline_engine._batch import Batch
from tenfold.pipeline_engine._sources import Source, idle_read
from tenfold.pipeline_engine.errors import ConnectorError

__all__ = ["RedisStreamSource"]


class RedisStreamSource(Source[bytes | None]):
    """Entries of ``stream`` (their ``field``, JSON bytes) read as consumer ``consumer`` of ``group``.

    At least once: entries are XACKed only after the sink made their batch
    durable. On start the consumer first re-reads its own pending entries (ID
    ``0``), then claims entries idle for ``claim_idle_ms`` from dead consumers
    (XAUTOCLAIM), then reads new ones (``>``). A full downstream buffer simply
    means no XREADGROUP is issued until there is room.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str = "tenfold",
        consumer: str = "engine-1",
        field: str = "data",
        claim_idle_ms: int = 30_000,
        stop_when_idle_s: float | None = None,
    ) -> None:
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.field = field.encode()
        self.claim_idle_ms = claim_idle_ms
        self.stop_when_idle_s = stop_when_idle_s
        self._client: Any = None
        self._phase = "pending"
        self._claim_cursor = "0-0"
        self._last_message = 0.0

    def open(self, positions: dict[str, int]) -> None:
        try:
            self._client = redis.Redis.from_url(self.url)
            try:
                self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        except redis.RedisError as exc:
            raise ConnectorError(f"redis {self.url}: {exc}") from None
        self._phase = "pending"
        self._claim_cursor = "0-0"
        self._last_message = time.monotonic()

    def _fetch(self, max_events: int, linger_s: float) -> list[tuple[bytes, dict[bytes, bytes]]]:
        client = self._client
        if self._phase == "pending":
            resp = client.xreadgroup(
                self.group, self.consumer, {self.stream: "0"}, count=max_events
            )
            entries = resp[0][1] if resp else []
            entries = [e for e in entries if e[1]]  # deleted entries come back empty
            if entries:
                return list(entries)
            self._phase = "claim"
        if self._phase == "claim":
            cursor, claimed, *_ = client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                self.claim_idle_ms,
                start_id=self._claim_cursor,
                count=max_events,
            )
            self._claim_cursor = cursor
            if cursor in (b"0-0", "0-0"):
                self._phase = "new"
            if claimed:
                return [e for e in claimed if e[1]]
        block_ms = max(1, int(linger_s * 1000))
        resp = client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=max_events, block=block_ms
        )
        return list(resp[0][1]) if resp else []

    def read(self, max_events: int, linger_s: float) -> Batch[bytes | None] | None:
        try:
            entries = self._fetch(max_events, linger_s)
        except redis.RedisError as exc:
            raise ConnectorError(f"redis {self.url}: {exc}") from None
        now = time.monotonic()
        if not entries:
            return idle_read(self.stop_when_idle_s, self._last_message, now)
        self._last_message = now
        field = self.field
        ids = [eid for eid, _ in entries]
        values = [fields.get(field) for _, fields in entries]
        stream = self.stream

        def where(i: int) -> str:
            eid = ids[i]
            return f"{stream}@{eid.decode() if isinstance(eid, bytes) else eid}"

        return Batch(values, time.monotonic_ns(), ack=ids, where=where)

    def acknowledge(self, ack: Any) -> None:
        if ack:
            try:
                self._client.xack(self.stream, self.group, *ack)
            except redis.RedisError as exc:
                raise ConnectorError(f"redis {self.url}: XACK failed: {exc}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
