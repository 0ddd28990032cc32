"""Registration of the Contract Executable Compiler with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenfold.core.plugins import SystemPlugin

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario


def _commands() -> Sequence[click.Command]:
    from tenfold.contract_compiler.cli import commands

    return commands()


def _scenarios() -> Sequence[Scenario]:
    from tenfold.contract_compiler.bench import scenarios

    return scenarios()


def _kernel() -> None:
    """Parse and type-check a small generated contract (deterministic, no solver, no LLVM)."""
    from tenfold.contract_compiler._ast import SourceMap
    from tenfold.contract_compiler._checker import infer_types
    from tenfold.contract_compiler._generate import generate_contract
    from tenfold.contract_compiler._parser import parse_contract

    text = generate_contract(100, seed=7).ours
    infer_types(parse_contract(text), SourceMap(text))


plugin = SystemPlugin(
    name="contract_compiler",
    title="Contract Executable Compiler",
    summary="A verified contract language compiled to native code through LLVM",
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
