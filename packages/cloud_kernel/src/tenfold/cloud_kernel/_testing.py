"""Helpers shared by the cloud kernel's tests (kept in the package: pytest's importlib mode
cannot import a conftest module)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF programs needs root")


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
