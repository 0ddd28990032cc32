"""The stored baseline across machines: timings only on a matching fingerprint, instruction
counts where architecture, Python and libraries match, and the format-1 migration."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tenfold.core._baseline import (
    attach_fingerprints,
    check_baseline,
    fingerprint_from_machine,
    migrate_file,
    save_baseline,
)
from tenfold.core._fingerprint import (
    differences,
    fingerprint_id,
    instruction_fingerprint,
    machine_fingerprint,
    system_libraries,
    unknown_keys,
)

REPO = Path(__file__).resolve().parents[3]

EPYC = {
    "arch": "x86_64",
    "cpu": "AMD EPYC",
    "cores": 2,
    "kernel": "6.18.44-fc-v669",
    "python": "3.11.7",
    "python_build": "CPython May  9 2026 07:35:25 GCC 12.2.0",
    "libraries": {"sympy": "1.14.0", "numpy": "2.4.6"},
}
XEON = {**EPYC, "cpu": "Intel(R) Xeon(R) Processor", "kernel": "6.18.44-fc-v1252"}


def _result(fp: dict[str, Any], best: float, instructions: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "fingerprint": fp,
        "scenarios": [
            {"name": "reduce", "unit": "ops", "mode": "quick", "best_ops_per_s": best},
            {"name": "match", "unit": "ops", "mode": "quick", "best_ops_per_s": 2 * best},
        ],
    }
    for sc in data["scenarios"]:
        sc["ops_per_s"] = sc["best_ops_per_s"] * 0.9
    if instructions is not None:
        data["kernel_instructions"] = instructions
        data["kernel_fingerprint"] = {k: fp[k] for k in ("arch", "python", "libraries")}
    return {
        "machine": {"cores": fp["cores"], "cpu": fp["cpu"], "python": fp["python"]},
        "mode": "quick",
        "systems": {"symbolic_modeler": data},
    }


def test_this_machine_has_a_complete_fingerprint() -> None:
    fp = machine_fingerprint(system_libraries("core"))
    assert {"arch", "cpu", "cores", "kernel", "python", "python_build", "libraries"} <= set(fp)
    assert fp["libraries"]["pynacl"] and "tenfold-core" not in fp["libraries"]
    assert instruction_fingerprint()["arch"] == fp["arch"]
    assert fingerprint_id(fp) == fingerprint_id(copy.deepcopy(fp)) and len(fingerprint_id(fp)) == 12


def test_differences_name_what_changed_and_skip_what_one_side_does_not_know() -> None:
    assert differences(EPYC, EPYC) == []
    assert differences(EPYC, XEON) == [
        "cpu AMD EPYC -> Intel(R) Xeon(R) Processor",
        "kernel 6.18.44-fc-v669 -> 6.18.44-fc-v1252",
    ]
    newer = {**EPYC, "libraries": {"sympy": "1.15.0", "numpy": "2.4.6", "extra": "1"}}
    assert differences(EPYC, newer) == ["sympy 1.14.0 -> 1.15.0"]
    legacy = {k: v for k, v in EPYC.items() if k not in ("python_build", "libraries")}
    assert differences(legacy, EPYC) == []
    assert unknown_keys(legacy, EPYC) == ["python_build", "libraries"]


def test_fingerprint_recovered_from_a_format_1_machine_record() -> None:
    machine = {"cores": 2, "cpu": "AMD EPYC", "kernel": "6.18.44-fc-v669", "python": "3.11.7"}
    fp = fingerprint_from_machine({**machine, "memory_gib": 23.5})
    assert fp == {**machine, "arch": "x86_64"}
    assert "arch" not in fingerprint_from_machine({"cpu": "Mystery 9000"})


def test_same_machine_compares_timings(tmp_path: Path) -> None:
    save_baseline(_result(EPYC, 1000.0, 50_000_000), tmp_path)
    stored = json.loads((tmp_path / "symbolic_modeler.json").read_text())
    assert stored["format"] == 2 and stored["fingerprint"] == EPYC
    assert stored["kernel_instructions"] == 50_000_000  # format-1 fields kept as they were
    assert stored["scenarios"]["reduce"]["best_ops_per_s"] == 1000.0
    check = check_baseline(_result(EPYC, 800.0, 50_100_000), tmp_path)
    assert check.problems == [
        "symbolic_modeler/reduce: best throughput down 20%",
        "symbolic_modeler/match: best throughput down 20%",
    ]
    assert check.notes == []
    assert check.compared["symbolic_modeler"]["timings"] == "compared"


def test_another_machine_gives_no_false_regression_and_gates_on_instructions(
    tmp_path: Path,
) -> None:
    """The issue's case: recorded on an EPYC, run on a Xeon, 20% slower, same code."""
    save_baseline(_result(EPYC, 1000.0, 62_647_503), tmp_path)
    check = check_baseline(_result(XEON, 800.0, 62_900_000), tmp_path)
    assert check.problems == []
    state = check.compared["symbolic_modeler"]
    assert state["timings"].startswith("not comparable: cpu AMD EPYC -> Intel")
    assert state["instructions"] == "62,647,503 -> 62,900,000 (+0.4%)"
    (note,) = check.notes
    assert "not comparable on this machine" in note and "tenfold bench --compare REV" in note
    # ... but a real change of code still fails there, on instruction counts.
    slower = check_baseline(_result(XEON, 800.0, 72_000_000), tmp_path)
    assert slower.problems == [
        "symbolic_modeler/kernel: 72,000,000 instructions vs 62,647,503 (+15%)"
    ]


def test_instruction_counts_need_the_same_libraries_and_architecture(tmp_path: Path) -> None:
    save_baseline(_result(EPYC, 1000.0, 62_647_503), tmp_path)
    newer = {**XEON, "libraries": {"sympy": "1.15.0", "numpy": "2.4.6"}}
    check = check_baseline(_result(newer, 800.0, 90_000_000), tmp_path)
    assert check.problems == []
    assert check.compared["symbolic_modeler"]["instructions"] == (
        "not comparable: sympy 1.14.0 -> 1.15.0"
    )
    assert "nothing gated here" in check.notes[0]
    arm = {**XEON, "arch": "aarch64"}
    check = check_baseline(_result(arm, 800.0, 90_000_000), tmp_path)
    assert check.compared["symbolic_modeler"]["instructions"].startswith(
        "not comparable: arch x86_64 -> aarch64"
    )


def test_attach_fingerprints_stamps_each_system() -> None:
    result = {"machine": {}, "systems": {"core": {"scenarios": [], "kernel_instructions": 5}}}
    attach_fingerprints(result)
    core = result["systems"]["core"]
    assert core["fingerprint"]["libraries"] == system_libraries("core")
    assert core["kernel_fingerprint"]["libraries"] == system_libraries("core")


LOCK = """version = 1
requires-python = ">=3.11"

[[package]]
name = "tenfold-symbolic-modeler"
version = "0.1.0"
source = { editable = "packages/symbolic_modeler" }
dependencies = [
    { name = "numpy" },
    { name = "sympy" },
    { name = "tenfold-core" },
]

[[package]]
name = "numpy"
version = "2.4.6"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "sympy"
version = "1.14.0"
source = { registry = "https://pypi.org/simple" }
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_migration_recovers_the_fingerprint_and_the_libraries_of_that_commit(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / "baseline").mkdir(parents=True)
    legacy = {
        "kernel_instructions": 62_647_503,
        "machine": {"cores": 2, "cpu": "AMD EPYC", "kernel": "6.18.44-fc-v669", "python": "3.11.7"},
        "mode": "quick",
        "scenarios": {"reduce": {"best_ops_per_s": 1000.0, "mode": "quick", "ops_per_s": 900.0}},
    }
    path = repo / "baseline" / "symbolic_modeler.json"
    path.write_text(json.dumps(legacy))
    (repo / "uv.lock").write_text(LOCK)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x.invalid", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "baseline")
    recorded = git("rev-parse", "HEAD")
    (repo / "uv.lock").write_text(LOCK.replace('"1.14.0"', '"1.15.0"'))  # a later lock
    git("commit", "-qam", "newer sympy")

    assert migrate_file(path, repo) is True
    data = json.loads(path.read_text())
    for key, value in legacy.items():
        assert data[key] == value  # nothing renamed or lost
    fp = data["fingerprint"]
    assert fp["cpu"] == "AMD EPYC" and fp["arch"] == "x86_64" and fp["cores"] == 2
    assert fp["libraries"] == {"numpy": "2.4.6", "sympy": "1.14.0"}  # the lock it ran with
    assert fp["recovered_from"].endswith(f"uv.lock at {recorded[:12]}")
    assert data["kernel_fingerprint"]["libraries"] == fp["libraries"]
    assert migrate_file(path, repo) is False
    # The migrated file gates a Xeon on instructions, not timings.
    check = check_baseline(_result(XEON, 500.0, 62_700_000), repo / "baseline")
    assert check.problems == [] and check.compared["symbolic_modeler"]["instructions"].startswith(
        "62,647,503 -> 62,700,000"
    )


def test_committed_baseline_is_format_2_with_a_fingerprint() -> None:
    files = sorted((REPO / "baseline").glob("*.json"))
    if not files:
        pytest.skip("no committed baseline")
    for path in files:
        data = json.loads(path.read_text())
        assert data["format"] == 2, path
        assert {"cpu", "cores", "kernel", "python", "arch"} <= set(data["fingerprint"]), path
        if "kernel_instructions" in data:
            assert data["kernel_fingerprint"]["arch"] == data["fingerprint"]["arch"]


def test_cli_baseline_on_another_machine_says_so_and_passes(cli, tmp_path: Path) -> None:
    save_baseline(_result(EPYC, 1000.0, None), tmp_path / "base")
    run = _result(XEON, 700.0, None)
    (tmp_path / "run.json").write_text(json.dumps(run))
    result = cli(
        "bench", "--from-json", str(tmp_path / "run.json"), "--baseline", str(tmp_path / "base")
    )
    assert result.returncode == 0, result.stderr
    assert "timings in" in result.stdout and "not comparable on this machine" in result.stdout
    same = _result(EPYC, 700.0, None)
    (tmp_path / "same.json").write_text(json.dumps(same))
    result = cli(
        "bench", "--from-json", str(tmp_path / "same.json"), "--baseline", str(tmp_path / "base")
    )
    assert result.returncode == 1
    assert "symbolic_modeler/reduce: best throughput down 30%" in result.stderr
