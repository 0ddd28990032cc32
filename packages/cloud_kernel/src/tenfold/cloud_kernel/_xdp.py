"""The XDP block list: drop by source address and prefix, with per-rule counters.

Exact hosts (/32, /128) live in hash maps (one probe per packet); real prefixes
live in longest-prefix-match tries, consulted only when the host probe misses.
In front of both, for IPv4, two marker bytes per /24 say whether a host rule
lies in it and whether a prefix rule touches it: frames from unmarked address
space pass after one inlined array load, and only the probes a /24's marks call
for are made. Markers are set (through a shared mmap, one byte store each)
before the rule is inserted and are never cleared while the list lives, so a
marker is never missing for a rule; a stale one only costs that /24 a probe.
Adding or removing a rule is one map update, visible to the next packet;
:meth:`XdpBlockList.replace` swaps a whole list: new rules are inserted before
stale ones are deleted, so no address that is blocked in both the old and the
new list is ever let through in between.
"""

from __future__ import annotations

import ipaddress
import mmap
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tenfold.cloud_kernel._build import BPFFS, build_object, ensure_mounts
from tenfold.cloud_kernel._libbpf import BPF_NOEXIST, BpfLink, BpfMap, BpfObject, BpfProgram
from tenfold.cloud_kernel.errors import BadAddress, BpfError, MapEntryExists, NoSuchInterface
from tenfold.core.lifecycle import Closing

__all__ = ["BlockRule", "XdpBlockList", "XdpStats", "parse_prefix"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

STAT_NAMES = ("passed", "dropped", "runt", "bad_header", "not_ip", "fragment")
_RULE = struct.Struct("<QQII")  # packets, bytes, rule_id, pad
XDP_PASS = 2
XDP_DROP = 1
PIN_ROOT = BPFFS / "tenfold"


def parse_prefix(text: str) -> Network:
    """An address or CIDR prefix; host bits must be zero (``10.0.0.1/8`` is refused)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise BadAddress(f"bad address or prefix {text!r}: {exc}") from None


def _key(net: Network) -> tuple[str, bytes]:
    """Which map holds ``net`` and its key there: hosts go to a hash, prefixes to a trie."""
    v6 = net.version == 6
    if net.prefixlen == net.max_prefixlen:
        return ("hosts_v6" if v6 else "hosts_v4"), net.network_address.packed
    return ("blocked_v6" if v6 else "blocked_v4"), struct.pack(
        "<I", net.prefixlen
    ) + net.network_address.packed


@dataclass(frozen=True)
class BlockRule:
    prefix: Network
    rule_id: int
    packets: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class XdpStats:
    passed: int
    dropped: int
    runt: int
    bad_header: int
    not_ip: int
    fragment: int


def ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise NoSuchInterface(f"no network interface named {name!r}") from None


_MAP_NAMES = ("hosts_v4", "hosts_v6", "blocked_v4", "blocked_v6")
_MAP_SIZES = {  # key bytes, value bytes, max entries (as declared in xdp_blocklist.bpf.c)
    "hosts_v4": (4, _RULE.size, 262144),
    "hosts_v6": (16, _RULE.size, 262144),
    "blocked_v4": (8, _RULE.size, 262144),
    "blocked_v6": (20, _RULE.size, 262144),
    "stats": (4, 8, 8),
    "v4_marks": (4, 8, 1 << 22),
}
_WINDOW = 1 << 17  # bytes of the marker map mapped at a time (65,536 /24s, a /8)


def pin_dir(interface: str) -> Path:
    return PIN_ROOT / f"xdp-{interface}"


class XdpBlockList(Closing):
    """The XDP block-list program and its maps.

    ``XdpBlockList()`` loads a fresh program (root); attach it per interface, and
    it detaches when closed or when this process exits. :meth:`pin_to` keeps it
    attached after exit, and :meth:`open_pinned` reopens such a list (its rules
    and counters) from another process.
    """

    def __init__(self, *, _pinned: Path | None = None) -> None:
        ensure_mounts()
        self.attached: dict[str, tuple[BpfLink, str]] = {}
        self._obj: BpfObject | None = None
        if _pinned is None:
            self._obj = BpfObject(build_object("xdp_blocklist")).load(["xdp_blocklist"])
            self.program: BpfProgram | None = self._obj.program("xdp_blocklist")
            self._maps = {n: self._obj.map(n) for n in _MAP_NAMES}
            self._stats = self._obj.map("stats", per_cpu=True)
            self._marks_map = self._obj.map("v4_marks")
        else:
            self.program = None
            self._maps = {
                n: BpfMap.open_pinned(_pinned / n, per_cpu=False, sizes=_MAP_SIZES[n])
                for n in _MAP_NAMES
            }
            self._stats = BpfMap.open_pinned(
                _pinned / "stats", per_cpu=True, sizes=_MAP_SIZES["stats"]
            )
            self._marks_map = BpfMap.open_pinned(
                _pinned / "v4_marks", per_cpu=False, sizes=_MAP_SIZES["v4_marks"]
            )
        # A window of the marker map, mapped on demand: the whole map mapped at once
        # would add its 16 MB to this process's RSS.
        self._window: mmap.mmap | None = None
        self._window_start = 0
        self._ids: dict[
            tuple[str, bytes], int
        ] = {}  # compact keys: 100K Network objects weigh 50 MB
        self._next_id = 1 + max((r.rule_id for r in self.rules()), default=0)

    @classmethod
    def open_pinned(cls, interface: str) -> XdpBlockList:
        folder = pin_dir(interface)
        if not (folder / "link").exists():
            raise BpfError(
                f"no tenfold XDP block list is pinned on {interface} (run: tenfold kernel xdp attach {interface})"
            )
        return cls(_pinned=folder)

    def pin_to(self, interface: str) -> Path:
        """Pin the link on ``interface`` and the maps, so the list outlives this process."""
        if interface not in self.attached:
            raise BpfError(f"not attached to {interface}")
        folder = pin_dir(interface)
        self.attached[interface][0].pin(folder / "link")
        for name, m in {**self._maps, "stats": self._stats, "v4_marks": self._marks_map}.items():
            m.pin(folder / name)
        return folder

    @staticmethod
    def unpin(interface: str) -> bool:
        """Remove the pins of ``interface``: the last reference goes and the program detaches."""
        folder = pin_dir(interface)
        if not folder.is_dir():
            return False
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
        return True

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """Detach from every interface (unless pinned) and unload."""
        self.attached.clear()
        if self._window is not None:
            self._window.close()
            self._window = None
        if self._obj is not None:
            self._obj.close()
        else:
            for m in [*self._maps.values(), self._stats, self._marks_map]:
                m.close()

    @property
    def capacity(self) -> int:
        return self._maps["hosts_v4"].max_entries

    # -- rules ---------------------------------------------------------------------
    def _map(self, name: str) -> BpfMap:
        return self._maps[name]

    def block(self, prefix: str | Network) -> BlockRule:
        net = parse_prefix(prefix) if isinstance(prefix, str) else prefix
        where, key = _key(net)
        if (where, key) in self._ids:
            return self.rule(net)
        rule_id = self._next_id
        if net.version == 4:
            self._mark(net, host=net.prefixlen == 32)
        try:
            self._map(where).update(key, _RULE.pack(0, 0, rule_id, 0), BPF_NOEXIST)
        except MapEntryExists:
            return self.rule(net)
        except BpfError as exc:
            if "is full" in str(exc):
                raise BpfError(
                    f"block list is full ({self._map(where).max_entries} entries): {net} not added"
                ) from None
            raise
        self._next_id += 1
        self._ids[where, key] = rule_id
        return BlockRule(net, rule_id)

    def _mark(self, net: ipaddress.IPv4Network, *, host: bool) -> None:
        """Mark every /24 ``net`` touches (host or prefix byte), before the rule exists."""
        first = 2 * (int(net.network_address) >> 8) + (0 if host else 1)
        last = 2 * (int(net.broadcast_address) >> 8) + (0 if host else 1)
        window = self._window
        if window is None or not (
            self._window_start <= first and last < self._window_start + len(window)
        ):
            if window is not None:
                window.close()
            start = first - first % _WINDOW
            end = last + 1 + (-(last + 1)) % _WINDOW
            window = mmap.mmap(
                self._marks_map.fd,
                end - start,
                mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
                offset=start,
            )
            self._window, self._window_start = window, start
        lo, hi = first - self._window_start, last - self._window_start
        if lo == hi:
            window[lo] = 1
        else:  # every other byte: this kind's marks only, one store each
            window[lo : hi + 1 : 2] = b"\x01" * ((hi - lo) // 2 + 1)

    def block_many(self, prefixes: Iterable[str | Network]) -> int:
        return sum(1 for p in prefixes if self.block(p) is not None)

    def unblock(self, prefix: str | Network) -> bool:
        net = parse_prefix(prefix) if isinstance(prefix, str) else prefix
        where, key = _key(net)
        self._ids.pop((where, key), None)
        return self._map(where).delete(key)

    def replace(self, prefixes: Iterable[str | Network]) -> tuple[int, int]:
        """Make the list exactly ``prefixes``: add first, then remove; (added, removed)."""
        wanted = {parse_prefix(p) if isinstance(p, str) else p for p in prefixes}
        current = set(self.prefixes())
        for net in wanted - current:
            self.block(net)
        stale = current - wanted
        for net in stale:
            self.unblock(net)
        return len(wanted - current), len(stale)

    def prefixes(self) -> list[Network]:
        out: list[Network] = []
        for name, m in self._maps.items():
            v6 = name.endswith("v6")
            for key in m.keys():  # noqa: SIM118 - a BPF map, not a dict
                if name.startswith("hosts"):
                    plen, raw = (128 if v6 else 32), key
                else:
                    plen, raw = struct.unpack_from("<I", key)[0], key[4:]
                addr = ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw)
                out.append(ipaddress.ip_network(f"{addr}/{plen}"))
        return sorted(out, key=lambda n: (n.version, n))

    def rule(self, prefix: str | Network) -> BlockRule:
        net = parse_prefix(prefix) if isinstance(prefix, str) else prefix
        where, key = _key(net)
        raw = self._map(where).lookup(key)
        if raw is None:
            raise BadAddress(f"{net} is not in the block list")
        packets, nbytes, rule_id, _ = _RULE.unpack(raw[: _RULE.size])
        return BlockRule(net, rule_id, packets, nbytes)

    def rules(self) -> list[BlockRule]:
        return [self.rule(p) for p in self.prefixes()]

    def stats(self) -> XdpStats:
        values = []
        for index in range(len(STAT_NAMES)):
            per_cpu = self._stats.lookup_per_cpu(struct.pack("<I", index))
            values.append(sum(struct.unpack("<Q", v[:8])[0] for v in per_cpu))
        return XdpStats(*values)

    def reset_stats(self) -> None:
        for index in range(len(STAT_NAMES)):
            self._stats.update(struct.pack("<I", index), struct.pack("<Q", 0))

    # -- attach ------------------------------------------------------------------------
    def attach(self, interface: str, mode: str = "auto") -> str:
        """Attach to ``interface`` (native XDP, else generic); returns the mode used."""
        if interface in self.attached:
            return self.attached[interface][1]
        if self.program is None:
            raise BpfError("a pinned block list cannot be attached again; load a new one")
        link, used = self.program.attach_xdp(ifindex(interface), mode)
        self.attached[interface] = (link, used)
        return used

    def detach(self, interface: str) -> bool:
        entry = self.attached.pop(interface, None)
        if entry is None:
            return False
        entry[0].close()
        return True

    def test_run(self, frame: bytes, repeat: int = 1) -> tuple[int, int]:
        """Run the program on one frame in the kernel: (XDP verdict, ns per run)."""
        if self.program is None:
            raise BpfError("test runs need a loaded program, not a pinned list")
        return self.program.test_run(frame, repeat)
