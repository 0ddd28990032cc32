"""Sinks: where batches end up (memory, NDJSON files, nowhere) and where dead letters go."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from tenfold.pipeline_engine._batch import Batch, DeadLetter
from tenfold.pipeline_engine.errors import ConnectorError

T = TypeVar("T")

__all__ = [
    "DeadLetterSink",
    "MemoryDeadLetters",
    "MemorySink",
    "NdjsonDeadLetters",
    "NdjsonSink",
    "NullSink",
    "Sink",
]


class Sink(Generic[T]):
    """Where events go.

    ``open(pipeline)`` returns the source positions the sink has made durable
    (an effectively-once sink stores them with its rows; an at-least-once sink
    returns ``{}`` and relies on the source's own acknowledgements).
    ``write`` returns only once the batch is durable. A sink with
    ``handles_dead_letters`` stores ``batch.dead`` itself, atomically with the
    rows; for other sinks the engine hands dead letters to its dead-letter sink.
    A sink with ``group_commit`` may receive several queued batches merged into
    one (:meth:`Batch.merge`) when it falls behind, so a per-write cost (a
    transaction, an fsync) is paid once for all of them.
    """

    name: str = "sink"
    #: ``write`` waits on I/O (a database, a broker, a file): the engine gives
    #: the sink a thread of its own, so the next batches are processed while it
    #: waits. A sink that only computes runs on the thread of the steps before it.
    blocking: bool = True
    handles_dead_letters: bool = False
    group_commit: bool = False

    def open(self, pipeline: str) -> dict[str, int]:
        return {}

    def write(self, batch: Batch[T]) -> None:
        raise NotImplementedError

    def stored_positions(self) -> dict[str, int] | None:
        """The positions durable now, read afresh (``None``: this sink stores none).

        Called from the source's thread when a consumer group hands it new
        partitions, so it must not use the connection :meth:`write` uses.
        """
        return None

    def close(self) -> None:
        """Flush and release resources."""


class NullSink(Sink[Any]):
    """Counts events and drops them (benchmarks of the stages in front of it)."""

    name = "null"
    blocking = False

    def __init__(self) -> None:
        self.count = 0

    def write(self, batch: Batch[Any]) -> None:
        self.count += len(batch.items)


class MemorySink(Sink[T]):
    """Keeps events in memory; with ``key`` an upsert by key (idempotent on replay)."""

    name = "memory"
    blocking = False

    def __init__(self, key: Callable[[T], Any] | None = None) -> None:
        self.key = key
        self.events: list[T] = []
        self.by_key: dict[Any, T] = {}

    def write(self, batch: Batch[T]) -> None:
        if self.key is None:
            self.events.extend(batch.items)
        else:
            key = self.key
            self.by_key.update((key(e), e) for e in batch.items)


class NdjsonSink(Sink[Any]):
    """Appends events as JSON lines, flushed and fsynced per batch (at least once)."""

    name = "ndjson"

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._file: Any = None
        self._encode = msgspec.json.Encoder().encode

    def open(self, pipeline: str) -> dict[str, int]:
        try:
            self._file = self.path.open("ab")
        except OSError as exc:
            raise ConnectorError(f"cannot open {self.path}: {exc.strerror}") from None
        return {}

    def write(self, batch: Batch[Any]) -> None:
        enc = self._encode
        self._file.write(b"".join(enc(e) + b"\n" for e in batch.items))
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class DeadLetterSink:
    """Where poison messages go when the main sink does not store them itself."""

    def write(self, letters: list[DeadLetter]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources."""


class MemoryDeadLetters(DeadLetterSink):
    """Dead letters kept in a list (tests, small runs)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def write(self, letters: list[DeadLetter]) -> None:
        self.letters.extend(letters)


class NdjsonDeadLetters(DeadLetterSink):
    """Dead letters appended to a JSON-lines file (payload base64 by msgspec)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: Any = None

    def write(self, letters: list[DeadLetter]) -> None:
        if self._file is None:
            self._file = self.path.open("ab")
        self._file.write(b"".join(msgspec.json.encode(d) + b"\n" for d in letters))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
