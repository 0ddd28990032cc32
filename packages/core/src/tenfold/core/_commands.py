"""Core subcommands: bench, profile, plugins, services."""

from __future__ import annotations

from collections.abc import Sequence

import click


def core_commands() -> Sequence[click.Command]:
    return []
