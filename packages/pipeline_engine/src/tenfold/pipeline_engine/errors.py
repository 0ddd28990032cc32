"""Exceptions raised by tenfold.pipeline_engine."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class PipelineEngineError(TenfoldError):
    """Root of every error raised by the Synthetic Pipeline Engine."""
