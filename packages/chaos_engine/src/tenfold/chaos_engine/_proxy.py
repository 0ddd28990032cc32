"""A TCP fault proxy on asyncio protocols (uvloop when installed), toxiproxy's faults plus loss.

Each connection has two pipes, ``upstream`` (client -> server) and
``downstream`` (server -> client). With no fault on a pipe, a chunk is written
straight through (one ``write`` per ``data_received``). With faults, the chunk
goes through them in activation order and lands in the pipe's delivery queue,
ordered by delivery time, drained by a single timer: order is kept whatever the
latency or jitter.

Decisions: a fault's ``probability`` is drawn once per connection (toxiproxy's
"toxicity") the first time the connection meets it, except loss, which is drawn
per chunk: a lost chunk resets the connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import random
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, cast

from tenfold.chaos_engine._faults import (
    ProxyBandwidth,
    ProxyFault,
    ProxyLatency,
    ProxyLimitData,
    ProxyLoss,
    ProxyReset,
    ProxySlicer,
    ProxySlowClose,
    ProxyTimeout,
)
from tenfold.chaos_engine.errors import TargetGone

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
HIGH_WATER = 1 << 20


@dataclass
class ProxyStats:
    connections: int = 0
    decisions: int = 0
    hits: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def _abort_with_rst(transport: asyncio.BaseTransport | None) -> None:
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class _Pipe:
    """One direction of one connection: faults, delivery queue, half-close."""

    def __init__(self, conn: _Connection, direction: str) -> None:
        self.conn = conn
        self.direction = direction
        self.dst: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.last_at = 0.0
        self.passed = 0
        self.eof_pending = False
        self.early: list[bytes] = []

    def attach(self, dst: asyncio.Transport) -> None:
        """Connect the pipe's far end and pass on what arrived before it existed."""
        self.dst = dst
        early, self.early = self.early, []
        for data in early:
            self.feed(data)

    def feed(self, data: bytes) -> None:
        if self.dst is None:
            self.early.append(data)
            return
        proxy = self.conn.proxy
        if self.direction == UPSTREAM:
            proxy.stats.bytes_up += len(data)
        else:
            proxy.stats.bytes_down += len(data)
        faults = proxy.faults_for(self.direction)
        if not faults and not self.queue:
            self.dst.write(data)
            return
        loop = self.conn.loop
        now = loop.time()
        segments: list[tuple[float, bytes]] = [(now, data)]
        close_after = False
        for token, fault in faults:
            if isinstance(fault, ProxyLoss):
                proxy.stats.decisions += 1
                if self.conn.rng.random() < fault.probability:
                    proxy.stats.hits += 1
                    self.conn.reset()
                    return
                continue
            if not self.conn.enabled(token, fault):
                continue
            if isinstance(fault, ProxyTimeout):
                self.conn.start_timeout(token, fault.timeout_ms)
                return
            if isinstance(fault, ProxyReset):
                self.conn.start_reset(token, fault.timeout_ms)
                return
            if isinstance(fault, ProxyLimitData):
                room = max(0, fault.bytes - self.passed)
                segments = _truncate(segments, room)
                if sum(len(b) for _, b in segments) >= room:
                    close_after = True
            elif isinstance(fault, ProxySlicer):
                segments = _slice(segments, fault, self.conn.rng)
            elif isinstance(fault, ProxyLatency):
                jitter = self.conn.rng.uniform(-fault.jitter_ms, fault.jitter_ms)
                delay = max(0.0, fault.latency_ms + jitter) / 1000.0
                segments = [(t + delay, b) for t, b in segments]
            elif isinstance(fault, ProxyBandwidth):
                shaped = []
                clock = max(self.last_at, now)
                for t, b in segments:
                    clock = max(clock, t) + len(b) / fault.rate_bytes_per_s
                    shaped.append((clock, b))
                segments = shaped
        for ready_at, chunk in segments:
            self.passed += len(chunk)
            self.last_at = max(ready_at, self.last_at)
            self.queue.append((self.last_at, chunk))
        if close_after:
            self.eof_pending = True
            self.conn.closing_by_limit = True
        self._drain()

    def _drain(self) -> None:
        self.timer = None
        now = self.conn.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, chunk = self.queue.popleft()
            if self.dst is not None and chunk:
                self.dst.write(chunk)
        if self.queue:
            self.timer = self.conn.loop.call_at(self.queue[0][0], self._drain)
        elif self.eof_pending:
            self.eof_pending = False
            self.conn.finish(self.direction)

    def eof(self) -> None:
        if self.queue:
            self.eof_pending = True
        else:
            self.conn.finish(self.direction)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


def _truncate(segments: list[tuple[float, bytes]], room: int) -> list[tuple[float, bytes]]:
    out = []
    for t, b in segments:
        if room <= 0:
            break
        out.append((t, b[:room]))
        room -= len(b[:room])
    return out


def _slice(
    segments: list[tuple[float, bytes]], fault: ProxySlicer, rng: random.Random
) -> list[tuple[float, bytes]]:
    out = []
    step = fault.delay_us / 1e6
    for t, b in segments:
        pos = 0
        i = 0
        while pos < len(b):
            size = fault.average_size + rng.randint(-fault.size_variation, fault.size_variation)
            out.append((t + i * step, b[pos : pos + max(1, size)]))
            pos += max(1, size)
            i += 1
    return out


class _Connection:
    """Both pipes of one proxied connection, and its per-connection fault decisions."""

    def __init__(self, proxy: FaultProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.loop = loop
        self.rng = proxy.rng
        self.up = _Pipe(self, UPSTREAM)
        self.down = _Pipe(self, DOWNSTREAM)
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.decided: dict[int, bool] = {}
        self.timers: list[asyncio.TimerHandle] = []
        self.closed = False
        self.closing_by_limit = False
        self.connecting: asyncio.Task[None] | None = None

    def enabled(self, token: int, fault: ProxyFault) -> bool:
        hit = self.decided.get(token)
        if hit is None:
            self.proxy.stats.decisions += 1
            hit = fault.probability >= 1.0 or self.rng.random() < fault.probability
            self.proxy.stats.hits += hit
            self.decided[token] = hit
        return hit

    def start_timeout(self, token: int, timeout_ms: float) -> None:
        key = -token
        if key not in self.decided:
            self.decided[key] = True
            if timeout_ms > 0:
                self.timers.append(self.loop.call_later(timeout_ms / 1000, self.close))

    def start_reset(self, token: int, timeout_ms: float) -> None:
        key = -token
        if key not in self.decided:
            self.decided[key] = True
            self.timers.append(self.loop.call_later(timeout_ms / 1000, self.reset))

    def reset(self) -> None:
        if self.closed:
            return
        self.proxy.stats.resets += 1
        self.closed = True
        self._cancel()
        _abort_with_rst(self.client)
        _abort_with_rst(self.server)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel()
        for transport in (self.client, self.server):
            if transport is not None and not transport.is_closing():
                transport.close()

    def finish(self, direction: str) -> None:
        """The source of ``direction`` is done and its queue is empty: pass the close on."""
        if self.closing_by_limit:
            self.close()
            return
        delay = max(
            (
                f.delay_ms
                for _, f in self.proxy.faults_for(direction)
                if isinstance(f, ProxySlowClose)
            ),
            default=0.0,
        )
        if delay > 0:
            self.timers.append(self.loop.call_later(delay / 1000, self.close))
        else:
            self.close()

    def _cancel(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.up.cancel()
        self.down.cancel()
        self.proxy.live.discard(self)


class _ClientSide(asyncio.Protocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        loop = asyncio.get_running_loop()
        conn = _Connection(self.proxy, loop)
        conn.client = transport
        self.conn = conn
        self.proxy.live.add(conn)
        self.proxy.stats.connections += 1
        transport.pause_reading()
        conn.down.attach(transport)
        conn.connecting = loop.create_task(self._connect_upstream(conn, transport))

    async def _connect_upstream(self, conn: _Connection, client: asyncio.Transport) -> None:
        loop = conn.loop
        try:
            server, _ = await loop.create_connection(
                lambda: _ServerSide(conn), self.proxy.upstream_host, self.proxy.upstream_port
            )
        except OSError:
            conn.reset()
            return
        if conn.closed:
            server.close()
            return
        conn.server = server
        conn.up.attach(server)
        client.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.up.feed(data)

    def eof_received(self) -> bool:
        if self.conn is not None:
            self.conn.up.eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.close()

    def pause_writing(self) -> None:
        if self.conn is not None and self.conn.server is not None:
            self.conn.server.pause_reading()

    def resume_writing(self) -> None:
        if self.conn is not None and self.conn.server is not None:
            self.conn.server.resume_reading()


class _ServerSide(asyncio.Protocol):
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        if not self.conn.closed:
            self.conn.down.feed(data)

    def eof_received(self) -> bool:
        self.conn.down.eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.conn.down.queue:
            self.conn.close()
        else:
            self.conn.down.eof_pending = True

    def pause_writing(self) -> None:
        if self.conn.client is not None:
            self.conn.client.pause_reading()

    def resume_writing(self) -> None:
        if self.conn.client is not None:
            self.conn.client.resume_reading()


@dataclass
class FaultProxy:
    """A named TCP proxy from ``listen`` to ``upstream`` whose faults the engine switches."""

    name: str
    upstream_host: str
    upstream_port: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    seed: int | None = None
    stats: ProxyStats = field(default_factory=ProxyStats)
    live: set[_Connection] = field(default_factory=set)
    _faults: dict[int, ProxyFault] = field(default_factory=dict)
    _by_direction: dict[str, list[tuple[int, ProxyFault]]] = field(default_factory=dict)
    _tokens: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: asyncio.AbstractServer | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._reindex()

    async def start(self) -> FaultProxy:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientSide(self), self.listen_host, self.listen_port, reuse_address=True
        )
        sock = self._server.sockets[0]
        self.listen_port = int(sock.getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.live):
                conn.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self.listen_port

    def _reindex(self) -> None:
        self._by_direction = {
            direction: [
                (token, fault)
                for token, fault in self._faults.items()
                if fault.direction in (direction, "both")
            ]
            for direction in (UPSTREAM, DOWNSTREAM)
        }

    def faults_for(self, direction: str) -> list[tuple[int, ProxyFault]]:
        return self._by_direction[direction]

    def add_fault(self, fault: ProxyFault) -> int:
        token = next(self._tokens)
        self._faults[token] = fault
        self._reindex()
        return token

    def remove_fault(self, token: int) -> None:
        self._faults.pop(token, None)
        self._reindex()

    def clear_faults(self) -> None:
        self._faults.clear()
        self._reindex()


@dataclass
class _ProxyApplied:
    proxy: FaultProxy
    token: int

    async def revert(self) -> None:
        self.proxy.remove_fault(self.token)


@dataclass
class ProxyActuator:
    """Switches proxy faults on the engine's registered proxies."""

    proxies: dict[str, Any]

    def undo_steps(self, fault: ProxyFault, name: str) -> list[dict[str, Any]]:
        return []

    async def apply(self, fault: ProxyFault, name: str) -> _ProxyApplied:
        proxy = self.proxies.get(fault.proxy)
        if proxy is None:
            known = ", ".join(sorted(self.proxies)) or "none"
            raise TargetGone(f"{fault.kind}: no proxy named {fault.proxy!r} (known: {known})")
        return _ProxyApplied(proxy, proxy.add_fault(fault))
