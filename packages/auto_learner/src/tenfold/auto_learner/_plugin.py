"""Registration of the Cross-Domain Auto Learner with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="auto_learner",
    title="Cross-Domain Auto Learner",
    summary="AutoML across domains with honest validation under shift",
)
