"""``tenfold platform faults``: the chaos experiment from the command line, and its exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tenfold.core.testing import needs_root, run_cli
from tenfold.platform._faults import ETCD_EXPERIMENT


def _faults(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("platform", "faults", *args, cwd=cwd, timeout=600)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("title = [unclosed\n")
    for args in (
        ["--experiment", str(bad)],
        ["--experiment", str(tmp_path / "missing.toml")],
        ["--slo", "0"],
        ["--slo", "nan"],
    ):
        r = _faults(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, args
    # Valid TOML, not a valid experiment (no method; a placeholder naming no part).
    for text, says in (
        ('title = "x"\n', "method"),
        (
            'title = "x"\n[[method]]\nid = "k"\nfault = "process_kill"\nparams = { pid = "${db_pid}" }\n',
            "${db_pid}",
        ),
    ):
        bad_exp = tmp_path / "bad-exp.toml"
        bad_exp.write_text(text)
        r = _faults("--experiment", str(bad_exp), cwd=tmp_path)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = _faults("--experiment", str(bad), "--json", cwd=tmp_path)
    assert r.returncode == 2 and "cannot read the fault experiment" in json.loads(r.stdout)["error"]


@pytest.mark.service
@pytest.mark.slow
@pytest.mark.root
@needs_root("network namespaces and nftables")
def test_the_etcd_experiment_passes_and_a_failed_check_exits_1(tmp_path: Path) -> None:
    r = _faults("--replicated", "--json", cwd=tmp_path)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    out = json.loads(r.stdout)
    assert out["passed"] and out["report"]["status"] == "completed"
    assert out["report"]["faults_injected"] == 2 and out["problems"] == []
    assert [c["after"] for c in out["checks"]] == ["kill-etcd-leader", "partition-etcd-leader"]
    assert out["banned"] == out["attackers"] > 0
    assert [m["healthy"] for m in out["etcd"]] == [True, True, True]

    # The same experiment whose steady state can never hold: the check fails, exit 1.
    failing = tmp_path / "failing.toml"
    failing.write_text(ETCD_EXPERIMENT.read_text().replace("equals = 0", "equals = 1"))
    r = _faults("--replicated", "--experiment", str(failing), cwd=tmp_path)
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    assert "aborted" in r.stdout and r.stdout.rstrip().endswith("FAILED")
    # Nothing is left behind: no namespaces of the prefix it chose (tfx + its pid).
    netns = Path("/var/run/netns")
    assert not (netns.exists() and [p.name for p in netns.iterdir() if p.name.startswith("tfx")])
