"""``python -m tenfold.chaos_engine run|validate|recover``: the chaos commands on their own.

The same commands, messages and exit codes as ``tenfold chaos`` (through the core's
runner), without listing every other system's commands first.

A plain ``run EXPERIMENT --json [--journal-dir DIR] [--seed N]`` (what scripts and the
orchestration benchmark call) skips the CLI framework: importing click and the core's
runner is about a seventh of such a run's instructions. Its argv is read here; anything
else (another command or option, ``--opt=value``, ``--help``, a path click would refuse)
goes to the click command, unchanged. An error, or a run whose steady state did not hold,
is raised again inside a click command under the core's runner, so its line, JSON
document and exit code are the ones the click command gives.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from pathlib import Path

_SEED = re.compile(r"-?[0-9]{1,30}")
_DEFAULT_JOURNAL_DIR = ".tenfold/chaos"  # cli._DEFAULT_JOURNAL_DIR, compared as paths


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    plain = _plain_json_run(args)
    if plain is not None:
        _run_plain(*plain, own_process=argv is None)
        return 0
    from tenfold.chaos_engine.cli import chaos
    from tenfold.core.cli import run

    run(chaos, args, prog_name="tenfold chaos")
    return 0


def _plain_json_run(args: list[str]) -> tuple[Path, Path, int | None] | None:
    """(experiment, journal dir, seed) of a ``run ... --json`` that click would accept
    as it is; None for anything else (click then parses it and says what is wrong)."""
    import os

    if len(args) < 3 or args[0] != "run":
        return None
    experiment: str | None = None
    journal_dir = _DEFAULT_JOURNAL_DIR
    seed: int | None = None
    as_json = False
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--json":
            as_json = True
        elif arg == "--journal-dir":
            value = next(rest, "")
            if not value or value.startswith("-"):
                return None
            journal_dir = value
        elif arg == "--seed":
            value = next(rest, "")
            if not _SEED.fullmatch(value):
                return None
            seed = int(value)
        elif experiment is not None or not arg or arg.startswith("-"):
            return None
        else:
            experiment = arg
    if not as_json or experiment is None:
        return None
    # click refuses a directory as the experiment and a file as the journal directory
    if os.path.isdir(experiment) or (
        os.path.exists(journal_dir) and not os.path.isdir(journal_dir)
    ):
        return None
    from pathlib import Path

    journal = Path(journal_dir)
    if journal != Path(_DEFAULT_JOURNAL_DIR) and not journal.parent.is_dir():
        return None  # the click command's JournalError
    return Path(experiment), journal, seed


def _run_plain(experiment: Path, journal_dir: Path, seed: int | None, *, own_process: bool) -> None:
    """``cli.run`` with ``--json`` and no events or agents, without click when it completes.

    In a process of its own (``own_process``), the cycle collector is off while the
    modules load and the experiment is read, and what they made is then frozen
    (:func:`gc.freeze`): it lives until the process exits, and neither the run's
    collections nor the one at exit traverse it again. Those traversals were a tenth of
    a 2,000-step run's instructions (395M -> 354M under callgrind).
    """
    import gc

    collecting = own_process and gc.isenabled()
    if collecting:
        gc.disable()
    try:
        from tenfold.chaos_engine._runner import run_file

        title, result = run_file(
            experiment,
            journal_dir,
            seed,
            None,
            cluster=None,
            loaded=_freeze if collecting else None,
        )
        if result["status"] == "completed":
            import json

            sys.stdout.write(json.dumps(result, default=str) + "\n")
            sys.stdout.flush()
            return
    except BaseException as exc:  # raised again under the core's runner
        _as_click_command(exc, None)
    finally:
        if collecting:
            gc.enable()
    _as_click_command(None, (title, result))


def _freeze() -> None:
    """The experiment is loaded: freeze what exists, collect cycles again for the run."""
    import gc

    gc.freeze()
    gc.enable()


def _as_click_command(
    exc: BaseException | None, ran: tuple[str, dict[str, object]] | None
) -> NoReturn:
    """End as the click command ends: raise ``exc``, or report ``ran`` and raise its
    violation, inside a command run by the core's runner (one line or JSON, exit code)."""
    import click

    from tenfold.chaos_engine.errors import SteadyStateViolated
    from tenfold.core.cli import emit, json_option, run

    @click.command("run")
    @json_option
    def ended(as_json: bool) -> None:
        if exc is not None:
            raise exc
        assert ran is not None
        title, result = ran
        emit(result, as_json)
        raise SteadyStateViolated(f"{title}: {result['status']}: {result['reason']}")

    run(ended, ["--json"], prog_name="tenfold chaos")
    raise AssertionError("the command always raises")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
