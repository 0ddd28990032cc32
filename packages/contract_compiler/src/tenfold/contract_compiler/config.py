"""``[compiler.performance]`` of tenfold.toml, as a typed model."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from tenfold.core.config import Section, load_section

__all__ = ["CompilerConfig", "CompilerPerformance", "load_config"]


class CompilerPerformance(Section):
    """Compiler settings; the first three are the performance document's keys."""

    parallel_jobs: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    optimization_level: int = Field(default=1, ge=0, le=3)
    cache_size_mb: int = Field(default=1000, ge=0)
    smt_timeout_ms: int = Field(default=2000, ge=1)
    max_errors: int = Field(default=20, ge=1)
    max_depth: int = Field(default=200, ge=8, le=400)
    max_source_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    max_output_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    cache_dir: Path | None = None


class CompilerConfig(Section):
    """The ``[compiler]`` table."""

    performance: CompilerPerformance = Field(default_factory=CompilerPerformance)


def load_config(path: Path | None = None) -> CompilerPerformance:
    """Load ``[compiler.performance]`` (defaults, file, then TENFOLD_COMPILER__PERFORMANCE__*)."""
    return load_section("compiler", CompilerConfig, path=path).performance
