"""The XDP bouncer on a real veth pair: a banned source's frames are dropped until the ban lapses."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.cloud_kernel import XdpBlockList, XdpBouncer
from tenfold.cloud_kernel._netns import VethPair, in_netns
from tenfold.cloud_kernel._testing import root_only
from tenfold.core.events import Bouncer, Decision, encode_decision

BANNED, OTHER = "198.18.0.1", "198.18.0.3"


class Link:
    """A receiver in namespace b and senders in namespace a, one per source address."""

    def __init__(self, net: VethPair) -> None:
        subprocess.run(
            ["ip", "-n", net.a, "addr", "add", f"{OTHER}/15", "dev", "veth-a"], check=True
        )
        with in_netns(net.b):
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind((net.addr_b, 0))
        self.rx.settimeout(0.4)
        self.port = self.rx.getsockname()[1]
        self.dst = net.addr_b
        self.tx: dict[str, socket.socket] = {}
        for src in (BANNED, OTHER):
            with in_netns(net.a):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            self.tx[src] = s

    def delivered(self, src: str) -> bool:
        """Send one datagram from ``src``; True if it arrives (three tries, for ARP)."""
        token = f"{src}-{time.monotonic_ns()}".encode()
        for _ in range(3):
            self.tx[src].sendto(token, (self.dst, self.port))
            try:
                while True:
                    data, (peer, _) = self.rx.recvfrom(256)
                    if data == token and peer == src:
                        return True
            except TimeoutError:
                continue
        return False

    def close(self) -> None:
        self.rx.close()
        for s in self.tx.values():
            s.close()


@pytest.fixture
def link() -> Iterator[tuple[VethPair, Link]]:
    with VethPair() as net:
        ln = Link(net)
        try:
            yield net, ln
        finally:
            ln.close()


def ban(value: str, until: float, index: int, scope: str = "ip") -> Decision:
    return Decision(action="ban", scope=scope, value=value, until=until, reason="t", index=index)  # type: ignore[arg-type]


@root_only
@pytest.mark.root
def test_banned_source_is_dropped_until_its_ban_lapses(link: tuple[VethPair, Link]) -> None:
    net, ln = link
    with XdpBlockList() as bl:
        with in_netns(net.b):
            bl.attach("veth-b")
        bouncer = XdpBouncer(bl)
        assert isinstance(bouncer, Bouncer)
        assert ln.delivered(BANNED) and ln.delivered(OTHER)
        until = time.time() + 2.0
        bouncer.apply(ban(BANNED, until, 7))
        assert not ln.delivered(BANNED)
        assert ln.delivered(OTHER)
        assert bl.stats().dropped >= 1
        assert bouncer.expire(until - 1.0) == []  # not yet
        assert not ln.delivered(BANNED)
        time.sleep(max(0.0, until - time.time()))
        assert bouncer.expire(time.time()) == [BANNED]
        assert ln.delivered(BANNED)
        # A range ban covers the whole prefix; an unban lifts it at once.
        bouncer.apply(ban("198.18.0.0/31", time.time() + 60, 8, "range"))
        assert not ln.delivered(BANNED) and ln.delivered(OTHER)  # .3 lies outside the /31
        bouncer.apply(
            Decision(action="unban", scope="range", value="198.18.0.0/31", until=0, index=9)
        )
        assert ln.delivered(BANNED)
        assert bl.prefixes() == []


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tenfold.core", *args]


def _wait(pred: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@root_only
@pytest.mark.root
def test_follow_cli_enforces_expires_and_resumes(
    link: tuple[VethPair, Link], tmp_path: Path
) -> None:
    net, ln = link
    state = tmp_path / "follow.json"
    with XdpBlockList() as bl:
        with in_netns(net.b):
            bl.attach("veth-b")
        bl.pin_to("veth-b")
        try:
            until = time.time() + 3.0
            first = ban(BANNED, until, 3)
            proc = subprocess.Popen(
                _cli("kernel", "xdp", "follow", "veth-b", "--state", str(state)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert proc.stdin is not None
            proc.stdin.write(encode_decision(first))
            proc.stdin.close()  # end of stream: the follower stays until the ban lapses
            _wait(lambda: bl.prefixes() != [])
            assert [str(p) for p in bl.prefixes()] == [f"{BANNED}/32"]
            assert not ln.delivered(BANNED) and ln.delivered(OTHER)
            proc.wait(timeout=30)
            assert proc.stdout is not None and proc.stderr is not None
            out, err = proc.stdout.read(), proc.stderr.read()
            assert proc.returncode == 0, err
            assert time.time() >= until
            assert out.decode().splitlines() == [
                f"ban {BANNED} until {until:.0f} (ledger index 3)",
                f"expired {BANNED}",
            ]
            assert bl.prefixes() == [] and ln.delivered(BANNED)
            assert json.loads(state.read_text()) == {"index": 3, "bans": {}}

            # Reconnect: the source replays from the start; only index 5 is applied.
            second = ban(OTHER, time.time() + 60, 5)
            r = subprocess.run(
                _cli("kernel", "xdp", "follow", "veth-b", "--state", str(state), "--exit-at-eof"),
                input=encode_decision(first) + encode_decision(second),
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert r.returncode == 0, r.stderr
            assert r.stdout.decode().splitlines() == [
                f"ban {OTHER} until {second.until:.0f} (ledger index 5)"
            ]
            assert [str(p) for p in bl.prefixes()] == [f"{OTHER}/32"]
            assert ln.delivered(BANNED) and not ln.delivered(OTHER)

            # The text form `autoblock run` used to print is refused on one line, exit 2.
            bad = subprocess.run(
                _cli("kernel", "xdp", "follow", "veth-b", "--exit-at-eof"),
                input=b"ban ip 203.0.113.5 for 600 s (sshd: 5 x auth.failure)\n",
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert bad.returncode == 2
            assert (
                bad.stderr.decode().count("\n") == 1
                and "<stdin>:1: bad decision" in bad.stderr.decode()
            )
        finally:
            XdpBlockList.unpin("veth-b")
