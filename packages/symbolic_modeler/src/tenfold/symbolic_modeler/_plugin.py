"""Registration of the Symbolic Reduction Modeler with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin


def kernel() -> None:
    """Reduce a fixed 100-operator expression (deterministic work for instruction counts)."""
    from tenfold.symbolic_modeler._corpus import random_expressions
    from tenfold.symbolic_modeler._parser import parse_expression
    from tenfold.symbolic_modeler._reduce import reduce

    for text in random_expressions(7, 100, 3):
        reduce(parse_expression(text))


plugin = SystemPlugin(
    name="symbolic_modeler",
    title="Symbolic Reduction Modeler",
    summary="A hash-consed term rewriter checked against SymPy",
    commands={
        "symbolic": (
            "tenfold.symbolic_modeler.cli:symbolic",
            "Reduce, match and saturate symbolic expressions",
        ),
    },
    scenarios="tenfold.symbolic_modeler.bench:scenarios",
    kernel="tenfold.symbolic_modeler._plugin:kernel",
)
