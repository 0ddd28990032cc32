"""Benchmark scenarios (filled in below)."""

from __future__ import annotations

from tenfold.core.bench import Scenario


def scenarios() -> list[Scenario]:
    return []
