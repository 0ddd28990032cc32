"""``python -m tenfold.attestation_authority``: the ``tenfold attest`` commands on their own.

Daemons (agent, registrar, verifier) start here without loading every other
system's commands; errors map to the same one-line messages and exit codes as
the ``tenfold`` CLI.
"""

from __future__ import annotations

import logging
import sys

import click

from tenfold.attestation_authority.cli import attest
from tenfold.core.errors import TenfoldError


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        attest.main(args=argv, prog_name="tenfold attest", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"tenfold: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except TenfoldError as exc:
        click.echo(f"tenfold: error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
