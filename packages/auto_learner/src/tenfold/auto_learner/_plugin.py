"""Registration of the Cross-Domain Auto Learner with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="auto_learner",
    title="Cross-Domain Auto Learner",
    summary="AutoML across domains with honest validation under shift and fast serving",
    commands={
        "learn": (
            "tenfold.auto_learner.cli:learn",
            "AutoML across domains: fit, predict, report, serve",
        ),
    },
    config=("auto_learner", "tenfold.auto_learner._config:AutoLearnerConfig"),
    scenarios="tenfold.auto_learner.bench:scenarios",
    kernel="tenfold.auto_learner.bench:kernel",
)
