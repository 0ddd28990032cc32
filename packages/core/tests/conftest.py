from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tenfold.core import testing

REPO = Path(__file__).resolve().parents[3]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenfold.core", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli():
    return run_cli


needs_root = testing.needs_root("cgroups")
