"""Exceptions raised by tenfold.semantic_lattice."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class SemanticLatticeError(TenfoldError):
    """Root of every error raised by the Dynamic Semantic Lattice Engine."""
