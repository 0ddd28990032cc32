"""Redis (Debian redis-server) on 127.0.0.1, no persistence."""

from __future__ import annotations

import socket
from pathlib import Path

from tenfold.core.services._process import (
    OneProcessService,
    _Process,
    _require_port_free,
    _which,
    free_port,
)


class Redis(OneProcessService):
    """A Redis server, no persistence (``--save ''``), bound to 127.0.0.1."""

    kind = "redis"

    def __init__(self, workdir: Path | None = None, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = _which("redis-server")
        if not self.port:
            self.port = free_port()
        _require_port_free(self.port, "redis")
        argv = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        self._proc = _Process("redis", argv, self.workdir / "redis.log")
        self._proc.start()
        self._proc.wait_ready(self._ready, 20, f"redis on port {self.port}")

    def _ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")


# --------------------------------------------------------------------------
# etcd
# --------------------------------------------------------------------------
