"""The engine: admission (queue, concurrency, governor), journal, actuators, TTL, revert.

Invariants the engine keeps:

* at most ``fault_queue_size`` injections are in flight at once; the next one is
  refused at once (:class:`FaultQueueFull`), never queued without bound;
* at most ``max_concurrent_faults`` faults are active or in flight;
* an OS fault's journal record, with the steps that undo it, is written before
  the fault touches the kernel (``_journal`` says why a write suffices); a
  fault that fails half-way is undone before the error reaches the caller;
* every fault has a TTL (``duration_s``): a timer reverts it here, and the
  watchdog process reverts it if this process is gone;
* :meth:`ChaosEngine.close` (and leaving ``async with``) reverts everything.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from tenfold.chaos_engine._config import ChaosConfig, PerformanceConfig
    from tenfold.chaos_engine._faults import Fault, PointFault
from tenfold.chaos_engine._journal import Journal
from tenfold.chaos_engine._monitor import MetricsSnapshot, Monitor
from tenfold.chaos_engine._points import ActiveRule, FaultPoints, chaos
from tenfold.chaos_engine._record import Frozen, Record
from tenfold.chaos_engine.errors import (
    ChaosEngineError,
    ConcurrencyLimit,
    EngineClosed,
    FaultRefused,
    InjectionFailed,
    InvalidFault,
    JournalError,
)

_INLINE_REPLAY_BYTES = 64 * 1024  # a journal read on the event loop's thread at open
_EXPERIMENT = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
DEFAULT_JOURNAL_DIR = Path(".tenfold/chaos")


class _DefaultPerformance(Frozen):
    """``[chaos_engine.performance]``'s defaults, without importing the configuration models."""

    _fields = ("max_concurrent_faults", "fault_queue_size", "monitoring_buffer_size")
    max_concurrent_faults: int
    fault_queue_size: int
    monitoring_buffer_size: int

    def __init__(
        self,
        max_concurrent_faults: int = 5000,
        fault_queue_size: int = 1000,
        monitoring_buffer_size: int = 1000,
    ) -> None:
        fields = self.__dict__
        fields["max_concurrent_faults"] = max_concurrent_faults
        fields["fault_queue_size"] = fault_queue_size
        fields["monitoring_buffer_size"] = monitoring_buffer_size


def configured_performance() -> PerformanceConfig:
    """The ``[chaos_engine.performance]`` in force.

    With no configuration file and no ``TENFOLD_<SECTION>__<KEY>`` variable, that
    is the defaults, returned without loading pydantic and the configuration
    models (a third of ``chaos run``'s start-up); otherwise the section is read
    and validated as usual (errors name the file and key).
    """
    from tenfold.core._config_path import config_path

    if config_path() is None and not any(
        k.startswith("TENFOLD_") and "__" in k[8:] for k in os.environ
    ):
        return cast("PerformanceConfig", _DefaultPerformance())
    from tenfold.chaos_engine._config import load_config

    return load_config().performance


class Applied(Protocol):
    """A fault in place; ``revert`` takes it out and is idempotent."""

    async def revert(self) -> None: ...


class Actuator(Protocol):
    """Puts one kind of fault in place.

    ``undo_steps`` names the kernel objects ``apply`` may create, as journal
    steps that delete them (empty for data-plane faults, which die with the
    process); ``apply`` must leave nothing behind if it raises.
    """

    def undo_steps(self, fault: Any, name: str) -> list[dict[str, Any]]: ...

    async def apply(self, fault: Any, name: str) -> Applied: ...


class _PointApplied(Record):
    _fields = ("points", "rule")

    def __init__(self, points: FaultPoints, rule: ActiveRule) -> None:
        self.points = points
        self.rule = rule

    async def revert(self) -> None:
        self.points.deactivate(self.rule)


class _PointActuator(Record):
    _fields = ("points",)

    def __init__(self, points: FaultPoints) -> None:
        self.points = points

    def undo_steps(self, fault: PointFault, name: str) -> list[dict[str, Any]]:
        return []

    async def apply(self, fault: PointFault, name: str) -> Applied:
        return _PointApplied(self.points, self.points.activate(fault))


class _CallbackApplied(Record):
    _fields = ("undo", "done")

    def __init__(self, undo: Callable[[], Awaitable[None]], done: bool = False) -> None:
        self.undo = undo
        self.done = done

    async def revert(self) -> None:
        if not self.done:
            self.done = True
            await self.undo()


class FaultHandle(Record):
    """A fault the engine injected: ``await handle.revert()`` takes it out (idempotent)."""

    _fields = (
        "fault_id",
        "fault",
        "injected_at",
        "deadline",
        "_engine",
        "_applied",
        "_release",
        "_timer",
        "reverted",
    )
    _repr_fields = ("fault_id", "fault", "injected_at", "deadline", "reverted")

    def __init__(
        self,
        fault_id: str,
        fault: Fault,
        injected_at: float,
        deadline: float,
        _engine: ChaosEngine,
        _applied: Applied,
        _release: Callable[[], None] | None = None,
        _timer: asyncio.TimerHandle | None = None,
        reverted: bool = False,
    ) -> None:
        self.fault_id = fault_id
        self.fault = fault
        self.injected_at = injected_at
        self.deadline = deadline
        self._engine = _engine
        self._applied = _applied
        self._release = _release
        self._timer = _timer
        self.reverted = reverted

    @property
    def active(self) -> bool:
        return not self.reverted

    async def revert(self) -> None:
        await self._engine._revert(self)


def target_key(fault: Fault) -> str:
    """What a fault hits, for the per-target rate: its pid, namespace, proxy, point or pool."""
    for attr in ("pid", "netns", "proxy", "point", "mount", "plugin"):
        value = getattr(fault, attr, None)
        if value is not None:
            return f"{attr}={value}"
    return "pool"


class _TargetRate:
    """A token bucket per target: ``rate`` faults a second, a burst of one second's worth."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise InvalidFault(f"per_target_rate_per_s must be > 0, got {rate!r}")
        self.rate = rate
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, engine: ChaosEngine) -> None:
        now = time.monotonic()
        tokens, stamp = self.buckets.get(key, (self.rate, now))
        tokens = min(self.rate, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            raise engine._refuse(
                "rate", f"{key}: more than {self.rate:g} faults a second on one target"
            )
        self.buckets[key] = (tokens - 1, now)


class ChaosEngine:
    """Injects typed faults under the safety limits and always takes them out again.

    Build one with :meth:`create`; use it as an async context manager so that
    every fault is reverted when the block ends, however it ends.
    """

    def __init__(
        self,
        perf: PerformanceConfig,
        governor: object | None,
        *,
        experiment: str,
        journal_path: Path,
        journal_fsync: bool = False,
        points: FaultPoints,
        watchdog: bool,
        per_target_rate_per_s: float,
    ) -> None:
        self.perf = perf
        self.governor = governor
        self.experiment = experiment
        self.journal = Journal(journal_path, fsync=journal_fsync)
        self.points = points
        self.monitor = Monitor(perf.monitoring_buffer_size)
        self.proxies: dict[str, Any] = {}
        self.plugins: Any = None
        self._use_watchdog = watchdog
        self._watchdog: Any = None
        self._actuators: dict[str, Actuator] = {"point": _PointActuator(points)}
        self._os_plane: Any = None
        self._handles: dict[str, FaultHandle] = {}
        self._pending = 0
        self._reserved = 0
        self._ids = itertools.count(1)
        self._closed = False
        self.recovered: list[str] = []
        self._limiter = _TargetRate(per_target_rate_per_s)

    # -- construction -----------------------------------------------------------------
    @classmethod
    async def create(
        cls,
        config: ChaosConfig | PerformanceConfig | None = None,
        governor: object | None = None,
        *,
        experiment: str = "default",
        journal_dir: Path | None = None,
        points: FaultPoints | None = None,
        watchdog: bool = True,
        per_target_rate_per_s: float = 10_000.0,
        journal_fsync: bool = False,
    ) -> ChaosEngine:
        """Open the journal (exclusively) and return a ready engine.

        ``config`` defaults to ``[chaos_engine]`` of the configuration in force;
        ``governor`` is a ``tenfold.core.governor.Governor`` (its
        ``reserve_memory`` budgets memory hogs, ``throttle_cpu`` gates CPU hogs;
        ``None`` skips those checks); ``per_target_rate_per_s`` bounds how fast
        faults hit one target (a pid, namespace, proxy, fault point), with a
        burst of one second's worth; ``watchdog`` starts the dead-man process
        the first time an OS fault is injected; ``journal_fsync`` also fsyncs
        each batch of journal records (a record is always *written* before its
        fault touches the kernel, which is what recovery after a crash of this
        process needs; the fsync only keeps the file through a kernel crash,
        which ends the faults' kernel objects anyway).
        """
        if not isinstance(experiment, str) or not _EXPERIMENT.match(experiment):
            raise InvalidFault(
                f"experiment name must be 1-24 letters, digits, '_' or '-', got {experiment!r}"
            )
        if config is None:
            perf = configured_performance()
        else:
            perf = cast("PerformanceConfig", getattr(config, "performance", config))
        directory = journal_dir if journal_dir is not None else DEFAULT_JOURNAL_DIR
        engine = cls(
            perf,
            governor,
            experiment=experiment,
            journal_path=directory / f"{experiment}.journal",
            points=points if points is not None else chaos,
            watchdog=watchdog,
            per_target_rate_per_s=per_target_rate_per_s,
            journal_fsync=journal_fsync,
        )
        engine.journal.open()
        try:
            clean = engine._compact_if_clean()
            engine.recovered = (
                clean if clean is not None else await asyncio.to_thread(engine._recover_or_compact)
            )
            # Never fsync'd: no fault depends on it (with journal_fsync, the first
            # inject record's fsync makes it durable too: same file).
            engine.journal.append(
                {"op": "open", "pid": os.getpid(), "experiment": experiment}, sync=False
            )
        except BaseException:
            engine.journal.close()
            raise
        return engine

    def _compact_if_clean(self) -> list[str] | None:
        """Start a small journal with nothing outstanding afresh, on the caller's thread.

        A clean run leaves a record or two: reading them costs microseconds, less
        than the worker thread ``_recover_or_compact`` runs in (its start, the
        pool's import, and its join when the loop closes). ``None``: the journal
        is large or holds faults to undo, for ``_recover_or_compact``.
        """
        from tenfold.chaos_engine._journal import replay

        try:
            if self.journal.path.stat().st_size > _INLINE_REPLAY_BYTES:
                return None
        except FileNotFoundError:
            pass
        state = replay(self.journal.path)
        if state.faults or state.resources:
            return None
        self.journal.truncate()
        return []

    def _recover_or_compact(self) -> list[str]:
        """Undo what a dead predecessor left in this journal, or start it afresh.

        We hold the journal's lock, so no live engine owns those records. With
        nothing outstanding the history is dropped (the journal stays small
        across runs); otherwise it is replayed exactly as ``recover`` would.
        """
        from tenfold.chaos_engine._journal import replay

        state = replay(self.journal.path)
        if not state.faults and not state.resources:
            self.journal.truncate()
            return []
        from tenfold.chaos_engine._watchdog import undo_outstanding  # (and the kernel adapters)

        undone = sorted(state.faults) + sorted(state.resources)
        errors = undo_outstanding(self.journal.path, state, "recovered at open", faults_only=False)
        if errors:
            raise JournalError(f"journal {self.journal.path}: could not undo {errors[0]}")
        self.monitor.count("faults_recovered_total", len(undone))
        return undone

    async def __aenter__(self) -> ChaosEngine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- extension points ---------------------------------------------------------------
    def register_actuator(self, kind: str, actuator: Actuator) -> None:
        """Handle faults of ``kind`` with ``actuator`` (the OS plane and proxies register here)."""
        self._actuators[kind] = actuator

    def add_proxy(self, proxy: Any) -> None:
        """Make a running :class:`FaultProxy` a target for proxy faults (by its name)."""
        self.proxies[proxy.name] = proxy

    # -- injection ------------------------------------------------------------------------
    @property
    def active_faults(self) -> int:
        return len(self._handles)

    def object_name(self, fault_id: str) -> str:
        """The name of the kernel objects (nft table, cgroup, qdisc handle) of one fault."""
        return f"tfchaos_{self.experiment}_{fault_id}".replace("-", "_")

    def _admit(self) -> None:
        if self._closed:
            raise EngineClosed(f"engine {self.experiment!r} is closed")
        if self._pending >= self.perf.fault_queue_size:
            self.monitor.count('faults_refused_total{reason="queue_full"}')
            from tenfold.chaos_engine.errors import FaultQueueFull

            raise FaultQueueFull(
                f"fault queue full: {self._pending} injections pending "
                f"(fault_queue_size = {self.perf.fault_queue_size})"
            )
        if len(self._handles) + self._reserved >= self.perf.max_concurrent_faults:
            self.monitor.count('faults_refused_total{reason="concurrency"}')
            raise ConcurrencyLimit(
                f"{len(self._handles) + self._reserved} faults active "
                f"(max_concurrent_faults = {self.perf.max_concurrent_faults})"
            )

    def _refuse(self, reason: str, message: str) -> FaultRefused:
        self.monitor.count(f'faults_refused_total{{reason="{reason}"}}')
        return FaultRefused(message)

    def _govern(self, fault: Fault) -> Callable[[], None] | None:
        """Pass ``fault`` through the governor and the per-target rate; return its release.

        Memory hogs reserve their bytes from the governor's memory budget (given
        back on revert); CPU hogs are refused while this process is over its
        CPU quota; every fault spends a token of its target's rate bucket.
        """
        self._limiter.take(target_key(fault), self)
        gov = self.governor
        if gov is None:
            return None
        check_rss = getattr(gov, "check_rss", None)
        if callable(check_rss):
            # The engine's hard memory bound: refuse the next fault, never grow into an OOM kill.
            try:
                check_rss(f"chaos engine {self.experiment!r}")
            except Exception as exc:
                raise self._refuse("memory", f"governor refused {fault.kind}: {exc}") from None
        from tenfold.chaos_engine._faults import CpuHog, MemoryHog

        if isinstance(fault, CpuHog):
            throttle = getattr(gov, "throttle_cpu", None)
            if callable(throttle) and throttle():
                raise self._refuse("governor", "governor: the engine is over its CPU quota")
        if isinstance(fault, MemoryHog):
            reserve = getattr(gov, "reserve_memory", None)
            if callable(reserve):
                try:
                    reserve(fault.size_bytes)
                except Exception as exc:
                    raise self._refuse("governor", f"governor refused memory_hog: {exc}") from None
                release = gov.release_memory  # type: ignore[attr-defined]
                return lambda: release(fault.size_bytes)
            check = getattr(gov, "check_memory", None)
            if callable(check) and check(fault.size_bytes) is False:
                raise self._refuse(
                    "governor", f"governor refused memory_hog of {fault.size_bytes} bytes"
                )
        return None

    def _actuator_for(self, fault: Fault) -> Actuator:
        actuator = self._actuators.get(fault.kind)
        if actuator is not None:
            return actuator
        from tenfold.chaos_engine._faults import PluginFault, ProxyFault

        if isinstance(fault, ProxyFault):
            from tenfold.chaos_engine._proxy import ProxyActuator

            actuator = ProxyActuator(self.proxies)
        elif isinstance(fault, PluginFault):
            from tenfold.chaos_engine._pluginfaults import PluginActuator

            if self.plugins is None:
                self.plugins = PluginActuator.discover()
            actuator = self.plugins
        elif fault.plane == "os":
            if self._os_plane is None:
                from tenfold.chaos_engine._osplane import OsPlane

                self._os_plane = OsPlane.create(self)
            actuator = cast(Actuator, self._os_plane.actuator(fault.kind))
        else:
            raise InvalidFault(f"no actuator for fault type {fault.kind!r}")
        self._actuators[fault.kind] = actuator
        return actuator

    async def inject_fault(self, fault: Fault) -> FaultHandle:
        """Put ``fault`` in place and return its handle (refusals raise :class:`FaultRefused`)."""
        from tenfold.chaos_engine._faults import Fault, fault_to_dict

        if not isinstance(fault, Fault):
            raise InvalidFault(f"inject_fault needs a Fault, got {type(fault).__name__}")
        self._admit()
        fault_id = fault.fault_id or f"f{next(self._ids)}"
        if fault_id in self._handles:
            raise InvalidFault(f"duplicate fault id {fault_id!r}: a fault with that id is active")
        self._pending += 1
        self._reserved += 1
        release: Callable[[], None] | None = None
        try:
            release = self._govern(fault)
            actuator = self._actuator_for(fault)
            name = self.object_name(fault_id)
            now = time.time()
            deadline = now + fault.duration_s
            undo = actuator.undo_steps(fault, name)
            journaled = fault.plane == "os"
            if journaled:
                self._ensure_watchdog()
                await self.journal.append_durable(
                    {
                        "op": "inject",
                        "id": fault_id,
                        "kind": fault.kind,
                        "params": fault_to_dict(fault),
                        "undo": undo,
                        "deadline": deadline,
                    }
                )
            try:
                applied = await actuator.apply(fault, name)
            except BaseException as exc:
                if release is not None:
                    release()
                if journaled:
                    await self._run_undo(undo)
                    self.journal.append({"op": "reverted", "id": fault_id, "why": "failed"})
                self.monitor.count(f'faults_failed_total{{kind="{fault.kind}"}}')
                if isinstance(exc, ChaosEngineError | asyncio.CancelledError | KeyboardInterrupt):
                    raise
                raise InjectionFailed(f"{fault.kind} {fault_id}: {exc}") from None
            handle = FaultHandle(fault_id, fault, now, deadline, self, applied, release)
            self._handles[fault_id] = handle
            handle._timer = asyncio.get_running_loop().call_at(
                asyncio.get_running_loop().time() + fault.duration_s, self._expire, handle
            )
            self.monitor.count(f'faults_injected_total{{kind="{fault.kind}"}}')
            self.monitor.record("inject", fault.kind, 1.0)
            return handle
        finally:
            self._pending -= 1
            self._reserved -= 1

    async def inject_faults(self, faults: Sequence[Fault]) -> list[FaultHandle]:
        """Put ``faults`` in place together, all or nothing.

        Injected concurrently, so the batch shares one journal write (group
        commit: every record is written before any fault touches the kernel,
        as for one fault; one fsync with ``journal_fsync``) and, per network
        namespace, one nft transaction. If any fault is refused or fails, the
        others are reverted and the first error is raised.
        """
        from tenfold.chaos_engine._faults import Fault

        ids = [f.fault_id for f in faults if isinstance(f, Fault) and f.fault_id]
        if len(ids) != len(set(ids)):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InvalidFault(f"duplicate fault id {dup!r} in one batch")
        results = await asyncio.gather(
            *(self.inject_fault(f) for f in faults), return_exceptions=True
        )
        handles = [r for r in results if isinstance(r, FaultHandle)]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await asyncio.gather(*(h.revert() for h in handles), return_exceptions=True)
            raise failed[0]
        return handles

    def _expire(self, handle: FaultHandle) -> None:
        handle._timer = None
        task = asyncio.ensure_future(self._revert(handle, why="ttl"))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _run_undo(self, steps: list[dict[str, Any]]) -> None:
        from tenfold.chaos_engine._undo import run_steps

        await asyncio.get_running_loop().run_in_executor(None, run_steps, steps)

    async def _revert(self, handle: FaultHandle, why: str = "revert") -> None:
        if handle.reverted:
            return
        handle.reverted = True
        if handle._timer is not None:
            handle._timer.cancel()
            handle._timer = None
        try:
            await handle._applied.revert()
        finally:
            if handle._release is not None:
                handle._release()
            self._handles.pop(handle.fault_id, None)
            if handle.fault.plane == "os" and self.journal.is_open:
                self.journal.append(
                    {"op": "reverted", "id": handle.fault_id, "why": why}, sync=False
                )
            self.monitor.count(f'faults_reverted_total{{kind="{handle.fault.kind}"}}')
            self.monitor.record("revert", handle.fault.kind, time.time() - handle.injected_at)

    async def revert_all(self) -> int:
        """Revert every active fault (concurrently); return how many."""
        handles = list(self._handles.values())
        results = await asyncio.gather(*(h.revert() for h in handles), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise InjectionFailed(f"{len(errors)} fault(s) failed to revert: {errors[0]}")
        return len(handles)

    def handles(self) -> list[FaultHandle]:
        return list(self._handles.values())

    # -- monitoring --------------------------------------------------------------------------
    def collect_metrics(self, *, sample_kernel: bool = True) -> MetricsSnapshot:
        """Sample PSI and the OS plane's cgroups into the ring, then return a snapshot."""
        if sample_kernel:
            plane = self._os_plane
            stats = plane.cgroup_stats(self.monitor.files) if plane is not None else []
            self.monitor.sample_kernel(stats)
        self.monitor.gauges["faults_active"] = float(len(self._handles))
        self.monitor.gauges["faults_pending"] = float(self._pending)
        for name, stats in self.points.stats.items():
            self.monitor.gauges[f'point_decisions{{point="{name}"}}'] = float(stats.decisions)
        return self.monitor.snapshot()

    # -- lifecycle ------------------------------------------------------------------------------
    def _ensure_watchdog(self) -> None:
        if self._use_watchdog and self._watchdog is None:
            from tenfold.chaos_engine._watchdog import start_watchdog

            self._watchdog = start_watchdog(self.journal.path, os.getpid())

    async def close(self) -> None:
        """Revert every fault, release the OS plane, write ``close`` and let the journal go."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.revert_all()
        finally:
            try:
                if self._os_plane is not None:
                    await self._os_plane.close()
                for proxy in list(self.proxies.values()):
                    proxy.clear_faults()
            finally:
                self.monitor.files.close()
                if self.journal.is_open:
                    # Not fsync'd: if it is lost, recovery finds nothing outstanding anyway.
                    self.journal.append({"op": "close", "pid": os.getpid()}, sync=False)
                    self.journal.close()
                if self._watchdog is not None:
                    self._watchdog.wait_exit()
