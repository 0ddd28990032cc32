"""Stages: the typed transforms between a source and a sink, all working on whole batches."""

from __future__ import annotations

import ast
import heapq
import math
import operator
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from tenfold.pipeline_engine._batch import Batch, DeadLetter
from tenfold.pipeline_engine.errors import PipelineDefinitionError, SchemaError

T = TypeVar("T")
U = TypeVar("U")
K = TypeVar("K", bound=Hashable)

__all__ = [
    "DecodeJson",
    "Enrich",
    "Filter",
    "Lookup",
    "Map",
    "MapBatch",
    "Stage",
    "TableLookup",
    "Where",
    "Window",
    "column_join",
    "filter_then_enrich",
    "per_event",
]

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20


class Stage(Generic[T, U]):
    """A transform from batches of ``T`` to batches of ``U``.

    Subclasses fill in :meth:`process`. Stateful stages also fill in
    :meth:`snapshot` / :meth:`restore` (the engine checkpoints them to SQLite at
    batch boundaries) and :meth:`flush` (what to emit when the stream ends).
    A stage never raises for a bad event: it puts the event in ``batch.dead``
    with a reason. Raising means the stage itself is broken and stops the pipeline.
    """

    name: str = "stage"
    stateful: bool = False
    #: Waits on I/O for each batch (a database lookup): the engine gives it a
    #: thread of its own so the stages around it run meanwhile. CPU-bound stages
    #: in a row share one thread (under the GIL more threads would not add speed).
    blocking: bool = False

    def process(self, batch: Batch[T]) -> Batch[U]:
        raise NotImplementedError

    def flush(self) -> list[U]:
        """Events still held when the stream ends (open windows)."""
        return []

    def snapshot(self) -> bytes:
        return b""

    def restore(self, state: bytes) -> None:
        """Load state written by :meth:`snapshot`."""

    def close(self) -> None:
        """Release resources (connections)."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class DecodeJson(Stage[bytes | None, T]):
    """JSON bytes to msgspec Structs of ``schema``; bad messages become dead letters.

    Reasons: ``null message``, ``oversized message (N bytes > limit)``,
    ``malformed JSON: ...`` (including binary garbage and invalid UTF-8) and
    ``wrong type: ...`` (valid JSON that does not fit the schema).
    """

    name = "decode"

    def __init__(self, schema: type[T], *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if not (isinstance(schema, type) and issubclass(schema, msgspec.Struct)):
            raise SchemaError(f"decode needs a msgspec.Struct schema, got {schema!r}")
        self.schema = schema
        self.max_bytes = max_bytes
        self._decode: Callable[[bytes], T] = msgspec.json.Decoder(schema).decode

    def process(self, batch: Batch[bytes | None]) -> Batch[T]:
        decode = self._decode
        items = batch.items
        try:
            # Fast path: every message is fine (None or oversized ones raise here too).
            if max(map(len, items), default=0) > self.max_bytes:  # type: ignore[arg-type]
                raise ValueError
            out = list(map(decode, items))  # type: ignore[arg-type]  # a C loop: no frame per event
        except (msgspec.DecodeError, TypeError, ValueError):
            out = self._slow(batch)
        return batch.replace(out)

    def _slow(self, batch: Batch[bytes | None]) -> list[T]:
        decode = self._decode
        out: list[T] = []
        dead = batch.dead
        for i, m in enumerate(batch.items):
            reason = ""
            if m is None:
                reason = "null message"
            elif len(m) > self.max_bytes:
                reason = f"oversized message ({len(m)} bytes > {self.max_bytes})"
            else:
                try:
                    out.append(decode(m))
                    continue
                except msgspec.ValidationError as exc:
                    reason = f"wrong type: {exc}"
                except (msgspec.DecodeError, TypeError, ValueError) as exc:
                    reason = f"malformed JSON: {exc}"
            payload = b"" if m is None else bytes(m[: self.max_bytes])
            dead.append(DeadLetter(self.name, reason, batch.where(i), payload))
        return out


def _dead_event(stage: str, event: object, exc: BaseException) -> DeadLetter:
    try:
        payload = msgspec.json.encode(event)
    except (TypeError, ValueError):
        payload = repr(event).encode()
    return DeadLetter(stage, f"{stage} raised {_describe(exc)}", "", payload)


class Filter(Stage[T, T]):
    """Keep the events for which ``predicate`` is true (per-event, run over the batch)."""

    name = "filter"

    def __init__(self, predicate: Callable[[T], bool], *, name: str = "filter") -> None:
        self.predicate = predicate
        self.name = name

    def process(self, batch: Batch[T]) -> Batch[T]:
        pred = self.predicate
        try:
            return batch.replace([e for e in batch.items if pred(e)])
        except Exception:
            out = []
            for e in batch.items:
                try:
                    if pred(e):
                        out.append(e)
                except Exception as exc:
                    batch.dead.append(_dead_event(self.name, e, exc))
            return batch.replace(out)


_CONDITION = re.compile(r"^\s*([A-Za-z_]\w*)\s*(==|!=|<=|>=|<|>|not in|in)\s*(.+?)\s*$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}


class Where:
    """A filter predicate written as data: ``"field OP literal"`` conditions, all of which
    must hold (OP one of ``== != < <= > >= in not in``; the literal a Python literal).

    Called on an event it tests the conditions in order, stopping at the first false
    one, as ``all(...)`` does. Being data, the engine can also compile it into the one
    pass it makes over a batch for decode -> filter -> join (see ``_fused``); both give
    the same events. With ``schema`` the fields are checked when the filter is built.
    """

    def __init__(self, *conditions: str, schema: type[msgspec.Struct] | None = None) -> None:
        if not conditions:
            raise PipelineDefinitionError("a where filter needs at least one condition")
        parsed: list[tuple[str, str, Any]] = []
        for expr in conditions:
            m = _CONDITION.match(expr) if isinstance(expr, str) else None
            if m is None:
                raise PipelineDefinitionError(
                    f"cannot parse condition {expr!r} (expected: field OP literal)"
                )
            fname, op, raw = m.groups()
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raise PipelineDefinitionError(
                    f"condition {expr!r}: {raw!r} is not a literal"
                ) from None
            if op in ("in", "not in") and isinstance(value, list | tuple | set):
                value = frozenset(value)
            field_getter(schema, fname, "filter")
            parsed.append((fname, op, value))
        #: ``(field, op, value)`` per condition, in order.
        self.conditions: tuple[tuple[str, str, Any], ...] = tuple(parsed)
        tests = [(operator.attrgetter(f), _OPS[op], v) for f, op, v in parsed]
        if len(tests) == 1:
            ((g, f, v),) = tests
            if f is operator.ne:
                self._test: Callable[[Any], bool] = lambda e: g(e) != v
            elif f is operator.eq:
                self._test = lambda e: g(e) == v
            else:
                self._test = lambda e: f(g(e), v)
        else:
            self._test = lambda e: all(f(g(e), v) for g, f, v in tests)

    def __call__(self, event: Any) -> bool:
        return self._test(event)

    def __repr__(self) -> str:
        return f"Where({', '.join(f'{f} {op} {v!r}' for f, op, v in self.conditions)})"


class Map(Stage[T, U]):
    """Apply ``fn`` to each event; an event for which ``fn`` raises becomes a dead letter."""

    name = "map"

    def __init__(self, fn: Callable[[T], U], *, name: str = "map") -> None:
        self.fn = fn
        self.name = name

    def process(self, batch: Batch[T]) -> Batch[U]:
        fn = self.fn
        try:
            return batch.replace([fn(e) for e in batch.items])
        except Exception:
            out = []
            for e in batch.items:
                try:
                    out.append(fn(e))
                except Exception as exc:
                    batch.dead.append(_dead_event(self.name, e, exc))
            return batch.replace(out)


class _PerEvent(Stage[T, U]):
    def __init__(self, fn: Callable[[T], U | None], name: str) -> None:
        self.fn = fn
        self.name = name

    def process(self, batch: Batch[T]) -> Batch[U]:
        out: list[U] = []
        fn = self.fn
        for e in batch.items:
            try:
                r = fn(e)
            except Exception as exc:
                batch.dead.append(_dead_event(self.name, e, exc))
                continue
            if r is not None:
                out.append(r)
        return batch.replace(out)


def per_event(fn: Callable[[T], U | None], *, name: str | None = None) -> Stage[T, U]:
    """A user stage from a per-event function: return the new event, or ``None`` to drop it."""
    return _PerEvent(fn, name or str(getattr(fn, "__name__", "per_event")))


class MapBatch(Stage[T, U]):
    """A user stage over whole batches: ``fn(list[T]) -> list[U]`` (the native, fastest form)."""

    name = "map_batch"

    def __init__(self, fn: Callable[[list[T]], list[U]], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "map_batch"))

    def process(self, batch: Batch[T]) -> Batch[U]:
        return batch.replace(self.fn(batch.items))


class Lookup(Protocol[K]):
    """Where enrichment values come from: a batch of keys in, the rows found out."""

    def fetch(self, keys: Iterable[K]) -> Mapping[K, tuple[Any, ...]]: ...

    def close(self) -> None: ...


class TableLookup(Generic[K]):
    """An in-memory table: key -> tuple of column values."""

    def __init__(self, rows: Mapping[K, tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetch(self, keys: Iterable[K]) -> Mapping[K, tuple[Any, ...]]:
        rows = self.rows
        return {k: rows[k] for k in keys if k in rows}

    def close(self) -> None:
        pass


_MISSING: tuple[Any, ...] = ()


class Enrich(Stage[T, U]):
    """Join each event with a row looked up by key, through a bounded LRU cache.

    ``merge(event, row)`` builds the output (``row`` is ``None`` when the key is
    absent and ``on_missing="keep"``; with ``"drop"`` the event is dropped, with
    ``"dead"`` it becomes a dead letter). Keys missing from the cache are
    fetched once per batch, all together, so a database lookup costs one
    round trip per batch rather than per event.
    """

    name = "enrich"

    def __init__(
        self,
        lookup: Lookup[Any],
        key: Callable[[T], Any],
        merge: Callable[[T, tuple[Any, ...] | None], U],
        *,
        cache_size: int = 100_000,
        on_missing: str = "keep",
        name: str = "enrich",
    ) -> None:
        if on_missing not in ("keep", "drop", "dead"):
            raise PipelineDefinitionError(
                f"enrich on_missing must be keep, drop or dead, got {on_missing!r}"
            )
        self.lookup = lookup
        self.key = key
        self.merge = merge
        self.cache_size = cache_size
        self.on_missing = on_missing
        self.name = name
        self._table = lookup.rows if isinstance(lookup, TableLookup) else None
        self.blocking = self._table is None
        self._cache: OrderedDict[Any, tuple[Any, ...]] = OrderedDict()
        #: Set by :func:`column_join`: (key field, column names, output Struct); the
        #: engine may then run this stage fused with a decode and a :class:`Where` filter.
        self.join: tuple[str, tuple[str, ...], type[msgspec.Struct]] | None = None
        self.hits = 0
        self.misses = 0

    def _rows_for(self, keys: set[Any]) -> Mapping[Any, tuple[Any, ...]]:
        cache = self._cache
        wanted = [k for k in keys if k not in cache]
        self.misses += len(wanted)
        self.hits += len(keys) - len(wanted)
        if wanted:
            fetched = self.lookup.fetch(wanted)
            for k in wanted:
                cache[k] = fetched.get(k, _MISSING)
        rows = {}
        for k in keys:
            cache.move_to_end(k)
            rows[k] = cache[k]
        # Evict only after the batch's rows are taken: a batch with more distinct
        # keys than the cache holds must still see every one of them.
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return rows

    def process(self, batch: Batch[T]) -> Batch[U]:
        key, merge, items = self.key, self.merge, batch.items
        if self._table is not None:
            rows: Mapping[Any, tuple[Any, ...]] = self._table
        else:
            rows = self._rows_for({key(e) for e in items})
        get = rows.get
        if self.on_missing == "keep":
            out = [merge(e, get(key(e)) or None) for e in items]
            return batch.replace(out)
        out = []
        for e in items:
            row = get(key(e))
            if row:
                out.append(merge(e, row))
            elif self.on_missing == "dead":
                batch.dead.append(
                    DeadLetter(
                        self.name,
                        f"no enrichment row for key {key(e)!r}",
                        "",
                        msgspec.json.encode(e),
                    )
                )
        return batch.replace(out)

    def close(self) -> None:
        self.lookup.close()


def filter_then_enrich(
    flt: Stage[Any, Any], enrich: Stage[Any, Any], batch: Batch[Any]
) -> Batch[Any] | None:
    """``enrich.process(flt.process(batch))`` in one pass over the events, when that is
    the same thing; ``None`` when it is not (the caller then runs the two stages).

    Fused only for a plain :class:`Filter` followed by a plain :class:`Enrich` over an
    in-memory table that keeps events without a row (one output per kept event):
    one comprehension, no intermediate list of kept events. If the predicate, the
    key or the merge raises, the result is ``None`` and the caller runs the stages
    one by one, which turn the events that fail into dead letters (the predicate
    then runs a second time on the events before the failing one, as it does
    when :class:`Filter` itself falls back to its per-event path).
    """
    if type(flt) is not Filter or type(enrich) is not Enrich:
        return None
    table = enrich._table
    if table is None or enrich.on_missing != "keep":
        return None
    pred, key, merge, get = flt.predicate, enrich.key, enrich.merge, table.get
    try:
        out = [merge(e, get(key(e)) or None) for e in batch.items if pred(e)]
    except Exception:
        return None
    return batch.replace(out)


_AGGREGATES = ("count", "sum", "min", "max", "mean")


class Window(Stage[T, Any]):
    """Keyed tumbling (``slide_s`` None) or sliding windows over event time, with aggregates.

    ``aggregates`` maps an output name to ``(function, field)``, function one of
    count, sum, min, max, mean. A window ``[start, start+size)`` is emitted once
    the watermark (largest event time seen minus ``allowed_lateness_s``) passes
    its end; events for a window already emitted are dead letters ("late event").
    Output events are Structs with ``id`` (``key@start``, deterministic, so an
    upserting sink stays idempotent on replay), ``key``, ``window_start``,
    ``window_end`` and one float field per aggregate.
    """

    name = "window"
    stateful = True

    def __init__(
        self,
        *,
        key: Callable[[T], Any],
        time: Callable[[T], float],
        size_s: float,
        slide_s: float | None = None,
        aggregates: Mapping[str, tuple[str, str | None]],
        allowed_lateness_s: float = 0.0,
        name: str = "window",
    ) -> None:
        if size_s <= 0 or (slide_s is not None and (slide_s <= 0 or slide_s > size_s)):
            raise PipelineDefinitionError(
                f"window needs size_s > 0 and 0 < slide_s <= size_s (got {size_s}, {slide_s})"
            )
        for out_name, (fn, fld) in aggregates.items():
            if fn not in _AGGREGATES:
                raise PipelineDefinitionError(
                    f"window aggregate {out_name!r}: unknown function {fn!r}"
                    f" (expected one of {', '.join(_AGGREGATES)})"
                )
            if fn != "count" and not fld:
                raise PipelineDefinitionError(f"window aggregate {out_name!r} needs a field")
        self.key = key
        self.time = time
        self.size_s = float(size_s)
        self.slide_s = float(slide_s or size_s)
        self.aggregates = dict(aggregates)
        self.allowed_lateness_s = allowed_lateness_s
        self.name = name
        names = list(self.aggregates)
        self.output_type: type[msgspec.Struct] = msgspec.defstruct(
            "WindowResult",
            [("id", str), ("key", Any), ("window_start", float), ("window_end", float)]
            + [(n, float) for n in names],
        )
        self._fields = [fld for _, fld in self.aggregates.values()]
        # state: (key, start) -> per aggregate field [count, sum, min, max]
        self._state: dict[tuple[Any, float], list[list[float]]] = {}
        self._ends: list[tuple[float, Any, float]] = []
        self._max_t = -math.inf

    @property
    def watermark(self) -> float:
        return self._max_t - self.allowed_lateness_s

    def _starts(self, t: float) -> list[float]:
        slide, size = self.slide_s, self.size_s
        last = math.floor(t / slide)
        first = math.floor((t - size) / slide) + 1
        return [i * slide for i in range(first, last + 1)]

    def process(self, batch: Batch[T]) -> Batch[Any]:
        key_of, time_of, state, fields = self.key, self.time, self._state, self._fields
        size = self.size_s
        for e in batch.items:
            t = float(time_of(e))
            k = key_of(e)
            self._max_t = max(self._max_t, t)
            wm = self.watermark
            placed = False
            for start in self._starts(t):
                if start + size <= wm and (k, start) not in state:
                    continue
                acc = state.get((k, start))
                if acc is None:
                    acc = [[0.0, 0.0, math.inf, -math.inf] for _ in fields]
                    state[(k, start)] = acc
                    heapq.heappush(self._ends, (start + size, k, start))
                for a, fld in zip(acc, fields, strict=True):
                    v = 1.0 if fld is None else float(getattr(e, fld))
                    a[0] += 1
                    a[1] += v
                    a[2] = min(a[2], v)
                    a[3] = max(a[3], v)
                placed = True
            if not placed:
                batch.dead.append(
                    DeadLetter(
                        self.name,
                        f"late event (time {t} behind watermark {wm})",
                        "",
                        msgspec.json.encode(e),
                    )
                )
        return batch.replace(self._close_until(self.watermark))

    def _result(self, k: Any, start: float, acc: list[list[float]]) -> Any:
        values = []
        for (fn, _), a in zip(self.aggregates.values(), acc, strict=True):
            if fn == "count":
                values.append(a[0])
            elif fn == "sum":
                values.append(a[1])
            elif fn == "min":
                values.append(a[2])
            elif fn == "max":
                values.append(a[3])
            else:
                values.append(a[1] / a[0] if a[0] else 0.0)
        return self.output_type(f"{k}@{start:g}", k, start, start + self.size_s, *values)

    def _close_until(self, watermark: float) -> list[Any]:
        out = []
        ends = self._ends
        while ends and ends[0][0] <= watermark:
            _, k, start = heapq.heappop(ends)
            acc = self._state.pop((k, start), None)
            if acc is not None:
                out.append(self._result(k, start, acc))
        return out

    def flush(self) -> list[Any]:
        return self._close_until(math.inf)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(
            {
                "max_t": self._max_t if self._max_t != -math.inf else None,
                "state": [[k, s, acc] for (k, s), acc in self._state.items()],
            }
        )

    def restore(self, state: bytes) -> None:
        doc = msgspec.msgpack.decode(state)
        self._max_t = -math.inf if doc["max_t"] is None else doc["max_t"]
        self._state = {(k, s): acc for k, s, acc in doc["state"]}
        self._ends = [(s + self.size_s, k, s) for (k, s) in self._state]
        heapq.heapify(self._ends)


def field_getter(
    schema: type[msgspec.Struct] | None, field: str, stage: str
) -> Callable[[Any], Any]:
    """``operator.attrgetter(field)``, checked against ``schema`` when known."""
    import operator

    if schema is not None and field not in schema.__struct_fields__:
        raise SchemaError(
            f"{stage}: schema {schema.__name__} has no field {field!r}"
            f" (fields: {', '.join(schema.__struct_fields__)})"
        )
    return operator.attrgetter(field)


def merge_into(
    out: type[msgspec.Struct], n_columns: int
) -> Callable[[Any, tuple[Any, ...] | None], Any]:
    """A ``merge`` for :class:`Enrich` building ``out(*event_fields, *row)`` (None-filled)."""
    blanks = (None,) * n_columns
    astuple = msgspec.structs.astuple

    def merge(event: Any, row: tuple[Any, ...] | None) -> Any:
        return out(*astuple(event), *(row or blanks))

    return merge


def extend_schema(
    base: type[msgspec.Struct], columns: Sequence[tuple[str, type]], name: str
) -> type[msgspec.Struct]:
    """A Struct with ``base``'s fields then ``columns`` (optional, default None)."""
    clash = [c for c, _ in columns if c in base.__struct_fields__]
    if clash:
        raise SchemaError(f"enrich columns {clash} already exist in schema {base.__name__}")
    hints = msgspec.structs.fields(base)
    fields: list[Any] = [(f.name, f.type) for f in hints]
    fields += [(c, t | None, None) for c, t in columns]
    return msgspec.defstruct(name, fields)


def column_join(
    schema: type[msgspec.Struct],
    lookup: Lookup[Any],
    key: str,
    columns: Mapping[str, type] | Sequence[tuple[str, type]],
    **options: Any,
) -> tuple[Enrich[Any, Any], type[msgspec.Struct]]:
    """An :class:`Enrich` written as data: events of ``schema`` joined on their field
    ``key`` with the lookup's rows, whose values become ``columns`` (optional, None when
    there is no row). Returns the stage and its output Struct (``schema``'s fields, then
    the columns); ``options`` go to :class:`Enrich` (``cache_size``, ``on_missing``, ``name``).
    """
    cols = list(columns.items()) if isinstance(columns, Mapping) else list(columns)
    if not cols:
        raise PipelineDefinitionError("a join needs at least one column")
    getter = field_getter(schema, key, "join")
    out = extend_schema(schema, cols, f"{schema.__name__}Enriched")
    stage: Enrich[Any, Any] = Enrich(lookup, getter, merge_into(out, len(cols)), **options)
    stage.join = (key, tuple(c for c, _ in cols), out)
    return stage, out
