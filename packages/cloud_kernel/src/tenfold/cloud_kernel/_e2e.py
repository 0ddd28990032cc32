"""End to end: frames over a veth pair between two namespaces, filtered by XDP or nftables.

Two frame sources, the same frame sequence from each (every
``blocked_every``-th frame from a source in the blocked /24):

- ``socket``: a small C program (built here with the system's C compiler) sends
  from namespace ``a`` through an AF_PACKET socket. Each frame is a socket
  buffer before it reaches ``veth-b``; XDP on a veth then has to copy it into a
  page with XDP's 256 bytes of headroom first, generic or native alike.
- ``pages``: the same sender writes to a second veth pair inside ``a``
  (``gen0`` -> ``gen1``); an XDP program on ``gen1`` redirects every frame out
  of ``veth-a``, so ``veth-b`` receives pages, as a NIC driver does from its
  ring, and builds a socket buffer only for frames that get past XDP. The copy
  into a page is paid once on ``gen1``, before either filter. Both filters get
  ``veth-b`` with GRO on (its NAPI path, which native XDP turns on anyway and a
  redirected page needs).

In namespace ``b`` a receiver thread counts what arrives, by source. The filter
under test (our XDP block list, or an nftables netdev-ingress drop rule over
the same set) sits on ``veth-b``. Each send records every CPU's busy time
(``/proc/stat``) and the sender's own CPU time, so drops can be read per core.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import ipaddress
import os
import resource
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from tenfold.cloud_kernel._build import build_object, cache_dir
from tenfold.cloud_kernel._libbpf import BpfObject
from tenfold.cloud_kernel._netns import VethPair, in_netns
from tenfold.cloud_kernel._xdp import XdpBlockList, ifindex
from tenfold.cloud_kernel.errors import BuildError, CloudKernelError

__all__ = ["E2EResult", "build_pktgen", "run_e2e"]

BLOCKED_BASE = "198.19.200.0"
BLOCKED_NET = ipaddress.ip_network("198.19.200.0/24")
_BLOCKED_TEXT = "198.19.200."  # what every source address in BLOCKED_NET starts with
SOURCES = ("socket", "pages")
_SIOCETHTOOL = 0x8946
_ETHTOOL_SGRO = 0x2C
_FRAME_BYTES = 60  # as pktgen.c's FRAME


def _cpu_busy_s() -> list[float]:
    """Busy seconds of each CPU since boot (user, nice, system, irq, softirq, steal)."""
    tick = os.sysconf("SC_CLK_TCK")
    busy = []
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu") and line[3].isdigit():
                f = [int(x) for x in line.split()[1:9]]
                busy.append((f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / tick)
    return busy


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
    source: str = "socket"
    sender_cpu_s: float = 0.0  # the sender's CPU time; softirq work run in its context included
    cpu_busy_s: tuple[float, ...] = field(default=())  # each CPU's busy time while sending

    @property
    def drop_rate_pps(self) -> float:
        return self.dropped / self.send_seconds if self.send_seconds else 0.0

    @property
    def drops_per_busy_cpu_s(self) -> float:
        """Blocked frames dropped per second of busy CPU, every core counted (machine-wide)."""
        busy = sum(self.cpu_busy_s)
        return self.dropped / busy if busy else 0.0


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
    def __init__(self, ns: str, addr: str, cpu: int | None = None) -> None:
        super().__init__(daemon=True, name="tfk-receiver")
        self.ns, self.addr, self.cpu = ns, addr, cpu
        self.allowed = self.blocked = 0
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: str = ""

    def run(self) -> None:
        try:
            if self.cpu is not None:
                os.sched_setaffinity(0, {self.cpu})  # this thread only
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
                if src.startswith(_BLOCKED_TEXT):
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


def _set_gro(ns: str, dev: str) -> None:
    """Turn GRO on for ``dev`` in ``ns`` (what ``ethtool -K DEV gro on`` does)."""
    value = ctypes.create_string_buffer(struct.pack("<II", _ETHTOOL_SGRO, 1))
    request = struct.pack("16sP", dev.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    with in_netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.closing(sock):
        try:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, request)
        except OSError as exc:
            raise CloudKernelError(f"cannot turn GRO on for {dev}: {exc.strerror}") from None


def _udp_frame(mac_src: str, mac_dst: str, addr_src: str, addr_dst: str) -> bytes:
    """The 60-byte UDP frame pktgen.c sends (port 40000 to 9000); the generator sets its source."""
    ip_len = _FRAME_BYTES - 14
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        ip_len,
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(addr_src),
        socket.inet_aton(addr_dst),
    )
    udp = struct.pack("!HHHH", 40000, 9000, ip_len - 20, 0)
    eth = bytes.fromhex(mac_dst.replace(":", "")) + bytes.fromhex(mac_src.replace(":", ""))
    return (eth + b"\x08\x00" + ip + udp).ljust(_FRAME_BYTES, b"\0")


def block_prefixes(entries: int) -> list[str]:
    """``entries`` rules: the blocked /24 plus filler /32 hosts from 198.19.0.0/17."""
    hosts = [
        str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.19.0.0")) + i))
        for i in range(1, entries)
    ]
    return [str(BLOCKED_NET), *hosts]


class E2EBench:
    """Two namespaces, a filter of ``entries`` rules on ``veth-b``, and a sender; reusable."""

    def __init__(
        self,
        kind: str,
        entries: int,
        source: str = "socket",
        *,
        xdp_mode: str = "auto",
        sender_cpu: int | None = None,
        receiver_cpu: int | None = None,
        threaded_napi: bool = False,
    ) -> None:
        if kind not in ("xdp", "nftables"):
            raise CloudKernelError(f"unknown filter kind {kind!r}")
        if source not in SOURCES:
            raise CloudKernelError(f"unknown frame source {source!r} (known: {', '.join(SOURCES)})")
        self.kind, self.entries, self.source = kind, entries, source
        self.xdp_mode, self.threaded_napi = xdp_mode, threaded_napi
        self.sender_cpu, self.receiver_cpu = sender_cpu, receiver_cpu
        self.attach_mode = ""
        self._net: VethPair | None = None
        self._blocklist: XdpBlockList | None = None
        self._framegen: BpfObject | None = None
        self._last_dropped = 0

    def __enter__(self) -> E2EBench:
        self._pktgen = build_pktgen()
        prefixes = block_prefixes(self.entries)
        self._net = VethPair().__enter__()
        try:
            if self.source == "pages" or self.threaded_napi:
                _set_gro(self._net.b, "veth-b")
            if self.threaded_napi:
                subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        self._net.b,
                        "sh",
                        "-c",
                        "echo 1 > /sys/class/net/veth-b/threaded",
                    ],
                    check=True,
                    capture_output=True,
                )
            if self.source == "pages":
                self._framegen = self._page_source(self._net)
            if self.kind == "xdp":
                self._blocklist = XdpBlockList()
                self._blocklist.block_many(prefixes)
                with in_netns(self._net.b):
                    self.attach_mode = self._blocklist.attach("veth-b", self.xdp_mode)
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

    @staticmethod
    def _page_source(net: VethPair) -> BpfObject:
        """``gen0`` -> ``gen1`` in ``a``, with ``gen1`` redirecting every frame out of ``veth-a``."""
        for argv in (
            ["link", "add", "gen0", "type", "veth", "peer", "name", "gen1"],
            ["link", "set", "gen0", "up"],
            ["link", "set", "gen1", "up"],
        ):
            subprocess.run(["ip", "-n", net.a, *argv], check=True, capture_output=True)
        obj = BpfObject(build_object("xdp_redirect")).load(["xdp_redirect"])
        try:
            with in_netns(net.a):
                target = ifindex("veth-a")
                obj.map("redirect_to").update(struct.pack("<I", 0), struct.pack("<I", target))
                obj.program("xdp_redirect").attach_xdp(ifindex("gen1"), "native")
        except BaseException:
            obj.close()
            raise
        return obj

    def _dropped(self) -> int:
        assert self._net is not None
        return self._blocklist.stats().dropped if self._blocklist else _nft_dropped(self._net.b)

    def send(self, count: int, blocked_every: int = 2, rate_pps: int = 0) -> E2EResult:
        net = self._net
        assert net is not None
        receiver = _Receiver(net.b, net.addr_b, self.receiver_cpu)
        receiver.start()
        receiver.ready.wait(5)
        if receiver.error:
            raise CloudKernelError(f"receiver failed: {receiver.error}")
        before = self._dropped()
        busy_before = _cpu_busy_s()
        sent, seconds, sender_cpu_s = self._send_socket(count, blocked_every, rate_pps)
        busy = tuple(b - a for a, b in zip(busy_before, _cpu_busy_s(), strict=True))
        receiver.stop.set()
        receiver.join(30)
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
            self.source,
            sender_cpu_s,
            busy,
        )

    def _send_socket(
        self, count: int, blocked_every: int, rate_pps: int
    ) -> tuple[int, float, float]:
        net = self._net
        assert net is not None
        pin = ["taskset", "-c", str(self.sender_cpu)] if self.sender_cpu is not None else []
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            [
                *pin,
                "ip",
                "netns",
                "exec",
                net.a,
                str(self._pktgen),
                "gen0" if self.source == "pages" else "veth-a",
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
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise CloudKernelError(f"pktgen failed: {proc.stderr.strip()}")
        fields = dict(kv.split("=") for kv in proc.stdout.split())
        cpu_s = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        return int(fields["sent"]), float(fields["seconds"]), cpu_s

    def close(self) -> None:
        if self._blocklist is not None:
            self._blocklist.close()
            self._blocklist = None
        if self._framegen is not None:
            self._framegen.close()
            self._framegen = None
        if self._net is not None:
            self._net.close()
            self._net = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_e2e(
    kind: str,
    entries: int,
    count: int,
    blocked_every: int = 2,
    rate_pps: int = 0,
    source: str = "socket",
) -> E2EResult:
    """Send ``count`` frames through the filter ``kind`` ("xdp" or "nftables") once."""
    with E2EBench(kind, entries, source) as bench:
        return bench.send(count, blocked_every, rate_pps)
