"""Parquet files: a source reading record batches and a sink writing one row group per batch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from tenfold.pipeline_engine._batch import Batch, DeadLetter
from tenfold.pipeline_engine._sinks import Sink
from tenfold.pipeline_engine._sources import Source
from tenfold.pipeline_engine.errors import ConnectorError, SchemaError

__all__ = ["ParquetSink", "ParquetSource"]


def _arrow_schema(schema: type[msgspec.Struct]) -> Any:
    import pyarrow as pa

    from tenfold.pipeline_engine._postgres import pg_types

    by_pg = {
        "int8": pa.int64(),
        "float8": pa.float64(),
        "text": pa.string(),
        "bool": pa.bool_(),
        "bytea": pa.binary(),
    }
    return pa.schema(
        [pa.field(name, by_pg[t], nullable=nullable) for name, t, nullable in pg_types(schema)]
    )


class ParquetSource(Source[Any]):
    """Rows of a Parquet file as ``schema`` Structs; rows that do not fit are dead letters.

    Position ``file:<path>`` is the number of rows already read.
    """

    name = "parquet"

    def __init__(self, path: str | Path, schema: type[msgspec.Struct]) -> None:
        if not (isinstance(schema, type) and issubclass(schema, msgspec.Struct)):
            raise SchemaError(f"parquet source needs a msgspec.Struct schema, got {schema!r}")
        self.path = Path(path)
        self.schema = schema
        self._key = f"file:{self.path}"
        self._rows: Any = None
        self._pending: list[dict[str, Any]] = []
        self._row = 0

    def open(self, positions: dict[str, int]) -> None:
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, ValueError) as exc:
            raise ConnectorError(f"cannot open Parquet file {self.path}: {exc}") from None
        self._rows = self._file.iter_batches(batch_size=8192)
        skip = positions.get(self._key, 0)
        self._pending = []
        self._row = 0
        while self._row < skip:
            chunk = self._next_rows(skip - self._row)
            if not chunk:
                break
            self._row += len(chunk)

    def _next_rows(self, n: int) -> list[dict[str, Any]]:
        while len(self._pending) < n:
            record_batch = next(self._rows, None)
            if record_batch is None:
                break
            self._pending += record_batch.to_pylist()
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def read(self, max_events: int, linger_s: float) -> Batch[Any] | None:
        rows = self._next_rows(max_events)
        if not rows:
            return None
        convert, schema = msgspec.convert, self.schema
        items: list[Any] = []
        dead: list[DeadLetter] = []
        for i, row in enumerate(rows):
            try:
                items.append(convert(row, schema))
            except msgspec.ValidationError as exc:
                dead.append(
                    DeadLetter(
                        self.name,
                        f"wrong type: {exc}",
                        f"{self.path}#row{self._row + i}",
                        msgspec.json.encode(row),
                    )
                )
        self._row += len(rows)
        return Batch(items, time.monotonic_ns(), {self._key: self._row}, dead=dead)


class ParquetSink(Sink[Any]):
    """Writes ``schema`` Structs to a Parquet file, one row group per batch (closed at the end)."""

    name = "parquet"

    def __init__(self, path: str | Path, schema: type[msgspec.Struct]) -> None:
        self.path = Path(path)
        self.schema = schema
        self._arrow = _arrow_schema(schema)
        self._fields = list(schema.__struct_fields__)
        self._writer: Any = None

    def open(self, pipeline: str) -> dict[str, int]:
        import pyarrow.parquet as pq

        try:
            self._writer = pq.ParquetWriter(self.path, self._arrow)
        except (OSError, ValueError) as exc:
            raise ConnectorError(f"cannot write Parquet file {self.path}: {exc}") from None
        return {}

    def write(self, batch: Batch[Any]) -> None:
        import pyarrow as pa

        if not batch.items:
            return
        columns = list(zip(*(msgspec.structs.astuple(e) for e in batch.items), strict=True))
        table = pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(columns, self._arrow, strict=True)],
            schema=self._arrow,
        )
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
