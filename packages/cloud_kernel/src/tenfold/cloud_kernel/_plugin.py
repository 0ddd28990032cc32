"""Registration of the Linux Scalable Cloud Kernel with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from tenfold.core.bench import Scenario
from tenfold.core.plugins import SystemPlugin


def _commands() -> Sequence[click.Command]:
    from tenfold.cloud_kernel.cli import commands

    return commands()


def _scenarios() -> Sequence[Scenario]:
    from tenfold.cloud_kernel.bench import scenarios

    return scenarios()


def _kernel() -> None:
    from tenfold.cloud_kernel.bench import kernel

    kernel()


plugin = SystemPlugin(
    name="cloud_kernel",
    title="Linux Scalable Cloud Kernel",
    summary="eBPF programs driven from Python: XDP block lists, syscall tracing, socket filters",
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
