"""Declaring benchmark rows: as data, with the document's scaling figures, with peers' versions.

:func:`declared_rows` reads a system's rows from a TOML file beside its bench
module, one table per family; :func:`scaling_seed` finds a scaling row's figure
in the document; :func:`dist_version` and :func:`command_version` give the
installed peers' versions its subjects' labels show.

A system's bench module keeps the code (each side's ``prepare``); what a row *is*
(its name, unit, document row, rounds, what one unit counts, the fairness
sentence) is data, in ``<module>.toml`` beside it::

    [phrases]                     # shared wording, written {spawn} in any row's text
    spawn = "the peer starts a process per fault"

    [family.throughput]           # the rows of one document table
    table = "Throughput Benchmarks"   # keys here are defaults of every row below
    rounds = 3

    [[family.throughput.row]]
    name = "cpu_fault_inject"
    unit = "faults"
    ours = { name = "tenfold engine", prepare = "_ours_cpu" }
    peer = { name = "stress-ng", prepare = "_peer_cpu", sequential = true }
    row = "CPU Fault Injection"
    fairness = "both start a CPU hog ...; {spawn}"

Every key is a :class:`~tenfold.core.bench.Scenario` field, spelled the same. A
side's ``prepare`` is an attribute of the bench module (``"_ours_cpu"``), an
import string (``"pkg.mod:attr"``), or a factory called with arguments
(``{ factory = "_ours_sized", args = [1000] }``; an array argument is passed as
a tuple). ``seed`` is left out for the document's figure, ``"none"`` for a row
without one, or a table of
:func:`~tenfold.core.bench.doc_seed` arguments (``{ section = "Horizontal
Scaling", row = "Chaos Engine", column = "2 Nodes" }``) for a figure from
another part of the document. An unknown key is an error naming the row.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.core.errors import ConfigError

if TYPE_CHECKING:
    from tenfold.core.bench import Scenario, Seed, Subject

__all__ = [
    "NODE_COUNTS",
    "command_version",
    "declared_rows",
    "dist_version",
    "scaling_seed",
]

_SIDE_KEYS = {"name", "prepare", "sequential"}


def _resolve(target: str, module: Any) -> Any:
    if ":" in target:
        from tenfold.core.plugins import import_object

        return import_object(target)
    try:
        return getattr(module, target)
    except AttributeError:
        raise ConfigError(f"{module.__name__} has no {target!r}") from None


def _frozen(value: object) -> object:
    """A TOML array as the tuple a factory's sizes are written as in Python."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _prepare(spec: object, module: Any, where: str) -> Callable[..., Any]:
    if isinstance(spec, str):
        fn: Callable[..., Any] = _resolve(spec, module)
        return fn
    if isinstance(spec, dict) and set(spec) <= {"factory", "args", "kwargs"} and "factory" in spec:
        factory = _resolve(spec["factory"], module)
        args = [_frozen(a) for a in spec.get("args", ())]
        kwargs = {k: _frozen(v) for k, v in spec.get("kwargs", {}).items()}
        made: Callable[..., Any] = factory(*args, **kwargs)
        return made
    raise ConfigError(f"{where}: prepare must be a name, an import string or a factory table")


def _subject(spec: object, module: Any, phrases: Mapping[str, str], where: str) -> Subject:
    from tenfold.core.bench import Subject

    if not isinstance(spec, dict) or not {"name", "prepare"} <= set(spec) <= _SIDE_KEYS:
        raise ConfigError(f"{where}: a side is {{ name = ..., prepare = ... [, sequential] }}")
    return Subject(
        str(_text(spec["name"], phrases)),
        _prepare(spec["prepare"], module, where),
        sequential=bool(spec.get("sequential", False)),
    )


def _seed(spec: object, where: str) -> Any:
    from tenfold.core.bench import doc_seed

    if isinstance(spec, str) and spec in ("doc", "none"):
        return None if spec == "none" else "doc"
    if isinstance(spec, dict) and {"section", "row"} <= set(spec):
        return doc_seed(**spec)
    raise ConfigError(f"{where}: seed is 'none' or a table of doc_seed arguments")


def _text(value: object, phrases: Mapping[str, str]) -> object:
    if isinstance(value, str):
        for key, phrase in phrases.items():
            value = value.replace("{" + key + "}", phrase)
    return value


def _scenario(
    fields: dict[str, Any], module: Any, phrases: Mapping[str, str], where: str
) -> Scenario:
    from tenfold.core.bench import Scenario

    known = {f.name for f in dataclasses.fields(Scenario)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    kwargs: dict[str, Any] = {k: _text(v, phrases) for k, v in fields.items()}
    kwargs["ours"] = _subject(fields.get("ours"), module, phrases, where)
    if "peer" in fields:
        kwargs["peer"] = _subject(fields["peer"], module, phrases, where)
    if "seed" in fields:
        kwargs["seed"] = _seed(fields["seed"], where)
    if "modes" in fields:
        kwargs["modes"] = tuple(fields["modes"])
    return Scenario(**kwargs)


def declared_rows(module_name: str, **phrases: str) -> dict[str, list[Scenario]]:
    """The scenarios declared in ``<module>.toml`` beside module ``module_name``, by family.

    Families and rows keep the file's order; the caller lists them, with any rows it
    builds in code, in the order the report shows them. ``phrases`` add wording known
    only at run time (an installed peer's version), written ``{name}`` in the file like
    the file's own ``[phrases]``, in texts and side names alike.
    """
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    path = Path(module.__file__ or "").with_suffix(".toml")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    phrases = {**data.get("phrases", {}), **phrases}
    out: dict[str, list[Scenario]] = {}
    for family, table in data.get("family", {}).items():
        defaults = {k: v for k, v in table.items() if k != "row"}
        out[family] = [
            _scenario({**defaults, **row}, module, phrases, f"{path.name} {row.get('name', '?')}")
            for row in table.get("row", [])
        ]
    return out


def dist_version(dist: str) -> str:
    """An installed distribution's version for a subject's label (``"?"`` when it is absent)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def command_version(name: str, *args: str, timeout_s: float = 10.0) -> str | None:
    """What an installed command prints for its version (``name *args``), stripped.

    ``None`` when the command is not on the PATH; ``""`` when it cannot be run or
    does not answer within ``timeout_s``. The caller trims the tool's own wording.
    """
    import shutil
    import subprocess

    tool = shutil.which(name)
    if tool is None:
        return None
    try:
        run = subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return run.stdout.strip()


NODE_COUNTS = (1, 2, 4, 8)
"""The node counts of the document's Horizontal Scaling table (its columns)."""


def scaling_seed(section: str, system: str, n: int) -> Seed | None:
    """The document's scaling figure for ``system`` on ``n`` nodes or cores.

    ``section`` is ``"Horizontal Scaling"`` (columns "1 Node" ... "8 Nodes") or
    ``"Vertical Scaling"`` ("2 Cores" ... "16 Cores"); ``None`` where the table has
    no such column (one core).
    """
    unit = "Node" if section == "Horizontal Scaling" else "Core"
    from tenfold.core.bench import doc_seed

    return doc_seed(section, system, column=f"{n} {unit}" + ("" if n == 1 else "s"))
