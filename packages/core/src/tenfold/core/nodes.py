"""Nodes we can measure on one machine: a network namespace plus a cgroup each.

A *node* is

* a network namespace ``<prefix>-<i>`` with one interface, ``eth0``, holding the
  node's own address ``10.201.X.(i+2)/24``; its other end, ``<prefix>h<i>``, sits
  on the set's bridge ``<prefix>br`` in the host namespace, which holds
  :attr:`NodeSet.host_address` (``10.201.X.1``). Nodes reach each other and the
  host over that bridge; the host reaches every node at :attr:`Node.address`.
  A node's default route goes to the host's bridge address, so a node reaches
  the host at any of the host's own addresses too (its LAN address, say), as a
  machine reaches a server on its network; the host does not forward further.
  A node's ``127.0.0.1`` is its own loopback, not the host's: a service the
  nodes must reach listens on :attr:`NodeSet.host_address`, on another address
  of the host, or on all addresses, never on the host's loopback alone.
* a cgroup (:class:`tenfold.core.governor.Cgroup`, ``tenfold/node-<prefix>-<i>``
  under the cpu, cpuacct, memory, pids and freezer controllers) with a CPU quota
  (``cpu`` cores: ``cpu.cfs_quota_us`` over a 100 ms period, the cgroup-v1 form of
  ``cpu.max``) and a memory limit (``memory.limit_in_bytes``, the v1 form of
  ``memory.max``).

:meth:`Node.spawn` starts a process that joins the cgroup and enters the
namespace in the child, before it execs, so none of its work runs outside the
node. Every node of a set has the same budget, so a row measured at 1, 2, 4 or
8 nodes gives each node the same CPU and memory whatever the size.

Removal leaves nothing: :meth:`NodeSet.close` kills the nodes' processes, deletes
the namespaces (their veths go with them), the bridge and the cgroups. A set
records itself under ``/run/tenfold-nodes/`` with its owner's pid and start time;
when the owner is SIGKILLed, :func:`recover_nodes` (called by every new set too)
removes the sets whose owner is gone, and ``recover_nodes(prefix)`` removes a
prefix's nodes whoever owns them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tenfold.core.errors import CgroupError, NodeError
from tenfold.core.governor import Cgroup, cgroups_available, leftover_cgroups
from tenfold.core.lifecycle import Closing

__all__ = ["Node", "NodeSet", "host_addresses", "leftover_nodes", "recover_nodes"]

NETNS_DIR = Path("/var/run/netns")
STATE_DIR = Path(os.environ.get("TENFOLD_NODES_STATE", "/run/tenfold-nodes"))
SUBNET_BASE = "10.201"
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,9}$")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _ip(*argv: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            ["ip", *argv], capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError:
        raise NodeError("nodes need iproute2 (the ip command)") from None
    if check and proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise NodeError(f"ip {' '.join(argv)}: {message[0] if message else 'failed'}")
    return proc.stdout


def host_addresses() -> list[str]:
    """This host's global-scope IPv4 addresses (what a node may reach besides the bridge)."""
    out = _ip("-4", "-o", "addr", "show", "scope", "global", check=False)
    return re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (pid plus this names one process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def _netns_pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False)
    return [int(x) for x in out.split() if x.isdigit()]


@dataclass
class Node:
    """One node: namespace :attr:`netns`, address :attr:`address`, cgroup :attr:`cgroup`."""

    index: int
    netns: str
    address: str
    host_address: str
    cgroup: Cgroup
    veth: str

    def spawn(self, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in this node: it joins the cgroup, then enters the namespace,
        both in the child before it execs, so all its work runs inside the node."""
        if not argv:
            raise NodeError("spawn needs a command")
        path = str(NETNS_DIR / self.netns)
        setns = _libc.setns

        def enter() -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                if setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)

        try:
            return self.cgroup.spawn(argv, then=enter, **popen_kw)
        except CgroupError as exc:
            raise NodeError(f"node {self.index}: {exc}") from None

    def pids(self) -> list[int]:
        """Every process in this node (its cgroup's, plus any that entered the namespace)."""
        return sorted(set(self.cgroup.pids()) | set(_netns_pids(self.netns)))

    def cpu_seconds(self) -> float:
        """CPU time used by the node's processes so far (cpuacct), in seconds."""
        return self.cgroup.stats()["cpu_usage_ns"] / 1e9

    def stats(self) -> dict[str, int]:
        """The cgroup's figures: CPU use and throttling, memory, OOM kills, pids."""
        return self.cgroup.stats()

    def kill(self) -> None:
        """SIGKILL every process in the node (a node failure); the node itself stays."""
        with contextlib.suppress(CgroupError):
            self.cgroup.kill()
        for pid in _netns_pids(self.netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class NodeSet(Closing):
    """``count`` nodes of ``cpu`` cores and ``memory_mb`` MiB each, on one bridge.

    A context manager: made on enter, removed (processes included) on exit.
    ``prefix`` (2-10 lower-case letters and digits, starting with a letter)
    names every object; by default a fresh one.
    """

    count: int
    cpu: float = 0.125
    memory_mb: int = 512
    prefix: str = ""
    pids_max: int = 4096
    nodes: list[Node] = field(default_factory=list, init=False)
    subnet: int = field(default=-1, init=False)
    _owned: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or not 1 <= self.count <= 250:
            raise NodeError(f"node count must be 1..250, got {self.count!r}")
        if not 0.01 <= self.cpu <= (os.cpu_count() or 1):
            raise NodeError(f"node cpu must be 0.01..{os.cpu_count()} cores, got {self.cpu!r}")
        if not isinstance(self.memory_mb, int) or self.memory_mb < 16:
            raise NodeError(f"node memory must be at least 16 MiB, got {self.memory_mb!r}")
        if not self.prefix:
            self.prefix = "tfn" + secrets.token_hex(3)
        if not _PREFIX_RE.match(self.prefix):
            raise NodeError(
                f"bad node prefix {self.prefix!r} (2-10 lower-case letters or digits, "
                "starting with a letter)"
            )

    # -- names -------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        """The bridge in the host namespace that joins the nodes."""
        return f"{self.prefix}br"

    @property
    def host_address(self) -> str:
        """The host's address on the bridge: where services for the nodes listen."""
        return f"{SUBNET_BASE}.{self.subnet}.1"

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    # -- lifecycle -----------------------------------------------------------------
    def create(self) -> Self:
        """Make the bridge, the namespaces, veths and cgroups; on failure remove all."""
        if os.geteuid() != 0:
            raise NodeError("nodes need root (network namespaces and cgroups)")
        if not cgroups_available():
            raise NodeError("nodes need the cgroup v1 cpu, memory, pids and freezer controllers")
        recover_nodes()
        with _locked():
            if (NETNS_DIR / f"{self.prefix}-0").exists() or _link_exists(self.bridge):
                raise NodeError(f"nodes with prefix {self.prefix!r} already exist")
            self.subnet = _free_subnet()
            _write_state(self)
        self._owned = True
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def _make(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.count):
            netns, veth = f"{self.prefix}-{i}", f"{self.prefix}h{i}"
            address = f"{SUBNET_BASE}.{self.subnet}.{i + 2}"
            cgroup = Cgroup(
                f"node-{netns}",
                cpu_quota_pct=self.cpu * 100,
                memory_bytes=self.memory_mb * 1024**2,
                pids_max=self.pids_max,
            )
            node = Node(i, netns, address, self.host_address, cgroup, veth)
            _ip("netns", "add", netns)
            self.nodes.append(node)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "route", "add", "default", "via", self.host_address)
            try:
                cgroup.create()
            except CgroupError as exc:
                raise NodeError(f"node {i}: {exc}") from None

    def __enter__(self) -> Self:
        return self.create()

    def close(self) -> None:
        """Kill every process in the nodes, then remove namespaces, bridge and cgroups."""
        self.nodes.clear()
        if self._owned:
            self._owned = False
            _remove_prefix(self.prefix)


# -- state, locking, recovery -----------------------------------------------------


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _free_subnet() -> int:
    used: set[int] = set()
    for path in STATE_DIR.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            used.add(int(json.loads(path.read_text())["subnet"]))
    for match in re.finditer(rf"inet {re.escape(SUBNET_BASE)}\.(\d+)\.", _ip("-o", "-4", "addr")):
        used.add(int(match.group(1)))
    for subnet in range(256):
        if subnet not in used:
            return subnet
    raise NodeError(f"no free {SUBNET_BASE}.X.0/24 subnet left for nodes")


def _write_state(nodes: NodeSet) -> None:
    pid = os.getpid()
    state = {
        "prefix": nodes.prefix,
        "subnet": nodes.subnet,
        "count": nodes.count,
        "owner_pid": pid,
        "owner_start": _start_time(pid),
    }
    tmp = STATE_DIR / f".{nodes.prefix}.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(STATE_DIR / f"{nodes.prefix}.json")


def _remove_prefix(prefix: str) -> None:
    """Remove every node object named by ``prefix``: processes, netns, veths, bridge, cgroups."""
    namespaces = _namespaces(prefix)
    for netns in namespaces:
        with contextlib.suppress(CgroupError):
            Cgroup(f"node-{netns}").kill()
    for _ in range(3):
        alive = [pid for netns in namespaces for pid in _netns_pids(netns)]
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    errors: list[str] = []
    for netns in namespaces:
        try:
            Cgroup(f"node-{netns}").remove()
        except CgroupError as exc:
            errors.append(str(exc))
        if (NETNS_DIR / netns).exists():
            _ip("netns", "del", netns, check=False)
    for link in _links(prefix):
        _ip("link", "del", link, check=False)
    for netns in _namespaces(prefix):
        errors.append(f"namespace {netns} is still there")
    if not errors:
        with contextlib.suppress(FileNotFoundError):
            (STATE_DIR / f"{prefix}.json").unlink()
    if errors:
        raise NodeError(f"nodes {prefix}: {'; '.join(errors)}")


def _namespaces(prefix: str) -> list[str]:
    """The node names of ``prefix``: namespaces, and cgroups whose namespace is gone."""
    pattern = re.compile(rf"^{re.escape(prefix)}-\d+$")
    names = [p.name for p in NETNS_DIR.iterdir()] if NETNS_DIR.is_dir() else []
    names += [g[len("node-") :] for g in leftover_cgroups() if g.startswith("node-")]
    return sorted({n for n in names if pattern.match(n)})


def _links(prefix: str) -> list[str]:
    pattern = re.compile(rf"^{re.escape(prefix)}(br|h\d+)$")
    base = Path("/sys/class/net")
    return sorted(p.name for p in base.iterdir() if pattern.match(p.name)) if base.is_dir() else []


def leftover_nodes(prefix: str | None = None) -> list[str]:
    """What is left of node sets (of ``prefix``, or of every recorded set):
    ``netns:``, ``link:``, ``cgroup:`` and ``state:`` names; empty when all is removed."""
    prefixes = {prefix} if prefix else set()
    if not prefix:
        if STATE_DIR.is_dir():
            prefixes.update(p.stem for p in STATE_DIR.glob("*.json"))
        prefixes.update(
            g[len("node-") :].rsplit("-", 1)[0] for g in leftover_cgroups() if g.startswith("node-")
        )
    found: list[str] = []
    for name in sorted(prefixes):
        nets = _namespaces(name)
        found += [f"netns:{ns}" for ns in nets if (NETNS_DIR / ns).exists()]
        found += [f"link:{link}" for link in _links(name)]
        found += [f"cgroup:node-{ns}" for ns in nets if f"node-{ns}" in leftover_cgroups()]
        if (STATE_DIR / f"{name}.json").exists():
            found.append(f"state:{name}")
    return found


def recover_nodes(prefix: str | None = None) -> list[str]:
    """Remove node sets left behind; returns the prefixes removed.

    With ``prefix``, remove every node object of that exact prefix, whoever owns
    it (``chaos recover`` on a machine, a test fixture). Without, remove every
    recorded set whose owner process is gone (SIGKILLed, crashed).
    """
    if prefix is not None:
        if not _PREFIX_RE.match(prefix):
            raise NodeError(f"bad node prefix {prefix!r}")
        with _locked():
            _remove_prefix(prefix)
        return [prefix]
    removed: list[str] = []
    if not STATE_DIR.is_dir():
        return removed
    with _locked():
        for path in sorted(STATE_DIR.glob("*.json")):
            try:
                state = json.loads(path.read_text())
                owner, start, name = int(state["owner_pid"]), state["owner_start"], state["prefix"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if _start_time(owner) == start and start is not None:
                continue  # its owner is alive: not ours to remove
            with contextlib.suppress(NodeError):
                _remove_prefix(str(name))
                removed.append(str(name))
    return removed
