"""The A/B regression gate (``tenfold bench --compare``) on a tiny probe system.

The slow tests build real worktrees and venvs (uv, from the revision's lock)
and plant slowdowns in temporary commits: +15% in one kernel must be caught,
named and sized; +3% must not be flagged; the same code on both sides must
raise no alarm, run after run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.core._compare import (
    CompareSettings,
    GateReport,
    Row,
    Side,
    _Child,
    changed_systems,
    compare_sides,
    format_report,
    prepared_sides,
    run_gate,
)
from tenfold.core._stats import decide, signed_rank_interval

REPO = Path(__file__).resolve().parents[3]
PROBE = "tenfold.core._gate_probe:plugin"
PROBE_FILE = "packages/core/src/tenfold/core/_gate_probe.py"
UV = REPO / ".tenfold" / "tools" / "bin" / "uv"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _in_git_checkout() -> bool:
    return (
        shutil.which("git") is not None
        and subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, check=False
        ).returncode
        == 0
    )


needs_checkout = pytest.mark.skipif(
    not _in_git_checkout() or not (UV.is_file() or shutil.which("uv")),
    reason="needs a git checkout of tenfold and uv (to build the base revision's venv)",
)


def _probe_committed() -> bool:
    """The probe at HEAD is the probe in this tree (so HEAD against it is an A/A run)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"HEAD:{PROBE_FILE}"], check=False
    )
    same = subprocess.run(
        ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", PROBE_FILE], check=False
    )
    return listed.returncode == 0 and same.returncode == 0


# -- which systems a change touches -------------------------------------------------------------


def _commit_all(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_changed_systems_follow_the_diff(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for rel in ("packages/alpha/src/a.py", "packages/beta/src/b.py", "packages/core/src/c.py"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x = 1\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "guide.md").write_text("guide\n")
    _git(repo.parent, "init", "-q", str(repo))
    base = _commit_all(repo, "base")
    known = ["core", "alpha", "beta", "gamma"]

    assert changed_systems(repo, base, None, known) == ([], [])
    (repo / "docs" / "guide.md").write_text("more guide\n")
    assert changed_systems(repo, base, None, known)[0] == []
    (repo / "packages/beta/src/b.py").write_text("x = 2\n")
    assert changed_systems(repo, base, None, known) == (["beta"], ["packages/beta/src/b.py"])
    (repo / "packages/alpha/src/new.py").write_text("y = 1\n")  # untracked counts too
    assert changed_systems(repo, base, None, known)[0] == ["alpha", "beta"]
    head = _commit_all(repo, "alpha and beta")
    assert changed_systems(repo, base, head, known)[0] == ["alpha", "beta"]
    assert changed_systems(repo, head, None, known)[0] == []
    (repo / "packages/core/src/c.py").write_text("x = 3\n")
    systems, why = changed_systems(repo, head, None, known)
    assert systems == known and why == ["packages/core/src/c.py"]


# -- the driver ---------------------------------------------------------------------------------


def test_driver_answers_the_protocol_and_survives_a_bad_request() -> None:
    side = Side("this tree", REPO, Path(sys.executable))
    child = _Child(side, PROBE, "smoke")
    try:
        hello = child.ask({"cmd": "hello"}, timeout_s=120)
        assert hello["name"] == "gate_probe"
        assert [s["name"] for s in hello["scenarios"]] == [
            "probe_lcg",
            "probe_xorshift",
            "probe_table",
        ]
        assert Path(hello["core"]).is_relative_to(REPO)
        with pytest.raises(Exception, match="KeyError: 'nope'"):
            child.ask({"cmd": "prepare", "scenario": "nope"})
        child.ask({"cmd": "prepare", "scenario": "probe_lcg"})
        out = child.ask({"cmd": "run", "calls": 3})
        assert out["units"] == 3 * 5_000 and out["calls"] == 3
        # The sample ran pinned to one CPU; the driver has every CPU back afterwards.
        assert os.sched_getaffinity(child.proc.pid) == os.sched_getaffinity(0)
        assert out["ns"] > 0 and out["cpu_ns"] > 0
        if Path("/proc/thread-self/schedstat").exists():
            assert 0 <= out["delay_ns"] <= out["ns"]
        child.ask({"cmd": "finish"})
    finally:
        child.close()
    assert child.proc.returncode == 0


def test_aa_in_one_tree_raises_no_alarm_over_repetitions() -> None:
    """Two processes of the same code, three times: nothing may be flagged."""
    a = Side("A", REPO, Path(sys.executable))
    b = Side("B", REPO, Path(sys.executable))
    settings = CompareSettings(mode="quick", rounds=6, min_sample_s=0.01)
    for _ in range(3):
        rows = compare_sides(a, b, PROBE, settings)
        assert [r.scenario for r in rows] == ["probe_lcg", "probe_xorshift", "probe_table"]
        for row in rows:
            assert row.verdict in ("within", "inconclusive"), (row.name, row)
            assert row.low is not None and row.high is not None
            assert row.low <= row.change <= row.high  # type: ignore[operator]
            assert row.clock


# -- output and bad input -----------------------------------------------------------------------


def test_report_shows_interval_verdict_and_time() -> None:
    iv = signed_rank_interval([0.14, 0.13, 0.15, 0.16, 0.12, 0.14, 0.15, 0.13])
    row = Row("gate_probe", "probe_lcg", "steps", verdict=decide(iv, 0.10), threshold=0.10)
    row.base_ns, row.head_ns = 74.0, 84.0
    row.change, row.low, row.high = iv.change, iv.change_low, iv.change_high
    row.confidence, row.rounds, row.calls_per_sample = iv.confidence, 8, 18
    report = GateReport("HEAD (abc)", "working tree", "quick", CompareSettings(), rows=[row])
    report.systems, report.total_s, report.build_s, report.measure_s = ["x"], 71.0, 34.2, 17.8
    text = format_report(report)
    assert "gate_probe/probe_lcg" in text and "REGRESSION (threshold 10%)" in text
    assert "[+13.9%, +16.2%] 96.1%" in text
    assert "1 regression(s) (gate_probe/probe_lcg +15.0%)" in text
    assert "took 71.0 s (worktrees and venvs 34.2 s, measuring 17.8 s" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "no-such-rev-xyz"], "--compare no-such-rev-xyz: not a commit"),
        (["--compare", "HEAD.."], "expected REV or BASE..HEAD"),
        (["--compare", "HEAD", "--report", "x.md"], "does not combine with --report"),
        (["--compare", "HEAD", "-p", "nosuchsystem"], "unknown system(s): nosuchsystem"),
    ],
)
@needs_checkout
def test_bad_compare_input_is_one_line_and_exit_2(cli, args: list[str], message: str) -> None:
    result = cli("bench", *args, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- the whole gate, with real worktrees and venvs ----------------------------------------------


def _planted_commit(tmp_path: Path, base: str, factor_pct: int) -> str:
    """A commit on top of ``base`` whose LCG kernel does ``factor_pct``% more steps per unit.

    Made in a temporary worktree and left dangling (no branch points at it).
    """
    wt = tmp_path / f"plant-{factor_pct}"
    _git(REPO, "worktree", "add", "-q", "--detach", str(wt), base)
    try:
        path = wt / PROBE_FILE
        text = path.read_text()
        start = text.index("def lcg_kernel")
        at = text.index("range(n)", start)
        path.write_text(
            text[:at] + f"range(n * {100 + factor_pct} // 100)" + text[at + len("range(n)") :]
        )
        _git(
            wt,
            "-c",
            "user.name=gate test",
            "-c",
            "user.email=gate@example.invalid",
            "commit",
            "-qam",
            f"test-only: LCG kernel {factor_pct}% slower",
        )
        return _git(wt, "rev-parse", "HEAD")
    finally:
        _git(REPO, "worktree", "remove", "--force", str(wt))


@pytest.fixture(scope="module")
def base_sha() -> Iterator[str]:
    if not _in_git_checkout():
        pytest.skip("needs a git checkout")
    if subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"HEAD:{PROBE_FILE}"], check=False
    ).returncode:
        pytest.skip("the probe system is not committed at HEAD yet")
    yield _git(REPO, "rev-parse", "HEAD")


def _no_leftover_worktrees() -> None:
    # Worktrees are listed for the whole repository (other checkouts run gates too).
    listed = _git(REPO, "worktree", "list", "--porcelain")
    assert f"{REPO}/.tenfold/compare/" not in listed
    left = [p.name for p in (REPO / ".tenfold" / "compare").glob("*") if p.name != "shared"]
    assert not [n for n in left if n.endswith(f"-{os.getpid()}")]


@pytest.mark.slow
@needs_checkout
def test_planted_15_percent_is_caught_named_and_sized(cli, base_sha: str, tmp_path: Path) -> None:
    planted = _planted_commit(tmp_path, base_sha, 15)
    result = cli(
        "bench",
        "--compare",
        f"{base_sha}..{planted}",
        "-p",
        PROBE,
        "--rounds",
        "40",
        "--json",
        cwd=REPO,
        timeout=900,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    gate = json.loads(result.stdout)
    assert gate["regressions"] == ["gate_probe/probe_lcg"]
    rows = {r["scenario"]: r for r in gate["rows"]}
    lcg = rows["probe_lcg"]
    assert abs(lcg["change"] - 0.15) <= 0.04, lcg
    assert lcg["low"] > 0.10 and lcg["low"] <= lcg["change"] <= lcg["high"]
    for name in ("probe_xorshift", "probe_table"):
        assert rows[name]["verdict"] in ("within", "inconclusive"), rows[name]
    assert "regression: gate_probe/probe_lcg +" in result.stderr
    assert gate["total_s"] >= gate["build_s"] + gate["measure_s"] > 0
    _no_leftover_worktrees()


@pytest.mark.slow
@needs_checkout
def test_planted_3_percent_is_not_flagged(base_sha: str, tmp_path: Path) -> None:
    planted = _planted_commit(tmp_path, base_sha, 3)
    report = run_gate(f"{base_sha}..{planted}", [PROBE], ["core"], CompareSettings(), repo=REPO)
    assert report.regressions == []
    lcg = next(r for r in report.rows if r.scenario == "probe_lcg")
    assert lcg.change is not None and lcg.change < 0.10, lcg
    _no_leftover_worktrees()


@pytest.mark.slow
@needs_checkout
def test_aa_against_head_in_its_own_venv_raises_no_alarm(cli, base_sha: str) -> None:
    """HEAD built by uv in a worktree against this tree: the same probe code on both sides."""
    if not _probe_committed():
        pytest.skip("the probe differs from HEAD in this tree: not an A/A run")
    with prepared_sides(REPO, "HEAD") as (base, head):
        assert base.rev == base_sha and head.label == "working tree"
        assert base.root.is_relative_to(REPO / ".tenfold" / "compare")
        assert (base.root / ".venv" / "bin" / "python").is_file()
        for _ in range(3):
            for row in compare_sides(base, head, PROBE, CompareSettings(rounds=6)):
                assert row.verdict in ("within", "inconclusive"), row
    _no_leftover_worktrees()
    result = cli("bench", "--compare", "HEAD", "-p", PROBE, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0 regression(s)" in result.stdout and "took " in result.stdout
