"""Process faults: kill (a signal, not reversible) and pause (a freezer cgroup)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from tenfold.chaos_engine._faults import (
    ProcessKill,
    ProcessPause,
)
from tenfold.chaos_engine._kernel import (
    cgroup_dir,
    cgroup_make,
    cgroup_move,
)
from tenfold.chaos_engine.errors import (
    InjectionFailed,
    TargetGone,
)

if TYPE_CHECKING:
    from tenfold.chaos_engine._osplane import OsPlane
from tenfold.chaos_engine._os_common import _cgroup_of, _NoRevert, _StepsApplied


async def _apply_kill(plane: OsPlane, fault: ProcessKill, name: str) -> _NoRevert:
    try:
        os.kill(fault.pid, fault.signal)
    except ProcessLookupError:
        raise TargetGone(f"process_kill: process {fault.pid} does not exist") from None
    return _NoRevert()


def _pause_steps(fault: ProcessPause, name: str) -> list[dict[str, Any]]:
    return [
        {
            "op": "cgroup_remove",
            "path": str(cgroup_dir("freezer", name)),
            "kill": False,
            "release_to": str(_cgroup_of(fault.pid, "freezer")),
        }
    ]


async def _apply_pause(plane: OsPlane, fault: ProcessPause, name: str) -> _StepsApplied:
    steps = _pause_steps(fault, name)

    def put() -> None:
        path = cgroup_make("freezer", name)
        cgroup_move(fault.pid, path)
        (path / "freezer.state").write_text("FROZEN")
        for _ in range(1000):
            if (path / "freezer.state").read_text().strip() == "FROZEN":
                return
            time.sleep(0.001)
        raise InjectionFailed(f"process_pause: {fault.pid} did not freeze")

    await asyncio.to_thread(put)
    return _StepsApplied(steps)
