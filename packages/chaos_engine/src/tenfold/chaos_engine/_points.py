"""In-process fault points: ``@chaos.point("db.query")`` marks a place a fault may strike.

With no fault active at a point, the wrapper costs one dict lookup. With one
active, each call is a *decision*: a draw against the fault's probability, then
raise, delay or corrupt. Decisions and hits are counted per point so a test (or
the benchmark) can compare the observed ratio with the configured one.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tenfold.chaos_engine._record import Record
from tenfold.chaos_engine.errors import InjectedFault

if TYPE_CHECKING:
    import random

    from tenfold.chaos_engine._faults import PointFault

F = TypeVar("F", bound=Callable[..., Any])


def corrupt(value: Any) -> Any:
    """A plausible but wrong value of the same type (what a bit flip or bad row would give)."""
    if isinstance(value, bytes | bytearray) and value:
        data = bytearray(value)
        data[0] ^= 0xFF
        return bytes(data) if isinstance(value, bytes) else data
    if isinstance(value, str) and value:
        return value[::-1] if len(value) > 1 and value != value[::-1] else value + "\x00"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return -value if value else 1
    if isinstance(value, list | tuple) and value:
        return type(value)(reversed(value)) if len(value) > 1 else type(value)()
    if isinstance(value, dict) and value:
        return {}
    return None


class ActiveRule(Record):
    """One fault live at a point, with its own counters."""

    _fields = ("fault", "rng", "decisions", "hits")

    def __init__(
        self, fault: PointFault, rng: random.Random, decisions: int = 0, hits: int = 0
    ) -> None:
        self.fault = fault
        self.rng = rng
        self.decisions = decisions
        self.hits = hits


class PointStats(Record):
    _fields = ("calls", "decisions", "hits")

    def __init__(self, calls: int = 0, decisions: int = 0, hits: int = 0) -> None:
        self.calls = calls
        self.decisions = decisions
        self.hits = hits


class FaultPoints(Record):
    """A registry of fault points and the faults active at each."""

    _fields = ("seed", "_active", "stats", "known")

    def __init__(
        self,
        seed: int | None = None,
        _active: dict[str, list[ActiveRule]] | None = None,
        stats: dict[str, PointStats] | None = None,
        known: set[str] | None = None,
    ) -> None:
        self.seed = seed
        self._active: dict[str, list[ActiveRule]] = {} if _active is None else _active
        self.stats: dict[str, PointStats] = {} if stats is None else stats
        self.known: set[str] = set() if known is None else known

    def activate(self, fault: PointFault) -> ActiveRule:
        import random  # only once a point fault is live: a run without one never loads it

        rule = ActiveRule(fault, random.Random(self.seed))
        self._active.setdefault(fault.point, []).append(rule)
        self.stats.setdefault(fault.point, PointStats())
        return rule

    def deactivate(self, rule: ActiveRule) -> None:
        rules = self._active.get(rule.fault.point)
        if rules and rule in rules:
            rules.remove(rule)
            if not rules:
                del self._active[rule.fault.point]
        stats = self.stats.setdefault(rule.fault.point, PointStats())
        stats.decisions += rule.decisions
        stats.hits += rule.hits

    def active(self) -> dict[str, int]:
        return {name: len(rules) for name, rules in self._active.items()}

    def clear(self) -> None:
        for rules in list(self._active.values()):
            for rule in list(rules):
                self.deactivate(rule)

    def decide(self, name: str) -> PointFault | None:
        """One decision at ``name``: the fault that strikes this call, or ``None``."""
        rules = self._active.get(name)
        if not rules:
            return None
        for rule in rules:
            rule.decisions += 1
            if rule.rng.random() < rule.fault.probability:
                rule.hits += 1
                return rule.fault
        return None

    def point(self, name: str) -> Callable[[F], F]:
        """Decorate a function (sync or async) as fault point ``name``."""
        self.known.add(name)

        def wrap(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    fault = self.decide(name)
                    if fault is None:
                        return await fn(*args, **kwargs)
                    if fault.action == "raise":
                        raise InjectedFault(f"{fault.message} at fault point {name!r}")
                    if fault.action == "delay":
                        await asyncio.sleep(fault.delay_s)
                        return await fn(*args, **kwargs)
                    return corrupt(await fn(*args, **kwargs))

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                fault = self.decide(name)
                if fault is None:
                    return fn(*args, **kwargs)
                if fault.action == "raise":
                    raise InjectedFault(f"{fault.message} at fault point {name!r}")
                if fault.action == "delay":
                    time.sleep(fault.delay_s)
                    return fn(*args, **kwargs)
                return corrupt(fn(*args, **kwargs))

            return cast(F, wrapper)

        return wrap


chaos = FaultPoints()
"""The process-wide registry: ``@chaos.point("db.query")``."""
