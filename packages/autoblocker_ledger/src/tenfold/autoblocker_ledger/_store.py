"""The embedded store: segment files with group commit, a SQLite index, snapshots.

On disk (one directory)::

    segments/00000000.seg ...  records  <u32 length><u32 crc32><entry bytes>
    index.sqlite               event id, time, subject, domain, kind per index
    head.json                  the latest signed tree head
    log.key / log.pub          the log's Ed25519 key (0600) and public key

Invariants:

* the segments are the truth; the SQLite index and the tree are rebuilt from
  them and cross-checked on open;
* an append is acknowledged only after its records are written *and* fsynced;
  concurrent appenders share one fsync (group commit);
* a failed write (disk full, quota, I/O error) truncates the segment back to
  where the batch began, so nothing half-written survives and the in-memory
  state is only advanced after the batch is durable;
* on open, a torn record at the very end of the last segment (a crash between
  write and fsync: never acknowledged) is cut off; a bad record anywhere else,
  a broken hash chain, or a root that disagrees with the signed head is
  :class:`CorruptStore`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import os
import sqlite3
import threading
import time
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from tenfold.autoblocker_ledger._events import GENESIS, Entry, SecurityEvent, decode_entry
from tenfold.autoblocker_ledger._index import (
    _ROW_CHUNK,
    _IndexRebuild,
    _Row,
    contiguous_rows,
    decode_rows,
    matching,
    open_index,
)
from tenfold.autoblocker_ledger._merkle import HASH_SIZE, MerkleTree, leaf_hash
from tenfold.autoblocker_ledger._reading import LogReader
from tenfold.autoblocker_ledger._segments import FULL_ERRNOS as _FULL_ERRNOS
from tenfold.autoblocker_ledger._segments import HEADER as _HEADER
from tenfold.autoblocker_ledger._segments import SEG_SHIFT as _SEG_SHIFT
from tenfold.autoblocker_ledger._segments import frame, iter_frames
from tenfold.autoblocker_ledger._segments import split_frames as _split_frames
from tenfold.autoblocker_ledger._signing import LogKey, SignedTreeHead
from tenfold.autoblocker_ledger._snapshot import recover_store, write_snapshot
from tenfold.autoblocker_ledger.errors import (
    CorruptStore,
    MalformedEvent,
    NoSuchStore,
    SignatureError,
    StoreError,
    StoreFull,
    StoreLocked,
)

__all__ = ["EmbeddedLedger", "Receipt", "events_from_lines", "frame", "iter_frames"]

_SEGMENT_BYTES = 64 << 20
MIN_SEGMENT_BYTES = 4096
_LOCK_FILE = "lock"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an append returns: the entry's index and leaf hash, and whether it was already there."""

    index: int
    event_id: str
    leaf: bytes
    duplicate: bool = False


@dataclass
class _Slot:
    events: Sequence[SecurityEvent]
    receipts: list[Receipt] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class EmbeddedLedger(LogReader):
    """A single-node, durable, tamper-evident event log.

    Thread-safe: any number of threads may :meth:`append` at once; their records
    share one write and one fsync (group commit).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        key: LogKey | None = None,
        segment_bytes: int = _SEGMENT_BYTES,
        fsync: bool = True,
        create: bool = True,
    ) -> None:
        """Open (or, with ``create``, make) the store in directory ``path``.

        One handle per store at a time: an OS lock (``flock`` on ``path/lock``)
        is held until :meth:`close`, and a second opener, in this process or
        another, gets :class:`StoreLocked` naming the holder's pid. With
        ``create=False`` a directory without a store is :class:`NoSuchStore` and
        nothing is created.
        """
        if (
            isinstance(segment_bytes, bool)
            or not isinstance(segment_bytes, int)
            or segment_bytes < MIN_SEGMENT_BYTES
        ):
            raise StoreError(
                f"segment_bytes must be an integer of at least {MIN_SEGMENT_BYTES}, "
                f"got {segment_bytes!r}"
            )
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock_fd = -1
        self._seg_fd = -1
        self._readers: dict[int, int] = {}
        if not create and not (self.path / "segments").is_dir():
            raise NoSuchStore(f"{self.path}: no ledger store here (reads never create one)")
        try:
            (self.path / "segments").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store at {self.path}: {exc.strerror}") from None
        self._lock_fd = self._take_lock()
        try:
            self._open(key)
        except BaseException:
            self._release()
            raise

    def _take_lock(self) -> int:
        """Hold ``flock(LOCK_EX)`` on the store's lock file; the pid inside names the holder."""
        lock_path = self.path / _LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreLocked(
                    f"{self.path}: store is in use by pid {holder} (one writer per store)"
                ) from None
            raise StoreError(f"cannot lock {lock_path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _release(self) -> None:
        if self._seg_fd >= 0:
            os.close(self._seg_fd)
            self._seg_fd = -1
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    def _open(self, key: LogKey | None) -> None:
        self.key = key or self._load_or_make_key()
        self.tree = MerkleTree()
        self._positions = array("Q")
        self._ids: dict[str, int] = {}
        self._head = GENESIS
        self._lock = threading.Lock()  # guards the files and in-memory state
        self._cv = threading.Condition(threading.Lock())  # guards the group-commit queue
        self._queue: list[_Slot] = []
        self._committing = False
        self._seg_no = 0
        self._seg_size = 0
        self._db = self._open_index()
        self._rows_from = self._contiguous_rows()
        # Opening allocates millions of small objects that all stay alive; the
        # cyclic GC would rescan them again and again (superlinear), so pause it.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        index = _IndexRebuild(self._db, self._rows_from, self.path)
        try:
            leaves = self._open_segments(index)
            self.tree.extend_hashes(leaves)
            self._ids = index.finish(len(leaves))
        except BaseException:
            index.abort()
            raise
        finally:
            if gc_was_enabled:
                gc.enable()
        self._check_signed_head()

    # -- opening ----------------------------------------------------------------
    def _load_or_make_key(self) -> LogKey:
        return LogKey.load_or_create(self.path)

    def _segment_path(self, n: int) -> Path:
        return self.path / "segments" / f"{n:08d}.seg"

    def _open_segments(self, index: _IndexRebuild) -> list[bytes]:
        """Read every segment, verify the chain, rebuild the positions; returns the leaf hashes."""
        seg_dir = self.path / "segments"
        numbers = sorted(int(p.stem) for p in seg_dir.glob("*.seg") if p.stem.isdigit())
        if numbers and numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise CorruptStore(f"{seg_dir}: segment files are not contiguous: {numbers}")
        prev = GENESIS
        all_leaves: list[bytes] = []
        positions = self._positions
        for i, n in enumerate(numbers):
            p = self._segment_path(n)
            buf = p.read_bytes()
            seg_base = n << _SEG_SHIFT
            # Hot path of every open and recovery, written as a few whole-segment
            # passes (split, checksum, hash, chain, rows) rather than one Python
            # loop body per record: same checks, far less interpreter overhead.
            offsets, datas, last_end = _split_frames(buf, where=str(p))
            # Rows go to the index thread first so that SQLite works while this
            # thread hashes; a chain failure below rolls the index back.
            first = len(all_leaves)
            skip = max(0, self._rows_from - first)
            for c in range(skip, len(datas), _ROW_CHUNK):
                index.put(self._rows(first + c, datas[c : c + _ROW_CHUNK]))
            leaves = [sha256(b"\x00" + d).digest() for d in datas]
            links = [d[:HASH_SIZE] for d in datas]
            expected = [prev, *leaves[:-1]] if datas else []
            if links != expected:
                k = next(k for k, (a, b) in enumerate(zip(links, expected, strict=True)) if a != b)
                raise CorruptStore(
                    f"{p}: entry {len(all_leaves) + k} breaks the hash chain (tampered or reordered)"
                )
            if leaves:
                prev = leaves[-1]
            positions.extend([seg_base | off for off in offsets])
            all_leaves += leaves
            if last_end != len(buf):
                if i != len(numbers) - 1:
                    raise CorruptStore(f"{p}: truncated record in a sealed segment")
                with open(p, "r+b") as fh:  # cut the unacknowledged torn tail
                    fh.truncate(last_end)
                    os.fsync(fh.fileno())
        self._head = prev
        self._seg_no = numbers[-1] if numbers else 0
        self._open_active(self._seg_no)
        return all_leaves

    def _open_active(self, n: int) -> None:
        if self._seg_fd >= 0:
            os.close(self._seg_fd)
        p = self._segment_path(n)
        self._seg_fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._seg_size = os.fstat(self._seg_fd).st_size
        self._seg_no = n

    def _open_index(self) -> sqlite3.Connection:
        return open_index(self.path)

    def _contiguous_rows(self) -> int:
        return contiguous_rows(self._db)

    def _check_signed_head(self) -> None:
        head_path = self.path / "head.json"
        if not head_path.exists():
            return
        try:
            sth = SignedTreeHead.from_dict(json.loads(head_path.read_text()))
            sth.verify(self.key.public_bytes)
        except (ValueError, SignatureError) as exc:
            raise CorruptStore(f"{head_path}: {exc}") from None
        except RecursionError:
            raise CorruptStore(f"{head_path}: nested too deeply to be a tree head") from None
        if sth.size > self.tree.size:
            raise CorruptStore(
                f"{self.path}: the signed head covers {sth.size} entries but only "
                f"{self.tree.size} are on disk (entries lost)"
            )
        if self.tree.root(sth.size) != sth.root:
            raise CorruptStore(
                f"{self.path}: the tree rebuilt from the segments disagrees with the signed "
                f"head at size {sth.size} (history rewritten)"
            )

    def _rows(self, first: int, datas: list[bytes]) -> list[_Row]:
        return decode_rows(first, datas, self.path)

    # -- appending ----------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.tree.size

    def append(self, event: SecurityEvent) -> Receipt:
        """Append one event durably (group-committed with concurrent callers)."""
        return self.append_batch([event])[0]

    def append_batch(self, events: Sequence[SecurityEvent]) -> list[Receipt]:
        """Append events durably, in order; an event id already in the log is not added again."""
        slot = _Slot(events)
        cv = self._cv
        with cv:
            self._queue.append(slot)
            while not slot.done:
                if self._committing:
                    cv.wait()
                    continue
                self._committing = True
                batch, self._queue = self._queue, []
                cv.release()
                try:
                    self._commit_slots(batch)
                finally:
                    cv.acquire()
                    self._committing = False
                    cv.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.receipts

    def _commit_slots(self, slots: list[_Slot]) -> None:
        events = [e for s in slots for e in s.events]
        try:
            receipts = self._commit(events)
        except BaseException as exc:
            for s in slots:
                s.error = exc
                s.done = True
            return
        pos = 0
        for s in slots:
            s.receipts = receipts[pos : pos + len(s.events)]
            pos += len(s.events)
            s.done = True

    def _commit(self, events: Sequence[SecurityEvent]) -> list[Receipt]:
        with self._lock:
            if self._seg_fd < 0:
                raise StoreError(f"store {self.path} is closed")
            receipts: list[Receipt] = []
            fresh: dict[str, int] = {}
            datas: list[bytes] = []
            leaves: list[bytes] = []
            rows: list[tuple[int, str, int, str, str, str]] = []
            prev = self._head
            base = self.tree.size
            for ev in events:
                eid = ev.event_id
                known = self._ids.get(eid, fresh.get(eid))
                if known is not None:
                    receipts.append(
                        Receipt(
                            known,
                            eid,
                            self.tree.leaf_hash_at(known) if known < base else leaves[known - base],
                            True,
                        )
                    )
                    continue
                data = prev + ev.canonical()
                prev = leaf_hash(data)
                index = base + len(datas)
                fresh[eid] = index
                datas.append(data)
                leaves.append(prev)
                rows.append((index, eid, ev.time_ms, ev.subject, ev.domain, ev.kind))
                receipts.append(Receipt(index, eid, prev))
            if not datas:
                return receipts
            frames = [frame(d) for d in datas]
            total = sum(len(f) for f in frames)
            if self._seg_size and self._seg_size + total > self.segment_bytes:
                self._open_active(self._seg_no + 1)
            start = self._seg_size
            self._write_durably(b"".join(frames), start)
            try:
                self._db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", rows)
                self._db.commit()
            except (sqlite3.Error, OverflowError, ValueError) as exc:
                # Events are range-checked when built; this is the last line of
                # defence: nothing of a batch the index refused stays on disk.
                self._db.rollback()
                self._truncate(start)
                if not isinstance(exc, sqlite3.Error):
                    raise MalformedEvent(f"{self.path}: index refused the batch: {exc}") from None
                if "full" in str(exc).lower():
                    raise StoreFull(f"{self.path}: index write refused, disk full: {exc}") from None
                raise StoreError(f"{self.path}: index write failed: {exc}") from None
            seg = self._seg_no << _SEG_SHIFT
            off = start
            for f, leaf in zip(frames, leaves, strict=True):
                self._positions.append(seg | off)
                off += len(f)
                self.tree.append_hash(leaf)
            self._seg_size = off
            self._ids.update(fresh)
            self._head = prev
            return receipts

    def _write_durably(self, buf: bytes, start: int) -> None:
        try:
            view = memoryview(buf)
            while view:
                n = os.write(self._seg_fd, view)
                view = view[n:]
            if self.fsync:
                os.fdatasync(self._seg_fd)
        except OSError as exc:
            self._truncate(start)
            if exc.errno in _FULL_ERRNOS:
                raise StoreFull(
                    f"{self.path}: disk full, append of {len(buf)} bytes refused "
                    "(nothing was written)"
                ) from None
            raise StoreError(f"{self.path}: write failed: {exc.strerror}") from None

    def _truncate(self, size: int) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self._seg_fd, size)
            os.fsync(self._seg_fd)

    # -- reading --------------------------------------------------------------------
    def _read_data(self, index: int) -> bytes:
        self._check_index(index)
        pos = self._positions[index]
        seg, off = pos >> _SEG_SHIFT, pos & ((1 << _SEG_SHIFT) - 1)
        fd = self._readers.get(seg)
        if fd is None:
            fd = os.open(self._segment_path(seg), os.O_RDONLY)
            self._readers[seg] = fd
        header = os.pread(fd, _HEADER.size, off)
        length, crc = _HEADER.unpack(header)
        data = os.pread(fd, length, off + _HEADER.size)
        if zlib.crc32(data) != crc:
            raise CorruptStore(f"{self._segment_path(seg)}: entry {index} fails its checksum")
        return data

    def _entry(self, index: int) -> Entry:
        data = self._read_data(index)
        entry = decode_entry(index, data)
        if entry.leaf != self.tree.leaf_hash_at(index):
            raise CorruptStore(f"entry {index} changed on disk since it was appended")
        return entry

    def _index_of(self, event_id: str) -> int | None:
        return self._ids.get(event_id)

    def _matching(
        self,
        since_ms: int | None,
        until_ms: int | None,
        subject: str | None,
        domain: str | None,
        limit: int,
    ) -> list[int]:
        with self._lock:
            return matching(
                self._db,
                since_ms=since_ms,
                until_ms=until_ms,
                subject=subject,
                domain=domain,
                limit=limit,
            )

    def raw_entries(self, start: int = 0, end: int | None = None) -> list[bytes]:
        stop = self.tree.size if end is None else end
        return [self._read_data(i) for i in range(start, stop)]

    # -- tree heads and proofs --------------------------------------------------------
    def tree_head(self) -> SignedTreeHead:
        """Sign the current tree head and persist it (a later open checks against it)."""
        with self._lock:
            sth = self.key.sign_tree_head(self.tree.size, self.tree.root(), int(time.time() * 1000))
            tmp = self.path / "head.json.tmp"
            tmp.write_text(sth.to_json())
            os.replace(tmp, self.path / "head.json")
            return sth

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return self.tree.consistency_proof(size1, size2)

    # -- snapshots ---------------------------------------------------------------------
    def snapshot(self, dest: Path | str) -> SignedTreeHead:
        """Write a self-contained snapshot: a signed head, every record, and the signed index.

        Appends wait while the files are copied, so the snapshot is one
        consistent prefix of the log; the copy is fsynced before it is renamed
        into place (see :mod:`tenfold.autoblocker_ledger._snapshot`).
        """
        return write_snapshot(self, dest)

    def _first_segment(self) -> int:
        numbers = sorted(
            int(p.stem) for p in (self.path / "segments").glob("*.seg") if p.stem.isdigit()
        )
        return numbers[0] if numbers else 0

    @classmethod
    def recover(
        cls,
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
        return recover_store(cls, snapshot, path, trusted_key=trusted_key, key=key)

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._release()

    def __enter__(self) -> EmbeddedLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def disk_bytes(self) -> int:
        """Bytes the store occupies (segments, index, head), after folding the SQLite WAL in."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def events_from_lines(lines: Iterable[str]) -> Iterator[SecurityEvent]:
    """Parse JSON-lines events; raises :class:`MalformedEvent` naming the line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield SecurityEvent.from_json(line)
        except MalformedEvent as exc:
            raise MalformedEvent(f"line {n}: {exc}") from None
