"""The Resource Governor: in-process fast checks and kernel enforcement through cgroups.

In process, every check is a few attribute reads and a comparison, well under
a microsecond, so systems can call them on hot paths:

* :meth:`Governor.throttle_cpu` — is this process over its CPU budget? A daemon
  sampler refreshes the process's CPU share every ``sample_interval_s``; the
  check only reads the last sample.
* :meth:`Governor.check_memory` — would reserving ``nbytes`` more exceed the
  memory limit? Reservations are counted exactly; the sampler adds the RSS
  that nobody reserved.
* :meth:`Governor.acquire_io` — a token bucket of bytes per second with a burst.
* :meth:`Governor.check_sandbox` — is an action on a path inside the policy?

For child processes the kernel enforces the limits: :class:`Cgroup` creates a
named group under every cgroup-v1 controller it needs
(``/sys/fs/cgroup/<controller>/tenfold/<name>``), sets CPU quota, memory limit
and pid limit, can freeze, thaw and kill its members, and removes itself on exit.
A member that exceeds the memory limit is killed by the kernel's OOM killer
inside that group alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tenfold.core.config import Section, load_section
from tenfold.core.errors import (
    CgroupError,
    ConfigError,
    ResourceLimitExceeded,
    SandboxViolation,
)

__all__ = [
    "CGROUP_ROOT",
    "Cgroup",
    "Governor",
    "GovernorConfig",
    "RateLimiter",
    "SandboxPolicy",
    "TokenBucket",
    "cgroups_available",
    "leftover_cgroups",
]

CGROUP_ROOT = Path(os.environ.get("TENFOLD_CGROUP_ROOT", "/sys/fs/cgroup"))
_PARENT = "tenfold"
_CONTROLLERS = ("cpu", "memory", "pids", "freezer", "blkio")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_CPU_PERIOD_US = 100_000
_PAGE = os.sysconf("SC_PAGE_SIZE")


class GovernorConfig(Section):
    """``[core.governor]``: limits for this process and its governed children."""

    cpu_quota_pct: float = 100.0
    memory_limit_bytes: int = 2 * 1024**3
    io_rate_bytes_per_s: int = 100 * 1024**2
    io_burst_bytes: int = 16 * 1024**2
    sample_interval_s: float = 0.1

    def model_post_init(self, __context: Any) -> None:
        for key in ("cpu_quota_pct", "memory_limit_bytes", "io_rate_bytes_per_s", "io_burst_bytes"):
            if getattr(self, key) <= 0:
                raise ConfigError(
                    f"[core.governor] {key} must be positive, got {getattr(self, key)}"
                )
        if self.sample_interval_s <= 0:
            raise ConfigError("[core.governor] sample_interval_s must be positive")


class _CoreSection(Section):
    governor: GovernorConfig = GovernorConfig()


@dataclass(frozen=True)
class SandboxPolicy:
    """Which actions are allowed on which path prefixes; everything else is refused.

    Paths are normalised (``..`` collapsed) before the check, so a traversal out
    of an allowed prefix is refused.
    """

    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def compiled(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for action, prefixes in self.allowed.items():
            norm = tuple(os.path.normpath(p).rstrip("/") + "/" for p in prefixes)
            out[action] = norm
        return out


class Governor:
    """In-process resource checks; cheap enough for hot paths.

    ``throttle_cpu`` returns True when the caller should back off. The others
    raise :class:`ResourceLimitExceeded` (or :class:`SandboxViolation`) or
    return a boolean, as documented on each.
    """

    def __init__(
        self,
        config: GovernorConfig | None = None,
        *,
        sandbox: SandboxPolicy | None = None,
        start_sampler: bool = True,
    ) -> None:
        self.config = config or GovernorConfig()
        self._cpu_limit = self.config.cpu_quota_pct
        self._mem_limit = self.config.memory_limit_bytes
        self._mem_reserved = 0
        self._mem_unreserved = 0  # RSS beyond what was reserved, from the sampler
        self._cpu_pct = 0.0
        self._io_rate = float(self.config.io_rate_bytes_per_s)
        self._io_burst = float(self.config.io_burst_bytes)
        self._io_tokens = self._io_burst
        self._io_stamp = time.monotonic()
        self._io_lease = min(self._io_rate / 1000.0, self._io_burst / 64.0)
        self._io_local = threading.local()
        self._io_lock = threading.Lock()
        self._mem_lock = threading.Lock()
        self._sandbox = (sandbox or SandboxPolicy()).compiled()
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        if start_sampler:
            self._sampler = threading.Thread(
                target=self._sample_loop, name="tenfold-governor", daemon=True
            )
            self._sampler.start()

    @classmethod
    def from_config(cls, path: Path | None = None, **kwargs: Any) -> Governor:
        section = load_section("core", _CoreSection, path=path)
        return cls(section.governor, **kwargs)

    def close(self) -> None:
        self._stop.set()

    # -- sampler -------------------------------------------------------------
    def _sample_loop(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        last_cpu = time.process_time()
        last_wall = time.monotonic()
        while not self._stop.wait(self.config.sample_interval_s):
            cpu, wall = time.process_time(), time.monotonic()
            if wall > last_wall:
                self._cpu_pct = 100.0 * (cpu - last_cpu) / (wall - last_wall)
            last_cpu, last_wall = cpu, wall
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open("/proc/self/statm") as f:
                    rss = int(f.read().split()[1]) * page
                self._mem_unreserved = max(0, rss - self._mem_reserved)

    def cpu_percent(self) -> float:
        """The last sampled CPU share of this process (100 = one core)."""
        return self._cpu_pct

    # -- fast checks ---------------------------------------------------------
    def throttle_cpu(self) -> bool:
        """True when this process is over its CPU quota and the caller should back off."""
        return self._cpu_pct > self._cpu_limit

    def check_memory(self, nbytes: int = 0) -> bool:
        """True if ``nbytes`` more would stay within the memory limit (nothing is reserved)."""
        return self._mem_reserved + self._mem_unreserved + nbytes <= self._mem_limit

    def check_rss(self, what: str = "this process") -> None:
        """Raise :class:`ResourceLimitExceeded` when this process's resident memory,
        read now, plus what is reserved, is over the memory limit.

        The hard upper bound a system sets on its own growth: it calls this
        between units of work (a fault, a batch of events) and stops with a clear
        error naming ``what`` before the kernel's OOM killer would have to act.
        Reading ``/proc/self/statm`` costs a few microseconds, so call it per
        unit of work, not per item of a batch.
        """
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return
        self._mem_unreserved = max(0, rss - self._mem_reserved)
        if rss + self._mem_reserved > self._mem_limit:
            raise ResourceLimitExceeded(
                f"{what}: memory limit of {self._mem_limit / 1024**2:,.0f} MiB reached "
                f"(resident {rss / 1024**2:,.0f} MiB, reserved "
                f"{self._mem_reserved / 1024**2:,.0f} MiB; [core.governor] memory_limit_bytes)"
            )

    def reserve_memory(self, nbytes: int) -> None:
        """Reserve ``nbytes``; raises :class:`ResourceLimitExceeded` if over the limit."""
        with self._mem_lock:
            total = self._mem_reserved + self._mem_unreserved + nbytes
            if total > self._mem_limit:
                raise ResourceLimitExceeded(
                    f"memory limit {self._mem_limit} bytes would be exceeded "
                    f"(reserving {nbytes} on top of {total - nbytes})"
                )
            self._mem_reserved += nbytes

    def release_memory(self, nbytes: int) -> None:
        with self._mem_lock:
            self._mem_reserved = max(0, self._mem_reserved - nbytes)

    def acquire_io(self, nbytes: int = 1) -> bool:
        """Take ``nbytes`` from the I/O token bucket; False (nothing taken) if not enough yet.

        Each thread draws a small lease from the shared bucket (at most 1 ms of the rate or
        1/64 of the burst, whichever is smaller) and spends it without the lock, so threads
        acquiring at once rarely meet on the lock. Leased bytes are debited from the bucket
        when leased, so nothing is granted twice; over any interval the gate grants at most
        ``burst + rate * T`` plus the leases the threads held when the interval began.
        """
        local = self._io_local
        held: float = getattr(local, "tokens", 0.0)
        if held >= nbytes:
            local.tokens = held - nbytes
            return True
        need = nbytes - held
        with self._io_lock:
            now = time.monotonic()
            tokens = self._io_tokens + (now - self._io_stamp) * self._io_rate
            self._io_stamp = now
            tokens = min(tokens, self._io_burst)
            if tokens >= need:
                take = min(tokens, max(need, self._io_lease))
                self._io_tokens = tokens - take
                local.tokens = held + take - nbytes
                return True
            self._io_tokens = tokens
            return False

    def wait_io(self, nbytes: int, timeout_s: float = 10.0) -> None:
        """Block until ``nbytes`` of I/O budget are available (or raise after ``timeout_s``)."""
        if nbytes > self._io_burst:
            raise ResourceLimitExceeded(
                f"I/O request of {nbytes} bytes exceeds the burst of {int(self._io_burst)}"
            )
        deadline = time.monotonic() + timeout_s
        while not self.acquire_io(nbytes):
            if time.monotonic() > deadline:
                raise ResourceLimitExceeded(f"I/O budget not available within {timeout_s:g} s")
            time.sleep(min(0.01, nbytes / self._io_rate))

    def check_sandbox(self, path: str, action: str = "read") -> None:
        """Raise :class:`SandboxViolation` unless ``action`` on ``path`` is allowed."""
        prefixes = self._sandbox.get(action)
        if prefixes is not None:
            if ".." not in path:
                if (path + "/").startswith(prefixes):
                    return
            elif (os.path.normpath(path) + "/").startswith(prefixes):
                return
        raise SandboxViolation(f"sandbox: {action} on {path!r} is not allowed")


class TokenBucket:
    """``rate_per_s`` tokens a second, holding at most ``burst``; starts full.

    Invariant: over any interval of T seconds at most ``burst + rate_per_s * T``
    tokens are granted. ``take`` never blocks; it says how long to wait instead.
    """

    __slots__ = ("_lock", "_stamp", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ConfigError(f"token bucket rate must be a positive number, got {rate_per_s}")
        if not (burst >= 1 and math.isfinite(burst)):
            raise ConfigError(f"token bucket burst must be at least 1, got {burst}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens: 0.0 if granted, else the seconds until they would be."""
        with self._lock:
            now = time.monotonic()
            tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
            self._stamp = now
            if tokens >= n:
                self._tokens = tokens - n
                return 0.0
            self._tokens = tokens
            return (n - tokens) / self.rate_per_s


class RateLimiter:
    """One :class:`TokenBucket` per key (a client), the least recently used forgotten first.

    At most ``max_keys`` buckets are kept, so a flood of distinct keys costs bounded
    memory; a forgotten key comes back with a full bucket, which is the most it could
    have had anyway after being idle that long.
    """

    def __init__(self, rate_per_s: float, burst: float, *, max_keys: int = 10_000) -> None:
        TokenBucket(rate_per_s, burst)  # validates the figures once, with the same messages
        if max_keys < 1:
            raise ConfigError(f"rate limiter max_keys must be at least 1, got {max_keys}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, n: float = 1.0) -> float:
        """Take ``n`` tokens from ``key``'s bucket: 0.0 if granted, else seconds to wait."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
        return bucket.take(n)

    def __len__(self) -> int:
        return len(self._buckets)


# ----------------------------------------------------------------------------
# cgroups (v1 controllers, as mounted on this machine)
# ----------------------------------------------------------------------------


def cgroups_available() -> bool:
    """True when we can create groups under the cgroup-v1 cpu and memory controllers."""
    return os.geteuid() == 0 and all(
        (CGROUP_ROOT / c / "cgroup.procs").exists() for c in ("cpu", "memory", "pids", "freezer")
    )


def leftover_cgroups() -> list[str]:
    """Names of tenfold groups that still exist under any controller (for cleanup checks)."""
    names: set[str] = set()
    for ctrl in _CONTROLLERS:
        parent = CGROUP_ROOT / ctrl / _PARENT
        if parent.is_dir():
            names.update(p.name for p in parent.iterdir() if p.is_dir())
    return sorted(names)


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


class Cgroup:
    """A named cgroup under the v1 controllers; a context manager that removes itself.

    ``cpu_quota_pct`` is a share of one core (50 = half a core, 200 = two cores).
    """

    def __init__(
        self,
        name: str,
        *,
        cpu_quota_pct: float | None = None,
        memory_bytes: int | None = None,
        pids_max: int | None = None,
        controllers: Sequence[str] = ("cpu", "cpuacct", "memory", "pids", "freezer"),
    ) -> None:
        if not _NAME_RE.match(name):
            raise CgroupError(f"bad cgroup name {name!r} (letters, digits, '_', '.', '-')")
        for key, value in (
            ("cpu_quota_pct", cpu_quota_pct),
            ("memory_bytes", memory_bytes),
            ("pids_max", pids_max),
        ):
            if value is not None and value <= 0:
                raise CgroupError(f"cgroup {name}: {key} must be positive, got {value}")
        self.name = name
        self.cpu_quota_pct = cpu_quota_pct
        self.memory_bytes = memory_bytes
        self.pids_max = pids_max
        self.controllers = tuple(c for c in controllers if (CGROUP_ROOT / c).is_dir())
        self._created: list[Path] = []

    def path(self, controller: str) -> Path:
        return CGROUP_ROOT / controller / _PARENT / self.name

    # -- lifecycle -----------------------------------------------------------
    def create(self) -> Self:
        if os.geteuid() != 0:
            raise CgroupError(f"cannot create cgroup {self.name}: not root")
        if not cgroups_available():
            raise CgroupError(
                f"cannot create cgroup {self.name}: cgroup v1 controllers not mounted"
            )
        try:
            for ctrl in self.controllers:
                path = self.path(ctrl)
                try:
                    path.mkdir(parents=True, exist_ok=False)
                except FileExistsError:
                    raise CgroupError(f"cgroup {self.name} already exists under {ctrl}") from None
                except OSError as exc:
                    raise CgroupError(f"cannot create {path}: {exc.strerror}") from None
                self._created.append(path)
            self._apply_limits()
        except BaseException:
            self.remove()
            raise
        return self

    def _apply_limits(self) -> None:
        if self.cpu_quota_pct is not None:
            _write(self.path("cpu") / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
            quota = max(1000, int(_CPU_PERIOD_US * self.cpu_quota_pct / 100))
            _write(self.path("cpu") / "cpu.cfs_quota_us", str(quota))
        if self.memory_bytes is not None:
            mem = self.path("memory")
            _write(mem / "memory.limit_in_bytes", str(self.memory_bytes))
            with contextlib.suppress(CgroupError):
                # No swap here, but where there is, the limit must cover it too.
                _write(mem / "memory.memsw.limit_in_bytes", str(self.memory_bytes))
        if self.pids_max is not None:
            _write(self.path("pids") / "pids.max", str(self.pids_max))

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    # -- membership ------------------------------------------------------------
    def add(self, pid: int) -> None:
        for ctrl in self.controllers:
            try:
                (self.path(ctrl) / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                raise CgroupError(f"process {pid} does not exist") from None
            except OSError as exc:
                raise CgroupError(f"cannot add pid {pid} to {self.name}: {exc.strerror}") from None

    def spawn(
        self,
        argv: Sequence[str],
        *,
        then: Callable[[], None] | None = None,
        **popen_kw: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` already inside this group (it joins before it execs).

        ``then``, when given, runs in the child right after it has joined and
        before the exec (to enter a namespace, say): it must be fork-safe.
        """
        procs_files = [str(self.path(c) / "cgroup.procs") for c in self.controllers]

        def join() -> None:
            pid = str(os.getpid())
            for file in procs_files:
                with open(file, "w") as f:
                    f.write(pid)
            if then is not None:
                then()

        try:
            return subprocess.Popen(list(argv), preexec_fn=join, **popen_kw)  # noqa: PLW1509
        except (OSError, subprocess.SubprocessError) as exc:
            raise CgroupError(f"cannot start {argv[0]} in cgroup {self.name}: {exc}") from None

    def pids(self) -> list[int]:
        pids: set[int] = set()
        for ctrl in self.controllers:
            with contextlib.suppress(OSError, ValueError):
                text = (self.path(ctrl) / "cgroup.procs").read_text()
                pids.update(int(x) for x in text.split())
        return sorted(pids)

    # -- control -----------------------------------------------------------------
    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def _freezer(self, state: str) -> None:
        if "freezer" not in self.controllers:
            raise CgroupError(f"cgroup {self.name} has no freezer controller")
        path = self.path("freezer") / "freezer.state"
        _write(path, state)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if path.read_text().strip() == state:
                    return
            time.sleep(0.002)
        raise CgroupError(f"cgroup {self.name} did not reach {state}")

    def kill(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every member; frozen first so nothing forks away in between."""
        frozen = "freezer" in self.controllers and bool(self.pids())
        if frozen:
            with contextlib.suppress(CgroupError):
                self.freeze()
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if frozen:
            with contextlib.suppress(CgroupError):
                self.thaw()
        deadline = time.monotonic() + timeout_s
        while self.pids():
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {self.name}: members survive SIGKILL: {self.pids()}")
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {"pids": len(self.pids())}
        acct = CGROUP_ROOT / "cpuacct" / _PARENT / self.name / "cpuacct.usage"
        out["cpu_usage_ns"] = _read_int(acct)
        mem = self.path("memory")
        out["memory_bytes"] = _read_int(mem / "memory.usage_in_bytes")
        out["memory_max_bytes"] = _read_int(mem / "memory.max_usage_in_bytes")
        out["memory_failcnt"] = _read_int(mem / "memory.failcnt")
        oom = 0
        with contextlib.suppress(OSError):
            for line in (mem / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    oom = int(line.split()[1])
        out["oom_kills"] = oom
        cpu_stat = self.path("cpu") / "cpu.stat"
        with contextlib.suppress(OSError):
            for line in cpu_stat.read_text().splitlines():
                key, _, value = line.partition(" ")
                out[f"cpu_{key}"] = int(value)
        return out

    def remove(self) -> None:
        """Kill the members, then remove the group under every controller."""
        existing = [p for p in self._created if p.is_dir()]
        if not existing:
            existing = [self.path(c) for c in self.controllers if self.path(c).is_dir()]
        if not existing:
            return
        with contextlib.suppress(CgroupError):
            self.kill()
        errors = []
        for path in reversed(existing):
            for _ in range(200):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
            else:
                errors.append(str(path))
        self._created.clear()
        if errors:
            raise CgroupError(f"could not remove cgroup directories: {', '.join(errors)}")


def remove_all(names: Iterable[str] | None = None) -> list[str]:
    """Remove tenfold cgroups (all, or the given names); returns the names removed."""
    targets = list(names) if names is not None else leftover_cgroups()
    for name in targets:
        Cgroup(name).remove()
    return targets
