"""Fault types from plugins, driven through the core :class:`PluginManager`.

A fault plugin is an object with ``execute(action, params)``: ``("inject",
params)`` returns a token, ``("revert", token)`` takes the fault out. Each call
runs under the manager's timeout; a plugin that raises or hangs is marked failed
and the engine reports :class:`InjectionFailed` (the other plugins go on).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tenfold.chaos_engine._faults import PluginFault
from tenfold.chaos_engine.errors import InjectionFailed
from tenfold.core.errors import PluginError
from tenfold.core.plugins import PluginManager, PluginState

ENTRY_POINT_GROUP = "tenfold.chaos_engine.faults"


@dataclass
class _PluginApplied:
    manager: PluginManager
    name: str
    token: Any
    done: bool = False

    async def revert(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            await asyncio.to_thread(self.manager.execute, self.name, "revert", self.token)
        except PluginError as exc:
            raise InjectionFailed(f"plugin fault revert: {exc}") from None


class PluginActuator:
    """Applies :class:`PluginFault` through the plugin named in the fault."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    @classmethod
    def discover(cls, timeout_s: float = 2.0) -> PluginActuator:
        manager = PluginManager(timeout_s=timeout_s)
        manager.discover(ENTRY_POINT_GROUP)
        return cls(manager)

    def register(self, name: str, obj: object) -> None:
        """Add a plugin object directly (tests, embedding applications)."""
        self.manager.add(name, lambda: obj, source="registered")

    def undo_steps(self, fault: PluginFault, name: str) -> list[dict[str, Any]]:
        return []

    async def apply(self, fault: PluginFault, name: str) -> _PluginApplied:
        try:
            record = await asyncio.to_thread(self.manager.initialize, fault.plugin)
        except PluginError as exc:
            raise InjectionFailed(str(exc)) from None
        if record.state is not PluginState.INITIALIZED:
            raise InjectionFailed(
                f"fault plugin {fault.plugin!r} is {record.state.value}: {record.reason}"
            )
        try:
            token = await asyncio.to_thread(
                self.manager.execute, fault.plugin, "inject", fault.params
            )
        except PluginError as exc:
            raise InjectionFailed(str(exc)) from None
        return _PluginApplied(self.manager, fault.plugin, token)
