"""``tenfold parallel``: run a graph file on any backend, or measure the executor."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import click

from tenfold.core.cli import emit, json_option
from tenfold.parallel_framework._backends import BACKENDS
from tenfold.parallel_framework.errors import ParallelFrameworkError

_backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=None,
    help="Where tasks run (default: [parallel_framework] backend, else threads).",
)
_workers_option = click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker threads or processes."
)


def load_graph_file(path: Path) -> Any:
    """Import ``path`` and return its ``graph`` (or the result of its ``build_graph()``)."""
    if not path.is_file():
        raise ParallelFrameworkError(f"graph file not found: {path}")
    name = f"tenfold_graph_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ParallelFrameworkError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so worker processes can rebuild its functions
    try:
        spec.loader.exec_module(module)
    except ParallelFrameworkError:
        raise
    except Exception as exc:
        raise ParallelFrameworkError(
            f"{path}: failed to import: {type(exc).__name__}: {exc}"
        ) from None
    if hasattr(module, "build_graph"):
        return module.build_graph()
    if hasattr(module, "graph"):
        return module.graph
    raise ParallelFrameworkError(
        f"{path}: defines neither 'graph' (a Graph, a Dask-style dict or a list of "
        "(key, fn, deps)) nor 'build_graph()'"
    )


@click.group(name="parallel")
def parallel() -> None:
    """Parallel Architecture Framework: a work-stealing DAG executor, local or on Ray and Dask."""


@parallel.command(name="run")
@click.argument("graph_file", type=click.Path(path_type=Path, dir_okay=False))
@_backend_option
@_workers_option
@click.option("--address", default=None, help="Ray or Dask scheduler address (host:port).")
@click.option("--key", "keys", multiple=True, help="Only report (and keep) these keys; repeatable.")
@json_option
def run_command(
    graph_file: Path,
    backend: str | None,
    workers: int | None,
    address: str | None,
    keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run the task graph defined in GRAPH_FILE and print its results and metrics.

    GRAPH_FILE defines `graph` (a Graph, a Dask-style dict or a list of (key, fn, deps))
    or `build_graph()`. Exit 1 when a task failed.
    """
    from tenfold.core.progress import Progress
    from tenfold.parallel_framework._api import Executor

    graph = load_graph_file(graph_file)
    with (
        Progress("parallel run", unit="s", quiet=as_json, clock=True, interval_s=10),
        Executor(backend, workers, address=address) as executor,
    ):
        result = executor.run(graph, keys or None)
    doc = {
        "results": {repr(k): repr(result[k]) for k in result if k not in result.failures},
        "failures": {repr(k): str(e) for k, e in result.failures.items()},
        "metrics": result.metrics.as_dict(),
    }

    def text() -> str:
        lines = [f"{k} = {v}" for k, v in doc["results"].items()]
        lines += [f"{k} FAILED: {e}" for k, e in doc["failures"].items()]
        m = result.metrics
        lines.append(
            f"{m.tasks} tasks on {m.backend} x{m.workers} in {m.wall_s * 1000:.1f} ms "
            f"({m.tasks_per_s:,.0f} tasks/s, steal rate {m.steal_rate:.1%})"
        )
        return "\n".join(lines)

    emit(doc, as_json, text)
    result.raise_first()


@parallel.command(name="bench")
@click.option("--tasks", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option(
    "--shape", type=click.Choice(["stencil", "flat"]), default="stencil", show_default=True
)
@_backend_option
@_workers_option
@click.option(
    "--peer/--no-peer", default=True, help="Also time dask.threaded.get on the same graph."
)
@json_option
def bench_command(
    tasks: int, shape: str, backend: str | None, workers: int | None, peer: bool, as_json: bool
) -> None:
    """Time one graph of trivial tasks on our executor (and on dask.threaded, same graph)."""
    from tenfold.parallel_framework._api import Executor
    from tenfold.parallel_framework._workloads import flat_dask, stencil_dask

    dsk = stencil_dask(tasks) if shape == "stencil" else flat_dask(tasks)
    n = len(dsk)
    with Executor(backend, workers) as executor:
        executor.run(dsk)  # warm-up (worker start-up, imports)
        t0 = time.perf_counter()
        result = executor.run(dsk)
        ours_s = time.perf_counter() - t0
    doc: dict[str, Any] = {
        "shape": shape,
        "tasks": n,
        # wall time end to end (compiling the Dask dict included); the executor's own
        # figures, which start once the plan is compiled, are under "metrics"
        "ours": {
            "backend": result.metrics.backend,
            "workers": result.metrics.workers,
            "wall_s": ours_s,
            "tasks_per_s": n / ours_s,
            "metrics": result.metrics.as_dict(),
        },
    }
    if peer:
        import importlib.metadata

        import dask.threaded

        keys = list(dsk)
        t0 = time.perf_counter()
        dask.threaded.get(dsk, keys, num_workers=workers or executor.workers)
        peer_s = time.perf_counter() - t0
        doc["peer"] = {
            "name": f"dask {importlib.metadata.version('dask')} threaded",
            "wall_s": peer_s,
            "tasks_per_s": n / peer_s,
        }
        doc["speedup_vs_peer"] = peer_s / ours_s

    def text() -> str:
        ours = doc["ours"]
        out = [f"{shape} graph, {n} tasks"]
        out.append(
            f"  tenfold {ours['backend']} x{ours['workers']}: {ours['wall_s'] * 1000:.1f} ms, {ours['tasks_per_s']:,.0f} tasks/s"
        )
        if "peer" in doc:
            p = doc["peer"]
            out.append(
                f"  {p['name']}: {p['wall_s'] * 1000:.1f} ms, {p['tasks_per_s']:,.0f} tasks/s"
            )
            out.append(f"  speedup: {doc['speedup_vs_peer']:.1f}x")
        return "\n".join(out)

    emit(doc, as_json, text)
