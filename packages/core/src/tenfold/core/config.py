"""Typed configuration over ``tenfold.toml`` with environment overrides.

Each system owns one top-level section (``[chaos_engine]``, ``[compiler]``, ...)
and a pydantic model for it. :func:`load_section` reads only that section, so a
typo in another system's section never breaks this one, while an unknown key in
this one is an error that names the key.

Precedence, lowest first: the model's defaults, the TOML file, then environment
variables ``TENFOLD_<SECTION>__<KEY>[__<SUBKEY>...]`` (values parsed as TOML
scalars when they can be, else kept as strings).
"""

from __future__ import annotations

import difflib
import functools
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tenfold.core._config_path import DEFAULT_FILE, ENV_CONFIG, config_path, set_config_path
from tenfold.core.errors import ConfigError

__all__ = [
    "DEFAULT_FILE",
    "ENV_CONFIG",
    "Section",
    "check_sections",
    "config_path",
    "effective_values",
    "known_sections",
    "load_section",
    "read_toml",
    "set_config_path",
]

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """Base for configuration models: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a one-line :class:`ConfigError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(section: str) -> dict[str, Any]:
    prefix = f"TENFOLD_{section.upper()}__"
    out: dict[str, Any] = {}
    for key, raw in os.environ.items():
        if not key.startswith(prefix):
            continue
        parts = [p.lower() for p in key[len(prefix) :].split("__") if p]
        if not parts:
            continue
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _env_value(raw)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(section: str, exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}' in [{section}]"
    if err["type"] == "missing":
        return f"{source}: [{section}] is missing required key '{loc}'"
    return f"{source}: [{section}] {loc}: {err['msg']} (got {err.get('input')!r})"


@functools.cache
def known_sections() -> dict[str, str]:
    """Every system's configuration section and its model (import string), from the plugins."""
    from tenfold.core.plugins import system_plugins

    plugins, _failed = system_plugins()
    return {p.config[0]: p.config[1] for p in plugins if p.config is not None}


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _env_sections() -> Iterator[tuple[str, str]]:
    """``(variable, section)`` for each ``TENFOLD_<SECTION>__<KEY>`` variable set."""
    for key in os.environ:
        if key.startswith("TENFOLD_") and "__" in key[len("TENFOLD_") :]:
            yield key, key[len("TENFOLD_") :].split("__", 1)[0].lower()


def check_sections(doc: Mapping[str, Any], source: str, sections: list[str] | None = None) -> None:
    """Refuse a section no system owns, in ``doc`` (a parsed file) or in the environment.

    A typo'd ``[contract_compiler.performance]`` would otherwise be ignored and its values
    silently lost; the error names the section and the closest known one.
    """
    known = sorted(known_sections()) if sections is None else sections
    for name in doc:
        if name not in known:
            raise ConfigError(
                f"{source}: unknown section [{name}]{_did_you_mean(name, known)}; "
                f"known: {', '.join(known)}"
            )
    for variable, section in _env_sections():
        if section not in known:
            raise ConfigError(
                f"environment variable {variable}: unknown section {section!r}"
                f"{_did_you_mean(section, known)}"
            )


@functools.cache
def _checked(file: Path | None, mtime_ns: int, env: tuple[tuple[str, str], ...]) -> None:
    doc = read_toml(file) if file is not None else {}
    check_sections(doc, str(file) if file is not None else "environment")


def _check_once(file: Path | None) -> None:
    mtime = file.stat().st_mtime_ns if file is not None else 0
    _checked(file, mtime, tuple(sorted(_env_sections())))


def load_section(section: str, model: type[M], *, path: Path | None = None) -> M:
    """Load and validate ``[section]`` of the configuration into ``model``.

    Raises :class:`ConfigError` naming the file, section and key on any problem: a bad
    value, an unknown key in this section, or a section (in the file or a
    ``TENFOLD_<SECTION>__<KEY>`` variable) that no system owns.
    """
    file = path if path is not None else config_path()
    data: dict[str, Any] = {}
    source = "defaults"
    if file is not None:
        doc = read_toml(file)
        raw = doc.get(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: [{section}] must be a table, got {type(raw).__name__}")
        data = raw
        source = str(file)
    if section in known_sections():
        _check_once(file)
    env = _env_overrides(section)
    if env:
        data = _merge(data, env)
        source = f"{source} + environment"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(section, exc, source)) from None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def effective_values(section: str, *, path: Path | None = None) -> list[tuple[str, Any, str]]:
    """``(key, value, source)`` for every setting of ``section`` after defaults, file and
    environment; ``source`` is ``default``, the file's path, or the variable's name."""
    from tenfold.core.plugins import import_object

    sections = known_sections()
    if section not in sections:
        known = sorted(sections)
        raise ConfigError(
            f"unknown section {section!r}{_did_you_mean(section, known)}; known: {', '.join(known)}"
        )
    model: type[BaseModel] = import_object(sections[section])
    file = path if path is not None else config_path()
    loaded = load_section(section, model, path=file)
    from_file: dict[str, Any] = {}
    if file is not None:
        raw = read_toml(file).get(section, {})
        from_file = _flatten(raw) if isinstance(raw, dict) else {}
    prefix = f"TENFOLD_{section.upper()}__"
    from_env = {
        "__".join(p.lower() for p in key[len(prefix) :].split("__") if p).replace("__", "."): key
        for key in os.environ
        if key.startswith(prefix)
    }
    rows = []
    for key, value in sorted(_flatten(loaded.model_dump(mode="json")).items()):
        source = from_env.get(key) or (str(file) if key in from_file else "default")
        rows.append((key, value, source))
    return rows
