"""Exceptions raised by tenfold.parallel_framework.

Three groups below the root: the graph was rejected before anything ran
(:class:`GraphError`), a task did not produce its result (:class:`TaskError`),
or the place where tasks run could not be used (:class:`BackendError`).
"""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class ParallelFrameworkError(TenfoldError):
    """Root of every error raised by the Parallel Architecture Framework."""


# -- the graph is rejected before running ---------------------------------------------------------
class GraphError(ParallelFrameworkError):
    """The task graph is malformed; raised before any task runs."""


class CycleError(GraphError):
    """The graph has a dependency cycle; the message lists the cycle's path."""


class MissingDependencyError(GraphError):
    """A task depends on a key that no task in the graph produces."""


class DuplicateKeyError(GraphError):
    """Two tasks were added under the same key."""


class UnpicklableTaskError(GraphError):
    """A task's function or arguments cannot be sent to a worker process (names the task)."""


# -- a task did not produce its result -------------------------------------------------------------
class TaskError(ParallelFrameworkError):
    """A requested task has no result; ``key`` names it and ``traceback`` holds the original."""

    exit_code = 1

    def __init__(self, message: str, *, key: object = None, traceback: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.traceback = traceback


class TaskFailed(TaskError):
    """The task itself raised (after any retries it was allowed)."""


class UpstreamFailed(TaskError):
    """The task never ran because a task it depends on failed; carries that task's traceback."""


class TaskTimeout(TaskFailed):
    """The task ran longer than its ``timeout_s``."""


class WorkerCrashed(TaskFailed):
    """The worker process running the task died (for example SIGKILL) and no retries were left."""


class Cancelled(TaskError):
    """The run was cancelled before the task ran."""


# -- where tasks run ---------------------------------------------------------------------------------
class BackendError(ParallelFrameworkError):
    """A backend is unknown, misconfigured or failed outside any one task."""


class BackendUnavailable(BackendError):
    """Ray or Dask could not be reached at the given address (or is not installed)."""
