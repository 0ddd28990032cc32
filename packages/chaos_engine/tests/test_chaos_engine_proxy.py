from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvloop

from tenfold.chaos_engine import (
    ChaosEngine,
    PerformanceConfig,
    ProxyBandwidth,
    ProxyLatency,
    ProxyLimitData,
    ProxyLoss,
    ProxyReset,
    ProxySlicer,
    ProxySlowClose,
    ProxyTimeout,
)
from tenfold.chaos_engine._proxy import FaultProxy
from tenfold.chaos_engine.errors import TargetGone


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def topology(tmp: Path) -> AsyncIterator[tuple[ChaosEngine, FaultProxy]]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FaultProxy("echo", "127.0.0.1", port, seed=3) as proxy:
        engine = await ChaosEngine.create(
            PerformanceConfig.model_validate({}), journal_dir=tmp, experiment="proxy"
        )
        engine.add_proxy(proxy)
        try:
            yield engine, proxy
        finally:
            await engine.close()
            server.close()
            await server.wait_closed()


async def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


def run(fn: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(fn())


def test_pass_through_and_latency(tmp_path: Path) -> None:
    async def main() -> None:
        async with topology(tmp_path) as (engine, proxy):
            assert await roundtrip(proxy.port, b"hello" * 1000) == b"hello" * 1000
            handle = await engine.inject_fault(
                ProxyLatency(proxy="echo", latency_ms=40, direction="downstream")
            )
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await roundtrip(proxy.port) == b"ping"
            assert loop.time() - start >= 0.038
            await handle.revert()
            start = loop.time()
            assert await roundtrip(proxy.port) == b"ping"
            assert loop.time() - start < 0.038

    run(main)


def test_loss_ratio_is_within_one_percent_per_chunk(tmp_path: Path) -> None:
    async def main() -> None:
        async with topology(tmp_path) as (engine, proxy):
            await engine.inject_fault(
                ProxyLoss(proxy="echo", probability=0.1, direction="upstream")
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            lost = 0
            n = 3000
            for _ in range(n):
                try:
                    writer.write(b"x")
                    await asyncio.wait_for(reader.readexactly(1), 2)
                except (ConnectionError, asyncio.IncompleteReadError):
                    lost += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.close()
            assert abs(lost / n - 0.1) < 0.015
            assert proxy.stats.decisions == n and proxy.stats.hits == lost

    run(main)


def test_reset_timeout_and_limit(tmp_path: Path) -> None:
    async def main() -> None:
        async with topology(tmp_path) as (engine, proxy):
            reset = await engine.inject_fault(ProxyReset(proxy="echo", direction="upstream"))
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await roundtrip(proxy.port)
            await reset.revert()

            timeout = await engine.inject_fault(
                ProxyTimeout(proxy="echo", timeout_ms=50, direction="upstream")
            )
            with pytest.raises(asyncio.IncompleteReadError):
                await roundtrip(proxy.port)  # closed after 50 ms with nothing forwarded
            await timeout.revert()

            await engine.inject_fault(
                ProxyLimitData(proxy="echo", bytes=10, direction="downstream")
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"0123456789abcdef")
            got = await asyncio.wait_for(reader.read(-1), 5)
            writer.close()
            assert got == b"0123456789"

    run(main)


def test_slicer_bandwidth_and_slow_close_keep_the_bytes(tmp_path: Path) -> None:
    async def main() -> None:
        async with topology(tmp_path) as (engine, proxy):
            payload = bytes(range(256)) * 64
            await engine.inject_fault(
                ProxySlicer(proxy="echo", average_size=100, size_variation=50, delay_us=10)
            )
            await engine.inject_fault(
                ProxyLatency(proxy="echo", latency_ms=2, jitter_ms=2, direction="both")
            )
            assert await roundtrip(proxy.port, payload) == payload
            await engine.revert_all()
            await engine.inject_fault(
                ProxyBandwidth(proxy="echo", rate_bytes_per_s=100_000, direction="downstream")
            )
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await roundtrip(proxy.port, payload) == payload
            assert loop.time() - start >= 0.9 * len(payload) / 100_000
            await engine.revert_all()
            await engine.inject_fault(
                ProxySlowClose(proxy="echo", delay_ms=100, direction="upstream")
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"bye")
            writer.write_eof()
            start = loop.time()
            assert await asyncio.wait_for(reader.read(-1), 5) == b"bye"
            assert loop.time() - start >= 0.09
            writer.close()

    run(main)


def test_unknown_proxy_is_target_gone(tmp_path: Path) -> None:
    async def main() -> None:
        async with topology(tmp_path) as (engine, _):
            with pytest.raises(TargetGone, match="no proxy named 'db'"):
                await engine.inject_fault(ProxyLatency(proxy="db", latency_ms=1))

    run(main)
