"""PostgreSQL (Debian): initdb and pg_ctl on 127.0.0.1, a free port, data under the run dir."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tenfold.core.errors import ServiceError
from tenfold.core.services._process import (
    OneProcessService,
    _port_open,
    _Process,
    _require_port_free,
    _tail,
    free_port,
    run_dir,
)


def _pg_bindir() -> str:
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / "postgres").is_file():
            return str(base)
    raise ServiceError(
        "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
        "(install Debian package 'postgresql')"
    )


def _world_traversable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


class Postgres(OneProcessService):
    """A PostgreSQL server with trust authentication for user ``postgres``.

    PostgreSQL refuses to run as root: when we are root, the server runs as the
    ``postgres`` system user (created by the Debian package), in a data directory
    it owns.

    It listens on ``host`` (127.0.0.1 unless given; e.g. the host-side address of a
    set of nodes) and trusts clients from 127.0.0.1, from ``host`` itself (this
    machine's own clients, the readiness check included, connect from it) and
    from the networks in ``trusted_networks`` (CIDR, e.g. the nodes' ``10.77.0.0/16``).
    """

    kind = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: roll back open transactions, then exit
    stop_grace_s = 20.0

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        keep_data: bool = False,
        host: str = "127.0.0.1",
        trusted_networks: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir, keep_data=keep_data)
        self.host = host
        self.trusted_networks = [
            str(ipaddress.ip_network(n, strict=False)) for n in trusted_networks
        ]
        with contextlib.suppress(ValueError):  # a host name: nothing to add
            own = ipaddress.ip_address(host)
            if not (own.is_loopback or own.is_unspecified):
                self.trusted_networks.append(str(ipaddress.ip_network(own)))
        self.port = port or 0
        self.settings = {
            "fsync": "on",
            "max_connections": "100",
            "shared_buffers": "128MB",
            **(settings or {}),
        }
        self._user: str | None = None
        self._initialized = False

    def _make_workdir(self) -> Path:
        if self._given_dir is None and os.geteuid() == 0 and not _world_traversable(run_dir()):
            # The postgres user must reach its data directory.
            base = Path(tempfile.gettempdir()) / "tenfold-run"
            base.mkdir(mode=0o755, exist_ok=True)
            self.workdir = Path(tempfile.mkdtemp(prefix="postgres-", dir=base))
            self._made_dir = True
            return self.workdir
        return super()._make_workdir()

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _init(self) -> None:
        bindir = _pg_bindir()
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceError(
                    "running as root and there is no 'postgres' user to run the server as"
                ) from None
            self._user = "postgres"
            os.chmod(self.workdir, 0o755)
            self.datadir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        log = self.workdir / "initdb.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [
                    f"{bindir}/initdb",
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self._user,
                check=False,
            )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {_tail(log)}")
        if self.trusted_networks:
            # initdb's trust lines cover loopback only; clients in nodes connect from
            # their own addresses. (Appending keeps the file's owner.)
            with (self.datadir / "pg_hba.conf").open("a") as hba:
                for network in self.trusted_networks:
                    hba.write(f"host all all {network} trust\n")
        self._initialized = True

    def start(self) -> None:
        if self._proc is not None and self._proc.alive():
            return
        if not self._initialized:
            self._init()
        if not self.port:
            self.port = free_port(self.host)
        _require_port_free(self.port, "postgres", self.host)
        argv = [
            f"{_pg_bindir()}/postgres",
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-k",
            str(self.datadir),
            "-c",
            "listen_addresses=" + ",".join(dict.fromkeys(["127.0.0.1", self.host])),
        ]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        log = self.workdir / "postgres.log"
        if self._user:
            log.touch()
            pw = pwd.getpwnam(self._user)
            os.chown(log, pw.pw_uid, pw.pw_gid)
        self._proc = _Process("postgres", argv, log, user=self._user)
        self._proc.start()
        self._proc.wait_ready(self._ready, 60, f"postgres on port {self.port}")

    def _ready(self) -> bool:
        # A startup packet answered by an authentication/ready message means accepting.
        with socket.create_connection((self.host, self.port), timeout=1) as sock:
            user, db = b"postgres", b"postgres"
            body = (196608).to_bytes(4, "big") + b"user\0" + user + b"\0database\0" + db + b"\0\0"
            sock.sendall((len(body) + 4).to_bytes(4, "big") + body)
            reply = sock.recv(1)
            return reply == b"R"

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash, for fault tests); restart with :meth:`start`."""
        if self._proc is not None:
            super().kill()
            # Children of a killed postmaster exit when they notice; wait for the port.
            deadline = time.monotonic() + 10
            while _port_open(self.port, self.host) and time.monotonic() < deadline:
                time.sleep(0.05)


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------
