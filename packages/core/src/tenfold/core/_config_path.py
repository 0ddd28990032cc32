"""Which configuration file is in force; kept apart from :mod:`tenfold.core.config` so the
CLI can record ``--config`` without importing pydantic."""

from __future__ import annotations

import os
from pathlib import Path

from tenfold.core.errors import ConfigError

ENV_CONFIG = "TENFOLD_CONFIG"
DEFAULT_FILE = "tenfold.toml"

_explicit_path: Path | None = None


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
