"""Helpers shared by the cloud kernel's tests (kept in the package: pytest's importlib mode
cannot import a conftest module)."""

from __future__ import annotations

import subprocess
import sys

from tenfold.core.testing import needs_root

root_only = needs_root("loading BPF programs")


def run_cli(
    *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenfold.core", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        check=False,
    )
