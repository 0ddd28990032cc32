"""Registration of the Symbolic Reduction Modeler with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="symbolic_modeler",
    title="Symbolic Reduction Modeler",
    summary="A hash-consed term rewriter checked against SymPy",
)
