"""``--json`` on every command that prints a result, found by walking the CLI.

Each command either takes ``--json`` or is listed in :data:`NO_JSON` with the
reason; a new command is covered without editing this file. With ``--json`` an
error is JSON on stdout too (``{"error", "kind", "exit_code"}``, the same exit
code): checked by running every command's missing-file case from the fuzz gate.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
from pathlib import Path

import pytest

from tenfold.core._fuzz import Case, commands, fuzz_cases
from tenfold.core.cli import _register_core_commands, cli
from tenfold.core.testing import run_cli

# Commands without --json, each with the reason. Keep it short.
NO_JSON: dict[str, str] = {
    "attest agent": "a daemon serving a TPM until stopped; prints no result",
    "attest registrar": "a server until stopped; prints no result",
    "attest verifier": "a server until stopped; prints no result",
    "lattice serve": "a server until stopped; prints no result",
    "learn serve": "a server until stopped; prints no result",
    "ledger serve": "a server until stopped; prints no result",
    "autoblock decisions": "its output is the decision stream, already JSON lines",
    "autoblock nft-follow": "a bouncer applying the decision stream until it ends",
    "kernel xdp follow": "applies a decision stream until it ends; prints no result",
    "platform _bouncer": "internal: the bouncer process `platform up` starts",
    "platform _engine": "internal: the engine process `platform up` starts",
    "chaos agent": "a daemon serving one node's faults until stopped; prints no result",
}


def _commands() -> dict[str, bool]:
    _register_core_commands()
    return {
        name: any(p.name == "as_json" for p in command.params) for name, command in commands(cli)
    }


def test_every_command_takes_json_or_says_why_not() -> None:
    found = _commands()
    missing = sorted(name for name, has in found.items() if not has and name not in NO_JSON)
    assert not missing, f"commands without --json and no reason in NO_JSON: {missing}"
    stale = sorted(name for name in NO_JSON if found.get(name, True))
    assert not stale, f"NO_JSON lists commands that take --json or no longer exist: {stale}"


def _missing_file_cases() -> list[Case]:
    _register_core_commands()
    has_json = _commands()
    seen: set[str] = set()
    out = []
    for case in fuzz_cases(cli):
        if case.kind == "missing path" and has_json.get(case.command) and case.command not in seen:
            seen.add(case.command)
            out.append(case)
    return out


CASES = _missing_file_cases()


def _run(case: Case, folder: Path) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True)
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    # --json before the case's arguments: those may end options with "--".
    return run_cli(
        *case.command.split(),
        "--json",
        *case.argv,
        cwd=folder,
        env={"HOME": str(folder), "TENFOLD_CONFIG": None},
        timeout=60,
    )


@pytest.mark.slow
def test_errors_are_json_on_stdout_with_json(tmp_path: Path) -> None:
    assert len(CASES) >= 20  # the walk found the commands that read files
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda c: (c, _run(c, tmp_path / c.command.replace(" ", "_"))), CASES))
    bad = []
    for case, proc in runs:
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            bad.append(f"{case.command}: stdout is not JSON: {proc.stdout[:200]!r}")
            continue
        if proc.returncode == 0 or doc.get("exit_code") != proc.returncode or "error" not in doc:
            bad.append(f"{case.command}: exit {proc.returncode}, stdout {doc}")
        if "Traceback" in proc.stderr:
            bad.append(f"{case.command}: traceback on stderr")
    assert not bad, "\n".join(bad)
