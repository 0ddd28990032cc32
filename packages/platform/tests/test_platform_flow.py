"""The platform end to end, as root: attack lines in, decision in the ledger, frame dropped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenfold.core.testing import needs_root, run_cli
from tenfold.platform import NotUp, Platform
from tenfold.platform._platform import NETNS_DIR, PREFIX_ENV, _alive, _delivered

# This run's instance (tests/conftest.py sets the prefix).
PREFIX = os.environ[PREFIX_ENV]
ATTACKER, VICTIM = f"{PREFIX}-attacker", f"{PREFIX}-victim"
DEV_V = f"{PREFIX}-v0"


root_only = needs_root("network namespaces and XDP")

RULES = """
[[rule]]
name = "sshd"
domain = "auth"
kind = "ssh_failed_login"
pattern = 'Failed password for \\S+ from (?P<subject>[0-9.]+)'
max_retry = 3
find_time_s = 60
ban_time_s = {ban}
"""


def _burst(tmp_path: Path, ip: str, n: int = 4) -> Path:
    p = tmp_path / "burst.log"
    p.write_text(
        "".join(
            f"Dec  6 01:00:0{i} web sshd[7{i}]: Failed password for root from {ip} port 4{i} ssh2\n"
            for i in range(n)
        )
        + "Dec  6 01:00:09 web sshd[80]: Accepted publickey for alice from 192.0.2.10\n"
    )
    return p


def _nothing_left(pid: int | None) -> None:
    assert not (NETNS_DIR / ATTACKER).exists() and not (NETNS_DIR / VICTIM).exists()
    assert pid is None or not _alive(pid)


@root_only
@pytest.mark.root
def test_up_replay_status_down(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.format(ban=8))  # long enough for status on a loaded machine
    home = tmp_path / "home"
    plat = Platform(home)
    pid = None
    try:
        up = run_cli(
            "platform", "up", "--home", str(home), "--rules", str(rules), "--json", cwd=tmp_path
        )
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        pid = status["bouncer"]["pid"]
        assert status["bouncer"]["running"] and status["namespaces"] == {
            ATTACKER: True,
            VICTIM: True,
        }
        again = run_cli("platform", "up", "--home", str(home), cwd=tmp_path)
        assert again.returncode == 2 and "already up" in again.stderr

        assert _delivered("203.0.113.7") and _delivered("203.0.113.8")  # before: both pass
        r = run_cli(
            "platform",
            "replay",
            str(_burst(tmp_path, "203.0.113.7")),
            "--home",
            str(home),
            "--json",
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert (result["lines"], result["events"]) == (5, 4)
        (d,) = result["decisions"]
        assert d["decision"]["value"] == "203.0.113.7" and d["decision"]["action"] == "ban"
        assert d["proof"]["verified"] and d["proof"]["tree_size"] == 5 and d["ledger_index"] == 3
        assert d["enforced"] == {
            "where": f"XDP on {DEV_V} in netns {VICTIM}",
            "probe_from": "203.0.113.7",
            "frame_dropped": True,
        }
        assert _delivered("203.0.113.8")  # the neighbour is not banned

        st = json.loads(
            run_cli("platform", "status", "--home", str(home), "--json", cwd=tmp_path).stdout
        )
        assert st["ledger"] | {"root": None} == {
            "entries": 5,
            "events": 4,
            "decisions": 1,
            "root": None,
        }
        assert st["enforced"]["last_index"] == d["ledger_index"]
        assert list(st["enforced"]["bans"]) == ["203.0.113.7"]

        # The decision is a ledger entry whose proof a third party checks with the CLI.
        store = home / "ledger"
        proof = run_cli(
            "ledger",
            "proof",
            "--store",
            str(store),
            "--index",
            str(d["ledger_index"]),
            cwd=tmp_path,
        )
        bundle = tmp_path / "proof.json"
        bundle.write_text(proof.stdout)
        ok = run_cli(
            "ledger", "verify", str(bundle), "--public-key", d["proof"]["public_key"], cwd=tmp_path
        )
        assert ok.returncode == 0, ok.stderr

        # The ban lapses on its own: the bouncer lifts it and the frame passes again.
        until = d["decision"]["until"]
        deadline = time.time() + 30
        while json.loads(plat.state.read_text())["bans"]:
            assert time.time() < deadline, "the ban was never lifted"
            time.sleep(0.1)
        assert time.time() >= until
        assert _delivered("203.0.113.7")
    finally:
        down = run_cli("platform", "down", "--home", str(home), "--json", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["namespaces_removed"] == [ATTACKER, VICTIM]
    _nothing_left(pid)
    again = run_cli("platform", "down", "--home", str(home), cwd=tmp_path)
    assert again.returncode == 0 and "none" in again.stdout


def test_replay_without_up_and_bad_rules_are_one_line_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(NotUp):
        Platform(home).replay(_burst(tmp_path, "203.0.113.7"))
    r = run_cli(
        "platform",
        "replay",
        str(_burst(tmp_path, "203.0.113.7")),
        "--home",
        str(home),
        cwd=tmp_path,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not up" in r.stderr
    if os.geteuid() == 0:
        bad = tmp_path / "bad.toml"
        bad.write_text('[[rule]]\nname = "x"\nkind = "k"\npattern = "(unclosed"\n')
        up = run_cli("platform", "up", "--home", str(home), "--rules", str(bad), cwd=tmp_path)
        assert up.returncode == 2 and up.stderr.count("\n") == 1, up.stderr
        _nothing_left(None)


@root_only
@pytest.mark.root
def test_autoblock_run_piped_into_xdp_follow(tmp_path: Path) -> None:
    """`tenfold autoblock run --format jsonl | tenfold kernel xdp follow IFACE` on a real pair."""
    from tenfold.cloud_kernel import XdpBlockList, in_netns

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.format(ban=3))
    log = _burst(tmp_path, "203.0.113.9")
    plat = Platform(tmp_path / "home")
    plat._make_network()
    try:
        with XdpBlockList() as bl:
            with in_netns(VICTIM):
                bl.attach(DEV_V)
            bl.pin_to(DEV_V)
            try:
                assert _delivered("203.0.113.9")
                cmd = [sys.executable, "-m", "tenfold.core"]
                run = subprocess.Popen(
                    [
                        *cmd,
                        "autoblock",
                        "run",
                        str(rules),
                        "--store",
                        str(tmp_path / "s"),
                        "--log",
                        str(log),
                        "--format",
                        "jsonl",
                    ],
                    stdout=subprocess.PIPE,
                )
                follow = subprocess.Popen(
                    [*cmd, "kernel", "xdp", "follow", DEV_V, "--state", str(tmp_path / "x.json")],
                    stdin=run.stdout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                assert run.stdout is not None
                run.stdout.close()
                deadline = time.monotonic() + 30
                while _delivered("203.0.113.9", tries=1):
                    assert time.monotonic() < deadline, "the ban never reached XDP"
                assert _delivered("203.0.113.8")
                out, err = follow.communicate(timeout=60)  # leaves once the 3 s ban lapsed
                assert run.wait(timeout=10) == 0
                assert follow.returncode == 0, err
                assert out.splitlines()[-1] == "expired 203.0.113.9"
                assert _delivered("203.0.113.9") and bl.prefixes() == []
            finally:
                XdpBlockList.unpin(DEV_V)
    finally:
        plat.down()
    _nothing_left(None)


@root_only
@pytest.mark.root
def test_a_killed_bouncer_catches_up_from_the_ledger_exactly_once(tmp_path: Path) -> None:
    import signal

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.format(ban=600))
    home = tmp_path / "home"
    plat = Platform(home)
    try:
        plat.up(rules)
        first = plat.replay(_burst(tmp_path, "203.0.113.7"))
        assert first.decisions[0]["enforced"]["frame_dropped"] is True
        pid = plat.status()["bouncer"]["pid"]
        os.kill(pid, signal.SIGKILL)  # its XDP program goes with it: nothing is pinned
        deadline = time.monotonic() + 10
        while _alive(pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _delivered("203.0.113.7")

        # A decision made while the bouncer is down is recorded; the replay says so.
        r = run_cli(
            "platform", "replay", str(_burst(tmp_path, "198.51.100.4")), "--home", str(home),
            cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 2 and "recorded at ledger index 8" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1

        up = run_cli("platform", "up", "--home", str(home), "--json", cwd=tmp_path)  # recovers
        assert up.returncode == 0, up.stderr
        st = json.loads(up.stdout)
        assert st["bouncer"]["running"] and st["enforced"]["last_index"] == 8
        assert sorted(st["enforced"]["bans"]) == ["198.51.100.4", "203.0.113.7"]
        assert not _delivered("203.0.113.7") and not _delivered("198.51.100.4")
        assert _delivered("198.51.100.5")
        log = plat.log.read_text()
        assert log.count("(ledger index 3)") == 1  # applied before the kill, never again
        assert log.count("caught up: ban 198.51.100.4 (ledger index 8)") == 1
    finally:
        plat.down()
    _nothing_left(None)


@root_only
@pytest.mark.root
def test_replay_of_recorded_security_events_a_port_scan(tmp_path: Path) -> None:
    from tenfold.core.events import SecurityEvent, encode_event

    scan = tmp_path / "scan.jsonl"
    scan.write_bytes(
        b"".join(
            encode_event(
                SecurityEvent(
                    source="flowlog",
                    kind="port_scan",
                    subject="198.51.100.23",
                    domain="network",
                    time=1_700_000_000 + i / 10,
                    attributes={"dport": 20 + i},
                )
            )
            for i in range(12)
        )
    )
    home = tmp_path / "home"
    plat = Platform(home)
    try:
        plat.up()  # the default rules: sshd and portscan (10 probes in 60 s)
        result = plat.replay(scan)
        assert (result.lines, result.events) == (12, 12)
        (d,) = result.decisions
        assert d["decision"]["value"] == "198.51.100.23" and d["ledger_index"] == 10
        assert d["decision"]["until"] > time.time() + 500  # moved to now, not lapsed
        assert d["enforced"]["frame_dropped"] is True
        bad = tmp_path / "bad.jsonl"
        bad.write_text(scan.read_text().splitlines()[0] + '\n{"source": "x"}\n')
        r = run_cli("platform", "replay", str(bad), "--home", str(home), cwd=tmp_path)
        assert r.returncode == 2 and f"{bad}:2: bad security event" in r.stderr
    finally:
        plat.down()
    _nothing_left(None)


@root_only
@pytest.mark.root
def test_the_nft_bouncer_enforces_the_same_stream(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.format(ban=600))
    plat = Platform(tmp_path / "home")
    try:
        st = plat.up(rules, enforce="nft")
        assert st["bouncer"]["running"] and st["bouncer"]["mode"] == "nftables"
        assert _delivered("203.0.113.7")
        (d,) = plat.replay(_burst(tmp_path, "203.0.113.7")).decisions
        assert d["enforced"]["where"] == f"nftables table inet tenfold_platform in netns {VICTIM}"
        assert d["enforced"]["frame_dropped"] is True
        assert _delivered("203.0.113.8")
        listed = subprocess.run(
            ["ip", "netns", "exec", VICTIM, "nft", "list", "table", "inet", "tenfold_platform"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "203.0.113.7" in listed
    finally:
        plat.down()
    _nothing_left(None)


def test_instance_names_follow_the_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tenfold.platform import PlatformError
    from tenfold.platform._platform import DEFAULT_PREFIX

    monkeypatch.delenv(PREFIX_ENV, raising=False)
    assert Platform(tmp_path).victim == f"{DEFAULT_PREFIX}-victim"  # tfp-victim, as documented
    monkeypatch.setenv(PREFIX_ENV, "run42")
    plat = Platform(tmp_path)
    assert (plat.attacker, plat.victim, plat.dev_a, plat.dev_v) == (
        "run42-attacker", "run42-victim", "run42-a0", "run42-v0",
    )  # fmt: skip
    longest = Platform(tmp_path, prefix="a" * 12)
    assert len(longest.dev_v) == 15  # IFNAMSIZ - 1
    for bad in ("a" * 13, "Tfp", "t-p", "1tfp", ""):
        with pytest.raises(PlatformError, match="platform prefix"):
            Platform(tmp_path, prefix=bad)
    # A started platform keeps its names: status and down find it whatever the environment.
    (tmp_path / "prefix").write_text("other\n")
    assert Platform(tmp_path).victim == "other-victim"
