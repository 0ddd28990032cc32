"""Shared fixtures: the CLI run in process, and a few well-formed events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from tenfold.autoblocker_ledger._testing import EVENTS
from tenfold.autoblocker_ledger.cli import autoblock, ledger
from tenfold.core.errors import TenfoldError


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, stdin: str = "") -> Result:
    """Run a command in process, mapping errors to exit codes and one stderr line like the core CLI."""
    group = {"ledger": ledger, "autoblock": autoblock}[args[0]]
    res = CliRunner().invoke(group, list(args[1:]), input=stdin)
    exc = res.exception
    if isinstance(exc, TenfoldError):
        return Result(exc.exit_code, res.stdout, f"tenfold: error: {exc}\n")
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return Result(res.exit_code, res.stdout, "")


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``cli("ledger", "append", ..., stdin=...)`` as a user runs it (exit code, one error line)."""
    return run_cli


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return [dict(e) for e in EVENTS]
