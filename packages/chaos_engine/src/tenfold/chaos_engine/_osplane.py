"""The OS plane: faults that act on the kernel, each in a kernel object named for its fault.

========================  =============================================  =====================
fault                     kernel object                                  revert (one delete)
========================  =============================================  =====================
CpuHog, MemoryHog         pool cgroup ``tfchaos_<exp>_pool`` (cpu quota,  SIGSTOP the slot / unmap;
                          memory limit), pre-started hog processes       pool rmdir on close
PacketLoss, Partition,    nft table ``inet tfchaos_<exp>_<id>`` in the   ``delete table``
ConnectionReset           target namespace
Bandwidth                 tbf root qdisc, handle derived from the id     ``tc qdisc del root``
NetworkLatency            nft table ``inet tfchaos_<exp>_<id>`` whose    ``delete table``
                          rule queues to the namespace's delayer
                          (NFQUEUE, ``_delayer``)
ProcessPause              freezer cgroup ``tfchaos_<exp>_<id>``          thaw, move back, rmdir
DiskThrottle              blkio cgroup ``tfchaos_<exp>_<id>``            move back, rmdir
ProcessKill               none (a signal is not reversible)              journal marks it done
========================  =============================================  =====================

Every object is named in the journal before it is made (see ``_journal``).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenfold.chaos_engine._kernel import (
    NetnsWorker,
    netns_exists,
    require_root,
)
from tenfold.chaos_engine._monitor import KernelFiles
from tenfold.chaos_engine.errors import (
    InjectionFailed,
    OsPlaneUnavailable,
    TargetGone,
)

if TYPE_CHECKING:
    from tenfold.chaos_engine._engine import ChaosEngine
from tenfold.chaos_engine._os_common import _no_steps
from tenfold.chaos_engine._os_disk import FuseMount, _apply_disk, _apply_throttle, _throttle_steps
from tenfold.chaos_engine._os_hogs import HogPool, _apply_cpu, _apply_mem
from tenfold.chaos_engine._os_net import (
    Delayer,
    NftBatcher,
    _apply_bandwidth,
    _apply_latency,
    _apply_nft,
    _latency_steps,
    _nft_steps,
    _qdisc_steps,
)
from tenfold.chaos_engine._os_process import _apply_kill, _apply_pause, _pause_steps


@dataclass
class OsPlane:
    """Owns the OS-plane resources of one engine and hands out actuators by fault kind."""

    engine: ChaosEngine
    pool: HogPool | None = None
    netns_workers: dict[str, NetnsWorker] = field(default_factory=dict)
    nft_batchers: dict[str, NftBatcher] = field(default_factory=dict)
    mounts: dict[str, FuseMount] = field(default_factory=dict)
    delayers: dict[str, Delayer] = field(default_factory=dict)
    delayer_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pool_cpu_quota_pct: float = 0.0
    pool_memory_bytes: int = 0

    @classmethod
    def create(cls, engine: ChaosEngine) -> OsPlane:
        require_root("OS-plane faults")
        cores = os.cpu_count() or 1
        # Half the machine's CPU and at most 2 GiB for all hogs together.
        return cls(engine, pool_cpu_quota_pct=50.0 * cores, pool_memory_bytes=2 << 30)

    def actuator(self, kind: str) -> _Actuator:
        if kind not in _HANDLERS:
            raise OsPlaneUnavailable(f"{kind}: no OS-plane actuator for this fault type")
        return _Actuator(self, kind)

    # -- pool ---------------------------------------------------------------------
    def ensure_pool(self) -> HogPool:
        if self.pool is None:
            pool = HogPool(
                f"{self.engine.object_name('pool')}",
                workers=os.cpu_count() or 1,
                cpu_quota_pct=self.pool_cpu_quota_pct,
                memory_bytes=self.pool_memory_bytes,
            )
            self.engine.journal.append({"op": "resource", "id": "pool", "undo": pool.undo_steps()})
            try:
                pool.start(self.engine.journal.path.parent)
            except BaseException:
                pool.stop()
                raise
            self.pool = pool
        return self.pool

    def ensure_mount(self, source: str, mount: str) -> FuseMount:
        key = os.path.realpath(mount)
        existing = self.mounts.get(key)
        if existing is not None:
            if existing.source != os.path.realpath(source):
                raise InjectionFailed(
                    f"disk fault: {mount!r} already serves {existing.source!r}, not {source!r}"
                )
            return existing
        index = len(self.mounts)
        fuse = FuseMount(
            os.path.realpath(source),
            key,
            self.engine.journal.path.parent / f"{self.engine.object_name(f'fuse{index}')}.rules",
        )
        self.engine.journal.append(
            {"op": "resource", "id": f"mount:{key}", "undo": FuseMount.undo_steps(key)}
        )
        try:
            fuse.start()
        except BaseException:
            self.engine.journal.append({"op": "released", "id": f"mount:{key}"})
            raise
        assert fuse.proc is not None
        # Now that the server has a pid, recovery also stops it (after the unmount).
        steps = [*FuseMount.undo_steps(key), {"op": "kill_pid", "pid": fuse.proc.pid}]
        self.engine.journal.append({"op": "resource", "id": f"mount:{key}", "undo": steps})
        self.mounts[key] = fuse
        return fuse

    def nft_batcher(self, netns: str) -> NftBatcher:
        batcher = self.nft_batchers.get(netns)
        if batcher is None:
            batcher = self.nft_batchers[netns] = NftBatcher(self.netns_worker(netns))
        return batcher

    def netns_worker(self, netns: str) -> NetnsWorker:
        worker = self.netns_workers.get(netns)
        if worker is None:
            if not netns_exists(netns):
                raise TargetGone(f"network namespace {netns!r} does not exist")
            worker = NetnsWorker(netns)
            self.netns_workers[netns] = worker
        return worker

    async def delayer(self, netns: str) -> Delayer:
        """The packet delayer of ``netns``, started on first use (a journaled resource)."""
        async with self.delayer_lock:
            delayer = self.delayers.get(netns)
            if delayer is None or delayer.proc.poll() is not None:
                worker = self.netns_worker(netns)
                owner = str(self.engine.journal.path)
                delayer = await asyncio.wrap_future(worker.submit(lambda nft: Delayer(owner)))
                self.engine.journal.append(
                    {
                        "op": "resource",
                        "id": f"delayer:{netns}",
                        "undo": [{"op": "kill_pid", "pid": delayer.proc.pid}],
                    }
                )
                self.delayers[netns] = delayer
            return delayer

    def cgroup_stats(self, files: KernelFiles) -> list[tuple[str, float]]:
        return self.pool.stats(files) if self.pool is not None else []

    async def close(self) -> None:
        for key, fuse in list(self.mounts.items()):
            await asyncio.to_thread(fuse.stop)
            self.engine.journal.append({"op": "released", "id": f"mount:{key}"})
        self.mounts.clear()
        for netns, delayer in list(self.delayers.items()):
            await asyncio.to_thread(delayer.stop)
            self.engine.journal.append({"op": "released", "id": f"delayer:{netns}"})
        self.delayers.clear()
        for worker in self.netns_workers.values():
            worker.stop()
        self.netns_workers.clear()
        self.nft_batchers.clear()
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await asyncio.to_thread(pool.stop)
            self.engine.journal.append({"op": "released", "id": "pool"})


@dataclass
class _Actuator:
    plane: OsPlane
    kind: str

    def undo_steps(self, fault: Any, name: str) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = _HANDLERS[self.kind][0](fault, name)
        return steps

    async def apply(self, fault: Any, name: str) -> Any:
        return await _HANDLERS[self.kind][1](self.plane, fault, name)


_HANDLERS: dict[str, tuple[Any, Any]] = {
    "cpu_hog": (_no_steps, _apply_cpu),
    "memory_hog": (_no_steps, _apply_mem),
    "packet_loss": (_nft_steps, _apply_nft),
    "partition": (_nft_steps, _apply_nft),
    "connection_reset": (_nft_steps, _apply_nft),
    "bandwidth": (_qdisc_steps, _apply_bandwidth),
    "network_latency": (_latency_steps, _apply_latency),
    "process_kill": (_no_steps, _apply_kill),
    "process_pause": (_pause_steps, _apply_pause),
    "disk_throttle": (_throttle_steps, _apply_throttle),
    "disk_error": (_no_steps, _apply_disk),
    "disk_latency": (_no_steps, _apply_disk),
}
