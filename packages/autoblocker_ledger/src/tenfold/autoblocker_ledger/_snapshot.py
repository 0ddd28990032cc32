"""Snapshots: one signed, self-contained file of the log, and recovery from it.

Layout: magic, header length, JSON header (signed tree head, public key, byte
counts, the index's BLAKE3 digest and the log key's signature over size, root
and that digest), the records, then the SQLite index file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from tenfold.autoblocker_ledger._segments import FULL_ERRNOS as _FULL_ERRNOS
from tenfold.autoblocker_ledger._segments import copy_range as _copy_range
from tenfold.autoblocker_ledger._signing import LogKey, SignedTreeHead, verify_index_signature
from tenfold.autoblocker_ledger.errors import ChainError, CorruptStore, StoreError, StoreFull
from tenfold.core.crypto import blake3

if TYPE_CHECKING:
    from tenfold.autoblocker_ledger._store import EmbeddedLedger

SNAPSHOT_MAGIC = b"TFLSNAP1"  # signed head + records (the index is rebuilt on recovery)
SNAPSHOT_MAGIC_V2 = b"TFLSNAP2"  # ... + the SQLite index with a signed BLAKE3 digest
_SNAPSHOT_MAGIC = SNAPSHOT_MAGIC
_SNAPSHOT_MAGIC_V2 = SNAPSHOT_MAGIC_V2
_SEGMENT_BYTES = 64 << 20


def write_snapshot(led: EmbeddedLedger, dest: Path | str) -> SignedTreeHead:
    """Write a self-contained snapshot: a signed head, every record, and the signed index.

    Layout: magic, header length, JSON header (signed tree head, public key,
    byte counts, the index's BLAKE3 digest and the log key's signature over
    size, root and that digest), the records, then the SQLite index file.
    Appends wait while the files are copied, so the snapshot is one
    consistent prefix of the log; the copy is fsynced before it is renamed
    into place.
    """
    dest = Path(dest)
    sth = led.tree_head()
    with led._lock:
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            led._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file
            index = (led.path / "index.sqlite").read_bytes()
            digest = blake3(index)
            segments = [
                (led._segment_path(n), led._seg_size if n == led._seg_no else None)
                for n in range(led._first_segment(), led._seg_no + 1)
            ]
            records = sum(size if size is not None else p.stat().st_size for p, size in segments)
            header = json.dumps(
                {
                    "sth": sth.to_dict(),
                    "public_key": led.key.public_bytes.hex(),
                    "records_bytes": records,
                    "index": {
                        "bytes": len(index),
                        "blake3": digest.hex(),
                        "signature": led.key.sign_index(sth.size, sth.root, digest).hex(),
                    },
                }
            ).encode()
            with open(tmp, "wb") as out:
                out.write(_SNAPSHOT_MAGIC_V2 + struct.pack("<I", len(header)) + header)
                out.flush()
                for p, size in segments:
                    with open(p, "rb") as src:
                        length = size if size is not None else os.fstat(src.fileno()).st_size
                        _copy_range(src.fileno(), out.fileno(), 0, length)
                out.seek(0, os.SEEK_END)
                out.write(index)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except sqlite3.Error as exc:
            raise StoreError(f"{led.path}: cannot checkpoint the index: {exc}") from None
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno in _FULL_ERRNOS:
                raise StoreFull(f"{dest}: disk full while writing the snapshot") from None
            raise StoreError(f"{dest}: snapshot failed: {exc.strerror}") from None
    return sth


def recover_store(
    cls: type[EmbeddedLedger],
    snapshot: Path | str,
    path: Path | str,
    *,
    trusted_key: bytes | None = None,
    key: LogKey | None = None,
) -> EmbeddedLedger:
    """Rebuild a store in ``path`` from a snapshot, re-verifying everything.

    The snapshot's head must be signed by ``trusted_key`` (default: the key it
    names), every record must pass its checksum and the hash chain, and the
    rebuilt tree's root must equal the signed root; otherwise nothing is
    written and :class:`CorruptStore` or :class:`SignatureError` is raised.
    """
    snap = Path(snapshot)
    try:
        with open(snap, "rb") as fh:
            lead = fh.read(12)
            if lead[:8] not in (_SNAPSHOT_MAGIC, _SNAPSHOT_MAGIC_V2) or len(lead) < 12:
                raise CorruptStore(f"{snap}: not a ledger snapshot")
            (hlen,) = struct.unpack_from("<I", lead, 8)
            raw_header = fh.read(hlen)
            after_header = os.fstat(fh.fileno()).st_size - 12 - len(raw_header)
    except OSError as exc:
        raise StoreError(f"cannot read snapshot {snap}: {exc.strerror}") from None
    try:
        header = json.loads(raw_header)
        sth = SignedTreeHead.from_dict(header["sth"])
        public = bytes.fromhex(header["public_key"])
        index_meta = header.get("index") if lead[:8] == _SNAPSHOT_MAGIC_V2 else None
        body_bytes = int(header["records_bytes"]) if index_meta else after_header
        index_bytes = int(index_meta["bytes"]) if index_meta else 0
        index_digest = bytes.fromhex(index_meta["blake3"]) if index_meta else b""
        index_sig = bytes.fromhex(index_meta["signature"]) if index_meta else b""
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptStore(f"{snap}: malformed snapshot header: {exc}") from None
    except RecursionError:
        raise CorruptStore(f"{snap}: malformed snapshot header: nested too deeply") from None
    if body_bytes < 0 or body_bytes + index_bytes != after_header:
        raise CorruptStore(f"{snap}: the snapshot is truncated or has trailing bytes")
    signer = trusted_key if trusted_key is not None else public
    sth.verify(signer)
    if index_meta:
        verify_index_signature(signer, sth.size, sth.root, index_digest, index_sig)
    dest = Path(path)
    if (dest / "segments").exists() and any((dest / "segments").iterdir()):
        raise StoreError(f"{dest}: recovery target is not empty")
    (dest / "segments").mkdir(parents=True, exist_ok=True)
    records_at = 12 + len(raw_header)
    try:
        # The records are copied file to file by the kernel; opening the
        # store below reads and verifies them once.
        with open(snap, "rb") as src, open(dest / "segments" / f"{0:08d}.seg", "wb") as out:
            _copy_range(src.fileno(), out.fileno(), records_at, body_bytes)
            os.fsync(out.fileno())
            if index_meta:
                # The index is derived data: instead of rebuilding it row by row,
                # take the one the log key vouched for, checked by its digest.
                index = os.pread(src.fileno(), index_bytes, records_at + body_bytes)
                if len(index) != index_bytes or blake3(index) != index_digest:
                    raise CorruptStore(f"{snap}: the index does not match its signed digest")
                with open(dest / "index.sqlite", "wb") as idx_out:
                    idx_out.write(index)
                    os.fsync(idx_out.fileno())
    except CorruptStore:
        _discard(dest)
        raise
    except OSError as exc:
        raise StoreError(f"{dest}: cannot write the recovered segment: {exc.strerror}") from None
    if key is None:
        src_key = snap.with_name("log.key")
        key = LogKey.load(src_key) if src_key.exists() else None
    if key is not None:
        key.save(dest / "log.key")
        (dest / "log.pub").write_text(key.public_bytes.hex() + "\n")
    # Opening re-walks the chain and rebuilds the tree from the records; the
    # result must reproduce the signed head exactly, or the copy is discarded.
    try:
        ledger = cls(dest, key=key, segment_bytes=max(_SEGMENT_BYTES, body_bytes + 1))
    except (CorruptStore, ChainError):
        _discard(dest)
        raise
    if ledger.size != sth.size or ledger.tree.root() != sth.root:
        got = ledger.size
        ledger.close()
        _discard(dest)
        raise CorruptStore(
            f"{snap}: {got} records rebuild a tree that does not match the signed head "
            f"(size {sth.size})"
        )
    return ledger


def _discard(dest: Path) -> None:
    """Remove a half-recovered store (only the files recovery itself creates)."""
    for p in sorted(dest.rglob("*"), reverse=True):
        with contextlib.suppress(OSError):
            p.rmdir() if p.is_dir() else p.unlink()
