"""Symbolic Reduction Modeler: A hash-consed term rewriter checked against SymPy."""

from tenfold.symbolic_modeler.errors import SymbolicModelerError as SymbolicModelerError

__all__ = ["SymbolicModelerError"]
