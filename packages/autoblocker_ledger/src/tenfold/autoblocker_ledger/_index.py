"""The SQLite index beside the segments: event id, time, subject, domain and kind per entry.

The index is derived data: it is rebuilt from the segments (in a worker thread,
while the opening thread verifies the chain) whenever it lags or has gaps, and
queried for range reads.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from pathlib import Path

import msgspec

from tenfold.autoblocker_ledger._merkle import HASH_SIZE
from tenfold.autoblocker_ledger.errors import CorruptStore, StoreError


class _IndexRow(msgspec.Struct):
    """The fields of an event the SQLite index keeps (evidence is skipped while decoding)."""

    event_id: str
    time_ms: int
    subject: str
    domain: str
    kind: str


_ROW_DECODER = msgspec.json.Decoder(_IndexRow)


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
                create_indexes(db)
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


def open_index(path: Path) -> sqlite3.Connection:
    """Open (or create) the index database of the store in ``path``."""
    try:
        db = sqlite3.connect(path / "index.sqlite", check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS events (idx INTEGER PRIMARY KEY, event_id TEXT NOT NULL,"
            " time_ms INTEGER NOT NULL, subject TEXT NOT NULL, domain TEXT NOT NULL,"
            " kind TEXT NOT NULL)"
        )
        create_indexes(db)
        db.commit()
    except sqlite3.DatabaseError as exc:
        raise CorruptStore(f"{path / 'index.sqlite'}: {exc}") from None
    return db


def create_indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS by_subject ON events(subject, idx)")
    db.execute("CREATE INDEX IF NOT EXISTS by_domain ON events(domain, idx)")
    db.execute("CREATE INDEX IF NOT EXISTS by_time ON events(time_ms)")


def contiguous_rows(db: sqlite3.Connection) -> int:
    """How many index rows (0..n-1) are present; a gappy index is rebuilt from scratch."""
    count, top = db.execute("SELECT count(*), max(idx) FROM events").fetchone()
    if count and top != count - 1:
        db.execute("DELETE FROM events")
        return 0
    return int(count)


def decode_rows(first: int, datas: list[bytes], where: Path) -> list[_Row]:
    """Index rows for consecutive entries already proven by the chain walk."""
    decode = _ROW_DECODER.decode
    try:
        decoded = [decode(d[HASH_SIZE:]) for d in datas]
    except msgspec.DecodeError:
        for k, d in enumerate(datas):  # find the culprit for the message
            decode_row(first + k, d, where)
        raise
    return [
        (first + k, e.event_id, e.time_ms, e.subject, e.domain, e.kind)
        for k, e in enumerate(decoded)
    ]


def decode_row(index: int, data: bytes, where: Path) -> _Row:
    """The index row of an entry already proven by the chain walk."""
    try:
        e = _ROW_DECODER.decode(data[HASH_SIZE:])
    except msgspec.DecodeError as exc:
        raise CorruptStore(f"{where}: entry {index} is not a valid event: {exc}") from None
    return (index, e.event_id, e.time_ms, e.subject, e.domain, e.kind)


def matching(
    db: sqlite3.Connection,
    *,
    since_ms: int | None,
    until_ms: int | None,
    subject: str | None,
    domain: str | None,
    limit: int,
) -> list[int]:
    """Indices of the entries matching every given filter, in log order."""
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
    rows = db.execute(f"SELECT idx FROM events {where} ORDER BY idx LIMIT ?", args).fetchall()
    return [r[0] for r in rows]
