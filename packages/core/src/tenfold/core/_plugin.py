"""The core registers itself like any system: its benchmark scenarios."""

from __future__ import annotations

from collections.abc import Sequence

from tenfold.core.bench import Scenario
from tenfold.core.plugins import SystemPlugin


def _scenarios() -> Sequence[Scenario]:
    from tenfold.core._core_bench import scenarios

    return scenarios()


def _kernel() -> None:
    from tenfold.core._core_bench import kernel

    kernel()


plugin = SystemPlugin(
    name="core",
    title="Shared Core",
    summary="Resource Governor, Plugin System and Cryptography",
    scenarios=_scenarios,
    kernel=_kernel,
)
