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
import contextlib
import errno
import hashlib
import json
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.chaos_engine._faults import (
    Bandwidth,
    ConnectionReset,
    CpuHog,
    DiskError,
    DiskLatency,
    DiskThrottle,
    MemoryHog,
    NetworkLatency,
    PacketLoss,
    Partition,
    ProcessKill,
    ProcessPause,
)
from tenfold.chaos_engine._kernel import (
    CGROUP_ROOT,
    NetnsWorker,
    add_nfqueue_rule,
    cgroup_dir,
    cgroup_make,
    cgroup_move,
    netns_exists,
    require_root,
    run_tool,
)
from tenfold.chaos_engine._monitor import KernelFiles
from tenfold.chaos_engine._undo import run_steps
from tenfold.chaos_engine.errors import (
    FaultRefused,
    InjectionFailed,
    OsPlaneUnavailable,
    TargetGone,
)

if TYPE_CHECKING:
    from tenfold.chaos_engine._engine import ChaosEngine


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


# -- hog pool ----------------------------------------------------------------------------


@dataclass
class _Holder:
    """A memory holder process, driven over its stdin/stdout."""

    proc: subprocess.Popen[bytes]

    def call(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            os.write(self.proc.stdin.fileno(), line.encode())
            reply = self.proc.stdout.readline()
        except OSError as exc:
            raise InjectionFailed(f"memory holder {self.proc.pid}: {exc.strerror}") from None
        if not reply:
            raise InjectionFailed(f"memory holder {self.proc.pid} died (OOM or killed)")
        if reply != b"k\n":
            raise InjectionFailed(f"memory holder {self.proc.pid}: {reply.decode().strip()[2:]}")


@dataclass
class _Spinner:
    """A CPU slot: a stopped process that burns CPU while continued."""

    proc: subprocess.Popen[bytes]
    slot: int
    users: int = 0


def _wait_stopped(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.002)
    raise InjectionFailed(f"cpu slot {pid} did not park itself")


class HogPool:
    """Pre-started hog processes in cgroups: CPU slots under a quota, memory holders under a limit.

    CPU slots live in the cpu/cpuacct/pids hierarchies of cgroup
    ``tfchaos_<exp>_pool``, whose CFS quota bounds every CPU hog together;
    memory holders live in the memory/pids hierarchies of the same name, whose
    limit bounds every memory hog. Hogs never starve the machine.

    Activating a CPU hog is SIGCONT to a parked slot (deactivating, SIGSTOP);
    a memory hog is one command to a holder, acknowledged once every page is
    touched. No process is spawned per fault.
    """

    def __init__(self, name: str, workers: int, cpu_quota_pct: float, memory_bytes: int) -> None:
        from tenfold.core.governor import Cgroup

        self.name = name
        self.memory_bytes = memory_bytes
        self.memory_used = 0
        self.cpu_group = Cgroup(
            name,
            cpu_quota_pct=cpu_quota_pct,
            pids_max=workers + 4,
            controllers=("cpu", "cpuacct", "pids"),
        )
        self.mem_group = Cgroup(
            f"{name}mem",
            memory_bytes=memory_bytes,
            pids_max=workers + 4,
            controllers=("memory", "pids"),
        )
        self.spinners: list[_Spinner] = []
        self.holders: list[_Holder] = []
        self._stat_files = [
            ("pool_cpu_usage_ns", str(self.cpu_group.path("cpuacct") / "cpuacct.usage")),
            ("pool_memory_bytes", str(self.mem_group.path("memory") / "memory.usage_in_bytes")),
        ]
        self._size = workers
        self._deadlines: mmap.mmap | None = None
        self._deadline_file: Path | None = None
        self._mem_owner: dict[str, tuple[_Holder, int]] = {}
        self._cpu_owner: dict[str, tuple[list[_Spinner], float]] = {}

    def undo_steps(self) -> list[dict[str, Any]]:
        paths = [self.cpu_group.path(c) for c in ("cpu", "cpuacct", "pids")]
        paths += [self.mem_group.path(c) for c in ("memory", "pids")]
        return [{"op": "cgroup_remove", "path": str(p), "kill": True} for p in paths]

    @staticmethod
    def _argv(*args: str) -> list[str]:
        return [sys.executable, "-S", "-m", "tenfold.chaos_engine._hogworker", *args]

    def start(self, run_dir: Path) -> None:
        from tenfold.core.errors import CgroupError

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        try:
            self.cpu_group.create()
            self.mem_group.create()
            run_dir.mkdir(parents=True, exist_ok=True)
            self._deadline_file = run_dir / f"{self.name}.deadlines"
            self._deadline_file.write_bytes(b"\0" * 8 * self._size)
            fd = os.open(self._deadline_file, os.O_RDWR)
            try:
                self._deadlines = mmap.mmap(fd, 8 * self._size)
            finally:
                os.close(fd)
            for slot in range(self._size):
                argv = self._argv("spin", str(slot), str(self._deadline_file))
                self.spinners.append(_Spinner(self.cpu_group.spawn(argv, env=env), slot))
                holder = self.mem_group.spawn(  # the path only names whose holder it is
                    self._argv("mem", str(self._deadline_file)),
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                self.holders.append(_Holder(holder))
        except CgroupError as exc:
            raise InjectionFailed(f"hog pool: {exc}") from None
        for spinner in self.spinners:
            _wait_stopped(spinner.proc.pid)

    def _set_deadline(self, spinner: _Spinner, deadline: float) -> None:
        assert self._deadlines is not None
        struct.pack_into("d", self._deadlines, spinner.slot * 8, deadline)

    def cpu_on(self, key: str, cores: int, ttl_s: float) -> None:
        if cores > len(self.spinners):
            raise FaultRefused(f"cpu_hog: {cores} cores asked, the pool has {len(self.spinners)}")
        chosen = sorted(self.spinners, key=lambda s: s.users)[:cores]
        deadline = time.time() + ttl_s
        for spinner in chosen:
            assert self._deadlines is not None
            (current,) = struct.unpack_from("d", self._deadlines, spinner.slot * 8)
            self._set_deadline(spinner, max(deadline, current) if spinner.users else deadline)
            spinner.users += 1
            try:
                os.kill(spinner.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                raise InjectionFailed(f"cpu slot {spinner.proc.pid} is gone") from None
        self._cpu_owner[key] = (chosen, deadline)

    def cpu_off(self, key: str) -> None:
        chosen, _ = self._cpu_owner.pop(key, ([], 0.0))
        for spinner in chosen:
            spinner.users -= 1
            if spinner.users == 0:
                self._set_deadline(spinner, 0.0)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(spinner.proc.pid, signal.SIGSTOP)

    def mem_on(self, key: str, size: int, ttl_s: float) -> None:
        headroom = self.memory_bytes - 64 * len(self.holders) * (1 << 20)
        if self.memory_used + size > headroom:
            raise FaultRefused(
                f"memory_hog: {size} bytes would exceed the pool's memory limit "
                f"({self.memory_used} of {headroom} bytes in use)"
            )
        holder = min(
            self.holders, key=lambda h: sum(s for o, s in self._mem_owner.values() if o is h)
        )
        holder.call(f"M {key} {size} {ttl_s}\n")
        self.memory_used += size
        self._mem_owner[key] = (holder, size)

    def mem_off(self, key: str) -> None:
        entry = self._mem_owner.pop(key, None)
        if entry is not None:
            holder, size = entry
            self.memory_used -= size
            if holder.proc.poll() is None:
                holder.call(f"m {key}\n")

    def stats(self, files: KernelFiles) -> list[tuple[str, float]]:
        """The pool's CPU time and memory, read straight from two cgroup files.

        (``Cgroup.stats()`` also lists members under every controller: too slow
        for a monitoring sample taken thousands of times a second.)
        """
        out: list[tuple[str, float]] = []
        for key, path in self._stat_files:
            text = files.read(path)
            if text:
                out.append((key, float(text)))
        return out

    def stop(self) -> None:
        procs = [s.proc for s in self.spinners] + [h.proc for h in self.holders]
        for proc in procs:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.spinners.clear()
        self.holders.clear()
        if self._deadlines is not None:
            self._deadlines.close()
            self._deadlines = None
        if self._deadline_file is not None:
            self._deadline_file.unlink(missing_ok=True)
        from tenfold.core.errors import CgroupError

        for group in (self.cpu_group, self.mem_group):
            with contextlib.suppress(CgroupError):
                group.remove()
        run_steps(self.undo_steps())  # idempotent: whatever remove() could not take


@dataclass
class _HogApplied:
    pool: HogPool
    key: str
    kind: str
    done: bool = False

    async def revert(self) -> None:
        if not self.done:
            self.done = True
            if self.kind == "cpu":
                self.pool.cpu_off(self.key)
            else:
                self.pool.mem_off(self.key)


# -- the plane -------------------------------------------------------------------------


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


def _nft_rules(fault: PacketLoss | Partition | ConnectionReset, table: str) -> str:
    head = (
        f"add table inet {table}\n"
        f"add chain inet {table} out {{ type filter hook output priority 0; policy accept; }}\n"
        f"add chain inet {table} in {{ type filter hook input priority 0; policy accept; }}\n"
    )
    if isinstance(fault, PacketLoss):
        match = f'oifname "{fault.interface}" ' if fault.interface else ""
        threshold = round(fault.percent * 100)
        if threshold >= 10000:
            return head + f"add rule inet {table} out {match}drop\n"
        rule = f"{match}numgen random mod 10000 < {threshold} drop"
        return head + f"add rule inet {table} out {rule}\n"
    if isinstance(fault, Partition):
        family = "ip6" if ":" in fault.peer else "ip"
        return (
            head
            + f"add rule inet {table} in {family} saddr {fault.peer} drop\n"
            + f"add rule inet {table} out {family} daddr {fault.peer} drop\n"
        )
    return (
        head
        + f"add rule inet {table} in tcp dport {fault.port} reject with tcp reset\n"
        + f"add rule inet {table} out tcp dport {fault.port} reject with tcp reset\n"
    )


@dataclass
class _Actuator:
    plane: OsPlane
    kind: str

    def undo_steps(self, fault: Any, name: str) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = _HANDLERS[self.kind][0](fault, name)
        return steps

    async def apply(self, fault: Any, name: str) -> Any:
        return await _HANDLERS[self.kind][1](self.plane, fault, name)


# undo-step builders and appliers, per kind ---------------------------------------------


def _no_steps(fault: Any, name: str) -> list[dict[str, Any]]:
    return []


async def _apply_cpu(plane: OsPlane, fault: CpuHog, name: str) -> _HogApplied:
    pool = await asyncio.to_thread(plane.ensure_pool)
    pool.cpu_on(name, fault.cores, fault.duration_s)
    return _HogApplied(pool, name, "cpu")


async def _apply_mem(plane: OsPlane, fault: MemoryHog, name: str) -> _HogApplied:
    pool = await asyncio.to_thread(plane.ensure_pool)
    pool.mem_on(name, fault.size_bytes, fault.duration_s)
    return _HogApplied(pool, name, "mem")


def _nft_steps(fault: Any, name: str) -> list[dict[str, Any]]:
    return [{"op": "nft_delete", "netns": fault.netns, "table": name}]


def _run_all_or_each(nft: Any, commands: list[str], tolerate: list[str]) -> list[Exception | None]:
    """Run ``commands`` as one nft transaction; if it fails, each alone, to say whose it was.

    A transaction is atomic, so after a failure nothing of it is in place and
    running each command alone applies exactly the good ones. ``tolerate[i]``,
    when set, is a ``list`` command: command ``i`` failing counts as done when
    that listing fails too (a delete of a table that is already gone).
    """
    if len(commands) > 1:
        try:
            nft.run("".join(commands))
            return [None] * len(commands)
        except InjectionFailed:
            pass
    results: list[Exception | None] = []
    for command, check in zip(commands, tolerate, strict=True):
        try:
            nft.run(command)
            results.append(None)
        except InjectionFailed as exc:
            if check:
                try:
                    nft.run(check)  # still there: the delete really failed
                except InjectionFailed:
                    results.append(None)
                    continue
            results.append(exc)
    return results


class NftBatcher:
    """Group commit for one namespace's nft changes.

    Changes asked for in the same event-loop turn (a batch of injections, a
    revert of everything) go to the kernel as one transaction, so a batch pays
    one ruleset-cache fetch and one commit instead of one per fault (the
    journal groups their writes the same way). Nothing is lost by grouping:
    a failing transaction is retried command by command.
    """

    def __init__(self, worker: NetnsWorker) -> None:
        self.worker = worker
        self._pending: list[tuple[str, str, asyncio.Future[None]]] = []

    async def run(self, command: str, tolerate: str = "") -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((command, tolerate, done))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # Let the kernel change land before the caller undoes it (its undo
            # would otherwise race the transaction and lose).
            with contextlib.suppress(Exception):
                await done
            raise

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        commands = [command for command, _, _ in batch]
        checks = [check for _, check, _ in batch]
        ran = asyncio.wrap_future(
            self.worker.submit(lambda nft: _run_all_or_each(nft, commands, checks))
        )

        def deliver(task: asyncio.Future[list[Exception | None]]) -> None:
            failed = task.exception()
            results = [failed] * len(batch) if failed is not None else task.result()
            for (_, _, done), error in zip(batch, results, strict=True):
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

        ran.add_done_callback(deliver)


@dataclass
class _NftApplied:
    batcher: NftBatcher
    table: str
    netns: str
    done: bool = False

    async def revert(self) -> None:
        if self.done:
            return
        self.done = True
        if not netns_exists(self.netns):
            return  # the namespace (and its table) is gone
        with contextlib.suppress(InjectionFailed):
            await self.batcher.run(
                f"delete table inet {self.table}\n", tolerate=f"list table inet {self.table}"
            )


async def _apply_nft(plane: OsPlane, fault: Any, name: str) -> _NftApplied:
    batcher = plane.nft_batcher(fault.netns)
    await batcher.run(_nft_rules(fault, name))
    return _NftApplied(batcher, name, fault.netns)


def _qdisc_steps(fault: Bandwidth, name: str) -> list[dict[str, Any]]:
    return [
        {
            "op": "tc_delete",
            "netns": fault.netns,
            "dev": fault.interface,
            "handle": _qdisc_handle(name),
        }
    ]


def _qdisc_add(dev: str, name: str) -> list[str]:
    return ["tc", "qdisc", "add", "dev", dev, "root", "handle", _qdisc_handle(name)]


def _check_link(netns: str, dev: str) -> None:
    if not netns_exists(netns):
        raise TargetGone(f"network namespace {netns!r} does not exist")
    if run_tool(["ip", "link", "show", "dev", dev], netns=netns, check=False).returncode != 0:
        raise TargetGone(f"interface {dev!r} does not exist in namespace {netns!r}")


async def _apply_bandwidth(plane: OsPlane, fault: Bandwidth, name: str) -> _StepsApplied:
    def put() -> None:
        _check_link(fault.netns, fault.interface)
        rate_bit = fault.rate_bytes_per_s * 8
        burst = max(1600, fault.rate_bytes_per_s // 50)  # 20 ms worth, at least one MTU
        run_tool(
            [
                *_qdisc_add(fault.interface, name),
                "tbf",
                "rate",
                f"{rate_bit}bit",
                "burst",
                str(burst),
                "latency",
                "50ms",
            ],
            netns=fault.netns,
        )

    await asyncio.to_thread(put)
    return _StepsApplied(_qdisc_steps(fault, name))


def _latency_steps(fault: NetworkLatency, name: str) -> list[dict[str, Any]]:
    return [{"op": "nft_delete", "netns": fault.netns, "table": name}]


def _latency_rules(fault: NetworkLatency, table: str) -> str:
    """The fault's table: a postrouting chain jumping to ``delay``, which queues (added apart).

    nft cannot write the NFQUEUE rule itself (this kernel has no ``queue``
    expression); :func:`add_nfqueue_rule` adds it through the xt compat layer.
    """
    head = (
        f"add table inet {table}\n"
        f"add chain inet {table} post {{ type filter hook postrouting priority -150; "
        "policy accept; }\n"
        f"add chain inet {table} delay\n"
    )
    out = f'add rule inet {table} post oifname "{fault.interface}"'
    if not fault.port:
        return head + f"{out} jump delay\n"
    l4 = "meta l4proto { tcp, udp }"
    return head + "".join(
        f"{out} {l4} th {end} {fault.port} jump delay\n" for end in ("dport", "sport")
    )


class Delayer:
    """The packet delayer of one namespace (``_delayer``), driven over its stdin and stdout.

    Started from the namespace's worker thread, so it lives in that namespace
    (a child inherits the network namespace of the thread that forks it). It
    leaves on EOF of its stdin, which only this process holds: when the engine
    dies, the delayer releases every packet it holds and exits.
    """

    def __init__(self, owner: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            # By path, not ``-m``: the package's imports would cost ~0.5 s of start-up.
            # ``owner`` (the journal) only names whose delayer this is, for ps.
            [sys.executable, "-S", str(Path(__file__).with_name("_delayer.py")), owner],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C to the terminal must not drop held packets
        )
        try:
            self._reply()
        except InjectionFailed:
            self.stop()
            raise

    def _reply(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line:
            raise InjectionFailed(f"packet delayer {self.proc.pid} died")
        if not line.startswith("k"):
            raise InjectionFailed(f"packet delayer: {line[2:].strip()}")
        return line[1:].strip()

    def call(self, command: str) -> str:
        assert self.proc.stdin is not None
        try:
            os.write(self.proc.stdin.fileno(), (command + "\n").encode())
        except OSError as exc:
            raise InjectionFailed(f"packet delayer {self.proc.pid}: {exc.strerror}") from None
        return self._reply()

    def send(self, command: str) -> None:
        """A command that has no reply (``U``)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # gone: it released everything when it went
            os.write(self.proc.stdin.fileno(), (command + "\n").encode())

    def stop(self) -> None:
        """Close its stdin (it accepts what it holds and exits); kill it if it lingers."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class _LatencyApplied:
    worker: NetnsWorker
    delayer: Delayer
    queue: int
    netns: str
    table: str
    done: bool = False

    async def revert(self) -> None:
        if self.done:
            return
        self.done = True
        netns, table = self.netns, self.table

        def take(nft: Any) -> None:
            try:
                if netns_exists(netns):
                    try:
                        nft.run(f"delete table inet {table}")
                    except InjectionFailed:
                        nft.run(f"list table inet {table}")  # raises again only if it still exists
            finally:
                self.delayer.send(f"U {self.queue}")  # releases what it still holds

        with contextlib.suppress(InjectionFailed):
            await asyncio.wrap_future(self.worker.submit(take))


async def _apply_latency(plane: OsPlane, fault: NetworkLatency, name: str) -> _LatencyApplied:
    worker = plane.netns_worker(fault.netns)
    delayer = await plane.delayer(fault.netns)
    digest = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    rules = _latency_rules(fault, name)

    def put(nft: Any) -> int:
        import socket

        try:
            socket.if_nametoindex(fault.interface)  # in this thread's (the target) namespace
        except OSError:
            raise TargetGone(
                f"interface {fault.interface!r} does not exist in namespace {fault.netns!r}"
            ) from None
        queue = int(
            delayer.call(
                f"B {1024 + digest % 60000} {fault.latency_ms / 1000} "
                f"{fault.jitter_ms / 1000} {digest}"
            )
        )
        try:
            nft.run(rules)
            add_nfqueue_rule(name, "delay", queue)
        except BaseException:
            with contextlib.suppress(InjectionFailed):
                nft.run(f"delete table inet {name}")
            delayer.send(f"U {queue}")
            raise
        return queue

    queue = await asyncio.wrap_future(worker.submit(put))
    return _LatencyApplied(worker, delayer, queue, fault.netns, name)


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


def _throttle_steps(fault: DiskThrottle, name: str) -> list[dict[str, Any]]:
    return [
        {
            "op": "cgroup_remove",
            "path": str(cgroup_dir("blkio", name)),
            "kill": False,
            "release_to": str(_cgroup_of(fault.pid, "blkio")),
        }
    ]


def _block_device(path: str) -> str:
    try:
        dev = os.stat(path).st_dev
    except FileNotFoundError:
        raise TargetGone(f"disk_throttle: path {path!r} does not exist") from None
    major, minor = os.major(dev), os.minor(dev)
    if major == 0:
        raise InjectionFailed(
            f"disk_throttle: {path!r} is on a virtual filesystem (device 0:{minor}); "
            "blkio throttles block devices only"
        )
    return f"{major}:{minor}"


async def _apply_throttle(plane: OsPlane, fault: DiskThrottle, name: str) -> _StepsApplied:
    steps = _throttle_steps(fault, name)

    def put() -> None:
        device = _block_device(fault.path)
        path = cgroup_make(
            "blkio",
            name,
            {
                "blkio.throttle.read_bps_device": f"{device} {fault.read_bytes_per_s}",
                "blkio.throttle.write_bps_device": f"{device} {fault.write_bytes_per_s}",
            },
        )
        cgroup_move(fault.pid, path)

    await asyncio.to_thread(put)
    return _StepsApplied(steps)


class FuseMount:
    """A pass-through FUSE mount of ``source`` at ``mount`` and the fault rules it serves.

    The mount is the kernel object of every disk fault on it: rules come and
    go with their faults (an atomic rewrite of the rules file), and unmounting
    ends them all.
    """

    def __init__(self, source: str, mount: str, rules_file: Path) -> None:
        self.source = source
        self.mount = mount
        self.rules_file = rules_file
        self.rules: dict[str, dict[str, Any]] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def undo_steps(mount: str) -> list[dict[str, Any]]:
        return [{"op": "unmount", "path": mount}]

    def start(self) -> None:
        if shutil.which("fusermount3") is None or not Path("/dev/fuse").exists():
            raise OsPlaneUnavailable("disk faults need FUSE (/dev/fuse and fusermount3)")
        if not Path(self.source).is_dir():
            raise TargetGone(f"disk fault: source {self.source!r} is not a directory")
        mount = Path(self.mount)
        if not mount.is_dir() or any(mount.iterdir()):
            raise TargetGone(f"disk fault: mount {self.mount!r} must be an empty directory")
        if is_mounted(self.mount):
            raise InjectionFailed(f"disk fault: something is already mounted at {self.mount!r}")
        self._write_rules()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenfold.chaos_engine._fusefs",
                self.source,
                self.mount,
                str(self.rules_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not is_mounted(self.mount):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                tail = err.strip().splitlines()[-1:] or ["did not mount"]
                raise InjectionFailed(f"FUSE mount at {self.mount}: {tail[0]}")
            time.sleep(0.01)

    def _write_rules(self) -> None:
        tmp = self.rules_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self.rules.values())))
        os.replace(tmp, self.rules_file)

    def add(self, key: str, rule: dict[str, Any]) -> None:
        self.rules[key] = rule
        self._write_rules()

    def remove(self, key: str) -> None:
        if self.rules.pop(key, None) is not None:
            self._write_rules()

    def stop(self) -> None:
        run_steps(self.undo_steps(self.mount))
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        self.rules_file.unlink(missing_ok=True)


def is_mounted(path: str) -> bool:
    """From the mount table (``os.path.ismount`` says no for a FUSE mount whose server died)."""
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as fh:
        return any(line.split()[1] == target for line in fh if len(line.split()) > 1)


@dataclass
class _RuleApplied:
    mount: FuseMount
    key: str

    async def revert(self) -> None:
        await asyncio.to_thread(self.mount.remove, self.key)


async def _apply_disk(plane: OsPlane, fault: DiskError | DiskLatency, name: str) -> _RuleApplied:
    mount = await asyncio.to_thread(plane.ensure_mount, fault.source, fault.mount)
    rule: dict[str, Any] = {"glob": fault.path_glob, "operations": list(fault.operations)}
    if isinstance(fault, DiskError):
        rule.update(errno=getattr(errno, fault.errno_name), probability=fault.probability)
    else:
        rule.update(latency_ms=fault.latency_ms)
    await asyncio.to_thread(mount.add, name, rule)
    return _RuleApplied(mount, name)


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
