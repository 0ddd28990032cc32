"""Exceptions raised by tenfold.chaos_engine."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class ChaosEngineError(TenfoldError):
    """Root of every error raised by the Chaos Engine."""
