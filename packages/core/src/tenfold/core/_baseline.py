"""The committed baseline (``baseline/<system>.json``): what it stores and when it is compared.

Format 2 keeps every field of format 1 (``machine``, ``mode``, ``scenarios``
with ``best_ops_per_s``/``ops_per_s``/``mode``, ``kernel_instructions``) and
adds two fingerprints:

* ``fingerprint``: the machine and software the timings were taken on (see
  :mod:`tenfold.core._fingerprint`). Timings are compared only where the
  fingerprint matches; anywhere else they say nothing about a regression.
* ``kernel_fingerprint``: what the kernel's instruction count depends on
  (architecture, Python build, the system's libraries). Instruction counts
  transfer between machines of one architecture, so they are the gate there.

A format-1 file is read as if its fingerprint were recovered from its
``machine`` data (no library versions, no Python build: those keys are
unknown and not held against a match); :func:`migrate_file` writes that
recovery into the file, with library versions from the lock of the commit
that recorded it.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.core._fingerprint import (
    INSTRUCTION_KEYS,
    TIMING_KEYS,
    differences,
    instruction_fingerprint,
    machine_fingerprint,
    system_distribution,
    system_libraries,
    unknown_keys,
)

__all__ = [
    "FORMAT",
    "REGRESSION",
    "BaselineCheck",
    "attach_fingerprints",
    "check_baseline",
    "fingerprint_from_machine",
    "migrate_file",
    "save_baseline",
]

FORMAT = 2
REGRESSION = 0.10

_ARCH_BY_CPU = (
    ("epyc", "x86_64"),
    ("ryzen", "x86_64"),
    ("xeon", "x86_64"),
    ("intel", "x86_64"),
    ("amd", "x86_64"),
    ("neoverse", "aarch64"),
    ("graviton", "aarch64"),
    ("ampere", "aarch64"),
)


def fingerprint_from_machine(machine: Mapping[str, Any]) -> dict[str, Any]:
    """A fingerprint recovered from a format-1 ``machine`` record (only what it tells)."""
    fp: dict[str, Any] = {}
    for key in ("cpu", "cores", "kernel", "python"):
        if machine.get(key) not in (None, ""):
            fp[key] = machine[key]
    cpu = str(machine.get("cpu", "")).lower()
    arch = machine.get("arch") or next((a for hint, a in _ARCH_BY_CPU if hint in cpu), None)
    if arch:
        fp["arch"] = arch
    return fp


def attach_fingerprints(result: dict[str, Any]) -> None:
    """Stamp each system of a fresh run with this machine's fingerprints (timings and kernel)."""
    for system, data in result.get("systems", {}).items():
        libs = system_libraries(system)
        data["fingerprint"] = machine_fingerprint(libs)
        if "kernel_instructions" in data:
            data["kernel_fingerprint"] = instruction_fingerprint(libs)


def _run_fingerprint(result: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    fp = data.get("fingerprint")
    if isinstance(fp, Mapping):
        return dict(fp)
    return fingerprint_from_machine(result.get("machine") or {})


def _kernel_fingerprint(fp: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    kfp = data.get("kernel_fingerprint")
    if isinstance(kfp, Mapping):
        return dict(kfp)
    return {k: fp[k] for k in INSTRUCTION_KEYS if k in fp}


def save_baseline(result: dict[str, Any], folder: Path) -> list[Path]:
    """Write one format-2 file per system: best and mean throughput per row, kernel count,
    and the fingerprints they were taken under."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for system, data in result["systems"].items():
        path = folder / f"{system}.json"
        fp = _run_fingerprint(result, data)
        slim: dict[str, Any] = {
            "format": FORMAT,
            "machine": result["machine"],
            "fingerprint": fp,
            "mode": result.get("mode"),
            "scenarios": {
                s["name"]: {
                    "best_ops_per_s": s.get("best_ops_per_s"),
                    "ops_per_s": s.get("ops_per_s"),
                    "mode": s.get("mode"),
                }
                for s in data.get("scenarios", [])
                if s.get("best_ops_per_s")
            },
        }
        if "kernel_instructions" in data:
            slim["kernel_instructions"] = data["kernel_instructions"]
            slim["kernel_fingerprint"] = _kernel_fingerprint(fp, data)
        path.write_text(json.dumps(slim, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


@dataclass
class BaselineCheck:
    """The outcome of comparing a run with the baseline.

    ``problems`` are regressions (the gate fails on any); ``notes`` say, per
    system, what could not be compared on this machine and why, and what was
    compared instead.
    """

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compared: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"problems": self.problems, "notes": self.notes, "compared": self.compared}


def _timing_problems(system: str, data: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    problems = []
    for sc in data.get("scenarios", []):
        ref = base.get("scenarios", {}).get(sc["name"])
        now = sc.get("best_ops_per_s")
        if not ref or not ref.get("best_ops_per_s") or not now:
            continue
        if ref.get("mode") and sc.get("mode") and ref["mode"] != sc["mode"]:
            continue  # a --full figure says nothing about a quick run of the same row
        if now < ref["best_ops_per_s"] * (1 - REGRESSION):
            drop = 1 - now / ref["best_ops_per_s"]
            problems.append(f"{system}/{sc['name']}: best throughput down {drop:.0%}")
    return problems


def check_baseline(result: dict[str, Any], folder: Path) -> BaselineCheck:
    """Compare a run with ``folder``: timings on a matching machine, instruction counts elsewhere.

    Timings are compared only when the stored fingerprint matches this run's
    (CPU model, cores, kernel, Python, the system's libraries); otherwise the
    gate says so and relies on the kernel's instruction count, which is
    compared when architecture, Python and libraries match.
    """
    out = BaselineCheck()
    for system, data in result["systems"].items():
        path = folder / f"{system}.json"
        if not path.is_file():
            continue
        base = json.loads(path.read_text())
        stored = base.get("fingerprint") or fingerprint_from_machine(base.get("machine") or {})
        now = _run_fingerprint(result, data)
        state: dict[str, str] = {}
        mismatch = differences(stored, now, TIMING_KEYS)
        if not mismatch:
            out.problems += _timing_problems(system, data, base)
            assumed = unknown_keys(stored, now, TIMING_KEYS)
            state["timings"] = "compared" + (
                f" (assuming the same {', '.join(assumed)})" if assumed else ""
            )
        else:
            state["timings"] = "not comparable: " + "; ".join(mismatch)
        ref_ins = base.get("kernel_instructions")
        now_ins = data.get("kernel_instructions")
        if ref_ins and now_ins:
            kstored = base.get("kernel_fingerprint") or {
                k: stored[k] for k in INSTRUCTION_KEYS if k in stored
            }
            kmismatch = differences(kstored, _kernel_fingerprint(now, data), INSTRUCTION_KEYS)
            change = now_ins / ref_ins - 1
            if kmismatch:
                state["instructions"] = "not comparable: " + "; ".join(kmismatch)
            else:
                state["instructions"] = f"{ref_ins:,} -> {now_ins:,} ({change:+.1%})"
                if now_ins > ref_ins * (1 + REGRESSION):
                    out.problems.append(
                        f"{system}/kernel: {now_ins:,} instructions vs {ref_ins:,} ({change:+.0%})"
                    )
        elif ref_ins:
            state["instructions"] = "not counted in this run (needs valgrind and --callgrind)"
        else:
            state["instructions"] = "none stored"
        out.compared[system] = state
        if mismatch:
            note = (
                f"{system}: timings in {path} were taken on another machine or software "
                f"({'; '.join(mismatch)}), so they are not comparable on this machine; "
            )
            if state["instructions"][0].isdigit():
                note += f"gated on the kernel's instruction count instead: {state['instructions']}."
            else:
                note += f"instruction counts: {state['instructions']}; nothing gated here."
            note += " For timings, run an A/B on this machine: tenfold bench --compare REV"
            out.notes.append(note)
    return out


# -- migration from format 1 -------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    return proc.stdout if proc.returncode == 0 else ""


def _lock_libraries(lock_text: str, system: str) -> dict[str, str]:
    """A system's direct dependencies with the versions a uv.lock pins."""
    lock = tomllib.loads(lock_text)
    packages = {p["name"]: p for p in lock.get("package", [])}
    member = packages.get(system_distribution(system))
    if member is None:
        return {}
    out = {}
    for dep in member.get("dependencies", []):
        name = dep["name"]
        if name.startswith("tenfold-") or name not in packages:
            continue
        version = packages[name].get("version")
        if version:
            out[name] = version
    return dict(sorted(out.items()))


def migrate_file(path: Path, repo: Path | None = None) -> bool:
    """Rewrite a format-1 baseline file as format 2; returns whether it changed.

    The fingerprint comes from the file's own ``machine`` record; library
    versions from ``uv.lock`` as of the last commit that wrote the file (the
    lock that machine ran), when ``repo`` is a git checkout that has it.
    """
    data = json.loads(path.read_text())
    if data.get("format", 1) >= FORMAT:
        return False
    system = path.stem
    fp = fingerprint_from_machine(data.get("machine") or {})
    source = "the file's machine record"
    if repo is not None:
        rel = path.resolve().relative_to(repo.resolve()).as_posix()
        commit = _git(repo, "log", "-1", "--format=%H", "--", rel).strip()
        lock_text = _git(repo, "show", f"{commit}:uv.lock") if commit else ""
        if lock_text:
            fp["libraries"] = _lock_libraries(lock_text, system)
            source += f" and uv.lock at {commit[:12]}"
    fp["recovered_from"] = source
    data["format"] = FORMAT
    data["fingerprint"] = fp
    if "kernel_instructions" in data:
        data["kernel_fingerprint"] = {k: fp[k] for k in INSTRUCTION_KEYS if k in fp}
        data["kernel_fingerprint"]["recovered_from"] = source
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return True


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tenfold.core._baseline",
        description="Migrate baseline files to format 2 (fingerprints recovered).",
    )
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    repo = Path(_git(args.folder, "rev-parse", "--show-toplevel").strip() or ".")
    for path in sorted(args.folder.glob("*.json")):
        print(f"{path}: {'migrated' if migrate_file(path, repo) else 'already format 2'}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
