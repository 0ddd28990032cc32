"""``[auto_learner.performance]``: the document's tuning keys."""

from __future__ import annotations

import os

from pydantic import Field

from tenfold.core.config import Section, load_section

__all__ = ["AutoLearnerConfig", "PerformanceConfig", "load_config"]


class PerformanceConfig(Section):
    batch_size: int = Field(default=32, gt=0, le=1_000_000)
    num_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0, le=1024)
    max_cache_mb: int = Field(default=1000, gt=0)


class AutoLearnerConfig(Section):
    performance: PerformanceConfig = PerformanceConfig()


def load_config() -> AutoLearnerConfig:
    return load_section("auto_learner", AutoLearnerConfig)
