"""Graph shapes used by the benchmarks, the CLI and the tests: stencil and flat graphs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

Dsk = dict[Any, Any]


def inc_sum(*values: int) -> int:
    """A trivial task: the sum of its inputs plus one."""
    return sum(values) + 1


def one() -> int:
    return 1


def sleep_ms(ms: float) -> Callable[..., int]:
    """A task that sleeps (I/O stand-in) and returns 1 plus its inputs."""

    def task(*values: int) -> int:
        time.sleep(ms / 1000)
        return sum(values) + 1

    return task


def spin(iterations: int) -> Callable[..., int]:
    """A CPU-bound task (pure Python loop) that holds the GIL."""

    def task(*values: int) -> int:
        acc = 0
        for k in range(iterations):
            acc += k * k
        return (acc + sum(values)) % 1000003

    return task


def stencil_shape(n_tasks: int) -> tuple[int, int]:
    """Width and depth of a near-square stencil with about ``n_tasks`` tasks."""
    width = max(1, round(math.sqrt(n_tasks)))
    depth = max(1, round(n_tasks / width))
    return width, depth


def stencil_dask(n_tasks: int, fn: Callable[..., Any] = inc_sum) -> Dsk:
    """A 1-D stencil: task (layer, i) depends on (layer-1, i-1 .. i+1), as a Dask dict."""
    width, depth = stencil_shape(n_tasks)
    dsk: Dsk = {}
    for i in range(width):
        dsk[f"s-0-{i}"] = (fn,)
    for layer in range(1, depth):
        for i in range(width):
            deps = [f"s-{layer - 1}-{j}" for j in (i - 1, i, i + 1) if 0 <= j < width]
            dsk[f"s-{layer}-{i}"] = (fn, *deps)
    return dsk


def flat_dask(n_tasks: int, fn: Callable[..., Any] = inc_sum) -> Dsk:
    """``n_tasks`` independent tasks, as a Dask dict."""
    return {f"f-{i}": (fn,) for i in range(n_tasks)}


def stencil_expected(n_tasks: int) -> int:
    """The sum of the last layer's results of ``stencil_dask(n_tasks, inc_sum)``, computed inline."""
    width, depth = stencil_shape(n_tasks)
    row = [1] * width
    for _ in range(1, depth):
        row = [sum(row[max(0, i - 1) : i + 2]) + 1 for i in range(width)]
    return sum(row)


def last_layer(n_tasks: int) -> list[str]:
    width, depth = stencil_shape(n_tasks)
    return [f"s-{depth - 1}-{i}" for i in range(width)]
