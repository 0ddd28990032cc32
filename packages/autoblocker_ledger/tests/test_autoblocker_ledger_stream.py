"""The ledger's decisions as the one stream, and the nftables bouncer following it for real."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.autoblocker_ledger._autoblock import Autoblocker, Rule
from tenfold.autoblocker_ledger._bouncer import NftBouncer, stream_decisions
from tenfold.autoblocker_ledger._events import SecurityEvent
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.autoblocker_ledger._testing import SSHD
from tenfold.core.events import Bouncer, Decision, iter_decisions

USERS = Rule(name="users", domain="auth", kind="bad_user", max_retry=1, scope="subject")
RULES_TOML = """
[[rule]]
name = "sshd"
domain = "auth"
kind = "ssh_failed_login"
pattern = 'Failed password for \\S+ from (?P<subject>\\d+\\.\\d+\\.\\d+\\.\\d+)'
max_retry = 3
find_time_s = 60
ban_time_s = {ban}
"""


def _line(ip: str) -> str:
    return f"Dec  6 01:00:00 host sshd[42]: Failed password for root from {ip} port 22 ssh2"


def _nft_tables(netns: str) -> str:
    """``nft list tables`` inside ``netns`` (a bouncer's table must be gone after it)."""
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tenfold.core", *args]


def test_stream_carries_ledger_indices_and_resumes_after_one(tmp_path: Path) -> None:
    ab = Autoblocker([SSHD, USERS])
    with EmbeddedLedger(tmp_path / "s") as led:
        for t in (0, 1000, 2000):
            for ev in ab.events_from_line(_line("203.0.113.9"), t):
                led.append(ev)
                led.append_batch(ab.decision_events(ab.observe(ev)))
        ev = SecurityEvent("u1", "auth", "bad_user", "mallory", 3000)
        led.append(ev)
        led.append_batch(ab.decision_events(ab.observe(ev)))  # subject scope: not in the stream
        led.append_batch(ab.decision_events(ab.expire(10**9)))
        stream = list(stream_decisions(led))
        assert [(d.action, d.value) for d in stream] == [
            ("ban", "203.0.113.9"),
            ("unban", "203.0.113.9"),
        ]
        ban, unban = stream
        assert ban.until == 2000 / 1000 + 600 and ban.reason.startswith("sshd: 3 x")
        for d in stream:
            entry = led.get(d.index).event
            assert entry.kind == f"decision.{d.action}" and entry.subject == d.value
        assert [d.index for d in stream_decisions(led, ban.index)] == [unban.index]
        assert list(stream_decisions(led, unban.index)) == []


def test_run_prints_the_stream_and_decisions_replays_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_TOML.format(ban=600))
    log = tmp_path / "auth.log"
    log.write_text("".join(_line(ip) + "\n" for ip in ["192.0.2.4"] * 3 + ["192.0.2.5"] * 2))
    store = tmp_path / "store"
    t0 = time.time()
    r = subprocess.run(
        [
            *_cli("autoblock", "run", str(rules), "--store", str(store), "--log", str(log)),
            "--format",
            "jsonl",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    (d,) = iter_decisions(r.stdout.splitlines())
    assert (d.action, d.scope, d.value) == ("ban", "ip", "192.0.2.4")
    assert t0 + 600 <= d.until <= time.time() + 600
    replay = subprocess.run(
        _cli("autoblock", "decisions", "--store", str(store)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert replay.stdout == r.stdout
    entry = subprocess.run(
        _cli("ledger", "get", str(d.index), "--store", str(store), "--json"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(entry.stdout)["kind"] == "decision.ban"
    after = subprocess.run(
        _cli("autoblock", "decisions", "--store", str(store), "--after", str(d.index)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert after.returncode == 0 and after.stdout == ""
    both = subprocess.run(
        _cli("autoblock", "run", str(rules), "--json", "--format", "jsonl", "--log", str(log)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert both.returncode == 2 and "not both" in both.stdout  # --json: the error as JSON


# -- a real packet path: namespace a sends, namespace b runs the bouncer --------------

_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def _in_netns(name: str) -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        assert libc.setns(there, _CLONE_NEWNET) == 0
        yield
    finally:
        assert libc.setns(back, _CLONE_NEWNET) == 0
        os.close(there)
        os.close(back)


@pytest.fixture
def netpair() -> Iterator[tuple[str, str]]:
    """Namespaces a (198.18.0.1 and .3) and b (198.18.0.2) joined by a veth pair (RFC 2544 space)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces and nftables need root")
    tag = secrets.token_hex(3)
    a, b = f"tfl-{tag}-a", f"tfl-{tag}-b"

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    try:
        run("ip", "netns", "add", a)
        run("ip", "netns", "add", b)
        run("ip", "link", "add", "veth-a", "netns", a, "type", "veth", "peer", "name", "veth-b")
        run("ip", "link", "set", "veth-b", "netns", b)
        run("ip", "-n", a, "addr", "add", "198.18.0.1/15", "dev", "veth-a")
        run("ip", "-n", a, "addr", "add", "198.18.0.3/15", "dev", "veth-a")
        run("ip", "-n", b, "addr", "add", "198.18.0.2/15", "dev", "veth-b")
        for ns, dev in ((a, "veth-a"), (b, "veth-b")):
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _delivered(a: str, b: str, src: str) -> bool:
    with _in_netns(b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with _in_netns(a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("198.18.0.2", 0))
        rx.settimeout(0.4)
        tx.bind((src, 0))
        for _ in range(3):
            tx.sendto(b"x", rx.getsockname())
            try:
                _, (peer, _) = rx.recvfrom(16)
                if peer == src:
                    return True
            except TimeoutError:
                continue
    return False


def test_nft_bouncer_drops_a_banned_source_until_the_ban_lapses(netpair: tuple[str, str]) -> None:
    a, b = netpair
    table = f"tenfold_ledger_t{os.getpid()}"
    with NftBouncer(table, netns=b) as bouncer:
        assert isinstance(bouncer, Bouncer)
        assert _delivered(a, b, "198.18.0.1")
        until = time.time() + 1.5
        bouncer.apply(Decision(action="ban", scope="ip", value="198.18.0.1", until=until, index=4))
        assert bouncer.blocked() == ["198.18.0.1"]
        assert not _delivered(a, b, "198.18.0.1") and _delivered(a, b, "198.18.0.3")
        time.sleep(max(0.0, until - time.time()))
        assert bouncer.expire(time.time()) == ["198.18.0.1"]
        assert bouncer.blocked() == [] and _delivered(a, b, "198.18.0.1")
        bouncer.apply(
            Decision(action="ban", scope="range", value="198.18.0.0/31", until=until + 99, index=5)
        )
        assert not _delivered(a, b, "198.18.0.1") and _delivered(a, b, "198.18.0.3")
        # A host inside the banned range, and a wider range around it: nftables refuses
        # overlapping elements in one interval set, so each must land in its own.
        far = until + 99
        bouncer.apply(Decision(action="ban", scope="ip", value="198.18.0.1", until=far, index=6))
        bouncer.apply(
            Decision(action="ban", scope="range", value="198.18.0.0/16", until=far, index=7)
        )
        assert bouncer.blocked() == ["198.18.0.0/16", "198.18.0.0/31", "198.18.0.1"]
        assert not _delivered(a, b, "198.18.0.3")  # the /16 covers it
        for index, value in ((8, "198.18.0.0/31"), (9, "198.18.0.0/16")):
            bouncer.apply(
                Decision(action="unban", scope="range", value=value, until=0, index=index)
            )
        assert bouncer.blocked() == ["198.18.0.1"]
        assert not _delivered(a, b, "198.18.0.1") and _delivered(a, b, "198.18.0.3")
        bouncer.apply(Decision(action="unban", scope="ip", value="198.18.0.1", until=0, index=10))
        assert _delivered(a, b, "198.18.0.1")
    assert table not in _nft_tables(b)


def test_nft_bouncer_applies_many_decisions_in_one_transaction_in_order(
    netpair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = netpair
    far = time.time() + 600
    with NftBouncer(f"tenfold_ledger_m{os.getpid()}", netns=b) as bouncer:
        calls: list[str] = []
        run = bouncer._run
        monkeypatch.setattr(bouncer, "_run", lambda script: (calls.append(script), run(script))[1])
        ds = [
            Decision(action="ban", scope="ip", value=f"203.0.113.{i}", until=far, index=i)
            for i in range(1, 31)
        ]
        bouncer.apply_many(ds)
        assert len(calls) == 1  # 30 bans, one nft process
        assert bouncer.blocked() == sorted(f"203.0.113.{i}" for i in range(1, 31))
        calls.clear()
        # An unban between two bans of the same address: the order holds.
        bouncer.apply_many(
            [
                Decision(action="ban", scope="ip", value="198.18.0.1", until=far, index=40),
                Decision(action="unban", scope="ip", value="198.18.0.1", until=0, index=41),
                Decision(action="ban", scope="ip", value="198.18.0.3", until=far, index=42),
            ]
        )
        assert "198.18.0.1" not in bouncer.blocked() and "198.18.0.3" in bouncer.blocked()
        assert _delivered(a, b, "198.18.0.1") and not _delivered(a, b, "198.18.0.3")
        assert len(calls) == 3  # the ban before the unban, the unban, the ban after


def test_autoblock_run_piped_into_nft_follow(netpair: tuple[str, str], tmp_path: Path) -> None:
    """`tenfold autoblock run --format jsonl | tenfold autoblock nft-follow` on a real packet path."""
    a, b = netpair
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_TOML.format(ban=3))
    log = tmp_path / "auth.log"
    log.write_text("".join(_line("198.18.0.1") + "\n" for _ in range(3)))
    table = f"tenfold_ledger_p{os.getpid()}"
    run = subprocess.Popen(
        [
            *_cli(
                "autoblock", "run", str(rules), "--store", str(tmp_path / "s"), "--log", str(log)
            ),
            "--format",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
    )
    follow = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            b,
            *_cli("autoblock", "nft-follow", "--table", table),
            "--state",
            str(tmp_path / "nft.json"),
        ],
        stdin=run.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    run.stdout.close()
    try:
        deadline = time.monotonic() + 30
        while _delivered(a, b, "198.18.0.1"):
            assert time.monotonic() < deadline, "the ban never reached nftables"
        assert _delivered(a, b, "198.18.0.3")
        out, err = follow.communicate(timeout=60)  # it leaves once the 3 s ban lapsed
        assert follow.returncode == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("ban 198.18.0.1 until ") and lines[1] == "expired 198.18.0.1"
        assert _delivered(a, b, "198.18.0.1")
    finally:
        for p in (run, follow):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert table not in _nft_tables(b)
