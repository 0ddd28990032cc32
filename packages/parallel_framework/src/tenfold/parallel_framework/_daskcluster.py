"""A Dask cluster with one worker per place: the scheduler here, ``dask worker`` in each node.

The scheduler listens on ``host`` (the nodes' host-side address); each place
(a :class:`tenfold.core.nodes.Node`, or any :class:`tenfold.core.placement.Place`)
runs one single-threaded ``dask worker`` at its own address. Every process runs
in its own session and is stopped by process group, then by pid; nothing else
on the machine is touched.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenfold.core.lifecycle import Started
from tenfold.core.placement import Place
from tenfold.parallel_framework._raycluster import free_port, stop_groups
from tenfold.parallel_framework.errors import BackendUnavailable


def _dask_bin() -> str:
    candidate = Path(sys.executable).with_name("dask")
    return str(candidate) if candidate.exists() else (shutil.which("dask") or "dask")


class NodeDaskCluster(Started):
    """A scheduler on ``host`` and one ``dask worker`` (1 thread) per place; ``address`` is
    the scheduler's ``tcp://host:port``."""

    def __init__(
        self, places: Sequence[Place], host: str = "127.0.0.1", *, start_timeout_s: float = 90.0
    ) -> None:
        if not places:
            raise ValueError("a Dask cluster on places needs at least one place")
        self.places = list(places)
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.address = f"tcp://{host}:{self.port}"
        self.temp_dir = tempfile.mkdtemp(prefix="tfdask-", dir="/tmp")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, argv: list[str], name: str, place: Place | None) -> subprocess.Popen[bytes]:
        kw: dict[str, Any] = {"stderr": subprocess.STDOUT, "start_new_session": True}
        kw["cwd"] = self.temp_dir
        with open(Path(self.temp_dir) / f"{name}.log", "wb") as out:
            start = place.spawn if place is not None else subprocess.Popen
            proc: subprocess.Popen[bytes] = start(argv, stdout=out, **kw)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        dask = _dask_bin()
        self._spawn(
            [dask, "scheduler", "--host", self.host, "--port", str(self.port), "--no-dashboard"],
            "scheduler",
            None,
        )
        for i, place in enumerate(self.places):
            argv = [dask, "worker", self.address, "--host", place.address, "--nthreads", "1"]
            argv += ["--nworkers", "1", "--no-dashboard", "--memory-limit", "0"]
            argv += ["--local-directory", self.temp_dir, "--death-timeout", "120"]
            self.workers.append(self._spawn(argv, f"worker{i}", place))
        self.wait_workers(len(self.places))

    def wait_workers(self, count: int) -> None:
        """Block until the scheduler knows ``count`` workers."""
        import distributed as distributed_module

        distributed: Any = distributed_module
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise BackendUnavailable(f"the Dask scheduler exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError, TimeoutError),
                distributed.Client(self.address, timeout="5s") as client,
            ):
                client.wait_for_workers(count, timeout=max(1.0, deadline - time.monotonic()))
                return
            time.sleep(0.2)
        raise BackendUnavailable(f"Dask did not reach {count} workers: {self.log_tail()}")

    def log_tail(self, lines: int = 10) -> str:
        out = []
        for log in sorted(Path(self.temp_dir).glob("*.log")):
            with contextlib.suppress(OSError):
                out.extend(log.read_text(errors="replace").splitlines()[-lines:])
        return " | ".join(out)

    def stop(self) -> None:
        """Stop the workers, then the scheduler (process groups), then remove the temp dir."""
        stop_groups(self.procs)
        self.procs.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
