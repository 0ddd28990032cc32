"""Helpers shared by the cloud kernel's tests (kept in the package: pytest's importlib mode
cannot import a conftest module)."""

from __future__ import annotations

from tenfold.core.testing import needs_root, run_cli

__all__ = ["root_only", "run_cli"]

root_only = needs_root("loading BPF programs")
