"""End to end: frames over a veth pair between two namespaces, filtered by XDP or nftables.

The sender (a small C program built here with the system's C compiler) sends
UDP frames from namespace ``a``; every ``blocked_every``-th frame comes from a
source in the blocked /24. In namespace ``b`` a receiver thread counts what
arrives, by source. The filter under test (our XDP block list, or an nftables
netdev-ingress drop rule over the same set) sits on ``veth-b``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from tenfold.cloud_kernel._build import cache_dir
from tenfold.cloud_kernel._netns import VethPair, in_netns
from tenfold.cloud_kernel._xdp import XdpBlockList
from tenfold.cloud_kernel.errors import BuildError, CloudKernelError

__all__ = ["E2EResult", "build_pktgen", "run_e2e"]

BLOCKED_BASE = "198.19.200.0"
BLOCKED_NET = ipaddress.ip_network("198.19.200.0/24")


@dataclass(frozen=True)
class E2EResult:
    filter: str
    entries: int
    sent: int
    blocked_sent: int
    allowed_sent: int
    dropped: int
    delivered_allowed: int
    delivered_blocked: int
    send_seconds: float

    @property
    def drop_rate_pps(self) -> float:
        return self.dropped / self.send_seconds if self.send_seconds else 0.0


def build_pktgen() -> Path:
    src = Path(str(files("tenfold.cloud_kernel") / "bpf" / "pktgen.c"))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = cache_dir() / f"pktgen-{digest}"
    if not out.is_file():
        proc = subprocess.run(
            ["cc", "-O2", "-o", str(out), str(src)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BuildError(f"cc failed on pktgen.c: {proc.stderr.strip()[-1000:]}")
    return out


class _Receiver(threading.Thread):
    def __init__(self, ns: str, addr: str) -> None:
        super().__init__(daemon=True, name="tfk-receiver")
        self.ns, self.addr = ns, addr
        self.allowed = self.blocked = 0
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: str = ""

    def run(self) -> None:
        try:
            with in_netns(self.ns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, 33, 64 * 1024 * 1024)  # SO_RCVBUFFORCE
            sock.bind((self.addr, 9000))
            sock.settimeout(0.2)
            self.ready.set()
            idle_since = None
            while True:
                try:
                    _, (src, _) = sock.recvfrom(64)
                except TimeoutError:
                    if self.stop.is_set():
                        if idle_since is None:
                            idle_since = time.monotonic()
                        if time.monotonic() - idle_since > 0.3:
                            break
                    continue
                idle_since = None
                if ipaddress.ip_address(src) in BLOCKED_NET:
                    self.blocked += 1
                else:
                    self.allowed += 1
            sock.close()
        except Exception as exc:
            self.error = str(exc)
            self.ready.set()


def _nft_ruleset(dev: str, prefixes: list[str]) -> str:
    lines = [
        "table netdev tfk_block {",
        "  set blocked4 { type ipv4_addr; flags interval; }",
        f'  chain ingress {{ type filter hook ingress device "{dev}" priority -500; policy accept;',
        "    ip saddr @blocked4 counter drop",
        "  }",
        "}",
    ]
    text = "\n".join(lines) + "\n"
    for i in range(0, len(prefixes), 5000):
        text += (
            "add element netdev tfk_block blocked4 { " + ", ".join(prefixes[i : i + 5000]) + " }\n"
        )
    return text


def _nft_dropped(ns: str) -> int:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "chain", "netdev", "tfk_block", "ingress"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if "counter packets" in line:
            return int(line.split("counter packets")[1].split()[0])
    return 0


def block_prefixes(entries: int) -> list[str]:
    """``entries`` rules: the blocked /24 plus filler /32 hosts from 198.19.0.0/17."""
    hosts = [
        str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.19.0.0")) + i))
        for i in range(1, entries)
    ]
    return [str(BLOCKED_NET), *hosts]


class E2EBench:
    """Two namespaces, a filter of ``entries`` rules on ``veth-b``, and a sender; reusable."""

    def __init__(self, kind: str, entries: int) -> None:
        if kind not in ("xdp", "nftables"):
            raise CloudKernelError(f"unknown filter kind {kind!r}")
        self.kind, self.entries = kind, entries
        self._net: VethPair | None = None
        self._blocklist: XdpBlockList | None = None
        self._last_dropped = 0

    def __enter__(self) -> E2EBench:
        self._pktgen = build_pktgen()
        prefixes = block_prefixes(self.entries)
        self._net = VethPair().__enter__()
        try:
            if self.kind == "xdp":
                self._blocklist = XdpBlockList()
                self._blocklist.block_many(prefixes)
                with in_netns(self._net.b):
                    self._blocklist.attach("veth-b")
            else:
                subprocess.run(
                    ["ip", "netns", "exec", self._net.b, "nft", "-f", "-"],
                    input=_nft_ruleset("veth-b", prefixes),
                    text=True,
                    capture_output=True,
                    check=True,
                )
        except BaseException:
            self.close()
            raise
        return self

    def _dropped(self) -> int:
        assert self._net is not None
        return self._blocklist.stats().dropped if self._blocklist else _nft_dropped(self._net.b)

    def send(self, count: int, blocked_every: int = 2, rate_pps: int = 0) -> E2EResult:
        net = self._net
        assert net is not None
        receiver = _Receiver(net.b, net.addr_b)
        receiver.start()
        receiver.ready.wait(5)
        if receiver.error:
            raise CloudKernelError(f"receiver failed: {receiver.error}")
        before = self._dropped()
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                net.a,
                str(self._pktgen),
                "veth-a",
                net.mac_a,
                net.mac_b,
                net.addr_a,
                BLOCKED_BASE,
                net.addr_b,
                str(count),
                str(blocked_every),
                str(rate_pps),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        receiver.stop.set()
        receiver.join(30)
        if proc.returncode != 0:
            raise CloudKernelError(f"pktgen failed: {proc.stderr.strip()}")
        fields = dict(kv.split("=") for kv in proc.stdout.split())
        sent, seconds = int(fields["sent"]), float(fields["seconds"])
        blocked_sent = len(range(0, sent, blocked_every)) if blocked_every > 0 else 0
        return E2EResult(
            self.kind,
            self.entries,
            sent,
            blocked_sent,
            sent - blocked_sent,
            self._dropped() - before,
            receiver.allowed,
            receiver.blocked,
            seconds,
        )

    def close(self) -> None:
        if self._blocklist is not None:
            self._blocklist.close()
            self._blocklist = None
        if self._net is not None:
            self._net.close()
            self._net = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_e2e(
    kind: str, entries: int, count: int, blocked_every: int = 2, rate_pps: int = 0
) -> E2EResult:
    """Send ``count`` frames through the filter ``kind`` ("xdp" or "nftables") once."""
    with E2EBench(kind, entries) as bench:
        return bench.send(count, blocked_every, rate_pps)
