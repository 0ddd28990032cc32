"""``python -m tenfold.chaos_engine run|validate|recover``: the chaos commands without the other systems.

Same exit codes and one-line errors as ``tenfold chaos``; it skips the scan of
every system's plugin, so it starts as fast as this package alone. A plain
``run EXPERIMENT [--json] [--events] [--journal-dir DIR] [--seed N]`` does not
even import click (a tenth of the start-up): anything else — ``--help``, a
typo, a bad value — goes through the click command, which owns every message.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def _plain_run(argv: list[str]) -> dict[str, Any] | None:
    """The options of a well-formed ``run`` command line, or None to let click parse it."""
    if argv[:1] != ["run"]:
        return None
    options: dict[str, Any] = {
        "experiment": None,
        "journal_dir": Path(".tenfold/chaos"),
        "seed": None,
        "events": False,
        "as_json": False,
    }
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        name, eq, inline = arg.partition("=")
        if arg in ("--json", "--events"):
            options["as_json" if arg == "--json" else "events"] = True
        elif name in ("--journal-dir", "--seed"):
            value = inline if eq else (rest.pop(0) if rest else None)
            if not value:
                return None
            if name == "--seed":
                if not value.lstrip("-").isdigit():
                    return None
                options["seed"] = int(value)
            elif os.path.isfile(value):
                return None  # click says why
            else:
                options["journal_dir"] = Path(value)
        elif arg.startswith("-") or options["experiment"] is not None or os.path.isdir(arg):
            return None
        else:
            options["experiment"] = Path(arg)
    return options if options["experiment"] is not None else None


def _run_plain(options: dict[str, Any]) -> int:
    from tenfold.chaos_engine._runner import run_file
    from tenfold.core.errors import TenfoldError

    def stream(sample: Any) -> None:
        sys.stderr.write(json.dumps(sample.as_dict()) + "\n")
        sys.stderr.flush()

    try:
        title, result = run_file(
            options["experiment"],
            options["journal_dir"],
            options["seed"],
            stream if options["events"] else None,
        )
        if options["as_json"]:
            text = json.dumps(result, default=str)  # as tenfold.core.cli.emit does
        else:
            text = f"{title}: {result['status']} ({result['steps']} steps)"
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if result["status"] != "completed":
            from tenfold.chaos_engine.errors import SteadyStateViolated

            raise SteadyStateViolated(f"{title}: {result['status']}: {result['reason']}")
    except TenfoldError as exc:
        sys.stderr.write(f"tenfold: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("tenfold: interrupted\n")
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plain = _plain_run(args)
    if plain is not None:
        return _run_plain(plain)

    import click

    from tenfold.chaos_engine.cli import chaos
    from tenfold.core.errors import TenfoldError

    try:
        chaos.main(args=args, prog_name="tenfold chaos", standalone_mode=False)
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
