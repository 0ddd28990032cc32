from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    """Every test must leave no tenfold pins, namespaces or programs behind."""
    import os

    from tenfold.cloud_kernel._status import program_ids_of

    before = program_ids_of(os.getpid())  # module fixtures may hold programs across tests
    yield
    from tenfold.cloud_kernel._netns import leftover_namespaces
    from tenfold.cloud_kernel._xdp import PIN_ROOT

    assert program_ids_of(os.getpid()) <= before  # what the test loaded, it closed

    assert leftover_namespaces() == []
    assert not PIN_ROOT.exists() or not any(PIN_ROOT.iterdir())
