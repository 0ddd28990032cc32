from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.chaos_engine import FaultPoints
from tenfold.chaos_engine._kernel import tenfold_cgroups


@pytest.fixture
def points() -> FaultPoints:
    return FaultPoints(seed=7)


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def root_only() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("needs root: OS-plane faults act on cgroups, nftables and namespaces")
    yield
    # Names carry this process's id, so a concurrent run (another checkout's CI) is not ours.
    mine = [p for p in tenfold_cgroups("tfchaos_t") if f"x{os.getpid() % 100000}_" in p.name]
    assert not mine, f"a test left a chaos cgroup behind: {mine}"
