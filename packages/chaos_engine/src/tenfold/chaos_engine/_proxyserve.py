"""Stand-alone servers for the proxy benchmark: an echo server, our fault proxy, a raw pass-through.

``python -m tenfold.chaos_engine._proxyserve echo``
``python -m tenfold.chaos_engine._proxyserve proxy UPSTREAM_PORT [FAULT_JSON]``
``python -m tenfold.chaos_engine._proxyserve raw UPSTREAM_PORT``

Each prints its listening port on one line, then serves until stdin closes.
The raw pass-through is the floor a proxy on uvloop can reach: two protocols
that write each chunk straight to the other side, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, cast

import uvloop


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _RawUp(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _RawClient(asyncio.Protocol):
    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Transport | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_connection(
            lambda: _RawUp(self.transport), "127.0.0.1", self.port
        )
        self.server = server
        for data in self.early:
            server.write(data)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.server is None:
            self.early.append(data)
        else:
            self.server.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server is not None:
            self.server.close()


async def _wait_stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def serve(argv: list[str]) -> None:
    loop = asyncio.get_running_loop()
    role = argv[0]
    holder: Any = None
    if role == "echo":  # ``echo [HOST]``: the latency bench serves another namespace
        server = await loop.create_server(_Echo, argv[1] if len(argv) > 1 else "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    elif role == "raw":
        upstream = int(argv[1])
        server = await loop.create_server(lambda: _RawClient(upstream), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        import tempfile

        from tenfold.chaos_engine._config import PerformanceConfig
        from tenfold.chaos_engine._engine import ChaosEngine
        from tenfold.chaos_engine._faults import fault_from_dict
        from tenfold.chaos_engine._proxy import FaultProxy

        proxy = await FaultProxy("bench", "127.0.0.1", int(argv[1])).start()
        tmp = tempfile.TemporaryDirectory(prefix="tenfold-proxy-")
        engine = await ChaosEngine.create(
            PerformanceConfig.model_validate({}), journal_dir=Path(tmp.name), experiment="proxy"
        )
        engine.add_proxy(proxy)
        if len(argv) > 2:
            spec = json.loads(argv[2])
            await engine.inject_fault(fault_from_dict(spec.pop("kind"), spec))
        holder = (proxy, engine, tmp)
        port = proxy.port
    print(port, flush=True)
    await _wait_stdin_closed()
    if holder is not None:
        proxy, engine, tmp = holder
        print(json.dumps(vars(proxy.stats)), flush=True)
        await engine.close()
        await proxy.stop()
        tmp.cleanup()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1:]))
