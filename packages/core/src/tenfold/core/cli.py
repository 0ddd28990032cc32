"""The ``tenfold`` command line: core commands plus every system's, found through plugins.

Conventions shared by every command: ``--help`` everywhere; ``--json`` writes a
JSON document to stdout; logs go to stderr; exit 0 on success, 1 for a check that
ran and failed, 2 for bad usage or bad input, printed as one line without a
traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tenfold.core import __version__
from tenfold.core.config import set_config_path
from tenfold.core.errors import TenfoldError

__all__ = ["cli", "emit", "fail", "json_option", "main"]

F = TypeVar("F", bound=Callable[..., Any])

json_option: Callable[[F], F] = click.option(
    "--json", "as_json", is_flag=True, help="Write a JSON document to stdout."
)


def emit(obj: Any, as_json: bool, text: str | Callable[[], str] | None = None) -> None:
    """Print ``obj`` as JSON (``--json``) or ``text`` (default: JSON, indented) for people."""
    if as_json:
        click.echo(json.dumps(obj, default=str))
    elif text is None:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        click.echo(text() if callable(text) else text)


def fail(message: str, code: int = 2) -> None:
    """Print one error line to stderr and exit (2: bad input, 1: failed check)."""
    click.echo(f"tenfold: error: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Adds the systems' commands from their plugins the first time they are needed."""

    _loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from tenfold.core.plugins import system_plugins

        plugins, _failed = system_plugins()
        for plugin in plugins:
            if plugin.commands is None:
                continue
            for command in plugin.commands():
                if command.name and command.name not in self.commands:
                    self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tenfold")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file (default: $TENFOLD_CONFIG or ./tenfold.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log lines on stderr.")
def cli(config: Path | None, verbose: int) -> None:
    """tenfold: ten systems and a shared core."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    set_config_path(config)


def _register_core_commands() -> None:
    from tenfold.core._commands import core_commands

    for command in core_commands():
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, mapping errors to exit codes without tracebacks."""
    _register_core_commands()
    try:
        cli.main(args=argv, prog_name="tenfold", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("tenfold: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"tenfold: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except TenfoldError as exc:
        click.echo(f"tenfold: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("tenfold: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
