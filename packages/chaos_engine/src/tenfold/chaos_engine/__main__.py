"""``python -m tenfold.chaos_engine run|validate|recover``: the chaos commands on their own.

The same commands, messages and exit codes as ``tenfold chaos`` (through the core's
runner), without listing every other system's commands first.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from tenfold.chaos_engine.cli import chaos
    from tenfold.core.cli import run

    run(chaos, argv, prog_name="tenfold chaos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
