"""The core registers itself like any system: its benchmark scenarios."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="core",
    title="Shared Core",
    summary="Resource Governor, Plugin System and Cryptography",
    config=("core", "tenfold.core.governor:_CoreSection"),
    scenarios="tenfold.core._core_bench:scenarios",
    kernel="tenfold.core._core_bench:kernel",
)
