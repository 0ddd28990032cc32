"""Undo steps: the journal's recipe for deleting one fault's kernel objects.

Each step is plain JSON so that ``recover`` and the watchdog, in another
process and after a crash, can run it. Every step is idempotent: an object that
is already gone (or whose namespace was deleted under it) counts as undone.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from tenfold.chaos_engine._kernel import cgroup_remove, netns_exists, run_tool
from tenfold.chaos_engine.errors import ChaosEngineError, InjectionFailed

_GONE = ("No such file", "does not exist", "Cannot find device", "No such process", "not found")


def _tolerant(argv: list[str], netns: str = "") -> None:
    if netns and not netns_exists(netns):
        return
    proc = run_tool(argv, netns=netns, check=False)
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        if any(marker in text for marker in _GONE):
            return
        if netns and not netns_exists(netns):
            return
        raise InjectionFailed(f"{' '.join(argv)}: {text.splitlines()[0] if text else 'failed'}")


def run_step(step: dict[str, Any]) -> None:
    op = step.get("op")
    if op == "nft_delete":
        family = str(step.get("family", "inet"))  # latency tables are "ip" (xt compat)
        _tolerant(
            ["nft", "delete", "table", family, str(step["table"])], str(step.get("netns", ""))
        )
    elif op == "tc_delete":
        netns, dev, handle = str(step.get("netns", "")), str(step["dev"]), str(step["handle"])
        if netns and not netns_exists(netns):
            return
        shown = run_tool(["tc", "qdisc", "show", "dev", dev], netns=netns, check=False)
        ours = any(
            line.split()[2:3] == [handle] and " root " in f" {line} "
            for line in shown.stdout.splitlines()
            if len(line.split()) > 2
        )
        if ours:
            _tolerant(["tc", "qdisc", "del", "dev", dev, "root"], netns)
    elif op == "cgroup_remove":
        release = step.get("release_to")
        cgroup_remove(
            Path(str(step["path"])),
            kill=bool(step.get("kill", False)),
            release_to=Path(str(release)) if release else None,
        )
    elif op == "netns_delete":
        if netns_exists(str(step["name"])):
            _tolerant(["ip", "netns", "delete", str(step["name"])])
    elif op == "link_delete":
        _tolerant(["ip", "link", "delete", str(step["dev"])], str(step.get("netns", "")))
    elif op == "kill_pid":
        pid = int(step["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    elif op == "unmount":
        from tenfold.chaos_engine._os_disk import is_mounted

        target = str(step["path"])
        if is_mounted(target):
            _tolerant(["fusermount3", "-u", "-z", target])
    else:
        raise InjectionFailed(f"unknown undo step {op!r}")


def run_steps(steps: list[dict[str, Any]]) -> None:
    """Run every step, even after one fails; raise the first failure at the end."""
    first: ChaosEngineError | None = None
    for step in steps:
        try:
            run_step(step)
        except ChaosEngineError as exc:
            first = first or exc
    if first is not None:
        raise first
