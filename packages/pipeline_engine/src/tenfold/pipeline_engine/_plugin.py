"""Registration of the Synthetic Pipeline Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="pipeline_engine",
    title="Synthetic Pipeline Engine",
    summary="Batched stream processing from Kafka to Postgres, effectively once",
    commands={
        "pipeline": (
            "tenfold.pipeline_engine.cli:pipeline_group",
            "Run and check stream pipelines from Kafka, Redis or files to Postgres",
        ),
    },
    scenarios="tenfold.pipeline_engine.bench:scenarios",
    kernel="tenfold.pipeline_engine.bench:kernel",
)
