"""The measured-boot event log (TCG PC Client Platform Firmware Profile, crypto-agile format).

Layout (little-endian): one SHA-1 ``TCG_PCClientPCREvent`` whose data is the
``Spec ID Event03`` header listing every bank and its digest size, then any
number of ``TCG_PCR_EVENT2`` records: pcrIndex, eventType, a digest per bank,
and the event data. Replaying the log extends each digest into a zeroed PCR
(``new = H(old || digest)``); ``EV_NO_ACTION`` records are never extended, but a
``StartupLocality`` one sets PCR 0's starting value to the locality (section 10.4.5.3).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tenfold.attestation_authority._structs import DIGEST_SIZES, PCR_COUNT, hash_name
from tenfold.attestation_authority.errors import MalformedStructure

EV_NO_ACTION = 0x00000003
EV_POST_CODE = 0x00000001
EV_SEPARATOR = 0x00000004
SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"
MAX_EVENT_BYTES = 1 << 20  # one event's data; real logs hold at most a few KiB per event


@dataclass(frozen=True, slots=True)
class Event:
    """One ``TCG_PCR_EVENT2``: the PCR it extends, its type, a digest per bank, its data."""

    pcr: int
    type: int
    digests: Mapping[int, bytes]
    data: bytes = b""


def _read(buf: bytes, offset: int, size: int, field: str) -> int:
    if size < 0 or offset + size > len(buf):
        raise MalformedStructure(f"event log truncated at {field} (offset {offset})")
    return offset + size


def parse_event_log(buf: bytes) -> tuple[dict[int, int], list[Event]]:
    """Parse a crypto-agile log: (bank -> digest size, events in order)."""
    end = _read(buf, 0, 32, "header")
    pcr, typ = struct.unpack_from("<II", buf, 0)
    (size,) = struct.unpack_from("<I", buf, 28)
    start = end
    end = _read(buf, start, size, "Spec ID event")
    spec = buf[start:end]
    if typ != EV_NO_ACTION or pcr != 0 or not spec.startswith(SPEC_ID_SIGNATURE) or len(spec) < 28:
        raise MalformedStructure("event log does not start with a Spec ID Event03 header")
    (count,) = struct.unpack_from("<I", spec, 24)
    if 28 + 4 * count > len(spec):
        raise MalformedStructure(f"Spec ID event lists {count} banks but is {len(spec)} bytes")
    sizes: dict[int, int] = {}
    for i in range(count):
        alg, digest_size = struct.unpack_from("<HH", spec, 28 + 4 * i)
        sizes[alg] = digest_size
    events: list[Event] = []
    offset = end
    while offset < len(buf):
        at = offset
        offset = _read(buf, offset, 12, f"event {len(events)} header")
        pcr, typ, n = struct.unpack_from("<III", buf, at)
        if pcr >= PCR_COUNT:
            raise MalformedStructure(f"event {len(events)} names PCR {pcr}")
        if n > len(sizes):
            raise MalformedStructure(
                f"event {len(events)} has {n} digests, header lists {len(sizes)}"
            )
        digests: dict[int, bytes] = {}
        for _ in range(n):
            offset = _read(buf, offset, 2, f"event {len(events)} digest algorithm")
            (alg,) = struct.unpack_from("<H", buf, offset - 2)
            if alg not in sizes:
                raise MalformedStructure(f"event {len(events)} uses bank 0x{alg:04x} not in header")
            start = offset
            offset = _read(buf, offset, sizes[alg], f"event {len(events)} digest")
            digests[alg] = buf[start:offset]
        offset = _read(buf, offset, 4, f"event {len(events)} size")
        (size,) = struct.unpack_from("<I", buf, offset - 4)
        if size > MAX_EVENT_BYTES:
            raise MalformedStructure(f"event {len(events)} data of {size} bytes is oversized")
        start = offset
        offset = _read(buf, offset, size, f"event {len(events)} data")
        events.append(Event(pcr, typ, digests, buf[start:offset]))
    return sizes, events


def encode_event_log(banks: Sequence[int], events: Iterable[Event]) -> bytes:
    """Write a crypto-agile event log for ``banks`` (the inverse of :func:`parse_event_log`)."""
    spec = bytearray(SPEC_ID_SIGNATURE)
    spec += struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks))
    for bank in banks:
        spec += struct.pack("<HH", bank, DIGEST_SIZES[bank])
    spec += b"\x00"  # vendorInfoSize
    out = bytearray(struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)))
    out += spec
    for event in events:
        out += struct.pack("<III", event.pcr, event.type, len(event.digests))
        for alg, digest in event.digests.items():
            out += struct.pack("<H", alg) + digest
        out += struct.pack("<I", len(event.data)) + event.data
    return bytes(out)


def replay(events: Iterable[Event], bank: int) -> dict[int, bytes]:
    """PCR values (index -> digest) that extending the log's ``bank`` digests produces."""
    name = hash_name(bank)
    size = DIGEST_SIZES[bank]
    pcrs: dict[int, bytes] = {}
    for event in events:
        if event.type == EV_NO_ACTION:
            if event.pcr == 0 and event.data.startswith(STARTUP_LOCALITY_SIGNATURE):
                locality = event.data[len(STARTUP_LOCALITY_SIGNATURE) :][:1] or b"\x00"
                pcrs[0] = bytes(size - 1) + locality
            continue
        digest = event.digests.get(bank)
        if digest is None:
            raise MalformedStructure(f"event for PCR {event.pcr} has no {name} digest")
        old = pcrs.get(event.pcr, bytes(size))
        pcrs[event.pcr] = hashlib.new(name, old + digest).digest()
    return pcrs


def measure(data: bytes, banks: Sequence[int], pcr: int, event_type: int = EV_POST_CODE) -> Event:
    """An event recording ``data`` hashed in every bank (what firmware does before extending)."""
    return Event(
        pcr, event_type, {b: hashlib.new(hash_name(b), data).digest() for b in banks}, data
    )


replay_event_log = replay
"""The public name of :func:`replay` (``tenfold.attestation_authority.replay_event_log``)."""
