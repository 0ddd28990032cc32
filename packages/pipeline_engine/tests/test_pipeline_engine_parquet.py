from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from tenfold.pipeline_engine import (
    Flow,
    GeneratorSource,
    MemoryDeadLetters,
    MemorySink,
    ParquetSink,
    ParquetSource,
)


class Reading(msgspec.Struct):
    id: int
    sensor: str
    value: float
    ok: bool
    note: str | None = None


def test_parquet_round_trip_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "readings.parquet"
    source = GeneratorSource(Reading, count=12_345, encode=False, seed=3)
    Flow(source).into(ParquetSink(path, Reading), batch_size=5_000).run()
    assert pq.ParquetFile(path).metadata.num_rows == 12_345
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    sink: MemorySink = MemorySink()
    Flow(ParquetSource(path, Reading)).into(sink, batch_size=1_000).run()
    again = GeneratorSource(Reading, count=12_345, encode=False, seed=3)
    again.open({})
    expected = again.read(20_000, 0)
    assert expected is not None
    assert sink.events == expected.items


def test_parquet_rows_of_the_wrong_type_are_dead_letters_and_resume_works(tmp_path: Path) -> None:
    path = tmp_path / "mixed.parquet"
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "sensor": pa.array(["a", "b", None, "d"]),
            "value": pa.array([1.0, 2.0, 3.0, 4.0]),
            "ok": pa.array([True, False, True, True]),
        }
    )
    pq.write_table(table, path)
    sink: MemorySink = MemorySink()
    dead = MemoryDeadLetters()
    Flow(ParquetSource(path, Reading)).into(sink, dead_letters=dead).run()
    assert [r.id for r in sink.events] == [1, 2, 4]
    assert len(dead.letters) == 1 and dead.letters[0].reason.startswith("wrong type")
    assert dead.letters[0].source.endswith("#row2")
    resumed = ParquetSource(path, Reading)
    resumed.open({f"file:{path}": 3})
    batch = resumed.read(10, 0)
    assert batch is not None and [r.id for r in batch.items] == [4]
