"""Synthetic Pipeline Engine: Batched stream processing from Kafka to Postgres, effectively once."""

from tenfold.pipeline_engine.errors import PipelineEngineError as PipelineEngineError

__all__ = ["PipelineEngineError"]
