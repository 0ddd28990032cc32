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
import queue
import sqlite3
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

import msgspec

from tenfold.autoblocker_ledger._events import (
    GENESIS,
    Entry,
    SecurityEvent,
    decode_entry,
)
from tenfold.autoblocker_ledger._merkle import HASH_SIZE, MerkleTree, leaf_hash
from tenfold.autoblocker_ledger._signing import LogKey, SignedTreeHead, verify_index_signature
from tenfold.autoblocker_ledger.errors import (
    ChainError,
    CorruptStore,
    EntryOutOfRange,
    MalformedEvent,
    NoSuchStore,
    SignatureError,
    StoreError,
    StoreFull,
    StoreLocked,
)
from tenfold.core.crypto import blake3

_HEADER = struct.Struct("<II")
_SEGMENT_BYTES = 64 << 20
MIN_SEGMENT_BYTES = 4096
_LOCK_FILE = "lock"
_SNAPSHOT_MAGIC = b"TFLSNAP1"  # signed head + records (the index is rebuilt on recovery)
_SNAPSHOT_MAGIC_V2 = b"TFLSNAP2"  # ... + the SQLite index with a signed BLAKE3 digest
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_SEG_SHIFT = 40  # a position packs segment number << 40 | byte offset


class _IndexRow(msgspec.Struct):
    """The fields of an event the SQLite index keeps (evidence is skipped while decoding)."""

    event_id: str
    time_ms: int
    subject: str
    domain: str
    kind: str


_ROW_DECODER = msgspec.json.Decoder(_IndexRow)


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


def frame(data: bytes) -> bytes:
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


def iter_frames(buf: bytes | memoryview, *, where: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, data)`` for each framed record; stops at a torn tail.

    Raises :class:`CorruptStore` for a bad record that is followed by more data
    (corruption, not a crash mid-append); the caller decides what a torn tail means.
    """
    data_of = bytes(buf) if isinstance(buf, memoryview) else buf
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    pos = 0
    end = len(data_of)
    while end - pos >= _HEADER.size:
        length, crc = unpack(data_of, pos)
        start = pos + _HEADER.size
        stop = start + length
        if stop > end:
            return
        data = data_of[start:stop]
        if crc32(data) != crc:
            if stop >= end:
                return  # torn last record
            raise CorruptStore(f"{where}: record at byte {pos} fails its checksum")
        yield pos, data
        pos = stop


def _split_frames(buf: bytes, *, where: str) -> tuple[list[int], list[bytes], int]:
    """Offsets and payloads of every whole record, and where the last one ends.

    Checksums are compared in one pass after the split. A bad record followed
    by more data is corruption (:class:`CorruptStore`); a bad or short last
    record is a torn tail, left out.
    """
    unpack = _HEADER.unpack_from
    offsets: list[int] = []
    datas: list[bytes] = []
    crcs: list[int] = []
    pos = 0
    end = len(buf)
    while end - pos >= _HEADER.size:
        length, crc = unpack(buf, pos)
        stop = pos + _HEADER.size + length
        if stop > end:
            break
        offsets.append(pos)
        crcs.append(crc)
        datas.append(buf[pos + _HEADER.size : stop])
        pos = stop
    if list(map(zlib.crc32, datas)) != crcs:
        bad = next(k for k, d in enumerate(datas) if zlib.crc32(d) != crcs[k])
        if bad != len(datas) - 1 or pos != end:
            raise CorruptStore(f"{where}: record at byte {offsets[bad]} fails its checksum")
        pos = offsets.pop()  # torn last record
        datas.pop()
    return offsets, datas, pos


_Row = tuple[int, str, int, str, str, str]
_ROW_CHUNK = 65_536  # rows handed to the index thread at a time while a store opens


class _IndexRebuild:
    """Brings the SQLite index up to the segments while they are being verified.

    The opening thread decodes rows and hands them over in chunks; a worker
    thread inserts them (SQLite runs with the GIL released) and, for a bulk
    rebuild, builds the secondary indexes once at the end, while the opening
    thread goes on hashing. :meth:`finish` drops rows past the verified end,
    commits, and returns the event-id map; :meth:`abort` rolls everything back.
    """

    def __init__(self, db: sqlite3.Connection, rows_from: int, where: Path) -> None:
        self._db = db
        self._rows_from = rows_from
        self._where = where
        self._queue: queue.SimpleQueue[list[_Row] | None] = queue.SimpleQueue()
        self._size = -1  # set by finish(); -1 means abort
        self._ids: dict[str, int] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-index", daemon=True)
        self._thread.start()

    def put(self, rows: list[_Row]) -> None:
        self._queue.put(rows)

    def _run(self) -> None:
        db = self._db
        bulk: bool | None = None
        try:
            while (rows := self._queue.get()) is not None:
                if self._error is not None:
                    continue  # drain after a failure
                if bulk is None:
                    # Building secondary indexes once is much cheaper than row by row.
                    bulk = len(rows) > 10_000
                    if bulk:
                        for name in ("by_subject", "by_domain", "by_time"):
                            db.execute(f"DROP INDEX IF EXISTS {name}")
                db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?)", rows)
                self._ids.update({r[1]: r[0] for r in rows})
            if self._error is not None:
                return
            if self._size < 0:
                db.rollback()
                return
            db.execute("DELETE FROM events WHERE idx >= ?", (self._size,))
            if bulk:
                EmbeddedLedger._create_indexes(db)
            db.commit()
            kept = min(self._rows_from, self._size)
            if kept:  # ids of rows indexed before this open come from SQLite
                prefix = dict(db.execute("SELECT event_id, idx FROM events WHERE idx < ?", (kept,)))
                prefix.update(self._ids)
                self._ids = prefix
        except BaseException as exc:  # handed to the opening thread by finish()
            self._error = exc
            with contextlib.suppress(sqlite3.Error):
                db.rollback()

    def finish(self, size: int) -> dict[str, int]:
        self._size = size
        self._queue.put(None)
        self._thread.join()
        if isinstance(self._error, sqlite3.Error):
            raise StoreError(f"{self._where}: rebuilding the index failed: {self._error}")
        if self._error is not None:
            raise self._error
        if len(self._ids) != size:
            raise CorruptStore(f"{self._where}: the log holds a duplicated event id")
        return self._ids

    def abort(self) -> None:
        if self._thread.is_alive():
            self._size = -1
            self._queue.put(None)
            self._thread.join()


class EmbeddedLedger:
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
        key_path = self.path / "log.key"
        if key_path.exists():
            return LogKey.load(key_path)
        key = LogKey.generate()
        key.save(key_path)
        (self.path / "log.pub").write_text(key.public_bytes.hex() + "\n")
        return key

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
        try:
            db = sqlite3.connect(self.path / "index.sqlite", check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (idx INTEGER PRIMARY KEY, event_id TEXT NOT NULL,"
                " time_ms INTEGER NOT NULL, subject TEXT NOT NULL, domain TEXT NOT NULL,"
                " kind TEXT NOT NULL)"
            )
            self._create_indexes(db)
            db.commit()
        except sqlite3.DatabaseError as exc:
            raise CorruptStore(f"{self.path / 'index.sqlite'}: {exc}") from None
        return db

    @staticmethod
    def _create_indexes(db: sqlite3.Connection) -> None:
        db.execute("CREATE INDEX IF NOT EXISTS by_subject ON events(subject, idx)")
        db.execute("CREATE INDEX IF NOT EXISTS by_domain ON events(domain, idx)")
        db.execute("CREATE INDEX IF NOT EXISTS by_time ON events(time_ms)")

    def _contiguous_rows(self) -> int:
        """How many index rows (0..n-1) are present; a gappy index is rebuilt from scratch."""
        count, top = self._db.execute("SELECT count(*), max(idx) FROM events").fetchone()
        if count and top != count - 1:
            self._db.execute("DELETE FROM events")
            return 0
        return int(count)

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

    def _rows(self, first: int, datas: list[bytes]) -> list[tuple[int, str, int, str, str, str]]:
        """Index rows for consecutive entries already proven by the chain walk."""
        decode = _ROW_DECODER.decode
        try:
            decoded = [decode(d[HASH_SIZE:]) for d in datas]
        except msgspec.DecodeError:
            for k, d in enumerate(datas):  # find the culprit for the message
                self._row(first + k, d)
            raise
        return [
            (first + k, e.event_id, e.time_ms, e.subject, e.domain, e.kind)
            for k, e in enumerate(decoded)
        ]

    def _row(self, index: int, data: bytes) -> tuple[int, str, int, str, str, str]:
        """The index row of an entry already proven by the chain walk."""
        try:
            e = _ROW_DECODER.decode(data[HASH_SIZE:])
        except msgspec.DecodeError as exc:
            raise CorruptStore(f"{self.path}: entry {index} is not a valid event: {exc}") from None
        return (index, e.event_id, e.time_ms, e.subject, e.domain, e.kind)

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
        if isinstance(index, bool) or not isinstance(index, int):
            raise EntryOutOfRange(f"an entry index is an integer, got {type(index).__name__}")
        if not 0 <= index < self.tree.size:
            raise EntryOutOfRange(f"entry {index} outside a log of {self.tree.size} entries")
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

    def get(self, index: int) -> Entry:
        data = self._read_data(index)
        entry = decode_entry(index, data)
        if entry.leaf != self.tree.leaf_hash_at(index):
            raise CorruptStore(f"entry {index} changed on disk since it was appended")
        return entry

    def get_by_id(self, event_id: str) -> Entry | None:
        index = self._ids.get(event_id)
        return None if index is None else self.get(index)

    def range(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        subject: str | None = None,
        domain: str | None = None,
        limit: int = 1000,
    ) -> list[Entry]:
        """Entries matching every given filter (time window is [since, until)), in log order."""
        clauses: list[str] = []
        args: list[object] = []
        for column, op, value in (
            ("time_ms", ">=", since_ms),
            ("time_ms", "<", until_ms),
            ("subject", "=", subject),
            ("domain", "=", domain),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        args.append(limit)
        with self._lock:
            rows = self._db.execute(
                f"SELECT idx FROM events {where} ORDER BY idx LIMIT ?", args
            ).fetchall()
        return [self.get(r[0]) for r in rows]

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        stop = self.tree.size if end is None else end
        for i in range(start, stop):
            yield self.get(i)

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

        Layout: magic, header length, JSON header (signed tree head, public key,
        byte counts, the index's BLAKE3 digest and the log key's signature over
        size, root and that digest), the records, then the SQLite index file.
        Appends wait while the files are copied, so the snapshot is one
        consistent prefix of the log; the copy is fsynced before it is renamed
        into place.
        """
        dest = Path(dest)
        sth = self.tree_head()
        with self._lock:
            tmp = dest.with_name(dest.name + ".tmp")
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file
                index = (self.path / "index.sqlite").read_bytes()
                digest = blake3(index)
                segments = [
                    (self._segment_path(n), self._seg_size if n == self._seg_no else None)
                    for n in range(self._first_segment(), self._seg_no + 1)
                ]
                records = sum(
                    size if size is not None else p.stat().st_size for p, size in segments
                )
                header = json.dumps(
                    {
                        "sth": sth.to_dict(),
                        "public_key": self.key.public_bytes.hex(),
                        "records_bytes": records,
                        "index": {
                            "bytes": len(index),
                            "blake3": digest.hex(),
                            "signature": self.key.sign_index(sth.size, sth.root, digest).hex(),
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
                raise StoreError(f"{self.path}: cannot checkpoint the index: {exc}") from None
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                if exc.errno in _FULL_ERRNOS:
                    raise StoreFull(f"{dest}: disk full while writing the snapshot") from None
                raise StoreError(f"{dest}: snapshot failed: {exc.strerror}") from None
        return sth

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
            raise StoreError(
                f"{dest}: cannot write the recovered segment: {exc.strerror}"
            ) from None
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


def _copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes of ``src`` from ``offset`` to the end of ``dst`` (in kernel when possible)."""
    done = 0
    try:
        while done < count:
            n = os.copy_file_range(src, dst, count - done, offset + done)
            if n == 0:
                break
            done += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    while done < count:  # another filesystem, or no copy_file_range: copy through memory
        chunk = os.pread(src, min(8 << 20, count - done), offset + done)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
        done += len(chunk)


def _discard(dest: Path) -> None:
    """Remove a half-recovered store (only the files recovery itself creates)."""
    for p in sorted(dest.rglob("*"), reverse=True):
        with contextlib.suppress(OSError):
            p.rmdir() if p.is_dir() else p.unlink()


def events_from_lines(lines: Iterable[str]) -> Iterator[SecurityEvent]:
    """Parse JSON-lines events; raises :class:`MalformedEvent` naming the line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield SecurityEvent.from_json(line)
        except MalformedEvent as exc:
            raise MalformedEvent(f"line {n}: {exc}") from None
