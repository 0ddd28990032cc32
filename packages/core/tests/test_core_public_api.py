"""One test of every system's public face (and the core's): what ``__init__`` exports.

Each public name is exported once and resolves; ``__all__`` is the whole of ``dir()``
(no private module or helper leaks, even after the names have loaded); every public
class and function has a docstring, and every public function has type hints.
"""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any

import pytest

from tenfold.core.plugins import system_names

PACKAGES = sorted(f"tenfold.{name}" for name in system_names())


def test_every_system_is_covered() -> None:
    assert len(PACKAGES) >= 11 and "tenfold.core" in PACKAGES


def _public(package: str) -> tuple[types.ModuleType, list[str]]:
    module = importlib.import_module(package)
    names = list(module.__all__)
    return module, names


@pytest.mark.parametrize("package", PACKAGES)
def test_names_are_exported_once_and_resolve(package: str) -> None:
    module, names = _public(package)
    assert len(names) == len(set(names)), f"{package}: a name is listed twice in __all__"
    for name in names:
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_nothing_private_leaks(package: str) -> None:
    module, names = _public(package)
    for name in names:
        getattr(module, name)  # load everything: a lazy import must not widen the API
    visible = {n for n in dir(module) if n.isidentifier() and not n.startswith("__")}
    extra = sorted(visible - set(names))
    assert not extra, f"{package} shows names outside __all__: {extra}"


def _undocumented(obj: Any) -> bool:
    return not (inspect.getdoc(obj) or "").strip()


def _missing_hints(fn: Any) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    missing = [
        p.name
        for p in signature.parameters.values()
        if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")
    ]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


@pytest.mark.parametrize("package", PACKAGES)
def test_public_callables_are_documented_and_typed(package: str) -> None:
    module, names = _public(package)
    problems = []
    for name in names:
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and _undocumented(obj):
            problems.append(f"{name}: no docstring")
        if inspect.isfunction(obj) and (missing := _missing_hints(obj)):
            problems.append(f"{name}: no type hints for {', '.join(missing)}")
    assert not problems, f"{package}: " + "; ".join(problems)
