"""What the Chaos Engine benchmark modules share: the engine, the event loop, kernel fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tenfold.core.bench import BenchContext, Op, Outcome
from tenfold.core.errors import BenchError

T = TypeVar("T")
THROUGHPUT = "Throughput Benchmarks"
RUN = f"{os.getpid() % 100000}"
"""Kernel object names carry the bench process's id: another run (a CI check in another
checkout) on the same machine must not meet our cgroups or namespaces."""
NETNS = f"tfchaos_bench{RUN}"
EXPERIMENT = f"bench{RUN}"


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


def _loop(ctx: BenchContext) -> asyncio.AbstractEventLoop:
    def make() -> asyncio.AbstractEventLoop:
        import uvloop

        loop = uvloop.new_event_loop()
        ctx.callback(loop.close)
        return loop

    return ctx.once("loop", make)


def _run(ctx: BenchContext, coro: Coroutine[Any, Any, T]) -> T:
    return _loop(ctx).run_until_complete(coro)


def _engine(ctx: BenchContext, **perf: int) -> Any:
    from tenfold.chaos_engine._config import PerformanceConfig, load_config
    from tenfold.chaos_engine._engine import ChaosEngine
    from tenfold.chaos_engine._points import FaultPoints

    # The configured limits (so `tenfold bench --sweep chaos_engine.performance.KEY=...`
    # reaches the engine), with what the scenario pins on top.
    limits = load_config().performance.model_dump() | perf

    def make() -> Any:
        engine = _run(
            ctx,
            ChaosEngine.create(
                PerformanceConfig.model_validate(limits),
                journal_dir=ctx.workdir / "journal",
                experiment=EXPERIMENT,
                points=FaultPoints(seed=ctx.seed),
            ),
        )
        ctx.callback(lambda: _run(ctx, engine.close()))
        return engine

    return ctx.once(f"engine{sorted(perf.items())}", make)


class Effect:
    """What a fault does, observed from outside the tool that made it (both sides alike).

    A fault counts as injected only once :meth:`seen` is true (the hog has burned
    CPU, the pages are resident, a packet was dropped), and as reverted only once
    :meth:`cleared` is. ``before`` snapshots the state just before the fault.
    """

    what = "effect"

    def before(self) -> None:
        """Snapshot the state the fault changes."""

    def seen(self) -> bool:
        return True

    def cleared(self) -> bool:
        return True


POLL_S = 0.0002
EFFECT_TIMEOUT_S = 10.0


def wait_until(pred: Callable[[], bool], what: str, timeout_s: float = EFFECT_TIMEOUT_S) -> None:
    """Poll ``pred`` every 0.2 ms (the same on both sides) until it holds; a timeout fails the row."""
    deadline = time.perf_counter() + timeout_s
    while not pred():
        if time.perf_counter() > deadline:
            raise BenchError(f"{what} not observed within {timeout_s:g} s")
        time.sleep(POLL_S)


def _inject_revert_op(
    ctx: BenchContext, make_fault: Callable[[int], Any], n: int, effect: Effect | None = None
) -> Op:
    """``n`` sequential inject + revert through the engine, each timed from the inject call
    until the effect is seen, reverted and seen gone (per-fault latencies)."""
    engine = _engine(ctx)
    _run(ctx, _one(engine, make_fault(0)))  # provisions the slot (pool, namespace thread)
    fx = effect or Effect()

    async def batch() -> Outcome:
        lat: list[float] = []
        for i in range(n):
            fx.before()
            t0 = time.perf_counter()
            handle = await engine.inject_fault(make_fault(i))
            wait_until(fx.seen, f"ours: {fx.what}")
            await handle.revert()
            wait_until(fx.cleared, f"ours: {fx.what} gone after revert")
            lat.append((time.perf_counter() - t0) * 1000)
        if engine.active_faults:
            raise BenchError(f"ours: {engine.active_faults} faults still active after revert")
        metrics: dict[str, float | str] = {"inject_revert_p99_ms": round(_percentile(lat, 99), 3)}
        return Outcome(n, metrics, lat, result=True)

    return lambda: _run(ctx, batch())


def _peer_fault_op(
    n: int,
    inject: Callable[[int], Any],
    revert: Callable[[Any], None],
    effect: Effect | None = None,
) -> Op:
    """``n`` faults made the way a process-per-fault tool makes them, each timed from the
    inject command until the effect is seen, reverted and seen gone (per-fault latencies)."""
    fx = effect or Effect()

    def op() -> Outcome:
        lat: list[float] = []
        for i in range(n):
            fx.before()
            t0 = time.perf_counter()
            handle = inject(i)
            if hasattr(fx, "attach"):
                fx.attach(handle)
            wait_until(fx.seen, f"peer: {fx.what}")
            revert(handle)
            wait_until(fx.cleared, f"peer: {fx.what} gone after revert")
            lat.append((time.perf_counter() - t0) * 1000)
        return Outcome(n, {}, lat, result=True)

    return op


def run_argv(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


# -- reading a process from outside ------------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """Nanoseconds ``pid`` has run on a CPU (/proc/PID/schedstat), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def anon_rss(pid: int) -> int:
    """Resident anonymous bytes of ``pid``, private and shared (RssAnon + RssShmem: an
    anonymous ``mmap`` from Python is a shared mapping), 0 once it is gone."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssShmem:")):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return total


def state(pid: int) -> str:
    """The one-letter state of ``pid`` ("R", "S", "T", "Z"...), "" once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return ""
    return text[text.rfind(")") + 2 :].split(" ", 1)[0]


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


async def _one(engine: Any, fault: Any) -> None:
    handle = await engine.inject_fault(fault)
    await handle.revert()


def _need_tool(name: str) -> None:
    if shutil.which(name) is None:
        raise BenchError(f"{name} is not installed")


# -- shared kernel fixtures ----------------------------------------------------------------


def _netns(ctx: BenchContext) -> str:
    def make() -> str:
        subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
        # Loopback up: the UDP probe that sees a packet dropped talks over it.
        subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
        ctx.callback(
            lambda: subprocess.run(
                ["ip", "netns", "delete", NETNS], capture_output=True, check=False
            )
        )
        return NETNS

    return ctx.once("netns", make)


def _sleeper(ctx: BenchContext) -> int:
    def make() -> int:
        proc = subprocess.Popen(["sleep", "3600"])

        def stop() -> None:
            proc.kill()
            proc.wait()

        ctx.callback(stop)
        return proc.pid

    return ctx.once("sleeper", make)


class UdpProbe:
    """Two UDP sockets on a namespace's loopback: a burst shows whether a packet was dropped.

    Both sides' packet-loss rules drop packets leaving the namespace, loopback
    included, so a burst of datagrams that does not all arrive is a drop seen.
    """

    BURST = 64

    def __init__(self, netns: str) -> None:
        import socket
        import threading

        from tenfold.chaos_engine._kernel import setns_net

        made: list[socket.socket] = []
        errors: list[BaseException] = []

        def build() -> None:
            try:
                setns_net(netns)  # this thread only; the sockets keep the namespace
                recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                recv.bind(("127.0.0.1", 0))
                recv.setblocking(False)
                send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                made.extend((recv, send))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=build)
        thread.start()
        thread.join()
        if errors:
            raise BenchError(f"UDP probe in {netns}: {errors[0]}")
        self.recv, self.send = made
        self.addr = self.recv.getsockname()

    def burst(self) -> int:
        """Datagrams of one burst that arrived (a late one is waited for, 0.2 ms at a time)."""
        for _ in range(self.BURST):
            # A local packet dropped by an nft output rule fails its sendto with EPERM.
            with contextlib.suppress(PermissionError):
                self.send.sendto(b"p", self.addr)
        got = 0
        idle = 0
        while got < self.BURST and idle < 2:
            try:
                self.recv.recv(16)
                got += 1
                idle = 0
            except BlockingIOError:
                idle += 1
                time.sleep(POLL_S)
        return got

    def close(self) -> None:
        self.recv.close()
        self.send.close()


def _udp_probe(ctx: BenchContext) -> UdpProbe:
    def make() -> UdpProbe:
        probe = UdpProbe(_netns(ctx))
        ctx.callback(probe.close)
        return probe

    return ctx.once("udp_probe", make)


class PacketDrop(Effect):
    """A packet-loss fault: seen once a burst loses a datagram, gone once a burst arrives whole."""

    what = "a packet dropped"

    def __init__(self, probe: UdpProbe) -> None:
        self.probe = probe

    def seen(self) -> bool:
        return self.probe.burst() < UdpProbe.BURST

    def cleared(self) -> bool:
        return self.probe.burst() == UdpProbe.BURST


class InCgroup(Effect):
    """A fault that moves ``pid`` into a blkio cgroup whose name contains ``marker``."""

    what = "the target in its throttle cgroup"

    def __init__(self, pid: int, marker: str) -> None:
        self.path, self.marker = f"/proc/{pid}/cgroup", marker

    def _inside(self) -> bool:
        with open(self.path) as f:
            return any(":blkio:" in line and self.marker in line for line in f)

    def seen(self) -> bool:
        return self._inside()

    def cleared(self) -> bool:
        return not self._inside()
