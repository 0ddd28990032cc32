"""A throwaway Ray cluster of N nodes on 127.0.0.1, for tests, benchmarks and trying things out.

Each node is a ``ray start --block`` process in its own session with its own
ports and a private ``--temp-dir``, so stopping the cluster touches only our
processes: the ``ray start`` process groups get SIGTERM, then SIGKILL, and any
straggler whose command line names our temp dir is killed by pid. (``ray stop``
would stop every Ray on the machine, other users' included.)

Given ``places`` (nodes of :class:`tenfold.core.nodes.NodeSet`, or any
:class:`tenfold.core.placement.Place`), the head runs here on ``host`` (the
nodes' host-side address) with no CPUs of its own, and each place runs one
``ray start --address`` node at its own address: one raylet per node, tasks only
on the nodes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenfold.core.lifecycle import Started
from tenfold.core.placement import Place
from tenfold.parallel_framework._remote import disable_uv_runtime_env
from tenfold.parallel_framework.errors import BackendUnavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_groups(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGTERM each process's group (last started first), wait up to ``grace_s``, then
    SIGKILL the groups; every process is reaped."""
    for proc in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def _ray_bin() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


class LocalRayCluster(Started):
    """``nodes`` Ray nodes on 127.0.0.1 with ``cpus_per_node`` CPUs each; ``address`` is the head's."""

    def __init__(
        self,
        nodes: int = 2,
        cpus_per_node: int = 1,
        *,
        start_timeout_s: float = 90.0,
        places: Sequence[Place] = (),
        host: str = "127.0.0.1",
        object_store_mb: int = 200,
    ) -> None:
        self.places = list(places)
        if self.places:
            nodes = len(self.places)
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.start_timeout_s = start_timeout_s
        self.host = host
        self.object_store_mb = object_store_mb
        self.port = free_port()
        self.address = f"{host}:{self.port}"
        self.temp_dir = tempfile.mkdtemp(prefix="tfray-", dir="/tmp")  # short: Ray's socket paths
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    def _node_args(self, ip: str = "", cpus: int | None = None) -> list[str]:
        return [
            "--node-ip-address",
            ip or self.host,
            "--num-cpus",
            str(self.cpus_per_node if cpus is None else cpus),
            "--node-manager-port",
            str(free_port()),
            "--object-manager-port",
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--dashboard-agent-grpc-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
            "--object-store-memory",
            str(self.object_store_mb * 1024 * 1024),
            "--disable-usage-stats",
            "--include-log-monitor",
            "false",
            "--block",
        ]

    def _spawn(self, argv: list[str], name: str, place: Place | None = None) -> None:
        log = Path(self.temp_dir) / f"{name}.log"
        self._logs.append(log)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
        env.setdefault("RAY_AUTH_MODE", "disabled")
        kw: dict[str, Any] = {"stderr": subprocess.STDOUT, "start_new_session": True, "env": env}
        with open(log, "wb") as out:
            start = place.spawn if place is not None else subprocess.Popen
            self.procs.append(start(argv, stdout=out, **kw))

    def start(self) -> None:
        # Ray turns token authentication on by itself when ~/.ray/auth_token exists and
        # RAY_AUTH_MODE is unset, in each process separately: the nodes and this
        # process's clients could then disagree. A throwaway loopback cluster runs
        # without tokens, said explicitly for every process involved.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # This process's driver (ray.init against this cluster) must not ship the
        # working directory to workers through `uv run` either.
        disable_uv_runtime_env()
        ray = _ray_bin()
        # Ray gives a raylet 30 s to register with the GCS; on a loaded machine that
        # can pass and the node exits. Such a node is started again (3 tries each).
        for attempt in range(3):
            head = [ray, "start", "--head", "--port", str(self.port), "--temp-dir", self.temp_dir]
            head += ["--include-dashboard", "false", "--ray-client-server-port", str(free_port())]
            # With places the head only coordinates: its CPUs are 0, tasks go to the nodes.
            self._spawn(head + self._node_args(cpus=0 if self.places else None), "head")
            try:
                self._wait_port()
                self.wait_nodes(1)
                break
            except BackendUnavailable:
                if self.procs[0].poll() is None or attempt == 2:
                    raise
                self._kill_group(self.procs.pop())
                for pid in self.stragglers():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.port = free_port()
                self.address = f"{self.host}:{self.port}"
        first = 0 if self.places else 1  # the head is node 0 unless it runs apart
        for k in range(first, self.nodes):
            place = self.places[k] if self.places else None
            ip = place.address if place is not None else ""
            for attempt in range(3):
                self._spawn(
                    [ray, "start", "--address", self.address, *self._node_args(ip)],
                    f"node{k}",
                    place,
                )
                try:
                    self.wait_nodes(k + 1 + (1 - first))
                    break
                except BackendUnavailable:
                    if self.procs[-1].poll() is None or attempt == 2:
                        raise
                    self._kill_group(self.procs.pop())

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def _wait_port(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.5),
            ):
                return
            time.sleep(0.1)
        raise BackendUnavailable(f"Ray head did not listen on {self.address}: {self.log_tail()}")

    def wait_nodes(self, count: int) -> None:
        """Block until ``count`` nodes are alive, asking the GCS directly (no dashboard here)."""
        import importlib

        raylet: Any = importlib.import_module("ray._raylet")
        gcs_pb2: Any = importlib.import_module("ray.core.generated.gcs_pb2")
        GcsNodeInfo = gcs_pb2.GcsNodeInfo  # noqa: N806 - protobuf class

        client: Any = None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            # A GCS that has just opened its port can refuse the first clients (seen as
            # AuthenticationError): connecting is retried like the query itself.
            with contextlib.suppress(Exception):
                if client is None:
                    client = raylet.GcsClient(address=self.address)
                alive = client.get_all_node_info(
                    timeout=2, state_filter=GcsNodeInfo.GcsNodeState.ALIVE
                )
                if len(alive) >= count:
                    return
            time.sleep(0.25)
        raise BackendUnavailable(f"Ray cluster did not reach {count} nodes: {self.log_tail()}")

    def _check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise BackendUnavailable(
                    f"a Ray node exited with {proc.returncode}: {self.log_tail()}"
                )

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for log in self._logs:
            with contextlib.suppress(OSError):
                out.extend(log.read_text(errors="replace").splitlines()[-lines:])
        return " | ".join(out)

    def stop(self) -> None:
        """Stop our nodes (by process group and by pid), then remove the temp dir."""
        stop_groups(self.procs)
        for pid in self.stragglers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.procs.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def stragglers(self) -> list[int]:
        """Pids of live processes whose command line or environment names our temp dir."""
        found = []
        needle = self.temp_dir.encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if needle in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found
