"""Guides that run as written: every ``python`` and ``console`` block of a guide, in order.

A guide is read as a user would follow it, in one empty folder: ``python`` blocks run in
one interpreter (a later block sees an earlier block's names), ``console`` blocks (and
``bash`` or unlabelled ones holding ``$ command`` lines) are shell commands, each followed
by the output the guide shows. Both
run in document order, so a command may read a file a Python block wrote and the other
way round. A command ending in ``&`` runs in the background until the guide ends (a
server the next commands talk to).

The output a guide shows is compared with what the command printed (stdout and stderr,
interleaved as on a terminal):
each shown line must appear, in order; numbers may differ (timings, scores: every run
of digits matches any other), ``...`` stands for any lines. A block preceded by
``<!-- guide: needs root -->`` or ``<!-- guide: needs tpm -->`` is skipped, saying so,
when the machine has no root or no swtpm; nothing else may be skipped.

This module is the runner; ``tests/test_core_guides.py`` runs it over ``docs/``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Block", "BlockResult", "matches", "parse_guide", "run_guide"]

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.S | re.M)
_NEEDS = re.compile(r"<!--\s*guide:\s*needs\s+(root|tpm)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One runnable block of a guide."""

    kind: str  # "python" or "console"
    text: str
    line: int
    needs: str = ""


@dataclass
class BlockResult:
    block: Block
    ok: bool
    skipped: str = ""
    problems: list[str] = field(default_factory=list)


def parse_guide(text: str) -> list[Block]:
    """The ``python`` and ``console`` blocks of a guide, with what each needs."""
    blocks = []
    for m in _FENCE.finditer(text):
        lang, body = m.group(1), m.group(2)
        if lang in ("", "bash", "sh", "shell", "console"):
            if not any(line.startswith("$ ") for line in body.splitlines()):
                continue  # shown text (output, a file), not commands
            lang = "console"
        elif lang != "python":
            continue
        before = text[: m.start()].rstrip().splitlines()
        needs = ""
        if before:
            n = _NEEDS.search(before[-1])
            needs = n.group(1) if n else ""
        blocks.append(Block(lang, body, text[: m.start()].count("\n") + 1, needs))
    return blocks


_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _normal(line: str) -> str:
    return _NUMBER.sub("#", " ".join(line.split()))


def matches(shown: list[str], printed: str) -> str | None:
    """``None`` when every shown line appears in ``printed`` in order (numbers aside, ``...``
    for any lines), else what was not found."""
    actual = [_normal(x) for x in printed.splitlines() if x.strip()]
    pos = 0
    for want in shown:
        if not want.strip() or want.strip() == "...":
            continue
        key = _normal(want)
        while pos < len(actual) and actual[pos] != key:
            pos += 1
        if pos == len(actual):
            return f"the guide shows {want.strip()!r}, not printed (in order)"
        pos += 1
    return None


_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")


def _open_quote(cmd: str) -> bool:
    """Whether bash would ask for more input: a quote opened and not closed."""
    try:
        shlex.split(cmd, comments=True)
    except ValueError:
        return True
    return False


def _commands(body: str) -> list[tuple[str, list[str]]]:
    """``(command, shown output lines)`` pairs of a console block. As bash reads them:
    a line ending in a backslash, or one with a quote still open, continues on the next
    line; a here-document (``<<'EOF'``) takes the lines up to its end word."""
    out: list[tuple[str, list[str]]] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            cmd = line[2:]
            while (cmd.endswith("\\") or _open_quote(cmd)) and i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]  # bash itself joins a backslash-newline
            heredoc = _HEREDOC.search(cmd)
            if heredoc:
                while i + 1 < len(lines):
                    i += 1
                    cmd += "\n" + lines[i]
                    if lines[i].strip() == heredoc.group(2):
                        break
            out.append((cmd, []))
        elif out:
            out[-1][1].append(line)
        i += 1
    return out


def _has_tpm() -> bool:
    return shutil.which("swtpm") is not None


class _Runner:
    def __init__(self, folder: Path, env: dict[str, str], timeout_s: float) -> None:
        self.folder = folder
        self.env = env
        self.timeout_s = timeout_s
        self.namespace: dict[str, Any] = {"__name__": "__guide__"}
        self.background: list[subprocess.Popen[bytes]] = []

    def python(self, block: Block) -> list[str]:
        out = io.StringIO()
        old = Path.cwd()
        os.chdir(self.folder)
        try:
            code = compile(block.text, f"<guide line {block.line}>", "exec")
            with contextlib.redirect_stdout(out):
                exec(code, self.namespace)
        except Exception:
            return [traceback.format_exc(limit=-3).strip().splitlines()[-1]]
        finally:
            os.chdir(old)
        return []

    def console(self, block: Block) -> list[str]:
        problems = []
        for cmd, shown in _commands(block.text):
            if cmd.rstrip().endswith("&"):
                self.background.append(
                    subprocess.Popen(
                        ["bash", "-c", cmd.rstrip()[:-1]],
                        cwd=self.folder,
                        env=self.env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                time.sleep(1.0)
                continue
            try:
                proc = subprocess.run(
                    ["bash", "-c", cmd],
                    cwd=self.folder,
                    env=self.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,  # interleaved, as on a terminal
                    text=True,
                    timeout=self.timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                problems.append(f"$ {cmd}: still running after {self.timeout_s:.0f} s")
                continue
            printed = proc.stdout
            expects_failure = any(line.startswith("tenfold: error:") for line in shown)
            if proc.returncode != 0 and not expects_failure:
                tail = printed.strip().splitlines()[-1:] or [""]
                problems.append(f"$ {cmd}: exit {proc.returncode}: {tail[0][:300]}")
                continue
            missing = matches(shown, printed)
            if missing:
                problems.append(f"$ {cmd}: {missing}")
        return problems

    def close(self) -> None:
        # Servers a guide started with `tenfold services up` and did not stop (a block
        # failed first) go down with the guide, as background commands do.
        state = Path(self.env.get("TENFOLD_RUN_DIR") or self.folder / ".tenfold" / "run")
        if (state / "services.json").is_file():
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    ["tenfold", "services", "down"],
                    cwd=self.folder,
                    env=self.env,
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
        for proc in self.background:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_guide(path: Path, folder: Path, *, timeout_s: float = 300.0) -> list[BlockResult]:
    """Run every block of the guide at ``path`` in ``folder``; one result per block."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    os.environ["PATH"] = env["PATH"]  # python blocks that run `tenfold` find it too
    env.pop("TENFOLD_CONFIG", None)
    # Guides read test data as a checkout does, at ../shared: the blocks run in
    # FOLDER/work beside a FOLDER/shared that points at the checkout's.
    shared = path.resolve().parent.parent.parent / "shared"
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    if shared.is_dir() and not (folder / "shared").exists():
        (folder / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    runner = _Runner(work, env, timeout_s)
    results = []
    try:
        for block in parse_guide(path.read_text()):
            if block.needs == "root" and os.geteuid() != 0:
                results.append(BlockResult(block, True, skipped="needs root"))
                continue
            if block.needs == "tpm" and not _has_tpm():
                results.append(BlockResult(block, True, skipped="needs a TPM (swtpm)"))
                continue
            problems = runner.python(block) if block.kind == "python" else runner.console(block)
            results.append(BlockResult(block, not problems, problems=problems))
    finally:
        runner.close()
    return results


def main(argv: list[str]) -> int:
    """``python -m tenfold.core._guides GUIDE FOLDER``: run one guide, print JSON results."""
    results = run_guide(Path(argv[0]), Path(argv[1]))
    print(
        json.dumps(
            [
                {"line": r.block.line, "kind": r.block.kind, "ok": r.ok, "skipped": r.skipped}
                | {"problems": r.problems}
                for r in results
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
