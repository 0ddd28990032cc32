"""Registration of the Parallel Architecture Framework with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenfold.core.plugins import SystemPlugin

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario


def _commands() -> Sequence[click.Command]:
    from tenfold.parallel_framework.cli import commands

    return commands()


def _scenarios() -> Sequence[Scenario]:
    from tenfold.parallel_framework.bench import scenarios

    return scenarios()


def _kernel() -> None:
    """A 2,000-task stencil compiled and run inline: deterministic, no threads."""
    from tenfold.parallel_framework._api import Executor
    from tenfold.parallel_framework._workloads import stencil_dask

    Executor("inline").run(stencil_dask(2000))


plugin = SystemPlugin(
    name="parallel_framework",
    title="Parallel Architecture Framework",
    summary="A work-stealing DAG executor, local or on Ray and Dask",
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
