"""Network faults: nft tables per fault (loss, partition, reset, latency through the
namespace's NFQUEUE delayer) and tbf qdiscs (bandwidth). The rule builders are pure
functions, testable without root.

Every nft fault also carries its TTL into the kernel: its table holds a set
``ttl`` whose two elements (``ipv4``, ``ipv6``) time out ``KERNEL_TTL_GRACE_S``
after the fault's ``duration_s``, and every rule of the table first matches
``meta nfproto @ttl``. Once the elements expire the rules match nothing, so the
fault stops acting at its TTL even when every process that could revert it
(engine, watchdog, agent: a whole node's processes) is dead. The inert table
stays until the engine, its watchdog or ``recover`` deletes it. The engine's
own timer stays the normal path; the kernel's is the last dead-man switch.
A tbf qdisc (bandwidth) has no such timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.chaos_engine._faults import (
    Bandwidth,
    ConnectionReset,
    NetworkLatency,
    PacketLoss,
    Partition,
)
from tenfold.chaos_engine._kernel import (
    NetnsWorker,
    add_nfqueue_rule,
    netns_exists,
    run_tool,
)
from tenfold.chaos_engine.errors import (
    InjectionFailed,
    TargetGone,
)

if TYPE_CHECKING:
    from tenfold.chaos_engine._osplane import OsPlane
from tenfold.chaos_engine._os_common import _qdisc_handle, _StepsApplied
from tenfold.core.lifecycle import reap

KERNEL_TTL_GRACE_S = 1.0
"""The kernel's TTL runs this much past the fault's: the engine's revert comes first."""
TTL_GATE = "meta nfproto @ttl"
"""What every rule of an nft fault matches first: true until the table's TTL elements expire."""


def _ttl_set(table: str, duration_s: float) -> str:
    """The table's ``ttl`` set: two elements that the kernel drops ``duration_s`` (+ grace) on."""
    timeout_ms = math.ceil((duration_s + KERNEL_TTL_GRACE_S) * 1000)
    return (
        f"add set inet {table} ttl {{ type nf_proto; flags timeout; }}\n"
        f"add element inet {table} ttl {{ ipv4 timeout {timeout_ms}ms, "
        f"ipv6 timeout {timeout_ms}ms }}\n"
    )


def _nft_rules(fault: PacketLoss | Partition | ConnectionReset, table: str) -> str:
    head = (
        f"add table inet {table}\n"
        + _ttl_set(table, fault.duration_s)
        + f"add chain inet {table} out {{ type filter hook output priority 0; policy accept; }}\n"
        f"add chain inet {table} in {{ type filter hook input priority 0; policy accept; }}\n"
    )
    out, in_ = f"add rule inet {table} out {TTL_GATE}", f"add rule inet {table} in {TTL_GATE}"
    if isinstance(fault, PacketLoss):
        match = f' oifname "{fault.interface}"' if fault.interface else ""
        threshold = round(fault.percent * 100)
        if threshold >= 10000:
            return head + f"{out}{match} drop\n"
        return head + f"{out}{match} numgen random mod 10000 < {threshold} drop\n"
    if isinstance(fault, Partition):
        family = "ip6" if ":" in fault.peer else "ip"
        return (
            head
            + f"{in_} {family} saddr {fault.peer} drop\n"
            + f"{out} {family} daddr {fault.peer} drop\n"
        )
    return (
        head
        + f"{in_} tcp dport {fault.port} reject with tcp reset\n"
        + f"{out} tcp dport {fault.port} reject with tcp reset\n"
    )


def _nft_steps(fault: Any, name: str) -> list[dict[str, Any]]:
    return [{"op": "nft_delete", "netns": fault.netns, "table": name}]


def _run_all_or_each(nft: Any, commands: list[str], tolerate: list[str]) -> list[Exception | None]:
    """Run ``commands`` as one nft transaction; if it fails, each alone, to say whose it was.

    A transaction is atomic, so after a failure nothing of it is in place and
    running each command alone applies exactly the good ones. ``tolerate[i]``,
    when set, is a ``list`` command: command ``i`` failing counts as done when
    that listing fails too (a delete of a table that is already gone).
    """
    if len(commands) > 1:
        try:
            nft.run("".join(commands))
            return [None] * len(commands)
        except InjectionFailed:
            pass
    results: list[Exception | None] = []
    for command, check in zip(commands, tolerate, strict=True):
        try:
            nft.run(command)
            results.append(None)
        except InjectionFailed as exc:
            if check:
                try:
                    nft.run(check)  # still there: the delete really failed
                except InjectionFailed:
                    results.append(None)
                    continue
            results.append(exc)
    return results


class NftBatcher:
    """Group commit for one namespace's nft changes.

    Changes asked for in the same event-loop turn (a batch of injections, a
    revert of everything) go to the kernel as one transaction, so a batch pays
    one ruleset-cache fetch and one commit instead of one per fault (the
    journal groups their writes the same way). Nothing is lost by grouping:
    a failing transaction is retried command by command.
    """

    def __init__(self, worker: NetnsWorker) -> None:
        self.worker = worker
        self._pending: list[tuple[str, str, asyncio.Future[None]]] = []

    async def run(self, command: str, tolerate: str = "") -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((command, tolerate, done))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # Let the kernel change land before the caller undoes it (its undo
            # would otherwise race the transaction and lose).
            with contextlib.suppress(Exception):
                await done
            raise

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        commands = [command for command, _, _ in batch]
        checks = [check for _, check, _ in batch]
        ran = asyncio.wrap_future(
            self.worker.submit(lambda nft: _run_all_or_each(nft, commands, checks))
        )

        def deliver(task: asyncio.Future[list[Exception | None]]) -> None:
            failed = task.exception()
            results = [failed] * len(batch) if failed is not None else task.result()
            for (_, _, done), error in zip(batch, results, strict=True):
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

        ran.add_done_callback(deliver)


@dataclass
class _NftApplied:
    batcher: NftBatcher
    table: str
    netns: str
    done: bool = False

    async def revert(self) -> None:
        if self.done:
            return
        self.done = True
        if not netns_exists(self.netns):
            return  # the namespace (and its table) is gone
        with contextlib.suppress(InjectionFailed):
            await self.batcher.run(
                f"delete table inet {self.table}\n", tolerate=f"list table inet {self.table}"
            )


async def _apply_nft(plane: OsPlane, fault: Any, name: str) -> _NftApplied:
    batcher = plane.nft_batcher(fault.netns)
    await batcher.run(_nft_rules(fault, name))
    return _NftApplied(batcher, name, fault.netns)


def _qdisc_steps(fault: Bandwidth, name: str) -> list[dict[str, Any]]:
    return [
        {
            "op": "tc_delete",
            "netns": fault.netns,
            "dev": fault.interface,
            "handle": _qdisc_handle(name),
        }
    ]


def _qdisc_add(dev: str, name: str) -> list[str]:
    return ["tc", "qdisc", "add", "dev", dev, "root", "handle", _qdisc_handle(name)]


def _check_link(netns: str, dev: str) -> None:
    if not netns_exists(netns):
        raise TargetGone(f"network namespace {netns!r} does not exist")
    if run_tool(["ip", "link", "show", "dev", dev], netns=netns, check=False).returncode != 0:
        raise TargetGone(f"interface {dev!r} does not exist in namespace {netns!r}")


async def _apply_bandwidth(plane: OsPlane, fault: Bandwidth, name: str) -> _StepsApplied:
    def put() -> None:
        _check_link(fault.netns, fault.interface)
        rate_bit = fault.rate_bytes_per_s * 8
        burst = max(1600, fault.rate_bytes_per_s // 50)  # 20 ms worth, at least one MTU
        run_tool(
            [
                *_qdisc_add(fault.interface, name),
                "tbf",
                "rate",
                f"{rate_bit}bit",
                "burst",
                str(burst),
                "latency",
                "50ms",
            ],
            netns=fault.netns,
        )

    await asyncio.to_thread(put)
    return _StepsApplied(_qdisc_steps(fault, name))


def _latency_steps(fault: NetworkLatency, name: str) -> list[dict[str, Any]]:
    return [{"op": "nft_delete", "netns": fault.netns, "table": name}]


def _latency_rules(fault: NetworkLatency, table: str) -> str:
    """The fault's table: a postrouting chain jumping to ``delay``, which queues (added apart).

    nft cannot write the NFQUEUE rule itself (this kernel has no ``queue``
    expression); :func:`add_nfqueue_rule` adds it through the xt compat layer.
    """
    head = (
        f"add table inet {table}\n"
        + _ttl_set(table, fault.duration_s)
        + f"add chain inet {table} post {{ type filter hook postrouting priority -150; "
        "policy accept; }\n"
        f"add chain inet {table} delay\n"
    )
    out = f'add rule inet {table} post {TTL_GATE} oifname "{fault.interface}"'
    if not fault.port:
        return head + f"{out} jump delay\n"
    l4 = "meta l4proto { tcp, udp }"
    return head + "".join(
        f"{out} {l4} th {end} {fault.port} jump delay\n" for end in ("dport", "sport")
    )


class Delayer:
    """The packet delayer of one namespace (``_delayer``), driven over its stdin and stdout.

    Started from the namespace's worker thread, so it lives in that namespace
    (a child inherits the network namespace of the thread that forks it). It
    leaves on EOF of its stdin, which only this process holds: when the engine
    dies, the delayer releases every packet it holds and exits.
    """

    def __init__(self, owner: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            # By path, not ``-m``: the package's imports would cost ~0.5 s of start-up.
            # ``owner`` (the journal) only names whose delayer this is, for ps.
            [sys.executable, "-S", str(Path(__file__).with_name("_delayer.py")), owner],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C to the terminal must not drop held packets
        )
        try:
            self._reply()
        except InjectionFailed:
            self.stop()
            raise

    def _reply(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line:
            raise InjectionFailed(f"packet delayer {self.proc.pid} died")
        if not line.startswith("k"):
            raise InjectionFailed(f"packet delayer: {line[2:].strip()}")
        return line[1:].strip()

    def call(self, command: str) -> str:
        assert self.proc.stdin is not None
        try:
            os.write(self.proc.stdin.fileno(), (command + "\n").encode())
        except OSError as exc:
            raise InjectionFailed(f"packet delayer {self.proc.pid}: {exc.strerror}") from None
        return self._reply()

    def send(self, command: str) -> None:
        """A command that has no reply (``U``)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # gone: it released everything when it went
            os.write(self.proc.stdin.fileno(), (command + "\n").encode())

    def stop(self) -> None:
        """Close its stdin (it accepts what it holds and exits); kill it if it lingers."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        reap(self.proc, 5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class _LatencyApplied:
    worker: NetnsWorker
    delayer: Delayer
    queue: int
    netns: str
    table: str
    done: bool = False

    async def revert(self) -> None:
        if self.done:
            return
        self.done = True
        netns, table = self.netns, self.table

        def take(nft: Any) -> None:
            try:
                if netns_exists(netns):
                    try:
                        nft.run(f"delete table inet {table}")
                    except InjectionFailed:
                        nft.run(f"list table inet {table}")  # raises again only if it still exists
            finally:
                self.delayer.send(f"U {self.queue}")  # releases what it still holds

        with contextlib.suppress(InjectionFailed):
            await asyncio.wrap_future(self.worker.submit(take))


async def _apply_latency(plane: OsPlane, fault: NetworkLatency, name: str) -> _LatencyApplied:
    worker = plane.netns_worker(fault.netns)
    delayer = await plane.delayer(fault.netns)
    digest = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    rules = _latency_rules(fault, name)

    def put(nft: Any) -> int:
        import socket

        try:
            socket.if_nametoindex(fault.interface)  # in this thread's (the target) namespace
        except OSError:
            raise TargetGone(
                f"interface {fault.interface!r} does not exist in namespace {fault.netns!r}"
            ) from None
        queue = int(
            delayer.call(
                f"B {1024 + digest % 60000} {fault.latency_ms / 1000} "
                f"{fault.jitter_ms / 1000} {digest}"
            )
        )
        try:
            nft.run(rules)
            add_nfqueue_rule(name, "delay", queue)
        except BaseException:
            with contextlib.suppress(InjectionFailed):
                nft.run(f"delete table inet {name}")
            delayer.send(f"U {queue}")
            raise
        return queue

    queue = await asyncio.wrap_future(worker.submit(put))
    return _LatencyApplied(worker, delayer, queue, fault.netns, name)
