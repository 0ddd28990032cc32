"""``python -m tenfold.chaos_engine run|validate|recover``: the chaos commands without the other systems.

Same exit codes and one-line errors as ``tenfold chaos``; it skips the scan of
every system's plugin, so it starts as fast as this package alone.
"""

from __future__ import annotations

import sys

import click

from tenfold.chaos_engine.cli import chaos
from tenfold.core.errors import TenfoldError


def main(argv: list[str] | None = None) -> int:
    try:
        chaos.main(args=argv, prog_name="tenfold chaos", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"tenfold: error: {exc.format_message()}", err=True)
        return 2
    except TenfoldError as exc:
        click.echo(f"tenfold: error: {exc}", err=True)
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("tenfold: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
