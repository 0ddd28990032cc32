"""What tenfold left in the kernel: pinned objects and loaded tenfold programs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tenfold.cloud_kernel._xdp import PIN_ROOT

__all__ = ["cleanup_all", "program_ids_of", "tenfold_programs", "tenfold_status"]

PROGRAM_NAMES = {
    "xdp_blocklist",
    "xdp_pass",
    "xdp_redirect",
    "trace_enter",
    "trace_exit",
    "sock_filter",
}


def tenfold_programs() -> list[dict[str, Any]]:
    """Loaded BPF programs whose names are tenfold's (from ``bpftool prog show``)."""
    tool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    proc = subprocess.run([tool, "-j", "prog", "show"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return []
    try:
        progs = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return []
    return [
        {"id": p.get("id"), "type": p.get("type"), "name": p.get("name"), "pids": p.get("pids", [])}
        for p in progs
        if p.get("name") in PROGRAM_NAMES
    ]


def program_ids_of(pid: int) -> set[int]:
    """Ids of the BPF programs process ``pid`` holds open (from /proc/PID/fdinfo)."""
    ids: set[int] = set()
    folder = Path(f"/proc/{pid}/fdinfo")
    try:
        entries = list(folder.iterdir())
    except OSError:
        return ids
    for entry in entries:
        try:
            text = entry.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("prog_id:"):
                ids.add(int(line.split()[1]))
    return ids


def tenfold_status() -> dict[str, Any]:
    pins = sorted(str(p) for p in PIN_ROOT.rglob("*")) if PIN_ROOT.is_dir() else []
    return {"pinned": pins, "programs": tenfold_programs()}


def cleanup_all() -> list[str]:
    removed: list[str] = []
    if not PIN_ROOT.is_dir():
        return removed
    for path in sorted(PIN_ROOT.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
        removed.append(str(path))
    PIN_ROOT.rmdir()
    return removed
