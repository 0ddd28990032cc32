"""Registration of the Chaos Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenfold.core.plugins import SystemPlugin

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario


def _commands() -> Sequence[click.Command]:
    from tenfold.chaos_engine.cli import commands

    return commands()


def _scenarios() -> Sequence[Scenario]:
    from tenfold.chaos_engine.bench import scenarios

    return scenarios()


def _kernel() -> None:
    """A deterministic slice of the hot path: 20K fault-point decisions at p = 0.1."""
    from tenfold.chaos_engine._faults import PointFault
    from tenfold.chaos_engine._points import FaultPoints

    points = FaultPoints(seed=1)
    points.activate(PointFault(point="kernel", probability=0.1))
    for _ in range(20_000):
        points.decide("kernel")


plugin = SystemPlugin(
    name="chaos_engine",
    title="Chaos Engine",
    summary="Fault injection and resilience testing that always cleans up",
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
