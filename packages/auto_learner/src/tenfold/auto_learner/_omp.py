"""OpenMP settings applied before LightGBM or scikit-learn load their OpenMP runtime.

By default GNU OpenMP threads spin for a while after each parallel region. On
a machine shared with other work that spinning takes the cores the next region
needs: one 10 s fit took 47 s under contention. Passive waiting gives the core
back at once. The user's own setting wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
