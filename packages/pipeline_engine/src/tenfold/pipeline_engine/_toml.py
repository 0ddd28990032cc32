"""Pipelines as TOML files: parsed, type-checked stage by stage, and rejected before running.

Layout::

    [pipeline]            name, batch_size, linger_ms, buffer_events, group_commit_events, checkpoints, ...
    [schemas.Order]       field = "int" | "float" | "str" | "bool" | "bytes" (suffix ? = optional)
    [source]              type = "generator" | "ndjson" | "csv" | "kafka" | "redis"
    [[stages]]            type = "decode" | "filter" | "enrich" | "window" | "python"
    [sink]                type = "null" | "ndjson" | "postgres" | "kafka"
    [dead_letters]        type = "memory" | "ndjson"

Every table accepts only its own keys; an unknown stage, type, key, schema or
field is a :class:`PipelineDefinitionError` that names the file and the place.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from tenfold.pipeline_engine._engine import Pipeline
from tenfold.pipeline_engine._sinks import (
    DeadLetterSink,
    MemoryDeadLetters,
    NdjsonDeadLetters,
    NdjsonSink,
    NullSink,
    Sink,
)
from tenfold.pipeline_engine._sources import CsvSource, GeneratorSource, NdjsonSource, Source
from tenfold.pipeline_engine._stages import (
    DecodeJson,
    Filter,
    MapBatch,
    Stage,
    TableLookup,
    Where,
    Window,
    column_join,
    field_getter,
    per_event,
)
from tenfold.pipeline_engine.errors import PipelineDefinitionError, SchemaError

__all__ = ["build_pipeline", "load_pipeline", "parse_schema"]

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool, "bytes": bytes}

Schema = type[msgspec.Struct]


class _Ctx:
    def __init__(self, origin: str, base_dir: Path) -> None:
        self.origin = origin
        self.base_dir = base_dir

    def err(self, where: str, message: str) -> PipelineDefinitionError:
        return PipelineDefinitionError(f"{self.origin}: {where}: {message}")

    def keys(
        self,
        where: str,
        table: Any,
        allowed: set[str],
        required: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.err(where, f"expected a table, got {type(table).__name__}")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.err(
                where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
            )
        missing = sorted(required - set(table))
        if missing:
            raise self.err(where, f"missing required key {missing[0]!r}")
        return table

    def path(self, value: Any, where: str) -> Path:
        if not isinstance(value, str):
            raise self.err(where, f"path must be a string, got {value!r}")
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


def parse_schema(name: str, fields: dict[str, Any], origin: str = "<schema>") -> Schema:
    """A msgspec Struct from ``{field: "int" | "float?" | ...}``; unknown types are errors."""
    if not fields:
        raise SchemaError(f"{origin}: schema {name!r} has no fields")
    specs: list[Any] = []
    optional_seen = False
    for fname, tname in fields.items():
        if not isinstance(tname, str) or tname.rstrip("?") not in _TYPES:
            raise SchemaError(
                f"{origin}: schema {name!r} field {fname!r}: unknown type {tname!r}"
                f" (expected one of {', '.join(_TYPES)}, optionally suffixed with ?)"
            )
        if not fname.isidentifier():
            raise SchemaError(
                f"{origin}: schema {name!r}: field name {fname!r} is not an identifier"
            )
        base = _TYPES[tname.rstrip("?")]
        if tname.endswith("?"):
            specs.append((fname, base | None, None))
            optional_seen = True
        elif optional_seen:
            raise SchemaError(
                f"{origin}: schema {name!r}: required field {fname!r} after an optional one"
            )
        else:
            specs.append((fname, base))
    return msgspec.defstruct(name, specs)


def _predicate(ctx: _Ctx, where: str, exprs: list[str], schema: Schema | None) -> Where:
    try:
        return Where(*exprs, schema=schema)
    except SchemaError as exc:
        raise SchemaError(str(exc).replace("filter:", f"{where}:", 1)) from None
    except PipelineDefinitionError as exc:
        raise ctx.err(where, str(exc)) from None


def _import(ctx: _Ctx, where: str, spec: Any) -> Any:
    if not isinstance(spec, str) or ":" not in spec:
        raise ctx.err(where, f"function must be 'module:name', got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ctx.err(where, f"cannot import {mod_name!r}: {exc}") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ctx.err(where, f"module {mod_name!r} has no {attr!r}") from None


def _schema_ref(ctx: _Ctx, where: str, schemas: dict[str, Schema], name: Any) -> Schema:
    if name not in schemas:
        raise ctx.err(where, f"unknown schema {name!r} (defined: {', '.join(schemas) or 'none'})")
    return schemas[name]


def _build_source(
    ctx: _Ctx, table: Any, schemas: dict[str, Schema]
) -> tuple[Source[Any], Schema | None]:
    where = "[source]"
    if not isinstance(table, dict) or "type" not in table:
        raise ctx.err(where, "missing required key 'type'")
    kind = table["type"]
    if kind == "generator":
        t = ctx.keys(
            where, table, {"type", "schema", "rate", "count", "seed", "cardinality"}, {"schema"}
        )
        schema = _schema_ref(ctx, where, schemas, t["schema"])
        src = GeneratorSource(
            schema,
            rate=t.get("rate"),
            count=t.get("count"),
            seed=t.get("seed", 1),
            cardinality=t.get("cardinality", 10_000),
        )
        return src, None
    if kind == "ndjson":
        t = ctx.keys(where, table, {"type", "path"}, {"path"})
        return NdjsonSource(ctx.path(t["path"], where)), None
    if kind == "csv":
        t = ctx.keys(where, table, {"type", "path", "schema"}, {"path", "schema"})
        schema = _schema_ref(ctx, where, schemas, t["schema"])
        return CsvSource(ctx.path(t["path"], where), schema), schema
    if kind == "parquet":
        from tenfold.pipeline_engine._parquet import ParquetSource

        t = ctx.keys(where, table, {"type", "path", "schema"}, {"path", "schema"})
        schema = _schema_ref(ctx, where, schemas, t["schema"])
        return ParquetSource(ctx.path(t["path"], where), schema), schema
    if kind == "kafka":
        from tenfold.pipeline_engine._kafka import KafkaSource

        t = ctx.keys(
            where,
            table,
            {"type", "bootstrap", "topic", "partitions", "group", "config", "stop_when_idle_s"},
            {"bootstrap", "topic"},
        )
        return KafkaSource(
            t["bootstrap"],
            t["topic"],
            partitions=t.get("partitions"),
            group=t.get("group"),
            config=t.get("config"),
            stop_when_idle_s=t.get("stop_when_idle_s"),
        ), None
    if kind == "redis":
        from tenfold.pipeline_engine._redis import RedisStreamSource

        t = ctx.keys(
            where,
            table,
            {"type", "url", "stream", "group", "consumer", "claim_idle_ms", "stop_when_idle_s"},
            {"url", "stream"},
        )
        return RedisStreamSource(
            t["url"],
            t["stream"],
            group=t.get("group", "tenfold"),
            consumer=t.get("consumer", "engine-1"),
            claim_idle_ms=t.get("claim_idle_ms", 30_000),
            stop_when_idle_s=t.get("stop_when_idle_s"),
        ), None
    raise ctx.err(
        where,
        f"unknown source type {kind!r} (expected generator, ndjson, csv, parquet, kafka, redis)",
    )


def _enrich(
    ctx: _Ctx, where: str, t: dict[str, Any], schema: Schema | None, index: int
) -> tuple[Stage[Any, Any], Schema]:
    if schema is None:
        raise ctx.err(where, "enrich needs a known input schema (put a decode stage before it)")
    field_getter(schema, t["key"], where)
    cols = t["columns"]
    if not isinstance(cols, dict) or not cols:
        raise ctx.err(where, "columns must be a table of name = type")
    columns: list[tuple[str, type]] = []
    for c, tn in cols.items():
        if tn not in _TYPES:
            raise ctx.err(where, f"column {c!r}: unknown type {tn!r}")
        columns.append((c, _TYPES[tn]))
    sources = [k for k in ("rows", "csv", "postgres") if k in t]
    if len(sources) != 1:
        raise ctx.err(where, "enrich needs exactly one of rows, csv, postgres")
    lookup: Any
    if "rows" in t:
        rows = t["rows"]
        if not isinstance(rows, dict):
            raise ctx.err(where, "rows must be a table of key = [values...]")
        key_type = msgspec.structs.fields(schema)[schema.__struct_fields__.index(t["key"])].type
        conv: Callable[[str], Any] = key_type if key_type in (int, float) else str
        lookup = TableLookup({conv(k): tuple(v) for k, v in rows.items()})
    elif "csv" in t:
        import csv

        path = ctx.path(t["csv"], where)
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                key_type = msgspec.structs.fields(schema)[
                    schema.__struct_fields__.index(t["key"])
                ].type
                table: dict[Any, tuple[Any, ...]] = {}
                for row in reader:
                    table[msgspec.convert(row[t["key"]], key_type, strict=False)] = tuple(
                        msgspec.convert(row[c], ty, strict=False) for c, ty in columns
                    )
        except (OSError, KeyError, msgspec.ValidationError) as exc:
            raise ctx.err(where, f"cannot load {path}: {exc}") from None
        lookup = TableLookup(table)
    else:
        from tenfold.pipeline_engine._postgres import PostgresLookup

        pg = ctx.keys(
            f"{where}.postgres",
            t["postgres"],
            {"dsn", "table", "key_column"},
            {"dsn", "table", "key_column"},
        )
        lookup = PostgresLookup(pg["dsn"], pg["table"], pg["key_column"], [c for c, _ in columns])
    return column_join(
        schema,
        lookup,
        t["key"],
        columns,
        cache_size=t.get("cache_size", 100_000),
        on_missing=t.get("on_missing", "keep"),
    )


_AGG = re.compile(r"^\s*(count|sum|min|max|mean)\s*\(\s*([A-Za-z_]\w*)?\s*\)\s*$")


def _build_stage(
    ctx: _Ctx, index: int, table: Any, schemas: dict[str, Schema], schema: Schema | None
) -> tuple[Stage[Any, Any], Schema | None]:
    where = f"[[stages]] #{index + 1}"
    if not isinstance(table, dict) or "type" not in table:
        raise ctx.err(where, "missing required key 'type'")
    kind = table["type"]
    where = f"{where} ({kind})"
    if kind == "decode":
        t = ctx.keys(where, table, {"type", "schema", "max_bytes"}, {"schema"})
        out = _schema_ref(ctx, where, schemas, t["schema"])
        return DecodeJson(out, max_bytes=t.get("max_bytes", 1 << 20)), out
    if schema is None and kind in ("filter", "window"):
        raise ctx.err(where, f"{kind} needs a known input schema (put a decode stage before it)")
    if kind == "filter":
        t = ctx.keys(where, table, {"type", "where", "name"}, {"where"})
        exprs = t["where"] if isinstance(t["where"], list) else [t["where"]]
        return Filter(_predicate(ctx, where, exprs, schema), name=t.get("name", "filter")), schema
    if kind == "enrich":
        t = ctx.keys(
            where,
            table,
            {"type", "key", "columns", "rows", "csv", "postgres", "cache_size", "on_missing"},
            {"key", "columns"},
        )
        return _enrich(ctx, where, t, schema, index)
    if kind == "window":
        t = ctx.keys(
            where,
            table,
            {"type", "key", "time", "size_s", "slide_s", "aggregates", "allowed_lateness_s"},
            {"key", "time", "size_s", "aggregates"},
        )
        aggs: dict[str, tuple[str, str | None]] = {}
        for name, spec in t["aggregates"].items():
            m = _AGG.match(spec) if isinstance(spec, str) else None
            if m is None:
                raise ctx.err(
                    where, f"aggregate {name!r}: cannot parse {spec!r} (e.g. 'sum(amount)')"
                )
            if m.group(2):
                field_getter(schema, m.group(2), where)
            aggs[name] = (m.group(1), m.group(2))
        w = Window(
            key=field_getter(schema, t["key"], where),
            time=field_getter(schema, t["time"], where),
            size_s=t["size_s"],
            slide_s=t.get("slide_s"),
            aggregates=aggs,
            allowed_lateness_s=t.get("allowed_lateness_s", 0.0),
        )
        return w, w.output_type
    if kind == "python":
        t = ctx.keys(where, table, {"type", "function", "mode", "name", "output"}, {"function"})
        fn = _import(ctx, where, t["function"])
        mode = t.get("mode", "event")
        out_schema = _schema_ref(ctx, where, schemas, t["output"]) if "output" in t else None
        name = t.get("name", t["function"].split(":")[1])
        if mode == "event":
            return per_event(fn, name=name), out_schema
        if mode == "batch":
            return MapBatch(fn, name=name), out_schema
        raise ctx.err(where, f"mode must be 'event' or 'batch', got {mode!r}")
    raise ctx.err(
        where, f"unknown stage type {kind!r} (expected decode, filter, enrich, window, python)"
    )


def _build_sink(ctx: _Ctx, table: Any, schema: Schema | None) -> Sink[Any]:
    where = "[sink]"
    if not isinstance(table, dict) or "type" not in table:
        raise ctx.err(where, "missing required key 'type'")
    kind = table["type"]
    if kind == "null":
        ctx.keys(where, table, {"type"})
        return NullSink()
    if kind == "ndjson":
        t = ctx.keys(where, table, {"type", "path", "fsync"}, {"path"})
        return NdjsonSink(ctx.path(t["path"], where), fsync=t.get("fsync", True))
    if kind == "postgres":
        from tenfold.pipeline_engine._postgres import PostgresSink

        t = ctx.keys(
            where,
            table,
            {"type", "dsn", "table", "mode", "key", "create", "retry_timeout_s"},
            {"dsn", "table"},
        )
        if schema is None:
            raise ctx.err(where, "postgres sink needs a known schema (decode before it)")
        return PostgresSink(
            t["dsn"],
            t["table"],
            schema,
            mode=t.get("mode", "copy"),
            key=t.get("key"),
            create=t.get("create", True),
            retry_timeout_s=t.get("retry_timeout_s", 120.0),
        )
    if kind == "parquet":
        from tenfold.pipeline_engine._parquet import ParquetSink

        t = ctx.keys(where, table, {"type", "path"}, {"path"})
        if schema is None:
            raise ctx.err(where, "parquet sink needs a known schema (decode before it)")
        return ParquetSink(ctx.path(t["path"], where), schema)
    if kind == "kafka":
        from tenfold.pipeline_engine._kafka import KafkaSink

        t = ctx.keys(
            where, table, {"type", "bootstrap", "topic", "key", "config"}, {"bootstrap", "topic"}
        )
        key = field_getter(schema, t["key"], where) if "key" in t else None
        return KafkaSink(t["bootstrap"], t["topic"], key=key, config=t.get("config"))
    raise ctx.err(
        where, f"unknown sink type {kind!r} (expected null, ndjson, parquet, postgres, kafka)"
    )


def _build_dead_letters(ctx: _Ctx, table: Any) -> DeadLetterSink:
    where = "[dead_letters]"
    if not isinstance(table, dict) or "type" not in table:
        raise ctx.err(where, "missing required key 'type'")
    if table["type"] == "memory":
        ctx.keys(where, table, {"type"})
        return MemoryDeadLetters()
    if table["type"] == "ndjson":
        t = ctx.keys(where, table, {"type", "path"}, {"path"})
        return NdjsonDeadLetters(ctx.path(t["path"], where))
    raise ctx.err(where, f"unknown dead-letter type {table['type']!r} (expected memory, ndjson)")


def build_pipeline(
    doc: dict[str, Any], *, origin: str = "<pipeline>", base_dir: Path | None = None
) -> Pipeline[Any]:
    """Build (and fully check) a pipeline from a parsed TOML document."""
    try:
        return _build(doc, origin, base_dir)
    except PipelineDefinitionError as exc:
        if str(exc).startswith(f"{origin}: "):
            raise
        raise type(exc)(f"{origin}: {exc}") from None


def _build(doc: dict[str, Any], origin: str, base_dir: Path | None) -> Pipeline[Any]:
    ctx = _Ctx(origin, base_dir or Path.cwd())
    ctx.keys(
        "top level",
        doc,
        {"pipeline", "schemas", "source", "stages", "sink", "dead_letters"},
        {"source", "sink"},
    )
    opts = ctx.keys(
        "[pipeline]",
        doc.get("pipeline", {}),
        {
            "name",
            "batch_size",
            "linger_ms",
            "buffer_events",
            "checkpoints",
            "checkpoint_interval_s",
            "group_commit_events",
        },
    )
    schemas: dict[str, Schema] = {}
    raw_schemas = ctx.keys("[schemas]", doc.get("schemas", {}), set(doc.get("schemas", {})))
    for name, fields in raw_schemas.items():
        if not isinstance(fields, dict):
            raise ctx.err(f"[schemas.{name}]", "expected a table of field = type")
        schemas[name] = parse_schema(name, fields, origin)
    source, schema = _build_source(ctx, doc["source"], schemas)
    stages: list[Stage[Any, Any]] = []
    raw_stages = doc.get("stages", [])
    if not isinstance(raw_stages, list):
        raise ctx.err("[[stages]]", "expected an array of tables")
    for i, st in enumerate(raw_stages):
        stage, schema = _build_stage(ctx, i, st, schemas, schema)
        stages.append(stage)
    sink = _build_sink(ctx, doc["sink"], schema)
    dead = _build_dead_letters(ctx, doc["dead_letters"]) if "dead_letters" in doc else None
    checkpoints = ctx.path(opts["checkpoints"], "[pipeline]") if "checkpoints" in opts else None
    try:
        return Pipeline(
            source,
            stages,
            sink,
            name=opts.get("name", "pipeline"),
            batch_size=opts.get("batch_size", 10_000),
            linger_ms=opts.get("linger_ms", 50.0),
            buffer_events=opts.get("buffer_events", 100_000),
            dead_letters=dead,
            checkpoints=checkpoints,
            checkpoint_interval_s=opts.get("checkpoint_interval_s", 5.0),
            group_commit_events=opts.get("group_commit_events"),
        )
    except PipelineDefinitionError as exc:
        raise ctx.err("[pipeline]", str(exc)) from None


def load_pipeline(path: str | Path) -> Pipeline[Any]:
    """Read, check and build the pipeline in TOML file ``path`` (nothing runs yet)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineDefinitionError(f"cannot read pipeline file {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PipelineDefinitionError(f"{p}: not UTF-8 text") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PipelineDefinitionError(f"{p}: malformed TOML: {exc}") from None
    except RecursionError:
        raise PipelineDefinitionError(f"{p}: nested too deeply to be a pipeline") from None
    return build_pipeline(doc, origin=str(p), base_dir=p.parent)
