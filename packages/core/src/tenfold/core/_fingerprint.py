"""Machine fingerprints: when stored timings or instruction counts may be compared here.

A timing transfers only to the same kind of machine running the same
software: CPU model, core count, kernel, Python (version and build) and the
versions of the libraries the system calls. An instruction count of a
deterministic kernel (callgrind) transfers much further: it depends on the
CPU architecture, the Python build and those libraries, not on clock speed,
cache sizes or load.

A key missing on either side (baselines recorded before fingerprints
existed do not know their Python build) is not held against a match, but
it is listed, so a reader can see what was assumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "INSTRUCTION_KEYS",
    "TIMING_KEYS",
    "cpu_model",
    "differences",
    "fingerprint_id",
    "instruction_fingerprint",
    "machine_fingerprint",
    "python_build",
    "system_distribution",
    "system_libraries",
    "unknown_keys",
]

TIMING_KEYS = ("arch", "cpu", "cores", "kernel", "python", "python_build", "libraries")
"""What must match for stored timings to be compared."""

INSTRUCTION_KEYS = ("arch", "python", "python_build", "libraries")
"""What must match for stored instruction counts to be compared."""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def python_build() -> str:
    """Interpreter, build date and compiler: the same version built otherwise runs other code."""
    _, built = platform.python_build()
    return f"{platform.python_implementation()} {built} {platform.python_compiler()}".strip()


def system_distribution(system: str) -> str:
    """The distribution that ships a system: ``symbolic_modeler`` -> ``tenfold-symbolic-modeler``."""
    return "tenfold-" + system.replace("_", "-")


_REQ_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def system_libraries(system: str) -> dict[str, str]:
    """The installed versions of a system's direct runtime dependencies (tenfold's own left out).

    These are the libraries whose speed a system's timings and instruction
    counts inherit; a change in one of them is a change of software, not of
    the code under test.
    """
    try:
        requires = importlib.metadata.requires(system_distribution(system)) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    out: dict[str, str] = {}
    for req in requires:
        if re.search(r"extra\s*==", req):
            continue  # an optional extra, not a runtime dependency
        match = _REQ_NAME.match(req)
        if match is None:
            continue
        name = _canonical(match.group(1))
        if name.startswith("tenfold-"):
            continue
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return dict(sorted(out.items()))


def machine_fingerprint(libraries: Mapping[str, str] | None = None) -> dict[str, Any]:
    """This machine and interpreter, with the given library versions."""
    return {
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_build": python_build(),
        "libraries": dict(sorted((libraries or {}).items())),
    }


@cache
def _valgrind_version() -> str:
    try:
        proc = subprocess.run(
            ["valgrind", "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip()


def instruction_fingerprint(libraries: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What an instruction count depends on (the valgrind version is recorded, not matched)."""
    fp = machine_fingerprint(libraries)
    out = {key: fp[key] for key in INSTRUCTION_KEYS}
    out["valgrind"] = _valgrind_version()
    return out


def fingerprint_id(fingerprint: Mapping[str, Any], keys: tuple[str, ...] = TIMING_KEYS) -> str:
    """A short stable hash of the fingerprint's matching keys (for file names and log lines)."""
    canon = json.dumps({k: fingerprint.get(k) for k in keys}, sort_keys=True, default=str)
    return hashlib.blake2b(canon.encode(), digest_size=6).hexdigest()


def _lib_differences(stored: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    # Only libraries both sides record: a lock lists dependencies that a platform
    # marker leaves uninstalled, and a library added or dropped comes with a code
    # change that the benchmark itself measures.
    return [
        f"{name} {stored[name]} -> {now[name]}"
        for name in sorted(set(stored) & set(now))
        if stored[name] != now[name]
    ]


def differences(
    stored: Mapping[str, Any], now: Mapping[str, Any], keys: tuple[str, ...] = TIMING_KEYS
) -> list[str]:
    """What differs between a stored fingerprint and this one, one phrase per key; [] is a match.

    Keys absent on either side are skipped (see :func:`unknown_keys`).
    """
    out = []
    for key in keys:
        if key not in stored or key not in now:
            continue
        a, b = stored[key], now[key]
        if key == "libraries" and isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(_lib_differences(a, b))
        elif a != b:
            out.append(f"{key} {a} -> {b}")
    return out


def unknown_keys(
    stored: Mapping[str, Any], now: Mapping[str, Any], keys: tuple[str, ...] = TIMING_KEYS
) -> list[str]:
    """The matching keys one side does not record (so a match on them was assumed)."""
    return [k for k in keys if k not in stored or k not in now]
