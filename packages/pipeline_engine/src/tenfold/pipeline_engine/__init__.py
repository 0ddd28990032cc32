"""Synthetic Pipeline Engine: batched stream processing from Kafka to Postgres, effectively once."""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.pipeline_engine._batch import Batch as Batch
    from tenfold.pipeline_engine._batch import DeadLetter as DeadLetter
    from tenfold.pipeline_engine._checkpoint import CheckpointStore as CheckpointStore
    from tenfold.pipeline_engine._engine import Flow as Flow
    from tenfold.pipeline_engine._engine import Pipeline as Pipeline
    from tenfold.pipeline_engine._engine import RunReport as RunReport
    from tenfold.pipeline_engine._kafka import KafkaSink as KafkaSink
    from tenfold.pipeline_engine._kafka import KafkaSource as KafkaSource
    from tenfold.pipeline_engine._parquet import ParquetSink as ParquetSink
    from tenfold.pipeline_engine._parquet import ParquetSource as ParquetSource
    from tenfold.pipeline_engine._postgres import PostgresLookup as PostgresLookup
    from tenfold.pipeline_engine._postgres import PostgresSink as PostgresSink
    from tenfold.pipeline_engine._redis import RedisStreamSource as RedisStreamSource
    from tenfold.pipeline_engine._sinks import DeadLetterSink as DeadLetterSink
    from tenfold.pipeline_engine._sinks import MemoryDeadLetters as MemoryDeadLetters
    from tenfold.pipeline_engine._sinks import MemorySink as MemorySink
    from tenfold.pipeline_engine._sinks import NdjsonDeadLetters as NdjsonDeadLetters
    from tenfold.pipeline_engine._sinks import NdjsonSink as NdjsonSink
    from tenfold.pipeline_engine._sinks import NullSink as NullSink
    from tenfold.pipeline_engine._sinks import Sink as Sink
    from tenfold.pipeline_engine._sources import CsvSource as CsvSource
    from tenfold.pipeline_engine._sources import GeneratorSource as GeneratorSource
    from tenfold.pipeline_engine._sources import MemorySource as MemorySource
    from tenfold.pipeline_engine._sources import NdjsonSource as NdjsonSource
    from tenfold.pipeline_engine._sources import Source as Source
    from tenfold.pipeline_engine._stages import DecodeJson as DecodeJson
    from tenfold.pipeline_engine._stages import Enrich as Enrich
    from tenfold.pipeline_engine._stages import Filter as Filter
    from tenfold.pipeline_engine._stages import Lookup as Lookup
    from tenfold.pipeline_engine._stages import Map as Map
    from tenfold.pipeline_engine._stages import MapBatch as MapBatch
    from tenfold.pipeline_engine._stages import Stage as Stage
    from tenfold.pipeline_engine._stages import TableLookup as TableLookup
    from tenfold.pipeline_engine._stages import Where as Where
    from tenfold.pipeline_engine._stages import Window as Window
    from tenfold.pipeline_engine._stages import column_join as column_join
    from tenfold.pipeline_engine._stages import per_event as per_event
    from tenfold.pipeline_engine._supervisor import Supervisor as Supervisor
    from tenfold.pipeline_engine._supervisor import split_partitions as split_partitions
    from tenfold.pipeline_engine._toml import build_pipeline as build_pipeline
    from tenfold.pipeline_engine._toml import load_pipeline as load_pipeline
    from tenfold.pipeline_engine._toml import parse_schema as parse_schema
    from tenfold.pipeline_engine.errors import CheckpointError as CheckpointError
    from tenfold.pipeline_engine.errors import ConnectorError as ConnectorError
    from tenfold.pipeline_engine.errors import FencedWrite as FencedWrite
    from tenfold.pipeline_engine.errors import PipelineDefinitionError as PipelineDefinitionError
    from tenfold.pipeline_engine.errors import PipelineEngineError as PipelineEngineError
    from tenfold.pipeline_engine.errors import PipelineFailed as PipelineFailed
    from tenfold.pipeline_engine.errors import SchemaError as SchemaError
    from tenfold.pipeline_engine.errors import SupervisorError as SupervisorError

__all__ = [
    "Batch",
    "CheckpointError",
    "CheckpointStore",
    "ConnectorError",
    "CsvSource",
    "DeadLetter",
    "DeadLetterSink",
    "DecodeJson",
    "Enrich",
    "FencedWrite",
    "Filter",
    "Flow",
    "GeneratorSource",
    "KafkaSink",
    "KafkaSource",
    "Lookup",
    "Map",
    "MapBatch",
    "MemoryDeadLetters",
    "MemorySink",
    "MemorySource",
    "NdjsonDeadLetters",
    "NdjsonSink",
    "NdjsonSource",
    "NullSink",
    "ParquetSink",
    "ParquetSource",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineEngineError",
    "PipelineFailed",
    "PostgresLookup",
    "PostgresSink",
    "RedisStreamSource",
    "RunReport",
    "SchemaError",
    "Sink",
    "Source",
    "Stage",
    "Supervisor",
    "SupervisorError",
    "TableLookup",
    "Where",
    "Window",
    "build_pipeline",
    "column_join",
    "load_pipeline",
    "parse_schema",
    "per_event",
    "split_partitions",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._batch": ["Batch", "DeadLetter"],
        "._checkpoint": ["CheckpointStore"],
        "._engine": ["Flow", "Pipeline", "RunReport"],
        "._kafka": ["KafkaSink", "KafkaSource"],
        "._parquet": ["ParquetSink", "ParquetSource"],
        "._postgres": ["PostgresLookup", "PostgresSink"],
        "._redis": ["RedisStreamSource"],
        "._sinks": [
            "DeadLetterSink",
            "MemoryDeadLetters",
            "MemorySink",
            "NdjsonDeadLetters",
            "NdjsonSink",
            "NullSink",
            "Sink",
        ],
        "._sources": ["CsvSource", "GeneratorSource", "MemorySource", "NdjsonSource", "Source"],
        "._stages": [
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
            "per_event",
        ],
        "._supervisor": ["Supervisor", "split_partitions"],
        "._toml": ["build_pipeline", "load_pipeline", "parse_schema"],
        ".errors": [
            "CheckpointError",
            "ConnectorError",
            "FencedWrite",
            "PipelineDefinitionError",
            "PipelineEngineError",
            "PipelineFailed",
            "SchemaError",
            "SupervisorError",
        ],
    },
    __all__,
)
