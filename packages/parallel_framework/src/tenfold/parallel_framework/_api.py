"""The user's entry points: :class:`Executor`, :func:`run` and :class:`RunHandle`."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Hashable, Iterable
from typing import Any

from tenfold.parallel_framework._config import BACKENDS, ParallelConfig, load_config
from tenfold.parallel_framework._engine import Run, RunResult
from tenfold.parallel_framework._graph import GraphLike, Plan, as_plan
from tenfold.parallel_framework.errors import BackendError, ParallelFrameworkError

Key = Hashable
_cgroup_names = itertools.count()


class RunHandle:
    """A run started in the background: :meth:`wait` for its result or :meth:`cancel` it."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="tenfold-run")
        self._thread.start()

    def _main(self) -> None:
        try:
            self._run.execute(on_caller=False)
        except BaseException as exc:
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def cancel(self) -> None:
        """Stop scheduling; tasks not yet finished are reported as :class:`Cancelled`."""
        self._run.cancel()

    def wait(self, timeout_s: float | None = None) -> RunResult:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the run did not finish within {timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self._run.result()


class Executor:
    """Runs task graphs on one backend; keeps its worker processes or cluster between runs.

    ``backend``: ``inline`` (the calling thread), ``threads`` (default), ``processes``
    (loky-started workers, cloudpickle), ``ray`` or ``dask``. Unset arguments come
    from the ``[parallel_framework]`` section of the configuration.
    """

    def __init__(
        self,
        backend: str | None = None,
        workers: int | None = None,
        *,
        batch_cap: int | None = None,
        address: str | None = None,
        cpu_quota_pct: float | None = None,
        memory_limit_bytes: int | None = None,
        config: ParallelConfig | None = None,
    ) -> None:
        cfg = config if config is not None else load_config()
        self.backend = backend or cfg.backend
        if self.backend not in BACKENDS:
            raise BackendError(
                f"unknown backend {self.backend!r}; expected one of {', '.join(BACKENDS)}"
            )
        if workers is not None and workers < 1:
            raise BackendError(f"workers must be >= 1, got {workers}")
        self.workers = 1 if self.backend == "inline" else (workers or cfg.worker_count())
        self.batch_cap = batch_cap or cfg.batch_cap
        if address is None:
            address = cfg.ray_address if self.backend == "ray" else cfg.dask_address
        self.address = address or None
        self.cpu_quota_pct = cpu_quota_pct if cpu_quota_pct is not None else cfg.cpu_quota_pct
        self.memory_limit_bytes = (
            memory_limit_bytes if memory_limit_bytes is not None else cfg.memory_limit_bytes
        )
        self._pool: Any = None
        self._cgroup: Any = None
        self._remote: Any = None
        self._stack = contextlib.ExitStack()

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop worker processes, leave the cgroup, disconnect from Ray or Dask."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None
        self._stack.close()
        self._cgroup = None

    def worker_pids(self) -> list[int]:
        """The pids of the process workers (processes backend), for inspection and fault tests."""
        return [] if self._pool is None else self._pool.pids()

    @property
    def cgroup(self) -> Any:
        """The :class:`tenfold.core.governor.Cgroup` the process workers run in, if any."""
        return self._cgroup

    def _process_pool(self) -> Any:
        if self._pool is None:
            from tenfold.parallel_framework._procs import ProcessPool

            if self.cpu_quota_pct is not None or self.memory_limit_bytes is not None:
                from tenfold.core.governor import Cgroup

                name = f"parallel-{os.getpid()}-{next(_cgroup_names)}"
                cgroup = Cgroup(
                    name, cpu_quota_pct=self.cpu_quota_pct, memory_bytes=self.memory_limit_bytes
                )
                self._cgroup = self._stack.enter_context(cgroup)
            self._pool = ProcessPool(self.workers, cgroup=self._cgroup)
        return self._pool

    # -- running -----------------------------------------------------------------------------------------
    def _make_run(self, plan: Plan, keys: Iterable[Key] | None) -> Run:
        if self.backend == "processes":
            from tenfold.parallel_framework._procs import ProcessRun

            return ProcessRun(plan, self._process_pool(), keys=keys, batch_cap=self.batch_cap)
        return Run(
            plan, keys=keys, workers=self.workers, backend=self.backend, batch_cap=self.batch_cap
        )

    def compile(self, graph: GraphLike | Plan) -> Plan:
        return as_plan(graph)

    def run(self, graph: GraphLike | Plan, keys: Iterable[Key] | None = None) -> RunResult:
        """Run ``graph`` to completion and return its results by key.

        ``keys`` limits what is kept: other results are released as soon as every
        dependent has run (bounded memory on large graphs).
        """
        plan = self.compile(graph)
        keys = None if keys is None else list(keys)
        if self.backend in ("ray", "dask"):
            result: RunResult = self._remote_backend().run(plan, keys)
            return result
        run = self._make_run(plan, keys)
        run.execute()
        return run.result()

    def start(self, graph: GraphLike | Plan, keys: Iterable[Key] | None = None) -> RunHandle:
        """Start ``graph`` in the background (inline, threads and processes backends)."""
        if self.backend in ("ray", "dask"):
            raise ParallelFrameworkError(
                f"start() is not available on the {self.backend} backend; use run()"
            )
        plan = self.compile(graph)
        return RunHandle(self._make_run(plan, None if keys is None else list(keys)))

    def _remote_backend(self) -> Any:
        if self._remote is None:
            from tenfold.parallel_framework._remote import connect

            self._remote = connect(self.backend, self.address, self.workers)
        return self._remote


def run(
    graph: GraphLike | Plan,
    keys: Iterable[Key] | None = None,
    *,
    backend: str | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> RunResult:
    """Run a graph once on a fresh :class:`Executor` (see there for the arguments)."""
    with Executor(backend, workers, address=address) as executor:
        return executor.run(graph, keys)
