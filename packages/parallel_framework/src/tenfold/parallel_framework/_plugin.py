"""Registration of the Parallel Architecture Framework with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin


def kernel() -> None:
    """A 2,000-task stencil compiled and run inline: deterministic, no threads."""
    from tenfold.parallel_framework._api import Executor
    from tenfold.parallel_framework._workloads import stencil_dask

    Executor("inline").run(stencil_dask(2000))


plugin = SystemPlugin(
    name="parallel_framework",
    title="Parallel Architecture Framework",
    summary="A work-stealing DAG executor, local or on Ray and Dask",
    commands={
        "parallel": (
            "tenfold.parallel_framework.cli:parallel",
            "Run task graphs on the work-stealing executor, or on Ray and Dask",
        ),
    },
    config=("parallel_framework", "tenfold.parallel_framework._config:ParallelConfig"),
    scenarios="tenfold.parallel_framework.bench:scenarios",
    kernel="tenfold.parallel_framework._plugin:kernel",
)
