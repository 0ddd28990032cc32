"""Registration of the Chaos Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="chaos_engine",
    title="Chaos Engine",
    summary="Fault injection and resilience testing that always cleans up",
)
