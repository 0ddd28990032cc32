"""``python -m tenfold.attestation_authority``: the ``tenfold attest`` commands on their own.

Daemons (agent, registrar, verifier) start here without loading every other
system's commands; errors go through the core's runner, as for ``tenfold``.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> None:
    from tenfold.attestation_authority.cli import attest
    from tenfold.core.cli import run

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run(attest, argv, prog_name="tenfold attest")


if __name__ == "__main__":
    main()
