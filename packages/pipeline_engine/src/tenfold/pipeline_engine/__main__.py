"""``python -m tenfold.pipeline_engine run|check PIPELINE``.

The same commands as ``tenfold pipeline``, without loading every other
system's plugin first: what an engine process (or a supervisor restarting one)
should exec. Errors follow the tenfold CLI: one line on stderr, exit 2.
"""

from __future__ import annotations

import sys

import click

from tenfold.core.errors import TenfoldError
from tenfold.pipeline_engine.cli import pipeline_group


def main(argv: list[str] | None = None) -> None:
    from tenfold.pipeline_engine._supervisor import die_with_supervisor

    die_with_supervisor()
    try:
        pipeline_group.main(
            args=argv, prog_name="python -m tenfold.pipeline_engine", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"tenfold: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except TenfoldError as exc:
        click.echo(f"tenfold: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
