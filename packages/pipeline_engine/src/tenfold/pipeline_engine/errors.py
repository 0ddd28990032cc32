"""Exceptions raised by tenfold.pipeline_engine."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class PipelineEngineError(TenfoldError):
    """Root of every error raised by the Synthetic Pipeline Engine."""


class PipelineDefinitionError(PipelineEngineError):
    """A pipeline (Python or TOML) names an unknown stage, type or option; raised before running."""


class SchemaError(PipelineDefinitionError):
    """A schema is missing, names an unsupported field type, or does not fit the stage using it."""


class ConnectorError(PipelineEngineError):
    """A source or sink (Kafka, Redis, PostgreSQL, a file) failed and retrying did not help."""


class FencedWrite(ConnectorError):
    """Another engine already stored part of a batch (its partition moved); the batch was rolled back."""


class CheckpointError(PipelineEngineError):
    """Stage state could not be saved to or restored from the SQLite checkpoint store."""


class PipelineFailed(PipelineEngineError):
    """A stage raised while the pipeline ran; the message names the stage and the cause."""


class SupervisorError(PipelineEngineError):
    """``--workers`` cannot split the pipeline's source, or a worker kept crashing past its restarts."""
