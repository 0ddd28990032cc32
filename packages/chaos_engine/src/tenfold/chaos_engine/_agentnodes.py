"""Chaos agents on measured nodes: one agent per node, certificates, a controller.

What the tests and the bench rows run on: a :class:`tenfold.core.nodes.NodeSet`
(a network namespace and a CPU/memory-limited cgroup per node), a CA with a
certificate for the controller and one per agent (valid for the agent's node
address), and ``tenfold chaos agent`` started inside each node, listening on
the node's own address. On real machines the same agents run one per host and
only the URLs differ.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tenfold.chaos_engine._controller import AgentRef, Controller
from tenfold.chaos_engine.errors import AgentError
from tenfold.core.lifecycle import stop_processes
from tenfold.core.nodes import NodeSet
from tenfold.core.tls import TlsFiles, make_tls_bundle

AGENT_PORT = 7421
START_TIMEOUT_S = 120.0


class AgentNodes:
    """``count`` nodes with an agent in each; ``controller()`` talks to them all."""

    def __init__(
        self,
        count: int,
        workdir: Path,
        *,
        cpu: float = 0.125,
        memory_mb: int = 256,
        lease_s: float = 5.0,
        prefix: str = "",
    ) -> None:
        self.nodes = NodeSet(count=count, cpu=cpu, memory_mb=memory_mb, prefix=prefix)
        self.workdir = workdir
        self.lease_s = lease_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self.refs: list[AgentRef] = []
        self.tls: dict[str, TlsFiles] = {}

    def names(self) -> list[str]:
        return [f"n{i}" for i in range(self.nodes.count)]

    def journal_dir(self, index: int) -> Path:
        return self.workdir / f"journal-n{index}"

    def __enter__(self) -> Self:
        self.nodes.create()
        try:
            names = self.names()
            hosts = {name: [node.address] for name, node in zip(names, self.nodes, strict=True)}
            self.tls = make_tls_bundle(self.workdir / "tls", ["controller", *names], hosts=hosts)
            for name, node in zip(names, self.nodes, strict=True):
                self.procs.append(self._spawn(name, node))
            for name, node, proc in zip(names, self.nodes, self.procs, strict=True):
                self._wait_ready(name, proc)
                self.refs.append(AgentRef(name, f"https://{node.address}:{AGENT_PORT}"))
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, name: str, node: Any) -> subprocess.Popen[bytes]:
        tls = self.tls[name]
        index = int(name[1:])
        argv = [
            sys.executable,
            "-m",
            "tenfold.chaos_engine",
            "agent",
            "--name",
            name,
            "--host",
            node.address,
            "--port",
            str(AGENT_PORT),
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
            "--tls-ca",
            str(tls.ca),
            "--lease",
            str(self.lease_s),
            "--journal-dir",
            str(self.journal_dir(index)),
        ]
        log = open(self.workdir / f"agent-{name}.log", "wb")  # noqa: SIM115 - the child holds it
        try:
            proc: subprocess.Popen[bytes] = node.spawn(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log.close()
        return proc

    def _wait_ready(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while b"listening on" not in line:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                log = (self.workdir / f"agent-{name}.log").read_text(errors="replace").strip()
                tail = log.splitlines()[-1] if log else "no output"
                raise AgentError(f"agent {name} did not start: {tail}")
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if ready:
                line = proc.stdout.readline()

    def controller(self, *, timeout_s: float = 10.0) -> Controller:
        """A controller over every agent (not yet connected)."""
        return Controller(self.refs, self.tls["controller"], timeout_s=timeout_s)

    def close(self) -> None:
        """Stop the agents (SIGTERM: each reverts its faults), then remove the nodes."""
        stop_processes(self.procs, 15)
        for proc in self.procs:
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs.clear()
        self.nodes.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
