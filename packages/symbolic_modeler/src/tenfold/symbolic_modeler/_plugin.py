"""Registration of the Symbolic Reduction Modeler with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenfold.core.plugins import SystemPlugin

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario


def _commands() -> Sequence[click.Command]:
    from tenfold.symbolic_modeler.cli import symbolic

    return [symbolic]


def _scenarios() -> Sequence[Scenario]:
    from tenfold.symbolic_modeler.bench import scenarios

    return scenarios()


def _kernel() -> None:
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
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
