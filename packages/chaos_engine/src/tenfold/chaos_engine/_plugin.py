"""Registration of the Chaos Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin


def kernel() -> None:
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
    commands={
        "chaos": (
            "tenfold.chaos_engine.cli:chaos",
            "Run resilience experiments whose faults are always reverted",
        ),
    },
    config=("chaos_engine", "tenfold.chaos_engine._config:ChaosConfig"),
    scenarios="tenfold.chaos_engine.bench:scenarios",
    kernel="tenfold.chaos_engine._plugin:kernel",
)
