"""Exceptions raised by tenfold.auto_learner."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class AutoLearnerError(TenfoldError):
    """Root of every error raised by the Cross-Domain Auto Learner."""


class DataError(AutoLearnerError):
    """The training or prediction data is unusable (missing columns, NaN labels, one class...)."""


class SchemaMismatch(DataError):
    """Prediction data does not have the columns or types the model was trained on."""


class BudgetError(AutoLearnerError):
    """A time budget or search setting is invalid (zero, negative, not a number)."""


class ModelFileError(AutoLearnerError):
    """A saved model file is missing, corrupt or from an incompatible version."""
