"""PostgreSQL: the effectively-once sink (COPY BINARY + offsets in one transaction) and lookups."""

from __future__ import annotations

import logging
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from tenfold.pipeline_engine._batch import Batch
from tenfold.pipeline_engine._sinks import Sink
from tenfold.pipeline_engine.errors import ConnectorError, FencedWrite, SchemaError

__all__ = ["PostgresLookup", "PostgresSink", "pg_types"]

log = logging.getLogger("tenfold.pipeline_engine.postgres")

_PG: dict[Any, str] = {int: "int8", float: "float8", str: "text", bool: "bool", bytes: "bytea"}


def pg_types(schema: type[msgspec.Struct]) -> list[tuple[str, str, bool]]:
    """``(column, postgres type, nullable)`` per field of ``schema``; Any is stored as text."""
    out = []
    for f in msgspec.structs.fields(schema):
        t, nullable = f.type, False
        if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            nullable = len(args) < len(typing.get_args(t))
            t = args[0] if len(args) == 1 else Any
        if t is Any:
            out.append((f.name, "text", True))
        elif t in _PG:
            out.append((f.name, _PG[t], nullable))
        else:
            raise SchemaError(
                f"postgres: field {f.name!r} of {schema.__name__} has type {t!r};"
                " supported: int, float, str, bool, bytes (optional allowed)"
            )
    return out


def _row_maker(
    schema: type[msgspec.Struct], cols: list[tuple[str, str, bool]]
) -> Callable[[Any], tuple[Any, ...]]:
    astuple = msgspec.structs.astuple
    any_text = [i for i, f in enumerate(msgspec.structs.fields(schema)) if f.type is Any]
    if not any_text:
        return astuple

    def row(e: Any) -> tuple[Any, ...]:
        values = list(astuple(e))
        for i in any_text:
            if values[i] is not None:
                values[i] = str(values[i])
        return tuple(values)

    return row


_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


class PostgresSink(Sink[Any]):
    """Rows into ``table`` with COPY BINARY; source positions and dead letters in the same transaction.

    ``mode="copy"``: plain COPY; the positions stored with the rows make a
    restart resume exactly after the last committed batch (effectively once).
    ``mode="upsert"``: COPY into a temporary table, then ``INSERT ... ON
    CONFLICT (key) DO UPDATE`` (idempotent on replay; needed behind stateful
    stages, whose outputs carry deterministic ids).
    ``create=False`` leaves the data table to the user (the offsets and
    dead-letter tables are always created if missing).
    A lost connection (server stopped, restarted, network) is retried with
    backoff for up to ``retry_timeout_s``; before retrying, the stored
    positions tell whether the batch whose commit was in flight landed.
    """

    name = "postgres"
    handles_dead_letters = True
    # A commit (WAL flush, offsets upsert, round trips) costs as much as a few
    # thousand rows: when batches queue up, one transaction takes them all.
    group_commit = True

    def __init__(
        self,
        dsn: str,
        table: str,
        schema: type[msgspec.Struct],
        *,
        mode: str = "copy",
        key: str | None = None,
        create: bool = True,
        retry_timeout_s: float = 120.0,
        offsets_table: str = "tenfold_pipeline_offsets",
        dead_letter_table: str = "tenfold_dead_letters",
    ) -> None:
        if mode not in ("copy", "upsert"):
            raise SchemaError(f"postgres sink mode must be 'copy' or 'upsert', got {mode!r}")
        if mode == "upsert" and not key:
            raise SchemaError("postgres sink in upsert mode needs key = <column>")
        self.dsn = dsn
        self.table = table
        self.schema = schema
        self.mode = mode
        self.key = key
        self.create = create
        self.retry_timeout_s = retry_timeout_s
        self.offsets_table = offsets_table
        self.dead_letter_table = dead_letter_table
        self.columns = pg_types(schema)
        if key is not None and key not in [c for c, _, _ in self.columns]:
            raise SchemaError(f"postgres sink key {key!r} is not a field of {schema.__name__}")
        self._row = _row_maker(schema, self.columns)
        self._conn: Any = None
        self._pipeline = "pipeline"
        self.retries = 0
        self.batches_already_committed = 0
        self.fenced = 0

    # -- connection ------------------------------------------------------------
    def _connect(self) -> Any:
        deadline = time.monotonic() + self.retry_timeout_s
        delay = 0.05
        while True:
            try:
                return psycopg.connect(self.dsn, autocommit=False, connect_timeout=5)
            except _RETRYABLE as exc:
                if time.monotonic() >= deadline:
                    raise ConnectorError(
                        f"postgres: cannot connect after {self.retry_timeout_s:g} s: {exc}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _ddl(self, conn: Any) -> None:
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}{}").format(
                sql.Identifier(c),
                sql.SQL(t),
                sql.SQL("" if n else " NOT NULL")
                + (sql.SQL(" PRIMARY KEY") if c == self.key else sql.SQL("")),
            )
            for c, t, n in self.columns
        )
        with conn.cursor() as cur:
            # CREATE TABLE IF NOT EXISTS races between sessions (unique violation on
            # pg_type); engines sharing a database serialize their DDL on this lock.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('tenfold_pipeline_ddl'))")
            if self.create:
                cur.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                        sql.Identifier(self.table), cols
                    )
                )
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, stream text NOT NULL,"
                    " next_offset bigint NOT NULL, PRIMARY KEY (pipeline, stream))"
                ).format(sql.Identifier(self.offsets_table))
            )
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, pipeline text NOT NULL,"
                    " stage text NOT NULL, reason text NOT NULL, source text NOT NULL,"
                    " payload bytea NOT NULL, at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(self.dead_letter_table))
            )
        conn.commit()

    def _stored_positions(self, conn: Any) -> dict[str, int]:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT stream, next_offset FROM {} WHERE pipeline = %s").format(
                    sql.Identifier(self.offsets_table)
                ),
                (self._pipeline,),
            )
            rows = cur.fetchall()
        conn.commit()
        return {s: int(o) for s, o in rows}

    def stored_positions(self) -> dict[str, int] | None:
        try:
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                return self._stored_positions(conn)
        except psycopg.Error as exc:
            raise ConnectorError(f"postgres: {str(exc).strip()}") from None

    def open(self, pipeline: str) -> dict[str, int]:
        self._pipeline = pipeline
        self._conn = self._connect()
        try:
            self._ddl(self._conn)
            return self._stored_positions(self._conn)
        except psycopg.Error as exc:
            raise ConnectorError(f"postgres: {exc}".strip()) from None

    # -- writing -----------------------------------------------------------------
    def _copy_sql(self, table: str) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c, _, _ in self.columns)
        )

    def _write_once(self, conn: Any, batch: Batch[Any]) -> None:
        row = self._row
        with conn.cursor() as cur:
            target = self.table
            if self.mode == "upsert" and batch.items:
                target = f"_tenfold_stage_{self.table}"
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
                    ).format(sql.Identifier(target), sql.Identifier(self.table))
                )
            if batch.items:
                with cur.copy(self._copy_sql(target)) as copy:
                    copy.set_types([t for _, t, _ in self.columns])
                    write_row = copy.write_row
                    for e in batch.items:
                        write_row(row(e))
            if self.mode == "upsert" and batch.items:
                names = [c for c, _, _ in self.columns]
                assert self.key is not None
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {t} ({cols}) SELECT DISTINCT ON ({k}) {cols} FROM {s}"
                        " ORDER BY {k}, ctid DESC ON CONFLICT ({k}) DO UPDATE SET {sets}"
                    ).format(
                        t=sql.Identifier(self.table),
                        s=sql.Identifier(target),
                        k=sql.Identifier(self.key),
                        cols=sql.SQL(", ").join(sql.Identifier(c) for c in names),
                        sets=sql.SQL(", ").join(
                            sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
                            for c in names
                            if c != self.key
                        )
                        if len(names) > 1
                        else sql.SQL("{} = excluded.{}").format(
                            sql.Identifier(self.key), sql.Identifier(self.key)
                        ),
                    )
                )
            if batch.dead:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} (pipeline, stage, reason, source, payload)"
                        " VALUES (%s, %s, %s, %s, %s)"
                    ).format(sql.Identifier(self.dead_letter_table)),
                    [(self._pipeline, d.stage, d.reason, d.source, d.payload) for d in batch.dead],
                )
            if batch.positions:
                self._store_positions(cur, batch)
        conn.commit()

    def _store_positions(self, cur: Any, batch: Batch[Any]) -> None:
        """Upsert the batch's positions; refuse (roll back) if another writer got there first.

        A stream with events in the batch (a start in ``batch.starts``) must
        still be stored at or before that start: a larger stored position means
        another engine already wrote these events (the partition moved while
        this batch was in flight), so the batch is rolled back and
        :class:`FencedWrite` raised; the engine restarts from the stored
        positions. Streams without events only ever move forward. Upsert mode
        does not fence: its replays (from a checkpoint) are expected and idempotent.
        """
        streams = list(batch.positions)
        fenced = self.mode == "copy"
        starts = [batch.starts.get(k) if fenced else None for k in streams]
        cur.execute(
            sql.SQL(
                "WITH v(stream, next_offset, start) AS"
                " (SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]))"
                " INSERT INTO {} AS cur (pipeline, stream, next_offset)"
                " SELECT %s, v.stream, v.next_offset FROM v"
                " ON CONFLICT (pipeline, stream) DO UPDATE SET next_offset = excluded.next_offset"
                " WHERE coalesce("
                "cur.next_offset <= (SELECT v.start FROM v WHERE v.stream = excluded.stream),"
                " cur.next_offset < excluded.next_offset)"
                " RETURNING cur.stream"
            ).format(sql.Identifier(self.offsets_table)),
            (streams, list(batch.positions.values()), starts, self._pipeline),
        )
        stored = {r[0] for r in cur.fetchall()}
        refused = sorted(
            k for k, st in zip(streams, starts, strict=True) if st is not None and k not in stored
        )
        if refused:
            cur.connection.rollback()
            self.fenced += 1
            raise FencedWrite(
                f"postgres: batch {batch.seq} rolled back: {refused[0]} is already stored past"
                f" {batch.starts[refused[0]]} by another writer (its partition moved);"
                " restart to resume from the stored positions"
            )

    def _already_committed(self, batch: Batch[Any]) -> bool:
        if not batch.positions:
            return False
        stored = self._stored_positions(self._conn)
        return all(stored.get(k, -1) >= v for k, v in batch.positions.items())

    def write(self, batch: Batch[Any]) -> None:
        deadline = time.monotonic() + self.retry_timeout_s
        delay = 0.05
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                    if self._already_committed(batch):
                        # The commit of this batch reached the server before the connection broke.
                        self.batches_already_committed += 1
                        return
                self._write_once(self._conn, batch)
                return
            except _RETRYABLE as exc:
                self.retries += 1
                log.warning("postgres: %s; retrying batch %d", str(exc).strip(), batch.seq)
                try:
                    if self._conn is not None:
                        self._conn.close()
                finally:
                    self._conn = None
                if time.monotonic() >= deadline:
                    raise ConnectorError(
                        f"postgres: batch {batch.seq} not written after"
                        f" {self.retry_timeout_s:g} s: {str(exc).strip()}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except psycopg.Error as exc:
                raise ConnectorError(f"postgres: {str(exc).strip()}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresLookup:
    """Enrichment rows from ``table`` by ``key_column``: one ``= ANY(keys)`` query per batch."""

    def __init__(
        self, dsn: str, table: str, key_column: str, columns: Sequence[str], *, retries: int = 3
    ) -> None:
        self.dsn = dsn
        self.retries = retries
        self._query = sql.SQL("SELECT {k}, {cols} FROM {t} WHERE {k} = ANY(%s)").format(
            k=sql.Identifier(key_column),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            t=sql.Identifier(table),
        )
        self._conn: Any = None
        self.queries = 0

    def fetch(self, keys: Iterable[Any]) -> Mapping[Any, tuple[Any, ...]]:
        wanted = list(keys)
        for attempt in range(self.retries + 1):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                with self._conn.cursor() as cur:
                    cur.execute(self._query, (wanted,))
                    self.queries += 1
                    return {r[0]: tuple(r[1:]) for r in cur.fetchall()}
            except _RETRYABLE as exc:
                self._conn = None
                if attempt == self.retries:
                    raise ConnectorError(f"postgres lookup: {str(exc).strip()}") from None
                time.sleep(0.1 * 2**attempt)
            except psycopg.Error as exc:
                raise ConnectorError(f"postgres lookup: {str(exc).strip()}") from None
        raise ConnectorError("postgres lookup: unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
