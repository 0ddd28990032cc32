"""The embedded store: durability, idempotency, tamper evidence, snapshots, disk full."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.autoblocker_ledger._events import SecurityEvent, verify_chain
from tenfold.autoblocker_ledger._merkle import verify_consistency, verify_inclusion
from tenfold.autoblocker_ledger._signing import LogKey
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.autoblocker_ledger.errors import (
    ChainError,
    CorruptStore,
    MalformedEvent,
    SignatureError,
    StoreFull,
)
from tenfold.core.crypto import blake3


def _event(i: int, *, subject: str | None = None, t: int | None = None) -> SecurityEvent:
    return SecurityEvent(
        event_id=f"ev-{i}",
        domain=("network", "auth", "cloud")[i % 3],
        kind="ssh_failed_login",
        subject=subject or f"10.0.0.{i % 5}",
        time_ms=1_700_000_000_000 + i * 1000 if t is None else t,
        evidence={"line": f"Failed password for root from 10.0.0.{i % 5}", "port": 22},
    )


def test_append_get_range_and_proofs(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        receipts = led.append_batch([_event(i) for i in range(30)])
        assert [r.index for r in receipts] == list(range(30))
        assert led.get(7).event == _event(7)
        assert [e.index for e in led.range(subject="10.0.0.2")] == [2, 7, 12, 17, 22, 27]
        assert {e.event.domain for e in led.range(domain="auth")} == {"auth"}
        window = led.range(since_ms=1_700_000_005_000, until_ms=1_700_000_008_000)
        assert [e.index for e in window] == [5, 6, 7]
        sth = led.tree_head()
        sth.verify(led.key.public_bytes)
        verify_inclusion(led.get(11).leaf, 11, sth.size, led.inclusion_proof(11), sth.root)
        old_root = led.tree.root(10)
        verify_consistency(10, 30, led.consistency_proof(10), old_root, sth.root)


def test_duplicate_submissions_are_idempotent(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        first = led.append_batch([_event(i) for i in range(5)])
        again = led.append_batch([_event(3), _event(5), _event(5)])
        assert again[0].duplicate and again[0].index == 3 and again[0].leaf == first[3].leaf
        assert not again[1].duplicate and again[1].index == 5
        assert again[2].duplicate and again[2].index == 5
        assert led.size == 6


def test_clock_jump_does_not_reorder_the_log(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append(_event(0, t=2_000_000_000_000))
        led.append(_event(1, t=1_000))  # the submitter's clock jumped back
        assert [e.index for e in led.entries()] == [0, 1]
        assert [e.index for e in led.range(until_ms=5_000)] == [1]


def test_concurrent_appends_share_group_commits(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:

        def worker(k: int) -> None:
            for i in range(50):
                led.append(_event(k * 1000 + i))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert led.size == 400
        verify_chain(led.raw_entries())
    with EmbeddedLedger(tmp_path / "s") as again:
        assert again.size == 400


def test_reopen_rebuilds_the_same_tree(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s", segment_bytes=4096) as led:
        for start in range(0, 100, 10):  # a batch never straddles segments
            led.append_batch([_event(i) for i in range(start, start + 10)])
        sth = led.tree_head()
    assert len(list((tmp_path / "s" / "segments").iterdir())) > 1
    with EmbeddedLedger(tmp_path / "s") as led:
        assert led.size == 100 and led.tree.root() == sth.root
        assert led.get_by_id("ev-42") is not None and led.get_by_id("ev-42").index == 42  # type: ignore[union-attr]


def test_torn_tail_is_cut_and_the_index_follows(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append_batch([_event(i) for i in range(10)])
    seg = tmp_path / "s" / "segments" / "00000000.seg"
    with open(seg, "ab") as fh:
        fh.write(b"\x40\x00\x00\x00garbage")  # a crash mid-append: never acknowledged
    with EmbeddedLedger(tmp_path / "s") as led:
        assert led.size == 10
        led.append(_event(10))
        assert led.get(10).event.event_id == "ev-10"


def test_tampered_entry_is_detected(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append_batch([_event(i) for i in range(10)])
        led.tree_head()
    seg = tmp_path / "s" / "segments" / "00000000.seg"
    raw = seg.read_bytes()
    forged = raw.replace(b"10.0.0.3", b"10.0.0.9", 1)
    seg.write_bytes(forged)
    with pytest.raises(CorruptStore, match="checksum"):
        EmbeddedLedger(tmp_path / "s")


def test_rewritten_history_is_detected_by_the_signed_head(tmp_path: Path) -> None:
    key = LogKey.generate()
    with EmbeddedLedger(tmp_path / "s", key=key) as led:
        led.append_batch([_event(i) for i in range(10)])
        led.tree_head()
    # An attacker with write access rebuilds a consistent chain with one event changed.
    forged_dir = tmp_path / "forged"
    with EmbeddedLedger(forged_dir, key=LogKey.generate()) as forged:
        forged.append_batch([_event(i, subject="1.2.3.4" if i == 4 else None) for i in range(10)])
    for seg in (forged_dir / "segments").iterdir():
        (tmp_path / "s" / "segments" / seg.name).write_bytes(seg.read_bytes())
    (tmp_path / "s" / "index.sqlite").unlink()
    with pytest.raises(CorruptStore, match="history rewritten"):
        EmbeddedLedger(tmp_path / "s", key=key)


def test_snapshot_and_recover(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append_batch([_event(i) for i in range(200)])
        sth = led.snapshot(tmp_path / "snap.bin")
        public = led.key.public_bytes
    with EmbeddedLedger.recover(tmp_path / "snap.bin", tmp_path / "r", trusted_key=public) as rec:
        assert rec.size == 200 and rec.tree.root() == sth.root
        assert [e.index for e in rec.range(subject="10.0.0.1", limit=3)] == [1, 6, 11]
    with pytest.raises(SignatureError):
        EmbeddedLedger.recover(
            tmp_path / "snap.bin", tmp_path / "r2", trusted_key=LogKey.generate().public_bytes
        )


@pytest.mark.slow
def test_a_lagging_index_is_rebuilt_in_chunks_and_recovery_agrees(tmp_path: Path) -> None:
    """More missing rows than one hand-over chunk: the rebuilt index must equal the original."""
    n = 70_000
    with EmbeddedLedger(tmp_path / "s") as led:
        for start in range(0, n, 10_000):
            led.append_batch([_event(i) for i in range(start, start + 10_000)])
        root = led.tree.root()
        by_subject = [e.index for e in led.range(subject="10.0.0.3", limit=n)]
        window = [
            e.index for e in led.range(since_ms=1_700_030_000_000, until_ms=1_700_030_050_000)
        ]
        led.snapshot(tmp_path / "snap.bin")
        public = led.key.public_bytes
    # A crash after the segments' fsync but before the index commit: rows are missing.
    db = sqlite3.connect(tmp_path / "s" / "index.sqlite")
    db.execute("DELETE FROM events WHERE idx >= 1000")
    db.commit()
    db.close()
    reopened = EmbeddedLedger(tmp_path / "s")
    recovered = EmbeddedLedger.recover(tmp_path / "snap.bin", tmp_path / "r", trusted_key=public)
    for store in (reopened, recovered):
        with store:
            assert store.size == n and store.tree.root() == root
            assert [e.index for e in store.range(subject="10.0.0.3", limit=n)] == by_subject
            assert [
                e.index for e in store.range(since_ms=1_700_030_000_000, until_ms=1_700_030_050_000)
            ] == window
            again = store.append_batch([_event(12_345), _event(n)])
            assert again[0].duplicate and again[0].index == 12_345
            assert not again[1].duplicate and again[1].index == n


def test_recover_refuses_a_tampered_snapshot(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append_batch([_event(i) for i in range(50)])
        led.snapshot(tmp_path / "snap.bin")
    raw = (tmp_path / "snap.bin").read_bytes()
    cut = raw[: len(raw) - 200]  # drop the tail: fewer records than the signed head
    (tmp_path / "cut.bin").write_bytes(cut)
    with pytest.raises((CorruptStore, ChainError)):
        EmbeddedLedger.recover(tmp_path / "cut.bin", tmp_path / "r")
    assert not any((tmp_path / "r").rglob("*.seg"))


def _split_snapshot(raw: bytes) -> tuple[dict[str, object], bytes, bytes]:
    (hlen,) = struct.unpack_from("<I", raw, 8)
    header = json.loads(raw[12 : 12 + hlen])
    records = raw[12 + hlen : 12 + hlen + header["records_bytes"]]
    return header, records, raw[12 + hlen + header["records_bytes"] :]


def _join_snapshot(magic: bytes, header: dict[str, object], *parts: bytes) -> bytes:
    text = json.dumps(header).encode()
    return magic + struct.pack("<I", len(text)) + text + b"".join(parts)


def test_the_snapshot_index_is_taken_only_with_its_signed_digest(tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append_batch([_event(i) for i in range(300)])
        sth = led.snapshot(tmp_path / "snap.bin")
        public = led.key.public_bytes
    header, records, index = _split_snapshot((tmp_path / "snap.bin").read_bytes())
    assert index[:16] == b"SQLite format 3\x00"
    # A flipped byte in the index: the digest no longer matches.
    bad = bytearray(index)
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "flip.bin").write_bytes(_join_snapshot(b"TFLSNAP2", header, records, bytes(bad)))
    with pytest.raises(CorruptStore, match="digest"):
        EmbeddedLedger.recover(tmp_path / "flip.bin", tmp_path / "r1", trusted_key=public)
    assert not any((tmp_path / "r1").rglob("*.seg"))
    # An attacker who also recomputes the digest cannot sign it with the log's key.
    meta = dict(header["index"])  # type: ignore[call-overload]
    meta["blake3"] = blake3(bytes(bad)).hex()
    forged = {**header, "index": meta}
    (tmp_path / "forged.bin").write_bytes(_join_snapshot(b"TFLSNAP2", forged, records, bytes(bad)))
    with pytest.raises(SignatureError, match="index"):
        EmbeddedLedger.recover(tmp_path / "forged.bin", tmp_path / "r2", trusted_key=public)
    # A snapshot from before the index was included (records only) is still
    # recovered: the index is rebuilt from the records.
    old = {k: v for k, v in header.items() if k in ("sth", "public_key")}
    (tmp_path / "v1.bin").write_bytes(_join_snapshot(b"TFLSNAP1", old, records))
    for snap, where in (("snap.bin", "r3"), ("v1.bin", "r4")):
        with EmbeddedLedger.recover(tmp_path / snap, tmp_path / where, trusted_key=public) as rec:
            assert rec.size == 300 and rec.tree.root() == sth.root
            assert [e.index for e in rec.range(subject="10.0.0.2", limit=3)] == [2, 7, 12]
            assert rec.append_batch([_event(7)])[0].duplicate


@pytest.mark.root
def test_disk_full_is_refused_cleanly(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to fill needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tenfold-ledger-test", str(mnt)], check=True
    )
    try:
        led = EmbeddedLedger(mnt / "s")
        led.append_batch([_event(i) for i in range(20)])
        before = led.tree.root()
        big = [
            SecurityEvent(f"big-{i}", "network", "flood", "10.9.9.9", 1, {"blob": "x" * 4000})
            for i in range(200)
        ]
        with pytest.raises(StoreFull):
            for i in range(0, 200, 20):
                led.append_batch(big[i : i + 20])
        size = led.size
        assert led.tree.root(20) == before
        led.close()
        reopened = EmbeddedLedger(mnt / "s")
        assert reopened.size == size  # nothing half-written survived
        verify_chain(reopened.raw_entries())
        reopened.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.binary(max_size=60),
        st.dictionaries(
            st.text(max_size=8),
            st.one_of(st.none(), st.integers(), st.text(max_size=8)),
            max_size=7,
        ),
    )
)
def test_malformed_events_raise_only_malformed_event(raw: object) -> None:
    text = raw if isinstance(raw, (str, bytes)) else json.dumps(raw)
    try:
        event = SecurityEvent.from_json(text)
    except MalformedEvent as exc:
        assert str(exc)
    else:
        assert SecurityEvent.from_json(event.canonical()) == event


def test_malformed_event_messages_name_the_field() -> None:
    good = _event(1).to_dict()
    with pytest.raises(MalformedEvent, match="time_ms"):
        SecurityEvent.from_dict({**good, "time_ms": "soon"})
    with pytest.raises(MalformedEvent, match="unknown event field 'extra'"):
        SecurityEvent.from_dict({**good, "extra": 1})
    with pytest.raises(MalformedEvent, match="missing field 'subject'"):
        SecurityEvent.from_dict({k: v for k, v in good.items() if k != "subject"})
    with pytest.raises(MalformedEvent, match="evidence"):
        SecurityEvent.from_dict({**good, "evidence": {"x": [1]}})
