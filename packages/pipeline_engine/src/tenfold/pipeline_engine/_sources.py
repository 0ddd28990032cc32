"""Sources: where batches come from (memory, the synthetic generator, NDJSON and CSV files)."""

from __future__ import annotations

import csv
import random
import time
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from tenfold.pipeline_engine._batch import Batch, DeadLetter
from tenfold.pipeline_engine.errors import ConnectorError, SchemaError

T = TypeVar("T")

__all__ = ["CsvSource", "GeneratorSource", "MemorySource", "NdjsonSource", "Source"]


def idle_read(stop_when_idle_s: float | None, idle_since: float, now: float) -> Batch[Any] | None:
    """What a broker source's ``read`` returns when a poll brought nothing.

    ``None`` (the stream has ended) once nothing has arrived for ``stop_when_idle_s``
    since ``idle_since`` (monotonic seconds), else an empty batch (keep polling).
    """
    if stop_when_idle_s is not None and now - idle_since >= stop_when_idle_s:
        return None
    return Batch([], time.monotonic_ns())


class Source(Generic[T]):
    """Where events come from.

    ``open(positions)`` starts reading after the given positions (the ones the
    sink or the checkpoint stored); ``read`` returns a batch of at most
    ``max_events`` events, cut when it is full or ``linger_s`` after its first
    event, an empty batch when nothing arrived in time, or ``None`` when the
    stream has ended. ``pause``/``resume`` bracket a backpressure episode;
    ``acknowledge`` receives ``batch.ack`` once the sink has made the batch durable.
    """

    name: str = "source"
    #: ``read`` waits on I/O or a timer (a broker, a socket, a schedule): the
    #: engine gives the source a thread of its own. A source that only computes
    #: (a list in memory) shares its thread with the CPU-bound stages after it.
    blocking: bool = True
    # Set by the pipeline to its sink's ``stored_positions``: a source whose
    # partitions change while it runs (a consumer group) resumes new ones from
    # what the sink holds at that moment, not from the start-up snapshot.
    position_reader: Callable[[], dict[str, int] | None] | None = None

    def open(self, positions: dict[str, int]) -> None:
        """Prepare to read, resuming after ``positions``."""

    def read(self, max_events: int, linger_s: float) -> Batch[T] | None:
        raise NotImplementedError

    def pause(self) -> None:
        """Stop fetching input until :meth:`resume` (the downstream buffer is full)."""

    def resume(self) -> None:
        """Fetch input again."""

    def acknowledge(self, ack: Any) -> None:
        """The sink made the batch that carried ``ack`` durable."""

    def close(self) -> None:
        """Release connections and files."""


class MemorySource(Source[T]):
    """A list of events, cut into batches; position ``memory/0`` is the index."""

    name = "memory"
    blocking = False

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self._next = 0

    def open(self, positions: dict[str, int]) -> None:
        self._next = positions.get("memory/0", 0)

    def read(self, max_events: int, linger_s: float) -> Batch[T] | None:
        start = self._next
        if start >= len(self.items):
            return None
        end = min(start + max_events, len(self.items))
        self._next = end
        # A list's slice is already a new list: copy once, not twice.
        items = self.items[start:end]
        if not isinstance(items, list):
            items = list(items)
        return Batch(items, time.monotonic_ns(), {"memory/0": end})


_VOCAB = 64


def _unwrap_optional(t: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(t, False)``."""
    args = typing.get_args(t)
    if (isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union) and type(
        None
    ) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return t, False


class GeneratorSource(Source[Any]):
    """The synthetic source: events of ``schema`` with seeded values, open-loop at ``rate``.

    Event *i* is scheduled at ``start + i / rate`` whatever happens downstream
    (open loop: a stalled pipeline does not slow the schedule, so queueing
    delay shows up in the latency instead of being hidden, avoiding coordinated
    omission); a batch's ``born_ns`` is its first event's scheduled time.
    ``rate=None`` emits as fast as the pipeline takes events (saturation).
    A field named ``id`` gets the event number, ``ts`` the scheduled time in
    seconds since start; ints are uniform in ``[0, cardinality)``, floats in
    ``[0, 1000)``, strings one of ``cardinality`` words. ``encode=True`` emits
    JSON bytes (for the decode stage), otherwise Structs.
    """

    name = "generator"
    # At a set rate read() sleeps only until the next event is due, when there is
    # nothing for the steps after it to do: it shares their thread.
    blocking = False

    def __init__(
        self,
        schema: type[msgspec.Struct],
        *,
        rate: float | None = None,
        count: int | None = None,
        seed: int = 1,
        cardinality: int = 10_000,
        encode: bool = True,
        pool_size: int = 4096,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ConnectorError(f"generator rate must be positive, got {rate}")
        self.schema = schema
        self.rate = rate
        self.count = count
        self.encode = encode
        self.emitted = 0
        rng = random.Random(seed)
        fields = msgspec.structs.fields(schema)
        self._id_index = next((i for i, f in enumerate(fields) if f.name == "id"), None)
        self._ts_index = next((i for i, f in enumerate(fields) if f.name == "ts"), None)
        pool: list[list[Any]] = []
        for _ in range(pool_size):
            row: list[Any] = []
            for f in fields:
                ftype, optional = _unwrap_optional(f.type)
                if optional and rng.random() < 0.1:
                    row.append(None)
                elif ftype is int:
                    row.append(rng.randrange(cardinality))
                elif ftype is float:
                    row.append(round(rng.random() * 1000, 3))
                elif ftype is str:
                    row.append(f"{f.name}-{rng.randrange(min(cardinality, _VOCAB))}")
                elif ftype is bool:
                    row.append(rng.random() < 0.5)
                else:
                    raise SchemaError(
                        f"generator: field {f.name!r} has type {f.type!r};"
                        " supported: int, float, str, bool (optional allowed)"
                    )
            pool.append(row)
        self._pool = pool
        self._encode = msgspec.json.Encoder().encode
        self._t0 = 0.0

    def open(self, positions: dict[str, int]) -> None:
        self.emitted = positions.get("generator/0", 0)
        self._t0 = time.monotonic() - (self.emitted / self.rate if self.rate else 0.0)

    def _make(self, n: int, t_first: float) -> list[Any]:
        pool, schema, size = self._pool, self.schema, len(self._pool)
        id_i, ts_i, rate = self._id_index, self._ts_index, self.rate
        out: list[Any] = []
        start = self.emitted
        for j in range(start, start + n):
            row = pool[j % size].copy()
            if id_i is not None:
                row[id_i] = j
            if ts_i is not None:
                row[ts_i] = j / rate if rate else t_first
            out.append(schema(*row))
        if self.encode:
            enc = self._encode
            return [enc(e) for e in out]
        return out

    def read(self, max_events: int, linger_s: float) -> Batch[Any] | None:
        remaining = None if self.count is None else self.count - self.emitted
        if remaining is not None and remaining <= 0:
            return None
        want = max_events if remaining is None else min(max_events, remaining)
        rate = self.rate
        if rate is None:
            now = time.monotonic()
            items = self._make(want, now - self._t0)
            self.emitted += want
            return Batch(items, int(now * 1e9), {"generator/0": self.emitted})
        first_at = self._t0 + self.emitted / rate
        full_at = self._t0 + (self.emitted + want) / rate
        now = time.monotonic()
        cut_at = min(full_at, first_at + linger_s)
        if now < cut_at:
            time.sleep(min(cut_at - now, linger_s))
            now = time.monotonic()
            if now < first_at:
                return Batch([], int(now * 1e9))
        due = min(want, int((now - self._t0) * rate) - self.emitted)
        if due <= 0:
            return Batch([], int(now * 1e9))
        items = self._make(due, first_at - self._t0)
        self.emitted += due
        return Batch(items, int(first_at * 1e9), {"generator/0": self.emitted})


class NdjsonSource(Source[bytes | None]):
    """Lines of a newline-delimited JSON file as raw bytes; position is the line number."""

    name = "ndjson"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: Any = None
        self._line = 0
        self._key = f"file:{self.path}"

    def open(self, positions: dict[str, int]) -> None:
        try:
            self._file = self.path.open("rb")
        except OSError as exc:
            raise ConnectorError(f"cannot open {self.path}: {exc.strerror}") from None
        skip = positions.get(self._key, 0)
        for _ in range(skip):
            if not self._file.readline():
                break
        self._line = skip

    def read(self, max_events: int, linger_s: float) -> Batch[bytes | None] | None:
        lines = []
        for raw in self._file:
            lines.append(raw.rstrip(b"\r\n"))
            if len(lines) >= max_events:
                break
        if not lines:
            return None
        first = self._line
        self._line += len(lines)
        path = self.path

        def where(i: int) -> str:
            return f"{path}:{first + i + 1}"

        return Batch(lines, time.monotonic_ns(), {self._key: self._line}, where=where)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class CsvSource(Source[Any]):
    """Rows of a CSV file with a header, converted to ``schema``; bad rows become dead letters."""

    name = "csv"

    def __init__(self, path: str | Path, schema: type[msgspec.Struct]) -> None:
        self.path = Path(path)
        self.schema = schema
        self._reader: Any = None
        self._file: Any = None
        self._row = 0
        self._key = f"file:{self.path}"

    def open(self, positions: dict[str, int]) -> None:
        try:
            self._file = self.path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise ConnectorError(f"cannot open {self.path}: {exc.strerror}") from None
        self._reader = csv.DictReader(self._file)
        skip = positions.get(self._key, 0)
        for _ in range(skip):
            if next(self._reader, None) is None:
                break
        self._row = skip

    def read(self, max_events: int, linger_s: float) -> Batch[Any] | None:
        out: list[Any] = []
        dead: list[DeadLetter] = []
        n = 0
        convert, schema = msgspec.convert, self.schema
        for row in self._reader:
            n += 1
            try:
                out.append(convert(row, schema, strict=False))
            except msgspec.ValidationError as exc:
                dead.append(
                    DeadLetter(
                        self.name,
                        f"wrong type: {exc}",
                        f"{self.path}:{self._row + n + 1}",
                        msgspec.json.encode(row),
                    )
                )
            if n >= max_events:
                break
        if n == 0:
            return None
        self._row += n
        return Batch(out, time.monotonic_ns(), {self._key: self._row}, dead=dead)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
