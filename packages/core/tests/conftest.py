from __future__ import annotations

import pytest

from tenfold.core import testing


@pytest.fixture
def cli():
    """``cli("config", "show", env=..., cwd=...)``: ``tenfold`` in a child process."""
    return testing.run_cli


needs_root = testing.needs_root("cgroups")
