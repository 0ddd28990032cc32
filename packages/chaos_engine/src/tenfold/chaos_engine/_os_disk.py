"""Disk faults: blkio throttling in a cgroup, and errors or latency through a FUSE mount."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.chaos_engine._faults import (
    DiskError,
    DiskLatency,
    DiskThrottle,
)
from tenfold.chaos_engine._kernel import (
    cgroup_dir,
    cgroup_make,
    cgroup_move,
)
from tenfold.chaos_engine._undo import run_steps
from tenfold.chaos_engine.errors import (
    InjectionFailed,
    OsPlaneUnavailable,
    TargetGone,
)

if TYPE_CHECKING:
    from tenfold.chaos_engine._osplane import OsPlane
from tenfold.chaos_engine._os_common import _cgroup_of, _StepsApplied
from tenfold.core.lifecycle import reap


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
            reap(self.proc, 5)
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
