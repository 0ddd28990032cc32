"""Fault types: typed, frozen dataclasses that validate themselves on construction.

Each fault belongs to a *plane*:

* ``data`` faults act inside this process or its TCP proxy (fault points, proxy
  toxics); they need no privilege and are reverted by flipping a rule off;
* ``os`` faults act on the kernel (cgroups, nftables, qdiscs, freezer, signals);
  they need root and each one lives in a kernel object named after the
  experiment and the fault id, so its revert is one delete.

A fault is plain data: the engine journals ``kind`` plus :func:`fault_to_dict`
and rebuilds it with :func:`fault_from_dict`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tenfold.chaos_engine.errors import InvalidFault

MAX_DURATION_S = 7 * 24 * 3600.0
"""A week: longer TTLs are a typo, and a forgotten fault is what this engine exists to prevent."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_CIDR = re.compile(r"^[0-9a-fA-F:.]+(/[0-9]{1,3})?$")

Direction = Literal["upstream", "downstream", "both"]
Plane = Literal["data", "os"]


def _number(kind: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidFault(f"{kind}: {name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise InvalidFault(f"{kind}: {name} must be finite, got {value!r}")
    return number


def check_duration(kind: str, name: str, value: object) -> None:
    """A duration is a finite number of seconds in (0, one week]."""
    number = _number(kind, name, value)
    if number <= 0:
        raise InvalidFault(f"{kind}: {name} must be > 0 s, got {value!r}")
    if number > MAX_DURATION_S:
        raise InvalidFault(
            f"{kind}: {name} must be <= {MAX_DURATION_S:g} s (a week), got {value!r}"
        )


def check_range(kind: str, name: str, value: object, low: float, high: float) -> None:
    """A finite number within [low, high]."""
    number = _number(kind, name, value)
    if not low <= number <= high:
        raise InvalidFault(f"{kind}: {name} must be within [{low:g}, {high:g}], got {value!r}")


def check_name(kind: str, name: str, value: object, pattern: re.Pattern[str] = _NAME) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidFault(
            f"{kind}: {name} must be a name of letters, digits, '_', '.', '-', got {value!r}"
        )


def check_pid(kind: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 1:
        raise InvalidFault(f"{kind}: pid must be an integer > 1, got {value!r}")


def check_glob(kind: str, value: object) -> None:
    """A path glob is relative to the fault's mount and never climbs out of it."""
    if not isinstance(value, str) or not value:
        raise InvalidFault(f"{kind}: path glob must be a non-empty string, got {value!r}")
    if value.startswith("/") or "\x00" in value:
        raise InvalidFault(f"{kind}: path glob must be relative to the mount, got {value!r}")
    if any(part == ".." for part in value.split("/")):
        raise InvalidFault(f"{kind}: path glob must not contain '..' (path traversal): {value!r}")


@dataclass(frozen=True, kw_only=True)
class Fault:
    """Base of every fault: how long it lives (its TTL) and an optional id."""

    kind: ClassVar[str] = "fault"
    plane: ClassVar[Plane] = "data"
    duration_s: float = 60.0
    fault_id: str = ""

    def __post_init__(self) -> None:
        check_duration(self.kind, "duration_s", self.duration_s)
        if self.fault_id:
            check_name(self.kind, "fault_id", self.fault_id)


# -- data plane: in-process fault points ------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PointFault(Fault):
    """At fault point ``point``: raise, delay or corrupt each call with ``probability``."""

    kind: ClassVar[str] = "point"
    point: str
    action: Literal["raise", "delay", "corrupt"] = "raise"
    probability: float = 1.0
    delay_s: float = 0.0
    message: str = "injected fault"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.kind, "point", self.point)
        if self.action not in ("raise", "delay", "corrupt"):
            raise InvalidFault(
                f"point: action must be raise, delay or corrupt, got {self.action!r}"
            )
        check_range(self.kind, "probability", self.probability, 0.0, 1.0)
        check_range(self.kind, "delay_s", self.delay_s, 0.0, 3600.0)
        if self.action == "delay" and self.delay_s <= 0:
            raise InvalidFault("point: a delay fault needs delay_s > 0")


# -- data plane: TCP proxy toxics ------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProxyFault(Fault):
    """Base of the TCP proxy's faults, toxiproxy's vocabulary: one proxy, one direction."""

    kind: ClassVar[str] = "proxy"
    proxy: str
    direction: Direction = "downstream"
    probability: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.kind, "proxy", self.proxy)
        if self.direction not in ("upstream", "downstream", "both"):
            raise InvalidFault(
                f"{self.kind}: direction must be upstream, downstream or both, "
                f"got {self.direction!r}"
            )
        check_range(self.kind, "probability", self.probability, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class ProxyLatency(ProxyFault):
    """Delay each chunk by ``latency_ms`` plus a uniform jitter of up to ``jitter_ms``."""

    kind: ClassVar[str] = "proxy_latency"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "latency_ms", self.latency_ms, 0.0, 600_000.0)
        check_range(self.kind, "jitter_ms", self.jitter_ms, 0.0, 600_000.0)


@dataclass(frozen=True, kw_only=True)
class ProxyBandwidth(ProxyFault):
    """Limit the direction to ``rate_bytes_per_s``."""

    kind: ClassVar[str] = "proxy_bandwidth"
    rate_bytes_per_s: int = 1_000_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "rate_bytes_per_s", self.rate_bytes_per_s, 1, 1e12)


@dataclass(frozen=True, kw_only=True)
class ProxySlowClose(ProxyFault):
    """Delay the close of the connection by ``delay_ms``."""

    kind: ClassVar[str] = "proxy_slow_close"
    delay_ms: float = 1000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "delay_ms", self.delay_ms, 0.0, 600_000.0)


@dataclass(frozen=True, kw_only=True)
class ProxyTimeout(ProxyFault):
    """Stop forwarding; close the connection after ``timeout_ms`` (0: hold it open)."""

    kind: ClassVar[str] = "proxy_timeout"
    timeout_ms: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "timeout_ms", self.timeout_ms, 0.0, 600_000.0)


@dataclass(frozen=True, kw_only=True)
class ProxyReset(ProxyFault):
    """Reset the connection (RST) after ``timeout_ms``."""

    kind: ClassVar[str] = "proxy_reset"
    timeout_ms: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "timeout_ms", self.timeout_ms, 0.0, 600_000.0)


@dataclass(frozen=True, kw_only=True)
class ProxySlicer(ProxyFault):
    """Cut data into slices of about ``average_size`` bytes, ``delay_us`` apart."""

    kind: ClassVar[str] = "proxy_slicer"
    average_size: int = 64
    size_variation: int = 0
    delay_us: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "average_size", self.average_size, 1, 1 << 24)
        check_range(self.kind, "size_variation", self.size_variation, 0, self.average_size - 1)
        check_range(self.kind, "delay_us", self.delay_us, 0, 60_000_000)


@dataclass(frozen=True, kw_only=True)
class ProxyLimitData(ProxyFault):
    """Close the connection once ``bytes`` have passed in this direction."""

    kind: ClassVar[str] = "proxy_limit_data"
    bytes: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "bytes", self.bytes, 0, 1 << 62)


@dataclass(frozen=True, kw_only=True)
class ProxyLoss(ProxyFault):
    """Fail a connection with ``probability``: it is reset on its first chunk (a lost request)."""

    kind: ClassVar[str] = "proxy_loss"


@dataclass(frozen=True, kw_only=True)
class PluginFault(Fault):
    """A fault type from a plugin (entry-point group ``tenfold.chaos_engine.faults``)."""

    kind: ClassVar[str] = "plugin"
    plugin: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.kind, "plugin", self.plugin)
        if not isinstance(self.params, dict):
            raise InvalidFault(f"plugin: params must be a table, got {self.params!r}")


# -- OS plane ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OsFault(Fault):
    """Base of the faults that act on the kernel (root only)."""

    kind: ClassVar[str] = "os"
    plane: ClassVar[Plane] = "os"


@dataclass(frozen=True, kw_only=True)
class CpuHog(OsFault):
    """Burn ``cores`` CPUs (of the pool's quota) for ``duration_s``, inside a quota'd cgroup."""

    kind: ClassVar[str] = "cpu_hog"
    cores: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "cores", self.cores, 1, 1024)


@dataclass(frozen=True, kw_only=True)
class MemoryHog(OsFault):
    """Hold ``size_bytes`` of touched memory inside a memory-limited cgroup."""

    kind: ClassVar[str] = "memory_hog"
    size_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "size_bytes", self.size_bytes, 1, 1 << 40)


@dataclass(frozen=True, kw_only=True)
class NetworkFault(OsFault):
    """Base of the faults that act inside a network namespace."""

    kind: ClassVar[str] = "network"
    netns: str

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.kind, "netns", self.netns)


@dataclass(frozen=True, kw_only=True)
class NetworkLatency(NetworkFault):
    """Delay packets leaving ``interface`` by ``latency_ms`` +- ``jitter_ms`` (NFQUEUE).

    Each packet's delay is drawn uniformly from ``[latency - jitter, latency +
    jitter]`` (at least zero), so with jitter packets may overtake each other, as
    with netem. ``port`` (when not 0) limits the fault to TCP and UDP packets
    to or from that port; IPv4 and IPv6 alike (this kernel has no netem, nor
    nft's own ``queue`` expression: the rule uses xt's NFQUEUE target).
    """

    kind: ClassVar[str] = "network_latency"
    interface: str
    latency_ms: float = 10.0
    jitter_ms: float = 0.0
    port: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.kind, "interface", self.interface, _IFNAME)
        check_range(self.kind, "latency_ms", self.latency_ms, 0.001, 600_000.0)
        check_range(self.kind, "jitter_ms", self.jitter_ms, 0.0, 600_000.0)
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise InvalidFault(f"{self.kind}: port must be an integer, got {self.port!r}")
        check_range(self.kind, "port", self.port, 0, 65535)


@dataclass(frozen=True, kw_only=True)
class PacketLoss(NetworkFault):
    """Drop ``percent`` of the packets leaving the namespace (nftables ``numgen random``)."""

    kind: ClassVar[str] = "packet_loss"
    percent: float = 10.0
    interface: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "percent", self.percent, 0.0, 100.0)
        if self.interface:
            check_name(self.kind, "interface", self.interface, _IFNAME)


@dataclass(frozen=True, kw_only=True)
class Bandwidth(NetworkFault):
    """Shape ``interface`` to ``rate_bytes_per_s`` with a tc tbf qdisc."""

    kind: ClassVar[str] = "bandwidth"
    interface: str
    rate_bytes_per_s: int = 125_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.kind, "interface", self.interface, _IFNAME)
        check_range(self.kind, "rate_bytes_per_s", self.rate_bytes_per_s, 1000, 1e11)


@dataclass(frozen=True, kw_only=True)
class ConnectionReset(NetworkFault):
    """Answer TCP to ``port`` in the namespace with a reset (nft ``reject with tcp reset``)."""

    kind: ClassVar[str] = "connection_reset"
    port: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise InvalidFault(f"{self.kind}: port must be an integer, got {self.port!r}")
        check_range(self.kind, "port", self.port, 1, 65535)


@dataclass(frozen=True, kw_only=True)
class Partition(NetworkFault):
    """Drop every packet between the namespace and ``peer`` (an address or CIDR)."""

    kind: ClassVar[str] = "partition"
    peer: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.peer, str) or not _CIDR.match(self.peer):
            raise InvalidFault(f"{self.kind}: peer must be an address or CIDR, got {self.peer!r}")


DISK_OPERATIONS = frozenset(
    {"lookup", "getattr", "setattr", "open", "create", "read", "write", "readdir", "unlink",
     "mkdir", "rmdir", "rename", "fsync"}
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DiskFault(OsFault):
    """Base of the FUSE disk faults: ``source`` served at ``mount``, a glob, some operations.

    The engine mounts a pass-through of ``source`` at ``mount`` (an empty
    directory) the first time a fault names it; the application under test
    uses ``mount``. ``path_glob`` is relative to the mount; ``operations``
    limits the fault to some FUSE operations (empty: all).
    """

    kind: ClassVar[str] = "disk"
    mount: str
    source: str
    path_glob: str = "*"
    operations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("mount", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
                raise InvalidFault(f"{self.kind}: {name} must be an absolute path, got {value!r}")
        check_glob(self.kind, self.path_glob)
        if isinstance(self.operations, list):
            object.__setattr__(self, "operations", tuple(self.operations))
        if isinstance(self.operations, str) or not all(
            op in DISK_OPERATIONS for op in self.operations
        ):
            known = ", ".join(sorted(DISK_OPERATIONS))
            raise InvalidFault(
                f"{self.kind}: operations must be among {known}, got {self.operations!r}"
            )


@dataclass(frozen=True, kw_only=True)
class DiskError(DiskFault):
    """Fail operations on matching paths with ``errno_name`` (e.g. EIO) with ``probability``."""

    kind: ClassVar[str] = "disk_error"
    errno_name: str = "EIO"
    probability: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        import errno

        if not hasattr(errno, str(self.errno_name)):
            raise InvalidFault(f"{self.kind}: unknown errno {self.errno_name!r}")
        check_range(self.kind, "probability", self.probability, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class DiskLatency(DiskFault):
    """Delay operations on matching paths by ``latency_ms``."""

    kind: ClassVar[str] = "disk_latency"
    latency_ms: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.kind, "latency_ms", self.latency_ms, 0.001, 600_000.0)


@dataclass(frozen=True, kw_only=True)
class DiskThrottle(OsFault):
    """Throttle process ``pid``'s I/O on the device holding ``path`` (blkio cgroup)."""

    kind: ClassVar[str] = "disk_throttle"
    pid: int
    path: str = "/"
    read_bytes_per_s: int = 1 << 20
    write_bytes_per_s: int = 1 << 20

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pid(self.kind, self.pid)
        check_range(self.kind, "read_bytes_per_s", self.read_bytes_per_s, 1, 1 << 40)
        check_range(self.kind, "write_bytes_per_s", self.write_bytes_per_s, 1, 1 << 40)


@dataclass(frozen=True, kw_only=True)
class ProcessKill(OsFault):
    """Send ``signal`` to ``pid`` (not reversible: the journal records it as done)."""

    kind: ClassVar[str] = "process_kill"
    pid: int
    signal: int = 9

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pid(self.kind, self.pid)
        check_range(self.kind, "signal", self.signal, 1, 64)


@dataclass(frozen=True, kw_only=True)
class ProcessPause(OsFault):
    """Freeze ``pid`` in a freezer cgroup of its own; revert thaws it and puts it back."""

    kind: ClassVar[str] = "process_pause"
    pid: int

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pid(self.kind, self.pid)


FAULT_TYPES: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (
        PointFault,
        ProxyLatency,
        ProxyBandwidth,
        ProxySlowClose,
        ProxyTimeout,
        ProxyReset,
        ProxySlicer,
        ProxyLimitData,
        ProxyLoss,
        PluginFault,
        CpuHog,
        MemoryHog,
        NetworkLatency,
        PacketLoss,
        Bandwidth,
        ConnectionReset,
        Partition,
        DiskError,
        DiskLatency,
        DiskThrottle,
        ProcessKill,
        ProcessPause,
    )
}


def fault_to_dict(fault: Fault) -> dict[str, Any]:
    """The fault's fields (without ``kind``), JSON-ready."""
    return dataclasses.asdict(fault)


def fault_from_dict(kind: str, params: dict[str, Any]) -> Fault:
    """Build a fault of ``kind`` from ``params``; unknown kinds or keys raise InvalidFault."""
    cls = FAULT_TYPES.get(kind)
    if cls is None:
        known = ", ".join(sorted(FAULT_TYPES))
        raise InvalidFault(f"unknown fault type {kind!r} (known: {known})")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(params) - names)
    if unknown:
        raise InvalidFault(f"{kind}: unknown parameter {unknown[0]!r}")
    missing = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in params
    )
    if missing:
        raise InvalidFault(f"{kind}: missing target parameter {missing[0]!r}")
    return cls(**params)
