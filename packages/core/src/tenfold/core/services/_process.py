"""Processes, ports and the Service base shared by every real server."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from tenfold.core.errors import ServiceError, TenfoldError
from tenfold.core.lifecycle import Closing

_LIVE: set[_Process] = set()
_LIVE_LOCK = threading.Lock()


def run_dir() -> Path:
    """The folder that holds service data: ``$TENFOLD_RUN_DIR`` or ``./.tenfold/run``."""
    base = Path(os.environ.get("TENFOLD_RUN_DIR") or Path.cwd() / ".tenfold" / "run")
    base.mkdir(parents=True, exist_ok=True)
    return base


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (127.0.0.1 by default) that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
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


def _require_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    if _port_open(port, host):
        raise ServiceError(f"{what}: port {port} on {host} is already in use")


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
        place: Any = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.cwd = cwd
        self.env = env
        self.user = user
        self.place = place  # a tenfold.core.placement.Place to start in (a node), or this host
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        popen: Any = subprocess.Popen if self.place is None else self.place.spawn
        with self.log.open("ab") as out:
            try:
                self.proc = popen(
                    self.argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.cwd,
                    env=self.env,
                    user=self.user,
                    start_new_session=True,
                )
            except (OSError, TenfoldError) as exc:
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

    def detach(self) -> None:
        """Let the process outlive this one: off the at-exit stop list (its owner stops it)."""
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


class Service(Closing):
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


class OneProcessService(Service):
    """A service that is one server process: its pid, and stopping or killing it.

    ``start()`` sets ``_proc``; ``stop()`` sends ``stop_signal`` and kills the server
    after ``stop_grace_s``; ``kill()`` is a crash (SIGKILL), for fault tests.
    """

    stop_signal: int = signal.SIGTERM
    stop_grace_s: float = 10.0
    _proc: _Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace_s=self.stop_grace_s, sig=self.stop_signal)

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------
