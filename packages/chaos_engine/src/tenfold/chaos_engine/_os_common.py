"""What every OS-plane fault family shares: applied-fault handles and the actuator shape."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.chaos_engine._kernel import CGROUP_ROOT
from tenfold.chaos_engine._undo import run_steps
from tenfold.chaos_engine.errors import TargetGone

if TYPE_CHECKING:
    pass


@dataclass
class _StepsApplied:
    """Reverted by running the same undo steps the journal holds."""

    steps: list[dict[str, Any]]
    done: bool = False

    async def revert(self) -> None:
        if not self.done:
            self.done = True
            await asyncio.to_thread(run_steps, self.steps)


@dataclass
class _NoRevert:
    async def revert(self) -> None:
        return None


def _no_steps(fault: Any, name: str) -> list[dict[str, Any]]:
    return []


def _cgroup_of(pid: int, controller: str) -> Path:
    """The v1 cgroup of ``pid`` in ``controller`` (where to put it back)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except FileNotFoundError:
        raise TargetGone(f"process {pid} does not exist") from None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    return CGROUP_ROOT / controller


def _qdisc_handle(name: str) -> str:
    return f"{int(hashlib.sha1(name.encode()).hexdigest()[:4], 16) % 0xFFFE + 1:x}:"
