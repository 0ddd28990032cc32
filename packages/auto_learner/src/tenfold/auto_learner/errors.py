"""Exceptions raised by tenfold.auto_learner."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class AutoLearnerError(TenfoldError):
    """Root of every error raised by the Cross-Domain Auto Learner."""
