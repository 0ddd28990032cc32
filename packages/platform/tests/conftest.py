"""Every platform test names its namespaces after this run (``TENFOLD_PLATFORM_PREFIX``).

Two test runs on one machine (two worktrees, or CI beside a developer) then
never create, or delete, each other's ``<prefix>-attacker`` and ``<prefix>-victim``.
Set here, at collection, so the test modules' names and every ``tenfold
platform`` child process see it; a prefix already in the environment is kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from tenfold.platform._platform import PREFIX_ENV

os.environ.setdefault(PREFIX_ENV, f"t{os.getpid():x}"[:12])


@pytest.fixture
def first_decision() -> Callable[[Any], None]:
    """Waits until a platform's ledger holds a decision (the attack stream's first ban).

    A fault run checks that bans kept coming through every fault, counting from the
    first check; started before any ban was made, a quick first fault would find none.
    """

    def wait(platform: Any, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while platform.status()["ledger"]["decisions"] == 0:
            assert time.monotonic() < deadline, f"no decision within {timeout_s:g} s"
            time.sleep(0.2)

    return wait
