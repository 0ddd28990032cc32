"""The ``tenfold`` command line: core commands plus every system's, found through plugins.

Conventions shared by every command: ``--help`` everywhere; ``--json`` writes a
JSON document to stdout; logs go to stderr; exit 0 on success, 1 for a check that
ran and failed, 2 for bad usage or bad input, printed as one line without a
traceback.
"""

from __future__ import annotations

import importlib.metadata
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


COMMANDS_GROUP = "tenfold.commands"


class _LazyCommand(click.Command):
    """A system's command known by name from its entry point; imported only when used."""

    def __init__(self, name: str, target: importlib.metadata.EntryPoint, summary: str) -> None:
        super().__init__(name, help=summary, short_help=summary)
        self._target = target
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            loaded = self._target.load()
            if not isinstance(loaded, click.Command):
                raise TenfoldError(f"entry point {self._target.value} is not a click command")
            self._real = loaded
        return self._real


class _Group(click.Group):
    """Adds the systems' commands. Commands a system declares in the ``tenfold.commands``
    entry-point group are listed by name and imported only when invoked (so ``tenfold``
    never pays for another system's imports); any other command is found by loading the
    system plugins."""

    _plugins_loaded = False
    _lazy: dict[str, _LazyCommand] | None = None

    def _lazy_commands(self) -> dict[str, _LazyCommand]:
        if self._lazy is None:
            self._lazy = {}
            for ep in importlib.metadata.entry_points(group=COMMANDS_GROUP):
                summary = ""
                if ep.dist is not None:
                    summary = str(ep.dist.metadata["Summary"] or "").split(":", 1)[-1].strip()
                self._lazy.setdefault(ep.name, _LazyCommand(ep.name, ep, summary))
        return self._lazy

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from tenfold.core.plugins import system_plugins

        plugins, _failed = system_plugins()
        for plugin in plugins:
            if plugin.commands is None:
                continue
            for command in plugin.commands():
                if command.name and command.name not in self.commands:
                    self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy_commands()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        lazy = self._lazy_commands().get(cmd_name)
        if lazy is not None:
            return lazy
        self._load_plugins()
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, _LazyCommand):
            command = command.real()
        return name, command, rest


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
