"""The ``[chaos_engine]`` configuration section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tenfold.core.config import Section, load_section


class PerformanceConfig(Section):
    """``[chaos_engine.performance]``: the limits named by the performance document."""

    max_concurrent_faults: int = Field(5000, ge=1, le=1_000_000)
    fault_queue_size: int = Field(1000, ge=1, le=1_000_000)
    monitoring_buffer_size: int = Field(1000, ge=1, le=10_000_000)


def _default_performance() -> PerformanceConfig:
    return PerformanceConfig.model_validate({})


class ChaosConfig(Section):
    """``[chaos_engine]``: the whole section."""

    performance: PerformanceConfig = Field(
        default_factory=lambda: PerformanceConfig.model_validate({})
    )


def load_config(path: Path | None = None) -> ChaosConfig:
    """Read ``[chaos_engine]`` from the configuration in force (``ConfigError`` names the key)."""
    return load_section("chaos_engine", ChaosConfig, path=path)
