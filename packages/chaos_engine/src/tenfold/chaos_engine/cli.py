"""``tenfold chaos run|validate|recover``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tenfold.chaos_engine.errors import SteadyStateViolated
from tenfold.core.cli import emit, json_option

_DEFAULT_JOURNAL_DIR = Path(".tenfold/chaos")
_JOURNAL_DIR = click.option(
    "--journal-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=_DEFAULT_JOURNAL_DIR,
    show_default=True,
    help="Where the fault journals live.",
)


@click.group("chaos")
def chaos() -> None:
    """Chaos Engine: inject faults that are always reverted."""


@chaos.command("validate")
@click.argument("experiment", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def validate(experiment: Path, as_json: bool) -> None:
    """Check an experiment file (TOML, YAML, JSON or Chaos Toolkit JSON) without running it."""
    from tenfold.chaos_engine._experiment import FaultStep, load_experiment

    exp = load_experiment(experiment)
    faults = sum(1 for s in exp.method if isinstance(s, FaultStep))
    summary = {
        "experiment": str(experiment),
        "title": exp.title,
        "probes": len(exp.steady_state.probes),
        "steps": len(exp.method),
        "fault_steps": faults,
        "rollbacks": len(exp.rollbacks),
        "valid": True,
    }
    emit(summary, as_json, f"{experiment}: valid ({len(exp.method)} steps, {faults} fault steps)")


@chaos.command("run")
@click.argument("experiment", type=click.Path(path_type=Path, dir_okay=False))
@_JOURNAL_DIR
@click.option("--seed", type=int, default=None, help="Seed for target selection and probabilities.")
@click.option(
    "--events",
    is_flag=True,
    help="Stream fault and probe events to stderr as JSON lines while the run goes on.",
)
@json_option
def run(experiment: Path, journal_dir: Path, seed: int | None, events: bool, as_json: bool) -> None:
    """Run an experiment; exit 1 when the steady state does not hold."""
    from tenfold.chaos_engine._runner import run_file

    if journal_dir != _DEFAULT_JOURNAL_DIR and not journal_dir.parent.is_dir():
        from tenfold.chaos_engine.errors import JournalError

        # A typo'd path is not created: only the default (under .tenfold/) gets its parents.
        raise JournalError(f"journal directory {journal_dir}: {journal_dir.parent} does not exist")
    from tenfold.core.progress import Progress

    with Progress("chaos run", unit="events", quiet=as_json, interval_s=10) as progress:

        def on_event(sample: Any) -> None:
            progress.advance()
            if events:
                _stream_event(sample)

        title, result = run_file(
            experiment, journal_dir, seed, on_event if events or not as_json else None
        )
    emit(result, as_json, f"{title}: {result['status']} ({result['steps']} steps)")
    if result["status"] != "completed":
        raise SteadyStateViolated(f"{title}: {result['status']}: {result['reason']}")


def _stream_event(sample: Any) -> None:
    click.echo(json.dumps(sample.as_dict()), err=True)


@chaos.command("recover")
@click.argument("journal", type=click.Path(path_type=Path, dir_okay=False), required=False)
@_JOURNAL_DIR
@json_option
def recover_cmd(journal: Path | None, journal_dir: Path, as_json: bool) -> None:
    """Undo every fault a crashed engine left (all journals in --journal-dir, or JOURNAL)."""
    from tenfold.chaos_engine._watchdog import recover

    if journal is None and not journal_dir.is_dir():
        from tenfold.chaos_engine.errors import JournalError

        raise JournalError(f"no journal directory {journal_dir}")
    paths = [journal] if journal is not None else sorted(journal_dir.glob("*.journal"))
    reports = [recover(p).as_dict() for p in paths]
    reverted = sum(len(r["faults_reverted"]) for r in reports)
    emit(
        {"journals": reports},
        as_json,
        f"recovered {len(reports)} journal(s): {reverted} fault(s) reverted",
    )
