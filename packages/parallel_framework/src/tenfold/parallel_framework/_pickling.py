"""Making sure task functions can be rebuilt in another process."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle


def ship_module_by_value(fn: Callable[..., Any]) -> None:
    """Send ``fn``'s module by value when a worker could not import it by name.

    cloudpickle sends functions of imported modules by reference; a module loaded
    from a file outside ``sys.path`` (a graph script, a test module) would then
    fail to import in the worker, so its functions travel by value instead.
    """
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is None or module.__name__ == "__main__" or module in _by_value:
        return
    origin = getattr(getattr(module, "__spec__", None), "origin", None)
    if not origin or origin in ("built-in", "frozen"):
        return
    top = module.__name__.partition(".")[0]
    for entry in sys.path:
        # '' and relative entries name the current directory, which a worker may not
        # share (Dask workers run in a scratch directory): only absolute ones count.
        if not entry or not os.path.isabs(entry):
            continue
        base = Path(entry)
        if (base / top).is_dir() or (base / f"{top}.py").is_file():
            return
    cloudpickle.register_pickle_by_value(module)
    _by_value.add(module)


_by_value: set[Any] = set()
