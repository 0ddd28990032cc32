"""The parent side of ``tenfold bench``: one child per system, baselines, callgrind, profiles."""

from __future__ import annotations

import datetime as _dt
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
    run = run_stamp(mode, systems, only)
    for i, system in enumerate(systems):
        if progress:
            progress(system, i, len(systems))
        started = time.monotonic()
        data = run_system(system, mode, only)
        data["elapsed_s"] = round(time.monotonic() - started, 2)
        result["systems"][system] = data
    if progress:
        progress("", len(systems), len(systems))
    run.update(end=utc_now(), load_end=_load_average())
    result["runs"] = [run]
    return result


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _load_average() -> float | None:
    """The 1-minute load average, printed beside a run's figures (None off Linux)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_stamp(mode: str, systems: Sequence[str], only: Sequence[str] = ()) -> dict[str, Any]:
    """When a run started, in which mode, of what, and the machine's load at its start.

    A report merged from several saved runs lists each one, so a reader can tell
    which rows came from which run and how busy the machine was.
    """
    return {
        "mode": mode,
        "systems": list(systems),
        "scenarios": list(only),
        "start": utc_now(),
        "load_start": _load_average(),
    }


def merge_results(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result from several saved runs, for one report.

    A later run's row replaces an earlier row of the same system and name (so a
    ``--full`` run of a few rows can stand beside the quick run of everything); the
    other rows are kept in their first run's order. Memory rows are replaced per
    system the same way. The machine and mode are the first run's; every run's stamp
    is kept, so the report can say which rows came from which run.
    """
    if not results:
        raise BenchError("no saved results to report on")
    merged: dict[str, Any] = {
        "machine": results[0].get("machine", {}),
        "mode": results[0].get("mode"),
        "systems": {},
    }
    runs: list[dict[str, Any]] = []
    memory: dict[str, dict[str, Any]] = {}
    for result in results:
        # A result saved before runs were stamped still says its mode and systems.
        runs += result.get("runs") or [
            {"mode": result.get("mode"), "systems": list(result.get("systems") or {})}
        ]
        for system, data in (result.get("systems") or {}).items():
            into = merged["systems"].setdefault(system, {"scenarios": []})
            rows = {sc.get("name"): i for i, sc in enumerate(into["scenarios"])}
            for key, value in data.items():
                if key != "scenarios":
                    into[key] = value
            for sc in data.get("scenarios") or []:
                if sc.get("name") in rows:
                    into["scenarios"][rows[sc["name"]]] = sc
                else:
                    rows[sc.get("name")] = len(into["scenarios"])
                    into["scenarios"].append(sc)
        for row in result.get("memory") or []:
            memory[str(row.get("system"))] = row
    if memory:
        merged["memory"] = list(memory.values())
    if len(results) > 1 or runs:
        merged["runs"] = runs
    return merged


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
