"""Chaos Engine benchmarks of the data plane: the TCP proxy and the NFQUEUE network latency fault, asked against observed."""

from __future__ import annotations

import asyncio
import functools
import json
import statistics
import subprocess
import sys
import time
from typing import Any, cast

from tenfold.chaos_engine._bench_common import (
    RUN,
    _engine,
    _percentile,
    _run,
)
from tenfold.core.bench import BenchContext, Op, Outcome
from tenfold.core.errors import BenchError

# -- proxy ----------------------------------------------------------------------------------------------


class _Server:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tenfold.chaos_engine._proxyserve", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def close(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        rest = self.proc.stdout.read().strip()
        self.proc.wait(10)
        return json.loads(rest) if rest else {}


def _server(ctx: BenchContext, key: str, argv: list[str]) -> _Server:
    def make() -> _Server:
        server = _Server(argv)
        ctx.callback(server.close)
        return server

    return ctx.once(key, make)


async def _load(
    port: int, connections: int, per_conn: int, payload: bytes
) -> tuple[list[float], int]:
    """Ping-pong ``per_conn`` requests on each connection; reconnect after a reset."""
    lat: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(per_conn):
            t0 = time.perf_counter()
            try:
                writer.write(payload)
                echoed = await reader.readexactly(len(payload))
                lat.append((time.perf_counter() - t0) * 1000)
                if echoed != payload:
                    raise BenchError(f"the echo came back changed: {echoed[:16]!r}...")
            except (ConnectionError, asyncio.IncompleteReadError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return lat, errors


def _proxy_op(ctx: BenchContext, role: str, fault: dict[str, Any] | None = None) -> Op:
    echo = _server(ctx, "echo", ["echo"])
    if role == "direct":
        port = echo.port
    else:
        argv = [role, str(echo.port)] + ([json.dumps(fault)] if fault else [])
        port = _server(ctx, f"{role}{fault}", argv).port
    slow = fault is not None and fault["kind"] == "proxy_latency"  # a round trip is >= 20 ms
    connections = 32 if slow else 16
    per_conn = ctx.size(5, 25, 200) if slow else ctx.size(20, 300, 5000)
    payload = b"x" * 64

    def op() -> Outcome:
        lat, errors = _run(ctx, _load(port, connections, per_conn, payload))
        total = connections * per_conn
        metrics: dict[str, float | str] = {"error_ratio": round(errors / total, 4)}
        if fault and fault["kind"] == "proxy_latency":
            target = fault["latency_ms"]
            metrics["latency_error_p50_ms"] = round(statistics.median(lat) - target, 3)
            metrics["latency_error_p99_ms"] = round(_percentile(lat, 99) - target, 3)
        # One latency per answered request (a request lost to a loss fault has none).
        return Outcome(
            total, metrics, lat, latencies_sampled=True, result=None if fault else errors
        )

    return op


def _ours_proxy(ctx: BenchContext) -> Op:
    return _proxy_op(ctx, "proxy")


def _direct(ctx: BenchContext) -> Op:
    """The baseline: the same requests straight to the echo server."""
    return _proxy_op(ctx, "direct")


def _raw_proxy(ctx: BenchContext) -> Op:
    """The cheapest proxy there is: a bare uvloop pass-through, no fault logic."""
    return _proxy_op(ctx, "raw")


def _ours_proxy_latency(ctx: BenchContext) -> Op:
    fault = {
        "kind": "proxy_latency",
        "proxy": "bench",
        "latency_ms": 20,
        "direction": "downstream",
        "duration_s": 86400,
    }
    return _proxy_op(ctx, "proxy", fault)


def _ours_proxy_loss(ctx: BenchContext) -> Op:
    fault = {
        "kind": "proxy_loss",
        "proxy": "bench",
        "probability": 0.1,
        "direction": "upstream",
        "duration_s": 86400,
    }
    return _proxy_op(ctx, "proxy", fault)


# -- network latency (NFQUEUE) -----------------------------------------------------------------------------

LAT_A, LAT_B = f"tfchaos_latA{RUN}", f"tfchaos_latB{RUN}"
LAT_ADDR_B = "10.215.0.2"
VETH_PEER = ("peer", "name", "tflatB", "netns", LAT_B)
ECHO_IN_B = ("tenfold.chaos_engine._proxyserve", "echo", "0.0.0.0")
LATENCY_MS = 20.0


def _latency_pair(ctx: BenchContext) -> int:
    """Namespaces A and B on a veth pair, a TCP echo server in B; returns its port."""

    def make() -> int:
        commands = [
            ["ip", "netns", "add", LAT_A],
            ["ip", "netns", "add", LAT_B],
            ["ip", "link", "add", "tflatA", "netns", LAT_A, "type", "veth", *VETH_PEER],
            ["ip", "-n", LAT_A, "addr", "add", "10.215.0.1/24", "dev", "tflatA"],
            ["ip", "-n", LAT_B, "addr", "add", f"{LAT_ADDR_B}/24", "dev", "tflatB"],
            ["ip", "-n", LAT_A, "link", "set", "tflatA", "up"],
            ["ip", "-n", LAT_B, "link", "set", "tflatB", "up"],
        ]

        def delete(ns: str) -> None:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)

        for ns in (LAT_A, LAT_B):
            delete(ns)
            ctx.callback(functools.partial(delete, ns))
        for argv in commands:
            subprocess.run(argv, check=True, capture_output=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", LAT_B, sys.executable, "-m", *ECHO_IN_B],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def stop() -> None:
            server.kill()
            server.wait()

        ctx.callback(stop)
        assert server.stdout is not None
        return int(server.stdout.readline())

    return ctx.once("latency_pair", make)


def _sockets_in(netns: str, address: tuple[str, int], count: int) -> list[Any]:
    """``count`` TCP connections opened from inside ``netns`` (a socket keeps its namespace)."""
    import socket
    import threading

    from tenfold.chaos_engine._kernel import setns_net

    made: list[socket.socket] = []
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            setns_net(netns)  # this thread only; it ends right after
            for _ in range(count):
                sock = socket.create_connection(address, timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                made.append(sock)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=connect)
    thread.start()
    thread.join()
    if errors:
        raise BenchError(f"connect from {netns}: {errors[0]}")
    return made


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _streams(socks: list[Any]) -> list[Stream]:
    return [await asyncio.open_connection(sock=sock) for sock in socks]


async def _round_trips(streams: list[Stream], per_conn: int) -> list[float]:
    lat: list[float] = []
    payload = b"x" * 64

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(per_conn):
            t0 = time.perf_counter()
            writer.write(payload)
            await reader.readexactly(len(payload))
            lat.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(client(*stream) for stream in streams))
    return lat


def _accuracy(lat: list[float], asked_ms: float) -> dict[str, float | str]:
    return {
        "asked_ms": asked_ms,
        "observed_p50_ms": round(statistics.median(lat), 3),
        "observed_p99_ms": round(_percentile(lat, 99), 3),
        "latency_error_p50_ms": round(statistics.median(lat) - asked_ms, 3),
        "latency_error_p99_ms": round(_percentile(lat, 99) - asked_ms, 3),
    }


def _ours_network_latency(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import NetworkLatency

    port = _latency_pair(ctx)
    engine = _engine(ctx)
    fault = NetworkLatency(netns=LAT_A, interface="tflatA", latency_ms=LATENCY_MS, duration_s=3600)
    ctx.once("latency_fault", lambda: _run(ctx, engine.inject_fault(fault)))
    connections, per_conn = 32, ctx.size(5, 25, 200)

    def connect() -> list[Stream]:
        # opened once, outside the timer (each handshake waits in the queue too)
        streams = _run(ctx, _streams(_sockets_in(LAT_A, (LAT_ADDR_B, port), connections)))

        def close() -> None:
            for _, writer in streams:
                writer.close()

        ctx.callback(close)
        return streams

    streams = ctx.once("latency_streams", connect)

    def op() -> Outcome:
        lat = _run(ctx, _round_trips(streams, per_conn))
        return Outcome(len(lat), _accuracy(lat, LATENCY_MS), lat)

    return op


def _peer_network_latency(ctx: BenchContext) -> Op:
    fault = {
        "kind": "proxy_latency",
        "proxy": "bench",
        "latency_ms": LATENCY_MS,
        "direction": "downstream",
        "duration_s": 86400,
    }
    op = _proxy_op(ctx, "proxy", fault)

    def timed() -> Outcome:
        out = cast(Outcome, op())
        lat = list(out.latencies_ms or [])
        return Outcome(out.ops, _accuracy(lat, LATENCY_MS), lat, latencies_sampled=True)

    return timed
