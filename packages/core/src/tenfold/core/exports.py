"""Lazy public exports (PEP 562) for a system's ``__init__``: one helper, used by every system.

A system's ``__init__.py`` names its public API in one table, module by module; a name is
imported on first use, so ``import tenfold.x`` (and listing every system's CLI commands)
costs almost nothing, while ``from tenfold.x import Engine`` behaves as an eager import.
The names also appear under ``if TYPE_CHECKING:`` so type checkers see them::

    if TYPE_CHECKING:
        from tenfold.x._engine import Engine as Engine
    __all__ = ["Engine"]
    __getattr__, __dir__ = lazy_exports(__name__, {"._engine": ["Engine"]}, __all__)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]], public: Iterable[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public names are listed per module.

    ``exports`` maps a module (absolute, or relative like ``"._engine"``) to the names it
    provides; a name equal to the module's last component exports the module itself
    (``{".errors": ["errors"]}``). ``public`` is the package's ``__all__``: it must list
    exactly the exported names, each once, or this raises :class:`ValueError` when the
    package is imported (a broken API never ships quietly; ruff keeps ``__all__`` sorted).
    """
    table: dict[str, str] = {}
    for module, names in exports.items():
        target = importlib.util.resolve_name(module, package) if module.startswith(".") else module
        for name in names:
            if name in table:
                raise ValueError(f"{package}: {name!r} is exported twice")
            table[name] = target
    listed = list(public)
    if len(listed) != len(set(listed)):
        raise ValueError(f"{package}: __all__ lists a name twice")
    defined = vars(sys.modules[package]) if package in sys.modules else {}
    unlisted = sorted(set(table) - set(listed))
    unknown = sorted(n for n in set(listed) - set(table) if n not in defined)
    if unlisted or unknown:
        raise ValueError(f"{package}: __all__ and the export table differ on {unlisted + unknown}")
    names_in_dir = sorted(listed)

    def getattr_(name: str) -> object:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(target)
        if target.rsplit(".", 1)[-1] == name and not hasattr(module, name):
            value: object = module
        else:
            value = getattr(module, name)
        setattr(sys.modules[package], name, value)  # the next access skips this function
        return value

    def dir_() -> list[str]:
        return list(names_in_dir)

    return getattr_, dir_
