"""The whole flow as root: a burst into Kafka, the engine records it, XDP drops the frame."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tenfold.core.testing import needs_root, run_cli
from tenfold.platform import Platform
from tenfold.platform._platform import NETNS_DIR, PREFIX_ENV, _alive, _delivered
from tenfold.platform._testing import sshd_failures

# This run's instance (tests/conftest.py sets the prefix).
PREFIX = os.environ[PREFIX_ENV]
ATTACKER, VICTIM = f"{PREFIX}-attacker", f"{PREFIX}-victim"


pytestmark = [pytest.mark.service, pytest.mark.slow, needs_root("network namespaces and XDP")]

ASSETS = """
[[asset]]
address = "198.18.0.2"
host = "victim"
owner = "ops"
criticality = "critical"
network = "198.18.0.0/15"
"""


@pytest.mark.root
def test_kafka_to_xdp_with_policy_and_a_killed_engine(
    tmp_path: Path, kafka_broker, postgres
) -> None:
    home = tmp_path / "home"
    assets = tmp_path / "assets.toml"
    assets.write_text(ASSETS)
    plat = Platform(home)
    topic = f"signals-{os.getpid()}-{time.monotonic_ns()}"
    try:
        up = run_cli(
            "platform", "up", "--home", str(home), "--kafka", kafka_broker.bootstrap,
            "--postgres", postgres.dsn, "--assets", str(assets), "--topic", topic, "--json",
            cwd=tmp_path,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        st = json.loads(up.stdout)
        assert st["engine"]["running"] and st["bouncer"]["running"]

        r = run_cli(
            "platform", "replay", str(sshd_failures(tmp_path / "a.log", "203.0.113.7")),
            "--home", str(home), "--json", cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["events"] == 6
        (d,) = result["decisions"]
        assert d["decision"]["value"] == "203.0.113.7" and d["proof"]["verified"]
        assert d["enforced"]["frame_dropped"] is True
        assert _delivered("203.0.113.8")

        # The critical asset is never banned: the refusal is recorded instead.
        r = run_cli(
            "platform", "replay", str(sshd_failures(tmp_path / "b.log", "198.18.0.2")),
            "--home", str(home), "--json", cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["decisions"] == []

        # The engine dies; up restarts it and it resumes from the stored positions.
        pid = plat._engine_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while _alive(pid, b"_engine"):
            time.sleep(0.05)
        again = run_cli("platform", "up", "--home", str(home), "--json", cwd=tmp_path)
        assert again.returncode == 0, again.stderr  # the bouncer lives: only the engine starts
        assert json.loads(again.stdout)["engine"]["running"]
        r = run_cli(
            "platform", "replay", str(sshd_failures(tmp_path / "c.log", "198.51.100.4")),
            "--home", str(home), "--json", cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        (d2,) = json.loads(r.stdout)["decisions"]
        assert d2["enforced"]["frame_dropped"] is True and d2["ledger_index"] > d["ledger_index"]
        st = json.loads(
            run_cli("platform", "status", "--home", str(home), "--json", cwd=tmp_path).stdout
        )
        assert st["ledger"]["decisions"] == 2 and st["engine"]["duplicates"] >= 0
        assert sorted(st["enforced"]["bans"]) == ["198.51.100.4", "203.0.113.7"]
    finally:
        down = run_cli("platform", "down", "--home", str(home), "--json", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert not (NETNS_DIR / ATTACKER).exists() and not (NETNS_DIR / VICTIM).exists()
    with pytest.raises(FileNotFoundError):
        plat.engine_pid_file.read_text()
