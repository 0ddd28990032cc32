"""Exceptions raised by tenfold.parallel_framework."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class ParallelFrameworkError(TenfoldError):
    """Root of every error raised by the Parallel Architecture Framework."""
