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

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tenfold.core.errors import ConfigError

__all__ = ["ENV_CONFIG", "Section", "config_path", "load_section", "read_toml"]

ENV_CONFIG = "TENFOLD_CONFIG"
DEFAULT_FILE = "tenfold.toml"

M = TypeVar("M", bound=BaseModel)

_explicit_path: Path | None = None


class Section(BaseModel):
    """Base for configuration models: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def set_config_path(path: Path | None) -> None:
    """Make ``path`` the configuration file for this process (the CLI's ``--config``)."""
    global _explicit_path
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    _explicit_path = path


def config_path() -> Path | None:
    """The configuration file in force: ``--config``, ``$TENFOLD_CONFIG``, tenfold.toml, or none."""
    if _explicit_path is not None:
        return _explicit_path
    env = os.environ.get(ENV_CONFIG)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from ${ENV_CONFIG})")
        return path
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


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


def load_section(section: str, model: type[M], *, path: Path | None = None) -> M:
    """Load and validate ``[section]`` of the configuration into ``model``.

    Raises :class:`ConfigError` naming the file, section and key on any problem.
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
    env = _env_overrides(section)
    if env:
        data = _merge(data, env)
        source = f"{source} + environment"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(section, exc, source)) from None
