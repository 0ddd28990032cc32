"""``tenfold kernel ...``: XDP block lists, syscall tracing, socket filters, status, cleanup."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from tenfold.cloud_kernel.errors import CloudKernelError, NotPermitted
from tenfold.core.cli import Finite, emit, follow_decisions, follow_options, json_option

if TYPE_CHECKING:
    from tenfold.cloud_kernel._trace import SyscallStats


def _root() -> None:
    if os.geteuid() != 0:
        raise NotPermitted("this command loads BPF programs and needs root")


class _InterfaceName(click.ParamType[str, Any]):
    """A Linux network interface name: 1-15 characters, no '/', ':' or whitespace."""

    name = "interface"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not 1 <= len(text) <= 15 or any(c in text for c in "/: \t\n") or not text.isprintable():
            shown = text if len(text) <= 40 else text[:40] + "..."
            self.fail(
                f"{shown!r} is not an interface name (1-15 characters, no '/' or ':')", param, ctx
            )
        return text


_INTERFACE = _InterfaceName()


@click.group("kernel")
def kernel() -> None:
    """eBPF programs driven from Python: XDP block lists, syscall tracing, socket filters."""


@kernel.command("build")
@json_option
def build(as_json: bool) -> None:
    """Compile the BPF objects for this kernel (done on first use otherwise)."""
    from tenfold.cloud_kernel._build import SOURCES, build_object

    built = {name: str(build_object(name)) for name in SOURCES}
    emit(built, as_json, lambda: "\n".join(f"{k}: {v}" for k, v in built.items()))


@kernel.group("xdp")
def xdp() -> None:
    """The XDP block list (drop by source address or prefix)."""


@xdp.command("attach")
@click.argument("interface", type=_INTERFACE)
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default="auto")
@click.option(
    "--block", "prefixes", multiple=True, help="An address or prefix to block (repeatable)."
)
@json_option
def xdp_attach(interface: str, mode: str, prefixes: tuple[str, ...], as_json: bool) -> None:
    """Attach to INTERFACE and pin it there (it stays until `xdp detach` or `cleanup`)."""
    from tenfold.cloud_kernel._xdp import XdpBlockList, ifindex, pin_dir

    _root()
    ifindex(interface)
    if pin_dir(interface).exists():
        raise CloudKernelError(f"{interface} already has a tenfold block list (detach it first)")
    with XdpBlockList() as bl:
        bl.block_many(prefixes)
        used = bl.attach(interface, mode)
        bl.pin_to(interface)
    emit(
        {"interface": interface, "mode": used, "rules": len(prefixes)},
        as_json,
        f"attached to {interface} ({used} XDP), {len(prefixes)} rule(s)",
    )


@xdp.command("detach")
@click.argument("interface", type=_INTERFACE)
@json_option
def xdp_detach(interface: str, as_json: bool) -> None:
    """Detach the pinned block list from INTERFACE."""
    from tenfold.cloud_kernel._xdp import XdpBlockList

    _root()
    if not XdpBlockList.unpin(interface):
        raise CloudKernelError(f"no tenfold block list is attached to {interface}")
    emit({"interface": interface, "detached": True}, as_json, f"detached from {interface}")


@xdp.command("block")
@click.argument("interface", type=_INTERFACE)
@click.argument("prefixes", nargs=-1, required=True)
@json_option
def xdp_block(interface: str, prefixes: tuple[str, ...], as_json: bool) -> None:
    """Add addresses or prefixes to INTERFACE's block list."""
    from tenfold.cloud_kernel._xdp import XdpBlockList, parse_prefix

    _root()
    nets = [parse_prefix(p) for p in prefixes]  # all valid, or nothing changes
    with XdpBlockList.open_pinned(interface) as bl:
        for net in nets:
            bl.block(net)
    emit(
        {"interface": interface, "blocked": len(nets)},
        as_json,
        f"blocked {len(nets)} on {interface}",
    )


@xdp.command("unblock")
@click.argument("interface", type=_INTERFACE)
@click.argument("prefixes", nargs=-1, required=True)
@json_option
def xdp_unblock(interface: str, prefixes: tuple[str, ...], as_json: bool) -> None:
    """Remove addresses or prefixes from INTERFACE's block list."""
    from tenfold.cloud_kernel._xdp import XdpBlockList, parse_prefix

    _root()
    nets = [parse_prefix(p) for p in prefixes]
    with XdpBlockList.open_pinned(interface) as bl:
        removed = sum(bl.unblock(n) for n in nets)
    emit(
        {"interface": interface, "unblocked": removed},
        as_json,
        f"unblocked {removed} on {interface}",
    )


@xdp.command("stats")
@click.argument("interface", type=_INTERFACE)
@json_option
def xdp_stats(interface: str, as_json: bool) -> None:
    """Verdict counters and per-rule counters of INTERFACE's block list."""
    from tenfold.cloud_kernel._xdp import XdpBlockList

    _root()
    with XdpBlockList.open_pinned(interface) as bl:
        data: dict[str, Any] = {
            "stats": asdict(bl.stats()),
            "rules": [
                {
                    "prefix": str(r.prefix),
                    "rule_id": r.rule_id,
                    "packets": r.packets,
                    "bytes": r.bytes,
                }
                for r in bl.rules()
            ],
        }

    def text() -> str:
        lines = [" ".join(f"{k}={v}" for k, v in data["stats"].items())]
        lines += [
            f"{r['prefix']:<43} packets={r['packets']} bytes={r['bytes']}" for r in data["rules"]
        ]
        return "\n".join(lines)

    emit(data, as_json, text)


@xdp.command("follow")
@click.argument("interface", type=_INTERFACE)
@follow_options
def xdp_follow(
    interface: str, decisions: BinaryIO, state_path: Path | None, exit_at_eof: bool
) -> None:
    """A bouncer: apply the decision stream (``tenfold autoblock run --format jsonl``) to INTERFACE's list.

    Bans are added, unbans removed, and each ban is removed once its ``until``
    has passed. With --state, a follower that restarts resumes after the last
    ledger index it applied.
    """
    from tenfold.cloud_kernel._bouncer import XdpBouncer
    from tenfold.cloud_kernel._xdp import XdpBlockList

    _root()
    bouncer = XdpBouncer(XdpBlockList.open_pinned(interface))
    try:
        follow_decisions(bouncer, decisions, state_path, exit_at_eof)
    finally:
        bouncer.close()


@kernel.group("trace")
def trace() -> None:
    """Tracing."""


@trace.command("syscalls")
@click.option("--pid", type=int, help="Only this process.")
@click.option("--cgroup", help="Only this cgroup (a cgroup directory path).")
@click.option("--comm", help="Only processes with this command name.")
@click.option(
    "--duration",
    "duration_s",
    type=Finite(0.0, open_min=True),
    default=5.0,
    show_default=True,
    help="Seconds to trace.",
)
@click.option(
    "--interval",
    "interval_s",
    type=Finite(0.0, open_min=True),
    default=1.0,
    show_default=True,
    help="Seconds between live views.",
)
@click.option("--top", type=int, default=15, show_default=True)
@json_option
def trace_syscalls(
    pid: int | None,
    cgroup: str | None,
    comm: str | None,
    duration_s: float,
    interval_s: float,
    top: int,
    as_json: bool,
) -> None:
    """Per-syscall counts and latency (like syscount/funclatency), live and as JSON."""
    from tenfold.cloud_kernel._trace import SyscallTracer

    _root()
    if duration_s <= 0 or interval_s <= 0:
        raise CloudKernelError("--duration and --interval must be positive")
    with SyscallTracer(pid=pid, cgroup=cgroup, comm=comm) as tracer:
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            time.sleep(min(interval_s, max(0.0, end - time.monotonic())))
            if not as_json and sys.stdout.isatty():
                _show(tracer.snapshot(histograms=False)[:top])
        stats = tracer.snapshot()
    rows = [
        {
            "syscall": s.name,
            "number": s.number,
            "count": s.count,
            "errors": s.errors,
            "mean_ns": round(s.mean_ns, 1),
            "p50_ns": s.percentile_ns(50),
            "p95_ns": s.percentile_ns(95),
            "histogram_log2_ns": s.histogram,
        }
        for s in stats[:top]
    ]
    emit(rows, as_json, lambda: _table(rows))


def _table(rows: list[dict[str, object]]) -> str:
    lines = [f"{'SYSCALL':<20}{'COUNT':>10}{'ERRORS':>8}{'MEAN ns':>10}{'p95 <= ns':>11}"]
    lines += [
        f"{r['syscall']!s:<20}{r['count']!s:>10}{r['errors']!s:>8}{r['mean_ns']!s:>10}{r['p95_ns']!s:>11}"
        for r in rows
    ]
    return "\n".join(lines)


def _show(stats: Sequence[SyscallStats]) -> None:
    click.clear()
    rows: list[dict[str, object]] = [
        {
            "syscall": s.name,
            "count": s.count,
            "errors": s.errors,
            "mean_ns": round(s.mean_ns),
            "p95_ns": "-",
        }
        for s in stats
    ]
    click.echo(_table(rows))


@kernel.command("sockfilter")
@click.option("--protocol", type=click.Choice(["any", "tcp", "udp", "icmp"]), default="udp")
@click.option(
    "--port", type=int, required=True, help="Listen on 127.0.0.1:PORT (UDP) and filter it."
)
@click.option(
    "--drop-port", type=int, default=0, help="Drop datagrams to this port (0: count only)."
)
@click.option("--duration", "duration_s", type=Finite(0.0, open_min=True), default=5.0)
@json_option
def sockfilter(protocol: str, port: int, drop_port: int, duration_s: float, as_json: bool) -> None:
    """Attach a BPF filter to a UDP socket on 127.0.0.1:PORT and report what it saw and dropped."""
    from tenfold.cloud_kernel._sockfilter import SocketFilter

    _root()
    with SocketFilter(protocol, drop_port, drop=bool(drop_port)) as sf:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise CloudKernelError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        sf.attach(sock)
        sock.settimeout(0.1)
        received = 0
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            try:
                sock.recv(65536)
                received += 1
            except TimeoutError:
                pass
        sock.close()
        data = {**asdict(sf.stats()), "received": received}
    emit(data, as_json, lambda: " ".join(f"{k}={v}" for k, v in data.items()))


@kernel.command("status")
@json_option
def status(as_json: bool) -> None:
    """What tenfold has attached: pinned block lists and loaded tenfold programs."""
    from tenfold.cloud_kernel._status import tenfold_status

    data = tenfold_status()
    emit(data, as_json, lambda: json.dumps(data, indent=2))


@kernel.command("cleanup")
@json_option
def cleanup(as_json: bool) -> None:
    """Remove everything tenfold pinned (which detaches its programs)."""
    from tenfold.cloud_kernel._status import cleanup_all

    _root()
    removed = cleanup_all()
    emit(
        {"removed": removed},
        as_json,
        f"removed {len(removed)} pinned object(s)" + (": " + ", ".join(removed) if removed else ""),
    )


@kernel.command("bench")
@click.option("--count", type=int, default=200_000, show_default=True)
@json_option
def bench(count: int, as_json: bool) -> None:
    """The syscall latency table, measured from Python on this machine."""
    from tenfold.cloud_kernel._syscall_bench import SYSCALLS, time_syscall

    rows = [asdict(time_syscall(name, batches=max(10, count // 64))) for name in SYSCALLS]
    emit(
        rows,
        as_json,
        lambda: "\n".join(
            f"{r['name']:<6} p50 {r['p50_ns']:.0f} ns  p95 {r['p95_ns']:.0f} ns  {r['per_s']:,.0f}/s"
            for r in rows
        ),
    )
