"""Exceptions raised by tenfold.symbolic_modeler."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class SymbolicModelerError(TenfoldError):
    """Root of every error raised by the Symbolic Reduction Modeler."""
