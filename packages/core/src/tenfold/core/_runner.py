"""The parent side of ``tenfold bench``: one child per system, baselines, callgrind, profiles."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tenfold.core._harness import machine_info
from tenfold.core.bench import Mode
from tenfold.core.errors import BenchError

__all__ = [
    "compare_baseline",
    "run_callgrind",
    "run_profile",
    "run_systems",
    "save_baseline",
]


def _child_argv(system: str, mode: Mode, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "tenfold.core._harness", system, mode, *extra]


def run_system(
    system: str, mode: Mode, only: Sequence[str] = (), timeout_s: float = 3600
) -> dict[str, Any]:
    """Run one system's scenarios in a child process and return its JSON record."""
    extra: list[str] = []
    for name in only:
        extra += ["--only", name]
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                _child_argv(system, mode, extra),
                stdout=subprocess.PIPE,
                stderr=err,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:g} s", "scenarios": [], "built": True}
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(stderr.strip().splitlines()[-5:])
        return {"error": f"exit {proc.returncode}: {tail}", "scenarios": [], "built": True}
    try:
        data: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": "child printed no JSON result", "scenarios": [], "built": True}
    return data


def run_systems(
    systems: Sequence[str],
    mode: Mode,
    only: Sequence[str] = (),
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine_info(), "mode": mode, "systems": {}}
    for i, system in enumerate(systems):
        if progress:
            progress(system, i, len(systems))
        started = time.monotonic()
        data = run_system(system, mode, only)
        data["elapsed_s"] = round(time.monotonic() - started, 2)
        result["systems"][system] = data
    if progress:
        progress("", len(systems), len(systems))
    return result


# -- baselines (kept here for callers; the format and the rules live in _baseline) ---------------


def save_baseline(result: dict[str, Any], folder: Path) -> list[Path]:
    from tenfold.core._baseline import save_baseline as save

    return save(result, folder)


def compare_baseline(result: dict[str, Any], folder: Path) -> list[str]:
    """Regressions over 10% against the committed baseline: timings where the machine
    fingerprint matches, instruction counts where architecture, Python and libraries do."""
    from tenfold.core._baseline import check_baseline

    return check_baseline(result, folder).problems


# -- callgrind ------------------------------------------------------------------------------

# callgrind prints "Collected : N" or, in other versions, "I   refs: N" (with commas).
_COLLECTED = re.compile(r"(?:Collected\s*:|I\s+refs:)\s*([\d,]+)")


def _callgrind_count(argv: Sequence[str], env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                *argv,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=1800,
        )
    match = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or match is None:
        tail = [line for line in proc.stderr.strip().splitlines() if not line.startswith("==")][-2:]
        raise BenchError(f"callgrind run exited {proc.returncode}: {tail}")
    return int(match.group(1).replace(",", ""))


def run_callgrind(system: str, warm_calls: int = 4) -> int:
    """Instructions of one warm call of the system's kernel: a run calling it ``1 + warm_calls``
    times minus a run calling it once, over ``warm_calls`` (start-up, imports and first-call
    costs cancel out).

    Instruction counts do not drift with machine load, but the start-up they are taken
    from is not exactly repeatable (threads and the GIL's time-based switching during
    imports): two identical runs of the symbolic modeler's differed by 2.7M of about 2G
    instructions, 4% of its 62M-instruction kernel. Averaging over several warm calls
    divides that error by their number.
    """
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    many = _callgrind_count(_child_argv(system, "smoke", ["--kernel", str(1 + warm_calls)]), env)
    once = _callgrind_count(_child_argv(system, "smoke", ["--kernel", "1"]), env)
    return max(0, round((many - once) / warm_calls))


# -- profiles --------------------------------------------------------------------------------


def run_profile(system: str, scenario: str, mode: Mode, out_dir: Path) -> list[Path]:
    """A py-spy flame graph (SVG) and a memray flame graph (HTML) of one scenario's op."""
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = _child_argv(system, mode, ["--profile", scenario])
    svg = out_dir / f"{system}-{scenario}.svg"
    bin_path = out_dir / f"{system}-{scenario}.memray.bin"
    html = out_dir / f"{system}-{scenario}.memray.html"
    bin_path.unlink(missing_ok=True)
    bindir = Path(sys.executable).parent
    spy = subprocess.run(
        [str(bindir / "py-spy"), "record", "--subprocesses", "-o", str(svg), "--", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    if spy.returncode != 0:
        raise BenchError(f"py-spy failed: {spy.stderr.strip().splitlines()[-1:]}")
    mem = subprocess.run(
        [sys.executable, "-m", "memray", "run", "-q", "-o", str(bin_path), *argv[1:]],
        capture_output=True,
        text=True,
        check=False,
    )
    if mem.returncode != 0:
        raise BenchError(f"memray failed: {mem.stderr.strip().splitlines()[-1:]}")
    subprocess.run(
        [sys.executable, "-m", "memray", "flamegraph", "-f", "-o", str(html), str(bin_path)],
        capture_output=True,
        check=True,
    )
    return [svg, html]
