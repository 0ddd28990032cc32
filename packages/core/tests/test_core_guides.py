"""Every guide in docs/ runs as written (see ``tenfold.core._guides``)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tenfold.core._guides import matches, parse_guide
from tenfold.core.testing import run_cli

DOCS = Path(__file__).resolve().parents[3] / "docs"
GENERATED = {"benchmarks.md"}
GUIDES = sorted(p for p in DOCS.glob("*.md") if p.name not in GENERATED)


def test_matching_ignores_numbers_and_allows_elision() -> None:
    printed = "loaded 1,204 triples in 0.31 s\nround 1: 40 facts\nround 2: 12 facts\ndone\n"
    assert matches(["loaded 1,200 triples in 0.2 s", "...", "done"], printed) is None
    assert matches(["done", "loaded 1 triples in 1 s"], printed) is not None
    assert "not printed" in (matches(["finished"], printed) or "")


def test_blocks_and_their_needs_are_read() -> None:
    text = (
        "intro\n\n```python\nx = 1\n```\n\n<!-- guide: needs root -->\n```console\n"
        "$ tenfold kernel status\nok\n```\n\n```\n$ echo hi\nhi\n```\n\n```\nplain output\n```\n"
        "```toml\na = 1\n```\n"
    )
    blocks = parse_guide(text)
    assert [(b.kind, b.needs) for b in blocks] == [
        ("python", ""),
        ("console", "root"),
        ("console", ""),
    ]


def test_every_guide_is_covered() -> None:
    assert len(GUIDES) >= 10


def _readme_commands() -> list[list[str]]:
    """The ``tenfold`` command lines of the README's ``bash`` blocks, without ``uv run``."""
    text = (DOCS.parent / "README.md").read_text()
    found = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words[:3] == ["uv", "run", "tenfold"]:
                found.append(words[3:])
    return found


def test_readme_commands_name_real_commands_and_options() -> None:
    """The README's commands (a tour, not a guide: they run whole benchmarks) all parse.

    Each is run with ``--help`` added: click parses every word first, so a renamed
    command or option fails with exit 2, and nothing heavy runs.
    """
    commands = _readme_commands()
    assert len(commands) >= 10
    for words in commands:
        r = run_cli(*words, "--help", timeout=120)
        assert r.returncode == 0, (words, r.stderr)
        assert r.stdout.startswith("Usage: tenfold"), (words, r.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES, ids=[g.stem for g in GUIDES])
def test_guide_runs_as_written(guide: Path, tmp_path: Path) -> None:
    # A guide runs as its reader would: with the platform's default namespace names
    # (the platform tests' conftest names this run's own, and a full run loads it first).
    env = {k: v for k, v in os.environ.items() if k != "TENFOLD_PLATFORM_PREFIX"}
    proc = subprocess.run(
        [sys.executable, "-m", "tenfold.core._guides", str(guide), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = [
        f"line {r['line']} ({r['kind']}): " + "; ".join(r["problems"])
        for r in results
        if not r["ok"]
    ]
    assert not failed, f"{guide.name}:\n" + "\n".join(failed)


def test_commands_continue_as_bash_reads_them() -> None:
    from tenfold.core._guides import _commands

    body = (
        "$ cat > a.ttl <<'EOF'\n<a> <b> <c> .\n$ not a command\nEOF\n"
        "$ tenfold lattice query 'SELECT ?x\n    WHERE { ?x ?p ?o }'   # it's one command\nx\n"
        "$ echo a \\\n  b\na b\n"
    )
    assert _commands(body) == [
        ("cat > a.ttl <<'EOF'\n<a> <b> <c> .\n$ not a command\nEOF", []),
        ("tenfold lattice query 'SELECT ?x\n    WHERE { ?x ?p ?o }'   # it's one command", ["x"]),
        ("echo a \\\n  b", ["a b"]),
    ]
    # what bash prints for the joined command is what the guide shows
    joined = _commands(body)[2][0]
    ran = subprocess.run(["bash", "-c", joined], capture_output=True, text=True, check=True)
    assert ran.stdout == "a b\n"
