"""Parallel Architecture Framework: a work-stealing DAG executor, local or on Ray and Dask."""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.parallel_framework._api import Executor as Executor
    from tenfold.parallel_framework._api import RunHandle as RunHandle
    from tenfold.parallel_framework._api import run as run
    from tenfold.parallel_framework._engine import Future as Future
    from tenfold.parallel_framework._engine import Metrics as Metrics
    from tenfold.parallel_framework._engine import RunResult as RunResult
    from tenfold.parallel_framework._engine import submit as submit
    from tenfold.parallel_framework._graph import Graph as Graph
    from tenfold.parallel_framework._graph import Node as Node
    from tenfold.parallel_framework._graph import TaskFunction as TaskFunction
    from tenfold.parallel_framework._graph import TaskOptions as TaskOptions
    from tenfold.parallel_framework._graph import task as task
    from tenfold.parallel_framework.errors import ParallelFrameworkError as ParallelFrameworkError

__all__ = [
    "Executor",
    "Future",
    "Graph",
    "Metrics",
    "Node",
    "ParallelFrameworkError",
    "RunHandle",
    "RunResult",
    "TaskFunction",
    "TaskOptions",
    "run",
    "submit",
    "task",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._api": ["Executor", "RunHandle", "run"],
        "._engine": ["Future", "Metrics", "RunResult", "submit"],
        "._graph": ["Graph", "Node", "TaskFunction", "TaskOptions", "task"],
        ".errors": ["ParallelFrameworkError"],
    },
    __all__,
)
