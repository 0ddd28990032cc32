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
    assert not tenfold_cgroups("tfchaos_t"), "a test left a chaos cgroup behind"
