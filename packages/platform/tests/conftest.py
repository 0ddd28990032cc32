"""Every platform test names its namespaces after this run (``TENFOLD_PLATFORM_PREFIX``).

Two test runs on one machine (two worktrees, or CI beside a developer) then
never create, or delete, each other's ``<prefix>-attacker`` and ``<prefix>-victim``.
Set here, at collection, so the test modules' names and every ``tenfold
platform`` child process see it; a prefix already in the environment is kept.
"""

from __future__ import annotations

import os

from tenfold.platform._platform import PREFIX_ENV

os.environ.setdefault(PREFIX_ENV, f"t{os.getpid():x}"[:12])
