"""Registration of the Cross-Domain Auto Learner with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from tenfold.core.bench import Scenario
from tenfold.core.plugins import SystemPlugin


def _commands() -> Sequence[click.Command]:
    from tenfold.auto_learner.cli import commands

    return commands()


def _scenarios() -> Sequence[Scenario]:
    from tenfold.auto_learner.bench import scenarios

    return scenarios()


def _kernel() -> None:
    from tenfold.auto_learner.bench import kernel

    kernel()


plugin = SystemPlugin(
    name="auto_learner",
    title="Cross-Domain Auto Learner",
    summary="AutoML across domains with honest validation under shift and fast serving",
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
