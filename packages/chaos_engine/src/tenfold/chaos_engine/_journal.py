"""The fault journal: an append-only JSON-lines file, written before a fault is injected.

Invariants:

* an ``inject`` record (with the fault's *undo* steps) is written before the
  fault touches the kernel, so after a crash of this process at any point the
  watchdog, ``recover`` and the next engine know every kernel object that might
  exist: a completed ``write`` is in the page cache, which every process reads,
  whatever happens to the writer;
* it is not fsync'd unless asked (``fsync=True``): only a kernel crash loses a
  written record, and a kernel crash also ends every object a record can name
  (nft tables, qdiscs, cgroups, FUSE mounts, processes, namespaces pinned in
  tmpfs), so there is nothing left for that record to undo. An fsync per fault
  would cost more than the fault itself on a busy disk;
* undo steps are idempotent (deleting what is already gone is success), so
  replaying them twice, or from the engine and its watchdog at once, is safe;
* one live engine per journal, enforced with ``flock`` on a sidecar lock file;
* a torn last line (killed mid-write) is ignored: its fault was never injected,
  because injection waits for the write (and the fsync, when asked).

Concurrent appends from one event loop share one ``write`` (+ ``fsync``): group
commit, the first waiter schedules the flush and the rest ride along.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tenfold.chaos_engine._record import Record
from tenfold.chaos_engine.errors import JournalError, JournalLocked


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def read_records(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records from byte ``offset`` on, and the offset after the last complete line."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None
    records: list[dict[str, Any]] = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # torn tail: its writer died before the fsync, so nothing was injected
        consumed += len(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, offset + consumed


class Outstanding(Record):
    """What a journal says is still in place: faults not reverted, resources not released."""

    _fields = ("faults", "resources", "owner_pid", "closed")

    def __init__(
        self,
        faults: dict[str, dict[str, Any]] | None = None,
        resources: dict[str, dict[str, Any]] | None = None,
        owner_pid: int = 0,
        closed: bool = False,
    ) -> None:
        self.faults: dict[str, dict[str, Any]] = {} if faults is None else faults
        self.resources: dict[str, dict[str, Any]] = {} if resources is None else resources
        self.owner_pid = owner_pid
        self.closed = closed

    def apply(self, record: dict[str, Any]) -> None:
        op = record.get("op")
        key = str(record.get("id", ""))
        if op == "open":
            self.owner_pid = int(record.get("pid", 0))
            self.closed = False
        elif op == "inject":
            self.faults[key] = record
        elif op in ("reverted", "done"):
            self.faults.pop(key, None)
        elif op == "resource":
            self.resources[key] = record
        elif op == "released":
            self.resources.pop(key, None)
        elif op == "close":
            self.closed = True


def replay(path: Path) -> Outstanding:
    """Fold the whole journal into what is still outstanding."""
    state = Outstanding()
    records, _ = read_records(path)
    for record in records:
        state.apply(record)
    return state


class Journal:
    """The writer side, owned by one engine (held by an exclusive ``flock``)."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._fd = -1
        self._lock_fd = -1
        self._pending: list[bytes] = []
        self._flushed: asyncio.Future[None] | None = None

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise JournalLocked(
                f"journal {self.path} is in use by another engine (lock {self.path}.lock)"
            ) from None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def truncate(self) -> None:
        """Drop the history (only with nothing outstanding, under the lock)."""
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def append(self, record: dict[str, Any], *, sync: bool = True) -> None:
        """Write one record now; fsync it too when the journal fsyncs and ``sync`` is true.

        Records that only *shrink* what recovery must do ("reverted",
        "released") skip the fsync: if one is lost, recovery re-runs an
        undo step that is idempotent, which is harmless. So do records that
        name nothing to undo ("open", "close"): a later fsync of this file
        makes them durable along with whatever follows them.
        """
        self._write(_encode({"t": time.time(), **record}), sync=sync)

    async def append_durable(self, record: dict[str, Any]) -> None:
        """Append ``record``; return once it is written (and fsync'd, when asked): group commit."""
        self._pending.append(_encode({"t": time.time(), **record}))
        if self._flushed is None:
            loop = asyncio.get_running_loop()
            self._flushed = loop.create_future()
            loop.call_soon(self._flush)
        await asyncio.shield(self._flushed)

    def _flush(self) -> None:
        future, self._flushed = self._flushed, None
        data, self._pending = b"".join(self._pending), []
        assert future is not None
        try:
            self._write(data)
        except JournalError as exc:
            future.set_exception(exc)
            return
        future.set_result(None)

    def _write(self, data: bytes, *, sync: bool = True) -> None:
        if self._fd < 0:
            raise JournalError(f"journal {self.path} is closed")
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if sync and self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[Journal]:
    """Hold ``path``'s journal lock for a block (``recover`` uses this: no live engine owns it)."""
    journal = Journal(path)
    journal.open()
    try:
        yield journal
    finally:
        journal.close()
