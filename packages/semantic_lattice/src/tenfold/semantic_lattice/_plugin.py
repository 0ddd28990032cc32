"""Registration of the Semantic Lattice Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenfold.core.plugins import SystemPlugin

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario


def _commands() -> Sequence[click.Command]:
    from tenfold.semantic_lattice.cli import commands

    return commands()


def _scenarios() -> Sequence[Scenario]:
    from tenfold.semantic_lattice.bench import scenarios

    return scenarios()


def _kernel() -> None:
    """A deterministic slice of the hot path: parse the OWL 2 RL pack and stratify it."""
    from tenfold.semantic_lattice._datalog import parse_program, stratify
    from tenfold.semantic_lattice._packs import OWL_RL

    stratify(parse_program(OWL_RL, "owl-rl"))


plugin = SystemPlugin(
    name="semantic_lattice",
    title="Dynamic Semantic Lattice Engine",
    summary="Datalog with lattices, RDFS and OWL 2 RL reasoning over DuckDB",
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
