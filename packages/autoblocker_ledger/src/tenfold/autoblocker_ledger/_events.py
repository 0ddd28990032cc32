"""Typed security events and the hash-chained entries the log is made of.

An entry's bytes (the Merkle leaf data) are ``prev || canonical_json(event)``
where ``prev`` is the 32-byte leaf hash of the entry before it (32 zero bytes for
the first). Changing, dropping or reordering any entry breaks the chain at the
next entry *and* changes the tree root, so both the chain walk and the inclusion
proofs catch it. The JSON is canonical (sorted keys, no spaces, UTF-8) so the
same event always hashes the same.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tenfold.autoblocker_ledger._merkle import HASH_SIZE, leaf_hash
from tenfold.autoblocker_ledger.errors import ChainError, MalformedEvent

GENESIS = bytes(HASH_SIZE)

Evidence = Mapping[str, "str | int | float | bool"]

_NAME = re.compile(r"^[A-Za-z0-9_.:/@\-\[\]]{1,128}$")
_MAX_EVIDENCE = 64
_MAX_TEXT = 4096
_MAX_KEY = 128
# Integers are stored in the SQLite index (time_ms) and round-trip through JSON:
# both must fit a signed 64-bit integer, or one event would poison the store.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_SHOWN = 60  # characters of a bad value quoted in an error message
# Canonical form: UTF-8 JSON, keys sorted, no whitespace (msgspec: ~10x faster than json).
_ENCODE = msgspec.json.Encoder(order="sorted").encode
_DECODE = msgspec.json.decode
_FIELDS = ("event_id", "domain", "kind", "subject", "time_ms", "evidence")


def shown(value: object) -> str:
    """``repr(value)`` cut to a few dozen characters: bad input is named, never echoed whole."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"


def _utf8(name: str, value: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise MalformedEvent(
            f"event field {name!r} is not valid Unicode (lone surrogate), got {shown(value)}"
        ) from None


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """A detection from one domain: who (``subject``) did what (``kind``), when, and why.

    ``event_id`` is the submitter's idempotency key: the log holds each id once.
    ``time_ms`` is the submitter's clock (Unix ms); the log's order comes from
    the ledger, not from this field, so a clock jump never reorders entries.
    """

    event_id: str
    domain: str
    kind: str
    subject: str
    time_ms: int
    evidence: Evidence = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every field is checked here, before anything is written: a value the
        # segment, the SQLite index or the canonical JSON cannot hold is refused.
        for name in ("event_id", "domain", "kind"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NAME.match(value):
                raise MalformedEvent(
                    f"event field {name!r} must be 1-128 characters of [A-Za-z0-9_.:/@-], "
                    f"got {shown(value)}"
                )
        if not isinstance(self.subject, str) or not 0 < len(self.subject) <= 256:
            raise MalformedEvent(
                f"event field 'subject' must be 1-256 characters, got {shown(self.subject)}"
            )
        _utf8("subject", self.subject)
        if (
            isinstance(self.time_ms, bool)
            or not isinstance(self.time_ms, int)
            or not 0 <= self.time_ms <= INT64_MAX
        ):
            raise MalformedEvent(
                f"event field 'time_ms' must be an integer in 0..{INT64_MAX}, "
                f"got {shown(self.time_ms)}"
            )
        if not isinstance(self.evidence, Mapping) or len(self.evidence) > _MAX_EVIDENCE:
            raise MalformedEvent(
                f"event evidence must be a mapping of at most {_MAX_EVIDENCE} items"
            )
        for key, value in self.evidence.items():
            if not isinstance(key, str) or not 0 < len(key) <= _MAX_KEY:
                raise MalformedEvent(
                    f"evidence keys must be strings of 1-{_MAX_KEY} characters, got {shown(key)}"
                )
            _utf8("evidence key", key)
            if isinstance(value, str):
                if len(value) > _MAX_TEXT:
                    raise MalformedEvent(
                        f"evidence {shown(key)} is longer than {_MAX_TEXT} characters"
                    )
                _utf8(f"evidence {key}", value)
            elif isinstance(value, bool):
                continue
            elif isinstance(value, int):
                if not INT64_MIN <= value <= INT64_MAX:
                    raise MalformedEvent(
                        f"evidence {shown(key)} must fit a signed 64-bit integer, got {shown(value)}"
                    )
            elif not isinstance(value, float) or not math.isfinite(value):
                raise MalformedEvent(
                    f"evidence {shown(key)} must be a string, number or boolean, got {shown(value)}"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "domain": self.domain,
            "kind": self.kind,
            "subject": self.subject,
            "time_ms": self.time_ms,
            "evidence": dict(self.evidence),
        }

    def canonical(self) -> bytes:
        """The canonical JSON bytes that the log hashes."""
        return _ENCODE(self.to_dict())

    @classmethod
    def from_dict(cls, raw: object) -> SecurityEvent:
        """Build an event from decoded JSON; raises :class:`MalformedEvent` naming the problem."""
        if not isinstance(raw, dict):
            raise MalformedEvent(f"an event is a JSON object, got {type(raw).__name__}")
        unknown = sorted(str(k) for k in set(raw) - set(_FIELDS))
        if unknown:
            raise MalformedEvent(f"unknown event field {shown(unknown[0])}")
        missing = [f for f in _FIELDS[:5] if f not in raw]
        if missing:
            raise MalformedEvent(f"event is missing field {missing[0]!r}")
        try:
            return cls(
                event_id=raw["event_id"],
                domain=raw["domain"],
                kind=raw["kind"],
                subject=raw["subject"],
                time_ms=raw["time_ms"],
                evidence=raw.get("evidence", {}),
            )
        except TypeError as exc:  # pragma: no cover - dataclass arity
            raise MalformedEvent(str(exc)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> SecurityEvent:
        try:
            raw = _DECODE(text)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"event is not valid JSON: {exc}") from None
        except RecursionError:
            raise MalformedEvent("event is not valid JSON: nested too deeply") from None
        return cls.from_dict(raw)


@dataclass(frozen=True, slots=True)
class Entry:
    """One position of the log: the event, the link to its predecessor, and its leaf hash."""

    index: int
    prev: bytes
    event: SecurityEvent
    leaf: bytes

    @property
    def data(self) -> bytes:
        return self.prev + self.event.canonical()


def encode_entry(prev: bytes, event: SecurityEvent) -> bytes:
    """The leaf data of an entry: predecessor's leaf hash then the canonical event."""
    return prev + event.canonical()


def decode_entry(index: int, data: bytes) -> Entry:
    """Parse leaf data back into an :class:`Entry` (raises :class:`MalformedEvent`)."""
    if len(data) <= HASH_SIZE:
        raise MalformedEvent(f"entry {index} is {len(data)} bytes, too short")
    event = SecurityEvent.from_json(data[HASH_SIZE:])
    return Entry(index=index, prev=data[:HASH_SIZE], event=event, leaf=leaf_hash(data))


def verify_chain(
    datas: list[bytes], *, start_prev: bytes = GENESIS, start_index: int = 0
) -> list[bytes]:
    """Walk the hash chain over raw entries; returns their leaf hashes.

    Raises :class:`ChainError` at the first entry whose ``prev`` is not the leaf
    hash of the entry before it.
    """
    prev = start_prev
    leaves: list[bytes] = []
    for offset, data in enumerate(datas):
        if data[:HASH_SIZE] != prev:
            raise ChainError(
                f"entry {start_index + offset}: hash chain broken "
                f"(links to {data[:HASH_SIZE].hex()[:16]}..., predecessor is {prev.hex()[:16]}...)"
            )
        prev = leaf_hash(data)
        leaves.append(prev)
    return leaves
