"""Test hosts: two network namespaces joined by a veth pair, made and removed by us.

Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for benchmark
networks; nothing outside the two namespaces is ever addressed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tenfold.cloud_kernel.errors import CloudKernelError, NotPermitted

__all__ = ["VethPair", "in_netns", "leftover_namespaces"]

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")
PREFIX = "tfk-"


def _run(*argv: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CloudKernelError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise CloudKernelError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread inside namespace ``name``, then come back."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
    except OSError:
        os.close(original)
        raise CloudKernelError(f"no network namespace {name!r}") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(original)
    finally:
        os.close(target)
        os.close(original)


def leftover_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))


@dataclass
class VethPair:
    """Namespaces ``a`` and ``b`` with ``veth-a`` (198.18.0.1) and ``veth-b`` (198.18.0.2)."""

    a: str = ""
    b: str = ""
    addr_a: str = "198.18.0.1"
    addr_b: str = "198.18.0.2"
    mac_a: str = ""
    mac_b: str = ""

    def __enter__(self) -> VethPair:
        if os.geteuid() != 0:
            raise NotPermitted("network namespaces need root")
        tag = secrets.token_hex(3)
        self.a, self.b = f"{PREFIX}{tag}-a", f"{PREFIX}{tag}-b"
        try:
            _run("ip", "netns", "add", self.a)
            _run("ip", "netns", "add", self.b)
            _run(
                "ip",
                "link",
                "add",
                "veth-a",
                "netns",
                self.a,
                "type",
                "veth",
                "peer",
                "name",
                "veth-b",
                "netns",
                self.b,
            )
            for ns, dev, addr in ((self.a, "veth-a", self.addr_a), (self.b, "veth-b", self.addr_b)):
                _run("ip", "-n", ns, "addr", "add", f"{addr}/15", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                for key in ("all", "default", dev):
                    _run(
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        f"net.ipv4.conf.{key}.rp_filter=0",
                    )
            self.mac_a = self._mac(self.a, "veth-a")
            self.mac_b = self._mac(self.b, "veth-b")
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def _mac(ns: str, dev: str) -> str:
        out = _run("ip", "-n", ns, "-o", "link", "show", dev)
        parts = out.split()
        return parts[parts.index("link/ether") + 1]

    def close(self) -> None:
        for ns in (self.a, self.b):
            if ns and (NETNS_DIR / ns).exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def __exit__(self, *exc: object) -> None:
        self.close()
