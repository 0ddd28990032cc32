"""Transport: signals from Kafka, decoded, enriched from the asset inventory, into the ledger.

The pipeline engine runs the flow ``KafkaSource -> SignalDecoder -> Enrich -> LedgerSink``:

* each Kafka message is an auth-log line or a JSON :class:`tenfold.core.events.SecurityEvent`;
  its ledger event id is derived from where it was read (topic, partition, offset)
  and, for a log line, from the rule and the line, so reading a message again
  yields the same id;
* enrichment joins each event's subject with the asset inventory (a PostgreSQL
  table, one row per address: host, owner, criticality, network), one query per
  batch;
* :class:`LedgerSink` appends a batch's events (and its dead letters, as
  ``platform``/``dead_letter`` events) in one durable commit, runs the
  autoblocker over the events the ledger had not seen, and appends the decisions.
  A decision's id comes from its rule, value and triggering event, so it too is
  the same when derived again. After both commits it stores the Kafka positions
  (a small JSON file, replaced atomically). A crash anywhere in between replays
  from the stored positions: the ledger holds each id once, so nothing is
  appended twice (effectively once), and on open the sink rebuilds the
  autoblocker's windows from the ledger itself and records any decision a crash
  kept from being recorded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from hashlib import blake2b
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tenfold.pipeline_engine import Batch, Enrich, KafkaSource, Pipeline, Sink, Stage
from tenfold.platform.errors import PlatformError

if TYPE_CHECKING:
    from tenfold.autoblocker_ledger import Autoblocker, EmbeddedLedger
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent
    from tenfold.core.events import Decision as StreamDecision

__all__ = [
    "ASSETS_TABLE",
    "TOPIC",
    "Asset",
    "LedgerSink",
    "SignalDecoder",
    "ensure_topic",
    "inventory",
    "load_assets",
    "produce",
    "transport_pipeline",
]

TOPIC = "tenfold.signals"
ASSETS_TABLE = "tenfold_assets"
ASSET_COLUMNS = ("host", "owner", "criticality", "network")


class Asset(msgspec.Struct, forbid_unknown_fields=True):
    """One row of the asset inventory: an address and what it is."""

    address: str
    host: str
    owner: str = ""
    criticality: str = "normal"  # "critical" assets are never blocked (see the policy)
    network: str = ""


def load_assets(dsn: str, assets: Iterable[Asset]) -> int:
    """Create the inventory table if needed and upsert ``assets``; returns how many."""
    import ipaddress

    import psycopg

    rows = []
    for a in assets:
        try:
            addr = str(ipaddress.ip_address(a.address))
            net = str(ipaddress.ip_network(a.network, strict=False)) if a.network else ""
        except ValueError as exc:
            raise PlatformError(f"asset {a.host!r}: {exc}") from None
        rows.append((addr, a.host, a.owner, a.criticality, net))
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {ASSETS_TABLE} (address text PRIMARY KEY, "
                "host text NOT NULL, owner text NOT NULL, criticality text NOT NULL, "
                "network text NOT NULL)"
            )
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {ASSETS_TABLE} VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (address) DO UPDATE SET host = EXCLUDED.host, "
                    "owner = EXCLUDED.owner, criticality = EXCLUDED.criticality, "
                    "network = EXCLUDED.network",
                    rows,
                )
    except psycopg.Error as exc:
        raise PlatformError(f"asset inventory at {dsn}: {str(exc).strip()}") from None
    return len(rows)


def inventory(dsn: str) -> list[Asset]:
    """Every asset in the inventory table."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            rows = conn.execute(
                f"SELECT address, host, owner, criticality, network FROM {ASSETS_TABLE} "
                "ORDER BY address"
            ).fetchall()
    except psycopg.Error as exc:
        raise PlatformError(f"asset inventory at {dsn}: {str(exc).strip()}") from None
    return [Asset(*map(str, r)) for r in rows]


def _digest(*parts: str) -> str:
    return blake2b("\x00".join(parts).encode(errors="replace"), digest_size=16).hexdigest()


class SignalDecoder(Stage[bytes | None, "LedgerEvent"]):
    """Kafka messages to ledger events: log lines through the rules' patterns, JSON as is.

    A message that is neither (a JSON object that is not a security event, bytes
    that are not UTF-8) becomes a dead letter; a log line no rule matches is
    dropped, as fail2ban drops it.
    """

    name = "decode"

    def __init__(self, blocker: Autoblocker, clock: Callable[[], float]) -> None:
        self.blocker = blocker
        self.clock = clock

    def process(self, batch: Batch[bytes | None]) -> Batch[LedgerEvent]:
        from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent
        from tenfold.autoblocker_ledger.errors import MalformedEvent
        from tenfold.core.errors import TenfoldError
        from tenfold.core.events import decode_event
        from tenfold.pipeline_engine import DeadLetter

        out: list[LedgerEvent] = []
        now_ms = int(self.clock() * 1000)
        for i, raw in enumerate(batch.items):
            where = batch.where(i)  # "topic/partition@offset"
            stream, _, offset = where.rpartition("@")
            try:
                if raw is None:
                    raise ValueError("null message")
                text = raw.decode()
                if text.lstrip().startswith("{"):
                    ev = decode_event(text, source=stream, lineno=None)
                    out.append(
                        LedgerEvent(
                            f"kafka:{_digest(where, text)}",
                            ev.domain,
                            ev.kind,
                            ev.subject,
                            int(ev.time * 1000),
                            {**ev.attributes, "source": ev.source, "kafka": where},
                        )
                    )
                else:
                    out += self.blocker.events_from_line(
                        text.rstrip("\n"), now_ms, source=stream, offset=int(offset or 0)
                    )
            except (ValueError, TenfoldError, MalformedEvent) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                batch.dead.append(DeadLetter(self.name, reason, where, bytes(raw or b"")[:4096]))
        return batch.replace(out)


def _enriched(ev: LedgerEvent, row: tuple[Any, ...] | None) -> LedgerEvent:
    if row is None:
        return ev
    extra = {f"asset_{k}": str(v) for k, v in zip(ASSET_COLUMNS, row, strict=True) if v}
    return dataclasses.replace(ev, evidence={**ev.evidence, **extra})


DEAD_LETTER_DOMAIN, DEAD_LETTER_KIND = "platform", "dead_letter"

# What the sink asks before recording decisions: those to record, and refusal events.
Policy = Callable[[list[Any]], tuple[list[Any], list[Any]]]


def _dead_letter_event(d: Any) -> LedgerEvent:
    """A message the pipeline refused, as a ledger event (its id from where it was read)."""
    import time

    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent

    return LedgerEvent(
        f"dead:{_digest(d.source, d.stage)}",
        DEAD_LETTER_DOMAIN,
        DEAD_LETTER_KIND,
        d.source[:256] or "unknown",
        int(time.time() * 1000),
        {
            "stage": d.stage,
            "reason": d.reason[:1000],
            "payload": d.payload[:512].decode("utf-8", "replace"),
        },
    )


class LedgerSink(Sink["LedgerEvent"]):
    """Batches of events into the ledger, with the autoblocker's decisions; effectively once.

    See the module docstring for the protocol. ``on_decisions`` is called after
    each commit with the new decisions in stream form (their ledger indices set).
    ``policy`` sees the decisions before they are recorded: it may refuse some
    (recording a refusal event instead) and add others (escalations).
    """

    name = "ledger"
    group_commit = True
    handles_dead_letters = True  # recorded as ledger events, in the batch's own commit

    def __init__(
        self,
        ledger: EmbeddedLedger,
        blocker: Autoblocker,
        positions: Path,
        *,
        on_decisions: Callable[[list[StreamDecision]], None] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.blocker = blocker
        self.positions = positions
        self.on_decisions = on_decisions
        self.appended = 0
        self.duplicates = 0
        self.decisions = 0
        self._warm = False
        self._lock = threading.Lock()

    def _record(self, decisions: list[Any]) -> list[StreamDecision]:
        from tenfold.autoblocker_ledger import stream_decision

        refusals: list[LedgerEvent] = []
        if self.policy is not None and decisions:
            decisions, refusals = self.policy(decisions)
        if not decisions and not refusals:
            return []
        events = self.blocker.decision_events(decisions) + refusals
        receipts = self.ledger.append_batch(events)
        out = []
        for d, r in zip(decisions, receipts, strict=False):
            if r.duplicate:
                continue
            self.decisions += 1
            sd = stream_decision(d, r.index)
            if sd is not None:
                out.append(sd)
        return out

    def open(self, pipeline: str) -> dict[str, int]:
        # Rebuild the rules' windows and bans from the record: every event the
        # ledger holds, in order. A decision derived here that the ledger lacks
        # (the process died between the two commits) is recorded now.
        if self._warm:  # the engine runs the pipeline again after a connector failure
            return self.stored_positions() or {}
        self._warm = True
        missed = []
        for i in range(self.ledger.size):
            ev = self.ledger.get(i).event
            if not ev.kind.startswith("decision."):
                missed += self.blocker.observe(ev)
        made = self._record(missed)
        if made and self.on_decisions is not None:
            self.on_decisions(made)
        return self.stored_positions() or {}

    def stored_positions(self) -> dict[str, int] | None:
        try:
            doc = json.loads(self.positions.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise PlatformError(f"{self.positions}: bad stored positions: {exc}") from None
        return {str(k): int(v) for k, v in doc.items()}

    def write(self, batch: Batch[LedgerEvent]) -> None:
        with self._lock:
            items = batch.items + [_dead_letter_event(d) for d in batch.dead]
            receipts = self.ledger.append_batch(items)
            decisions = []
            for ev, r in zip(items, receipts, strict=True):
                if r.duplicate:
                    self.duplicates += 1
                    continue  # observed when it was first recorded (or at open)
                self.appended += 1
                decisions += self.blocker.observe(ev)
            made = self._record(decisions)
            if batch.positions:
                tmp = self.positions.with_name(self.positions.name + ".tmp")
                with tmp.open("w") as f:
                    json.dump(batch.positions, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.positions)
        if made and self.on_decisions is not None:
            self.on_decisions(made)


def transport_pipeline(
    ledger: EmbeddedLedger,
    blocker: Autoblocker,
    *,
    bootstrap: str,
    dsn: str,
    positions: Path,
    topic: str = TOPIC,
    on_decisions: Callable[[list[StreamDecision]], None] | None = None,
    policy: Policy | None = None,
    stop_when_idle_s: float | None = None,
    batch_size: int = 512,
    linger_ms: float = 5.0,
    clock: Callable[[], float] | None = None,
) -> tuple[Pipeline[Any], LedgerSink]:
    """The platform's pipeline (see the module docstring) and its sink."""
    import time

    from tenfold.pipeline_engine import PostgresLookup

    source = KafkaSource(bootstrap, topic, stop_when_idle_s=stop_when_idle_s, commit=False)
    sink = LedgerSink(ledger, blocker, positions, on_decisions=on_decisions, policy=policy)
    lookup = PostgresLookup(dsn, ASSETS_TABLE, "address", ASSET_COLUMNS)
    stages: list[Stage[Any, Any]] = [
        SignalDecoder(blocker, clock or time.time),
        Enrich(lookup, lambda ev: ev.subject, _enriched, cache_size=10_000, name="assets"),
    ]
    pipeline = Pipeline(
        source,
        stages,
        sink,
        name="platform",
        batch_size=batch_size,
        linger_ms=linger_ms,
    )
    return pipeline, sink


def ensure_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> None:
    """Create ``topic`` (one partition: the signals keep their order) unless it exists."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    try:
        meta = admin.list_topics(timeout=timeout_s)
        if topic in meta.topics and meta.topics[topic].error is None:
            return
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[
            topic
        ].result(timeout=timeout_s)
    except KafkaException as exc:
        raise PlatformError(f"kafka {bootstrap}: cannot create topic {topic!r}: {exc}") from None


def produce(
    bootstrap: str, topic: str, messages: Sequence[bytes], *, timeout_s: float = 30.0
) -> int:
    """Send ``messages`` in order to partition 0 of ``topic``; returns the last offset written."""
    from confluent_kafka import KafkaException, Producer

    last = -1
    errors: list[str] = []

    def done(err: Any, msg: Any) -> None:
        nonlocal last
        if err is not None:
            errors.append(str(err))
        else:
            last = max(last, msg.offset())

    try:
        producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 1, "log_level": 3, "acks": "all"}
        )
        for m in messages:
            producer.produce(topic, m, partition=0, on_delivery=done)
        left = producer.flush(timeout_s)
    except (KafkaException, BufferError) as exc:
        raise PlatformError(f"kafka {bootstrap}: {exc}") from None
    if errors or left:
        raise PlatformError(
            f"kafka {bootstrap}: {left} messages not delivered"
            + (f" ({errors[0]})" if errors else "")
        )
    return last
