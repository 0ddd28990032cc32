"""pytest fixtures for the real services, and the root-only marker (the ``tenfold_services`` plugin).

Each fixture starts its server once per test module and stops it afterwards.
A server that fails to start fails the test with the server's own log lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tenfold.core.bench import BenchContext, Mode, Outcome, Scenario
from tenfold.core.services import Etcd, KafkaBroker, Postgres, Redis, Swtpm


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Redis]:
    with Redis() as server:
        yield server


@pytest.fixture(scope="module")
def etcd3() -> Iterator[Etcd]:
    with Etcd(members=3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def swtpm() -> Iterator[Swtpm]:
    with Swtpm() as tpm:
        yield tpm


def needs_root(reason: str) -> pytest.MarkDecorator:
    """Mark a test (or a module, through ``pytestmark``) as needing root for ``reason``.

    Such a test is marked ``root`` and, when not run as root, skipped with
    "needs root: REASON"; CI runs as root, so it always runs there.
    """
    return pytest.mark.root(reason=reason)


#: The ``tenfold`` command as a user runs it, with this interpreter (no script on PATH needed).
TENFOLD_ARGV: tuple[str, ...] = (sys.executable, "-m", "tenfold.core")


def run_cli(
    *args: str,
    input: str | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``tenfold ARGS`` in a child process and return what it printed and its exit code.

    The child inherits this process's environment with ``env`` laid over it; a ``None``
    value removes that variable (``env={"TENFOLD_CONFIG": None}`` runs without the
    caller's configuration file). A non-zero exit is returned, not raised: tests
    assert on it.
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    return subprocess.run(
        [*TENFOLD_ARGV, *args],
        input=input,
        cwd=cwd,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_both_sides(
    scenario: Scenario, workdir: Path, mode: Mode = "smoke"
) -> tuple[int | Outcome | None, int | Outcome | None]:
    """One call of each side of a benchmark row, set up and torn down as the harness does.

    Ours is prepared and called, then the peer (``None`` for a row without one), in one
    :class:`~tenfold.core.bench.BenchContext` at ``mode``'s sizes; the context's
    after-run checks (callbacks) run before this returns.
    """
    ctx = BenchContext(mode=mode, workdir=workdir)
    with ctx.stack:
        ours = scenario.ours.prepare(ctx)()
        peer = scenario.peer.prepare(ctx)() if scenario.peer is not None else None
    return ours, peer


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip ``root``-marked tests when not root, saying why (see :func:`needs_root`)."""
    marker = item.get_closest_marker("root")
    if marker is not None and os.geteuid() != 0:
        reason = marker.kwargs.get("reason") or "root-only kernel features"
        pytest.skip(f"needs root: {reason}")
