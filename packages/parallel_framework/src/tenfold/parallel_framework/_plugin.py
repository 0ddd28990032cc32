"""Registration of the Parallel Architecture Framework with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="parallel_framework",
    title="Parallel Architecture Framework",
    summary="A work-stealing DAG executor, local or on Ray and Dask",
)
