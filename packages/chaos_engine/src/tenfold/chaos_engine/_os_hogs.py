"""CPU and memory hogs: a pool of pre-started hog processes in one cgroup (quota, limit)."""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.chaos_engine._faults import (
    CpuHog,
    MemoryHog,
)
from tenfold.chaos_engine._monitor import KernelFiles
from tenfold.chaos_engine._undo import run_steps
from tenfold.chaos_engine.errors import (
    FaultRefused,
    InjectionFailed,
)

if TYPE_CHECKING:
    from tenfold.chaos_engine._osplane import OsPlane


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


async def _apply_cpu(plane: OsPlane, fault: CpuHog, name: str) -> _HogApplied:
    pool = await asyncio.to_thread(plane.ensure_pool)
    pool.cpu_on(name, fault.cores, fault.duration_s)
    return _HogApplied(pool, name, "cpu")


async def _apply_mem(plane: OsPlane, fault: MemoryHog, name: str) -> _HogApplied:
    pool = await asyncio.to_thread(plane.ensure_pool)
    pool.mem_on(name, fault.size_bytes, fault.duration_s)
    return _HogApplied(pool, name, "mem")
