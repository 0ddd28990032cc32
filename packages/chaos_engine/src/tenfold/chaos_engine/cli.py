"""``tenfold chaos run|validate|recover|agent``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tenfold.chaos_engine.errors import SteadyStateViolated
from tenfold.core.cli import emit, json_option

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULT_JOURNAL_DIR = Path(".tenfold/chaos")
_JOURNAL_DIR = click.option(
    "--journal-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=_DEFAULT_JOURNAL_DIR,
    show_default=True,
    help="Where the fault journals live.",
)


def _tls_options(*, required: bool, cert: str, ca: str) -> Callable[[F], F]:
    """--tls-cert, --tls-key and --tls-ca: this side's certificate and key, the peer's CA."""
    pem = click.Path(path_type=Path, dir_okay=False)

    def decorate(fn: F) -> F:
        fn = click.option("--tls-ca", type=pem, required=required, default=None, help=ca)(fn)
        fn = click.option("--tls-key", type=pem, required=required, default=None, help="Its key.")(
            fn
        )
        return click.option("--tls-cert", type=pem, required=required, default=None, help=cert)(fn)

    return decorate


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
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="NAME=URL",
    help="Where an agent the experiment declares listens (overrides its [agents] entry).",
)
@_tls_options(
    required=False,
    cert="The controller's certificate (PEM), for experiments with agents.",
    ca="The CA the agents' certificates come from.",
)
@json_option
def run(
    experiment: Path,
    journal_dir: Path,
    seed: int | None,
    events: bool,
    agents: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    as_json: bool,
) -> None:
    """Run an experiment; exit 1 when the steady state does not hold (or an agent is lost)."""
    from tenfold.chaos_engine._runner import run_file

    if journal_dir != _DEFAULT_JOURNAL_DIR and not journal_dir.parent.is_dir():
        from tenfold.chaos_engine.errors import JournalError

        # A typo'd path is not created: only the default (under .tenfold/) gets its parents.
        raise JournalError(f"journal directory {journal_dir}: {journal_dir.parent} does not exist")
    cluster = None
    if agents or tls_cert or tls_key or tls_ca:
        from tenfold.chaos_engine._runner import Cluster

        cluster = Cluster.from_cli(agents, tls_cert, tls_key, tls_ca)
    from tenfold.core.progress import Progress

    with Progress("chaos run", unit="events", quiet=as_json, interval_s=10) as progress:

        def on_event(sample: Any) -> None:
            progress.advance()
            if events:
                _stream_event(sample)

        title, result = run_file(
            experiment,
            journal_dir,
            seed,
            on_event if events or not as_json else None,
            cluster=cluster,
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


@chaos.command("agent")
@click.option("--name", required=True, help="The agent's name (what experiments call it).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=7421, show_default=True)
@_tls_options(
    required=True,
    cert="The agent's certificate (PEM); name it after the host the controller dials.",
    ca="The CA the controller's certificate comes from.",
)
@click.option(
    "--controller",
    default="controller",
    show_default=True,
    help="The common name of the only client certificate accepted.",
)
@click.option(
    "--lease",
    "lease_s",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds without a word from the controller before the agent reverts every fault.",
)
@_JOURNAL_DIR
def agent_cmd(
    name: str,
    host: str,
    port: int,
    tls_cert: Path,
    tls_key: Path,
    tls_ca: Path,
    controller: str,
    lease_s: float,
    journal_dir: Path,
) -> None:
    """Serve this node's OS plane to a controller over mutual TLS until SIGINT/SIGTERM."""
    from tenfold.chaos_engine._agent import serve_agent
    from tenfold.chaos_engine._controller import AGENT_NAME
    from tenfold.chaos_engine.errors import AgentError
    from tenfold.core.server import ServerOptions, TlsFiles

    if not AGENT_NAME.match(name):
        raise AgentError(f"agent name must be 1-18 letters, digits, '_' or '-', got {name!r}")
    if not 0.1 <= lease_s <= 3600:
        raise AgentError(f"--lease must be 0.1-3600 s, got {lease_s!r}")
    if not controller or len(controller) > 100:
        raise AgentError("--controller must be a certificate common name (1-100 characters)")
    options = ServerOptions(host=host, port=port, tls=TlsFiles(tls_cert, tls_key, tls_ca))

    def announce(url: str) -> None:
        click.echo(f"chaos agent {name} listening on {url}", nl=True)

    serve_agent(
        name,
        options,
        controller=controller,
        journal_dir=journal_dir,
        lease_s=lease_s,
        announce=announce,
    )
