"""``tenfold parallel run`` and ``tenfold parallel bench`` through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenfold.core.cli import main

GRAPH = """
from tenfold.parallel_framework import Graph, task

@task
def square(x):
    return x * x

@task
def total(*xs):
    return sum(xs)

with Graph() as graph:
    parts = [square(i) for i in range(10)]
    result = total(*parts)
graph.add("answer", lambda r: r + 0, result)
"""

FAILING = """
def broken():
    raise RuntimeError("no luck")

graph = {"a": (broken,), "b": (abs, "a")}
"""


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def tenfold(capsys: pytest.CaptureFixture[str]) -> Callable[..., Completed]:
    """Run the real ``tenfold`` entry point in this process; exit code and output."""

    def invoke(*args: str) -> Completed:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Completed(code, out.out, out.err)

    return invoke


def test_run_a_graph_file_on_threads_and_processes(
    tmp_path: Path, tenfold: Callable[..., Completed]
) -> None:
    path = tmp_path / "graph.py"
    path.write_text(GRAPH)
    for backend in ("threads", "processes"):
        out = tenfold(
            "parallel",
            "run",
            str(path),
            "--backend",
            backend,
            "--workers",
            "2",
            "--key",
            "answer",
            "--json",
        )
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["results"] == {"'answer'": "285"}
        assert doc["metrics"]["backend"] == backend and doc["metrics"]["tasks"] == 12


def test_failed_task_exits_1_with_one_line(
    tmp_path: Path, tenfold: Callable[..., Completed]
) -> None:
    path = tmp_path / "bad.py"
    path.write_text(FAILING)
    out = tenfold("parallel", "run", str(path), "--backend", "inline")
    assert out.returncode == 1
    assert "b FAILED" in out.stdout or "'b' FAILED" in out.stdout
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("tenfold: error: task 'a' failed: RuntimeError: no luck")
    )


def test_bad_inputs_exit_2_without_traceback(
    tmp_path: Path, tenfold: Callable[..., Completed]
) -> None:
    missing = tenfold("parallel", "run", str(tmp_path / "nope.py"))
    assert missing.returncode == 2 and "graph file not found" in missing.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    out = tenfold("parallel", "run", str(empty))
    assert out.returncode == 2 and "defines neither 'graph'" in out.stderr
    cyclic = tmp_path / "cyclic.py"
    cyclic.write_text("graph = {'a': (abs, 'b'), 'b': (abs, 'a')}\n")
    out = tenfold("parallel", "run", str(cyclic))
    assert out.returncode == 2 and "dependency cycle" in out.stderr
    assert "Traceback" not in missing.stderr + out.stderr


def test_bench_command_reports_ours_and_dask(tenfold: Callable[..., Completed]) -> None:
    out = tenfold("parallel", "bench", "--tasks", "400", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["tasks"] == 400 and doc["ours"]["tasks_per_s"] > 0
    assert doc["peer"]["name"].startswith("dask") and doc["speedup_vs_peer"] > 0
