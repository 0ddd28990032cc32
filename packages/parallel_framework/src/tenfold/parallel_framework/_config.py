"""The ``[parallel_framework]`` section of tenfold.toml."""

from __future__ import annotations

import os

from pydantic import Field

from tenfold.core.config import Section, load_section
from tenfold.parallel_framework._backends import BACKENDS, Backend

__all__ = ["BACKENDS", "Backend", "ParallelConfig", "load_config"]


class ParallelConfig(Section):
    """Defaults for :class:`~tenfold.parallel_framework.Executor`; every key is optional.

    ``workers`` defaults to the number of CPUs; ``ray_address`` / ``dask_address``
    empty means a local Ray instance / a Dask LocalCluster started on demand.
    ``cpu_quota_pct`` and ``memory_limit_bytes`` put process workers in a cgroup
    (root only).
    """

    backend: Backend = "threads"
    workers: int | None = Field(default=None, ge=1, le=1024)
    batch_cap: int = Field(default=64, ge=1, le=65536)
    ray_address: str = ""
    dask_address: str = ""
    cpu_quota_pct: float | None = Field(default=None, gt=0)
    memory_limit_bytes: int | None = Field(default=None, gt=0)

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def load_config() -> ParallelConfig:
    return load_section("parallel_framework", ParallelConfig)
