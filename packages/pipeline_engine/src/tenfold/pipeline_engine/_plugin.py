"""Registration of the Synthetic Pipeline Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="pipeline_engine",
    title="Synthetic Pipeline Engine",
    summary="Batched stream processing from Kafka to Postgres, effectively once",
)
