"""The ``tenfold`` command line: core commands plus every system's, found through plugins.

Conventions shared by every command: ``--help`` everywhere; ``--json`` writes a
JSON document to stdout; logs go to stderr; exit 0 on success, 1 for a check that
ran and failed, 2 for bad usage or bad input, printed as one line without a
traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from tenfold.core import __version__
from tenfold.core._config_path import set_config_path
from tenfold.core.errors import TenfoldError

if TYPE_CHECKING:
    from typing import IO

    from tenfold.core.events import Bouncer
    from tenfold.core.plugins import CommandRef

__all__ = [
    "HTTP_URL",
    "Finite",
    "HttpUrl",
    "cli",
    "emit",
    "fail",
    "follow_decisions",
    "follow_options",
    "json_option",
    "main",
    "run",
    "server_cli_options",
    "shorten",
]

F = TypeVar("F", bound=Callable[..., Any])

json_option: Callable[[F], F] = click.option(
    "--json", "as_json", is_flag=True, help="Write a JSON document to stdout."
)


class HttpUrl(click.ParamType[str, Any]):
    """A base URL of an HTTP(S) server: ``http[s]://host[:port][/path]``, checked when parsed."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from urllib.parse import urlsplit

        text = str(value)
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            self.fail(f"{text!r} is not a URL ({exc})", param, ctx)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or len(text) > 2048
            or not text.isprintable()
            or " " in text
            or not text.isascii()
        ):
            self.fail(f"{text!r} is not an http:// or https:// URL", param, ctx)
        del port
        return text.rstrip("/")


HTTP_URL = HttpUrl()


class Finite(click.ParamType[float, Any]):
    """A finite number in [minimum, maximum]: a budget, timeout, interval or rate.

    ``nan`` and ``inf`` are refused (an infinite budget is no budget: leave the
    option out). The default range is 0 s to a year, within what timers and
    ``time_t`` hold; ``unit`` is named in the messages (``s``, ``/s``).
    """

    name = "number"

    def __init__(
        self,
        minimum: float = 0.0,
        maximum: float = 365 * 86_400.0,
        *,
        open_min: bool = False,
        unit: str = "s",
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.open_min = open_min
        self.unit = unit

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{str(value)[:40]!r} is not a number", param, ctx)
        unit = self.unit
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number (leave the option out for none)", param, ctx)
        if number < self.minimum or (self.open_min and number == self.minimum):
            if self.open_min and self.minimum == 0:
                self.fail(f"{number:g} {unit}: must be positive", param, ctx)
            low = "above" if self.open_min else "at least"
            self.fail(f"{number:g} {unit}: must be {low} {self.minimum:g} {unit}", param, ctx)
        if number > self.maximum:
            self.fail(f"{number:g} {unit}: must be at most {self.maximum:g} {unit}", param, ctx)
        return number


_json_written = False  # stdout already holds this command's JSON document


def emit(obj: Any, as_json: bool, text: str | Callable[[], str] | None = None) -> None:
    """Print ``obj`` as JSON (``--json``) or ``text`` (default: JSON, indented) for people."""
    global _json_written
    if as_json:
        click.echo(json.dumps(obj, default=str))
        _json_written = True
    elif text is None:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        click.echo(text() if callable(text) else text)


def follow_options(f: F) -> F:
    """``--decisions FILE``, ``--state FILE`` and ``--exit-at-eof``: a bouncer command's options.

    Every command that applies a decision stream (``autoblock nft-follow``, ``kernel xdp
    follow``) takes these three, passed to :func:`follow_decisions`.
    """
    f = click.option(
        "--exit-at-eof",
        is_flag=True,
        help="Return when the stream ends instead of staying to lift bans as they lapse.",
    )(f)
    f = click.option(
        "--state",
        "state_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Resume file: decisions at or below its ledger index are skipped; its bans still "
        "lapse.",
    )(f)
    return click.option(
        "--decisions",
        type=click.File("rb"),
        default="-",
        help="The decision stream: JSON lines, one decision each (default: stdin).",
    )(f)


def follow_decisions(
    bouncer: Bouncer, decisions: IO[bytes], state_path: Path | None, exit_at_eof: bool
) -> None:
    """Apply the stream to ``bouncer`` (:func:`tenfold.core.events.follow`), a line per change.

    Prints each ban, unban and lapse as it happens, flushed, so a pipe reader sees it at once.
    """
    from tenfold.core.events import Decision, FollowState, follow

    def show(what: str, item: Decision | str) -> None:
        if isinstance(item, Decision):
            click.echo(
                f"{item.action} {item.value} until {item.until:.0f} (ledger index {item.index})"
            )
        else:
            click.echo(f"expired {item}")
        sys.stdout.flush()

    follow(
        bouncer,
        decisions,
        state=FollowState.load(state_path),
        source=str(getattr(decisions, "name", "<stdin>")),
        linger=not exit_at_eof,
        on_change=show,
    )


def server_cli_options(default_port: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every ``serve`` command takes: where to listen, credentials, limits.

    Their values go to :func:`tenfold.core.server.options_from_cli`.
    """
    from tenfold.core._server_limits import MAX_BODY_BYTES, RATE_PER_S

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option(
                "--host",
                default="127.0.0.1",
                show_default=True,
                help="Address to bind; beyond loopback needs credentials.",
            ),
            click.option(
                "--port", type=click.IntRange(0, 65535), default=default_port, show_default=True
            ),
            click.option(
                "--credentials",
                "credentials_file",
                type=click.Path(path_type=Path, dir_okay=False),
                default=None,
                help="API keys file (tenfold credentials issue).",
            ),
            *(
                click.option(
                    f"--tls-{part}",
                    type=click.Path(path_type=Path, dir_okay=False),
                    default=None,
                    help=text,
                )
                for part, text in (
                    ("cert", "Server certificate (PEM) for mutual TLS."),
                    ("key", "Server key (PEM)."),
                    ("ca", "CA whose client certificates are accepted."),
                )
            ),
            click.option(
                "--rate",
                "rate_per_s",
                type=Finite(0.0, 1e9, open_min=True, unit="/s"),
                default=RATE_PER_S,
                show_default=True,
                help="Requests per second per client (burst: twice that).",
            ),
            click.option(
                "--max-body-bytes",
                type=click.IntRange(min=1),
                default=MAX_BODY_BYTES,
                show_default=True,
            ),
        ]
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def fail(message: str, code: int = 2) -> None:
    """Print one error line to stderr and exit (2: bad input, 1: failed check)."""
    click.echo(f"tenfold: error: {shorten(message)}", err=True)
    sys.exit(code)


class _LazyCommand(click.Command):
    """A system's command known by name and summary; its module is imported only when used."""

    def __init__(self, ref: CommandRef) -> None:
        super().__init__(ref.name, help=ref.summary, short_help=ref.summary)
        self._ref = ref
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            self._real = self._ref.load()
        return self._real


class _Group(click.Group):
    """The root group: core commands plus every system's, listed from the system plugins'
    command declarations (import strings) and imported only when invoked, so ``tenfold``
    never pays for another system's imports."""

    _lazy: dict[str, _LazyCommand] | None = None

    def _lazy_commands(self) -> dict[str, _LazyCommand]:
        if self._lazy is None:
            from tenfold.core.plugins import system_plugins

            self._lazy = {}
            plugins, _failed = system_plugins()
            for plugin in plugins:
                for ref in plugin.commands:
                    self._lazy.setdefault(ref.name, _LazyCommand(ref))
        return self._lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy_commands()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        return self._lazy_commands().get(cmd_name)

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
    if "bench" in cli.commands:
        return
    from tenfold.core._commands import core_commands

    for command in core_commands():
        cli.add_command(command)


_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _accept_negative_numbers() -> None:
    """Let ``-5`` and ``-0.5`` be arguments (``ledger get -1``) wherever no option has that name.

    click reads any token starting with ``-`` as an option; a number is never one of ours.
    """
    parser_class: Any = click.parser._OptionParser
    if getattr(parser_class, "_tenfold_negative_numbers", False):
        return
    original = parser_class._process_opts

    def process_opts(self: Any, arg: str, state: Any) -> None:
        if (
            _NEGATIVE_NUMBER.fullmatch(arg)
            and arg not in self._short_opt
            and arg not in self._long_opt
        ):
            state.largs.append(arg)
            return
        original(self, arg, state)

    parser_class._process_opts = process_opts
    parser_class._tenfold_negative_numbers = True


def _wants_json(argv: Sequence[str]) -> bool:
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


_LONG_TOKEN = re.compile(r"\S{160,}")
MAX_ERROR_CHARS = 1000


def shorten(message: str) -> str:
    """An error message fit for one line: long tokens cut (an input echoed whole can be
    megabytes), newlines folded, and the whole bounded."""

    def cut(match: re.Match[str]) -> str:
        token = match.group(0)
        return f"{token[:60]}... ({len(token):,} characters)"

    text = _LONG_TOKEN.sub(cut, " ".join(message.split()))
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _error(message: str, kind: str, code: int, as_json: bool) -> NoReturn:
    message = shorten(message)
    # With --json, stdout holds one document: the error is that document unless the
    # command already wrote its result (a check that ran and failed): then stderr.
    if as_json and not _json_written:
        click.echo(json.dumps({"error": message, "kind": kind, "exit_code": code}))
    else:
        click.echo(f"tenfold: error: {message}", err=True)
    sys.exit(code)


def run(command: click.Command, argv: Sequence[str] | None = None, *, prog_name: str) -> None:
    """Run a click command as a program: every entry point of the project goes through here.

    Errors become one line on stderr (or ``{"error", "kind", "exit_code"}`` on stdout with
    ``--json``) and an exit code: 2 bad usage or input, 1 a check that ran and failed, 130
    interrupted; a bare group prints its help and exits 0; no traceback for user errors.
    Returns normally when the command succeeds.
    """
    global _json_written
    _json_written = False
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    _accept_negative_numbers()
    try:
        command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(0)
    except (click.exceptions.Abort, KeyboardInterrupt):
        if as_json:
            _error("interrupted", "Interrupted", 130, as_json)
        click.echo("tenfold: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _error(exc.format_message(), "UsageError", 2, as_json)
    except TenfoldError as exc:
        _error(str(exc), type(exc).__name__, exc.exit_code, as_json)
    except RecursionError:
        # Only user input nests this deep; a parser that does not bound its depth yet still
        # gets a clear answer instead of a thousand-line traceback.
        _error("input is nested too deeply to parse", "InputError", 2, as_json)
    except UnicodeDecodeError as exc:
        _error(
            f"input is not valid UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} at "
            f"offset {exc.start})",
            "InputError",
            2,
            as_json,
        )
    except BrokenPipeError:
        # The reader went away (``| head``): not an error; silence the flush at exit.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``tenfold``: the root group with core and system commands."""
    _register_core_commands()
    run(cli, argv, prog_name="tenfold")
