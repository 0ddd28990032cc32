"""Registration of the Synthetic Pipeline Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenfold.core.plugins import SystemPlugin

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario


def _commands() -> Sequence[click.Command]:
    from tenfold.pipeline_engine.cli import pipeline_group

    return [pipeline_group]


def _scenarios() -> Sequence[Scenario]:
    from tenfold.pipeline_engine.bench import scenarios

    return scenarios()


def _kernel() -> None:
    from tenfold.pipeline_engine.bench import kernel

    kernel()


plugin = SystemPlugin(
    name="pipeline_engine",
    title="Synthetic Pipeline Engine",
    summary="Batched stream processing from Kafka to Postgres, effectively once",
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
