"""Core subcommands: bench, profile, plugins, services, config."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import click

from tenfold.core.bench import Mode
from tenfold.core.cli import Finite, emit, json_option
from tenfold.core.errors import BenchError, CheckFailed, ServiceError
from tenfold.core.files import replace_file


def _system_names() -> list[str]:
    from tenfold.core._report import SYSTEM_ORDER
    from tenfold.core.plugins import system_names

    names = system_names()
    return [n for n in SYSTEM_ORDER if n in names] + sorted(set(names) - set(SYSTEM_ORDER))


def _print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tenfold.core._report import (
        QUICK_HEADERS,
        SCENARIO_HEADERS,
        quick_reference_rows,
        scenario_row,
    )

    console = Console(width=max(160, shutil.get_terminal_size().columns))
    m = result["machine"]
    console.print(
        f"[bold]tenfold bench[/] — {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        f"mode {result['mode']}"
    )
    for key, data in result["systems"].items():
        if data.get("error"):
            console.print(f"[red]{key}: {data['error']}[/]")
        if not data.get("scenarios"):
            continue
        table = Table(title=data.get("title", key), show_lines=False)
        for header in SCENARIO_HEADERS:
            table.add_column(header, overflow="fold")
        for sc in data["scenarios"]:
            table.add_row(*scenario_row(sc))
        console.print(table)
    if result.get("memory"):
        from tenfold.core._memory import MEMORY_HEADERS, memory_rows

        mem = Table(
            title="Memory Footprint (ours, one fresh process per size, beside the document)"
        )
        for header in MEMORY_HEADERS:
            mem.add_column(header, overflow="fold")
        for row in memory_rows(result["memory"]):
            mem.add_row(*row)
        console.print(mem)
    if not result["systems"]:
        return
    quick = Table(title="Quick Reference (ours on this machine beside the document's figures)")
    for header in QUICK_HEADERS:
        quick.add_column(header, overflow="fold")
    for row in quick_reference_rows(result["systems"]):
        quick.add_row(*row)
    console.print(quick)


@click.command("bench")
@click.option("-p", "--package", "packages", multiple=True, help="A system to run (repeatable).")
@click.option("--workspace", is_flag=True, help="Every system (the default when no -p is given).")
@click.option(
    "--smoke", "mode", flag_value="smoke", help="Smallest sizes: proves each scenario runs."
)
@click.option(
    "--quick", "mode", flag_value="quick", default=True, help="make bench's sizes (default)."
)
@click.option("--full", "mode", flag_value="full", help="The document's sizes.")
@click.option("-s", "--scenario", "only", multiple=True, help="Only this scenario (repeatable).")
@click.option(
    "--report", type=click.Path(path_type=Path, dir_okay=False), help="Write Markdown tables here."
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path, file_okay=False),
    help="Compare with stored results (timings only on a matching machine fingerprint, "
    "kernel instruction counts elsewhere); exit 1 on a >10% regression.",
)
@click.option(
    "--save-baseline",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write results as the new baseline.",
)
@click.option(
    "--callgrind/--no-callgrind",
    default=None,
    help="Count instructions of each system's kernel (default: with --baseline/--save-baseline).",
)
@click.option(
    "--from-json",
    "from_json",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Report on saved --json results instead of running (repeatable: a later "
    "file's rows replace the same rows of an earlier one).",
)
@click.option(
    "--compare",
    "compare",
    metavar="REV|BASE..HEAD",
    help="A/B gate: REV (built in a worktree with its own venv) against the working tree, "
    "interleaved; exit 1 when a row's whole interval is over the threshold. Without -p: "
    "the systems the diff touches.",
)
@click.option(
    "--rounds",
    type=click.IntRange(2, 200),
    default=8,
    show_default=True,
    help="--compare: rounds of A B B A per scenario.",
)
@click.option(
    "--max-rounds",
    type=click.IntRange(0, 600),
    default=0,
    show_default=True,
    help="--compare: while a row is inconclusive, add rounds up to this many "
    "(0: three times --rounds; equal to --rounds: a fixed-length run).",
)
@click.option(
    "--threshold",
    type=Finite(0.0, 1000.0, open_min=True, unit="%"),
    default=10.0,
    show_default=True,
    help="--compare: % more time per unit that counts as a regression (rows may set their own).",
)
@click.option(
    "--memory",
    is_flag=True,
    help="Also measure the document's Memory Footprint table (one fresh process per size).",
)
@click.option(
    "--memory-only",
    is_flag=True,
    help="Measure only the Memory Footprint table (no scenarios).",
)
@click.option(
    "--sweep",
    "sweeps",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="Rerun the chosen scenarios once per value of a configuration key "
    "(SECTION.KEY..., applied as TENFOLD_<SECTION>__<KEY> to each run's processes).",
)
@json_option
def bench_command(
    packages: tuple[str, ...],
    workspace: bool,
    mode: str,
    only: tuple[str, ...],
    report: Path | None,
    baseline: Path | None,
    save_baseline: Path | None,
    callgrind: bool | None,
    from_json: tuple[Path, ...],
    compare: str | None,
    rounds: int,
    max_rounds: int,
    threshold: float,
    memory: bool,
    memory_only: bool,
    sweeps: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run benchmark scenarios: ours beside the peer, interleaved, with the document's figures."""
    from tenfold.core import _baseline, _runner
    from tenfold.core._report import markdown_report

    if sweeps:
        from tenfold.core import _sweep

        _sweep.run_sweeps(
            sweeps,
            list(packages) or None,
            _system_names(),
            cast(Mode, mode),
            only,
            memory=memory or memory_only,
            scenarios=not memory_only,
            as_json=as_json,
            report=report,
        )
        return

    if compare is not None:
        clash = [
            flag
            for flag, value in (
                ("--report", report),
                ("--baseline", baseline),
                ("--save-baseline", save_baseline),
                ("--from-json", from_json or None),
            )
            if value is not None
        ]
        if clash:
            raise BenchError(f"--compare does not combine with {', '.join(clash)}")
        _compare_command(
            compare,
            packages,
            workspace,
            cast(Mode, mode),
            only,
            rounds,
            threshold,
            as_json,
            max_rounds=max_rounds,
        )
        return
    if from_json:
        result = _load_saved(from_json)
    else:
        known = _system_names()
        systems = list(packages) if packages and not workspace else known
        unknown = [s for s in systems if s not in known]
        if unknown:
            raise BenchError(f"unknown system(s): {', '.join(unknown)} (known: {', '.join(known)})")
        if memory_only:
            result = {"machine": _machine(), "mode": mode, "systems": {}}
        else:
            result = _run_with_progress(systems, cast(Mode, mode), only, quiet=as_json)
        if memory or memory_only:
            from tenfold.core._memory import measure

            result["memory"] = measure(
                systems,
                mode,
                progress=lambda what: click.echo(f"[memory] {what} ...", err=True),
            )
        do_callgrind = callgrind if callgrind is not None else bool(baseline or save_baseline)
        if do_callgrind and shutil.which("valgrind"):
            for system in systems:
                with contextlib.suppress(BenchError):
                    result["systems"][system]["kernel_instructions"] = _runner.run_callgrind(system)
        _baseline.attach_fingerprints(result)
    problems: list[str] = []
    if baseline is not None:
        check = _baseline.check_baseline(result, baseline)
        # Timings can be unlucky; instruction counts cannot. Confirm a timing regression
        # with a re-run of the affected systems (keeping each row's best) before failing.
        timing = [p for p in check.problems if not p.split(": ", 1)[0].endswith("/kernel")]
        if timing and not from_json:
            again = sorted({p.split("/")[0] for p in timing})
            click.echo(
                f"possible regression in {', '.join(again)}: re-running to confirm", err=True
            )
            rerun = _runner.run_systems(again, cast(Mode, mode), only)
            for system, data in rerun["systems"].items():
                first = result["systems"][system]
                old = {s["name"]: s for s in first.get("scenarios", [])}
                for sc in data.get("scenarios", []):
                    prev = old.get(sc["name"], {})
                    if (prev.get("best_ops_per_s") or 0) > (sc.get("best_ops_per_s") or 0):
                        sc["best_ops_per_s"] = prev["best_ops_per_s"]
                for key in ("kernel_instructions", "kernel_fingerprint", "fingerprint"):
                    if key in first:
                        data[key] = first[key]
                result["systems"][system] = data
            check = _baseline.check_baseline(result, baseline)
        problems = check.problems
        result["regressions"] = problems
        result["baseline_check"] = check.as_json()
    if save_baseline is not None:
        _runner.save_baseline(result, save_baseline)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        from tenfold.core._charts import write_charts

        charts = write_charts(result, report)
        report.write_text(markdown_report(result) + (f"\n{charts}" if charts else ""))
    if as_json:
        emit(result, True)
    else:
        _print_tables(result)
        if report is not None:
            click.echo(f"wrote {report}")
        for note in result.get("baseline_check", {}).get("notes", []):
            click.echo(f"baseline: {note}")
    errors = (
        [
            f"{system}/{sc['name']}: {sc['error']}"
            for system, data in result["systems"].items()
            for sc in data.get("scenarios", [])
            if "error" in sc
        ]
        + [
            f"{system}: {data['error']}"
            for system, data in result["systems"].items()
            if data.get("error")
        ]
        + [
            f"memory/{m['system']}: {m['error']}"
            for m in result.get("memory", [])
            if m.get("error")
        ]
    )
    for line in errors:
        click.echo(f"tenfold: scenario failed: {line}", err=True)
    if problems:
        raise CheckFailed("regression over 10%: " + "; ".join(problems))
    if errors and not from_json:
        sys.exit(1)


def _compare_command(
    spec: str,
    packages: tuple[str, ...],
    workspace: bool,
    mode: Mode,
    only: tuple[str, ...],
    rounds: int,
    threshold_pct: float,
    as_json: bool,
    *,
    max_rounds: int = 0,
) -> None:
    """``--compare``: the A/B gate (see :mod:`tenfold.core._compare`)."""
    from tenfold.core import _compare

    known = _system_names()
    targets: list[str] | None
    if workspace:
        targets = known
    elif packages:
        # A name registers a system; module:attribute names any SystemPlugin object.
        unknown = [p for p in packages if ":" not in p and p not in known]
        if unknown:
            raise BenchError(f"unknown system(s): {', '.join(unknown)} (known: {', '.join(known)})")
        targets = list(packages)
    else:
        targets = None
    settings = _compare.CompareSettings(
        mode=mode,
        rounds=rounds,
        min_rounds=min(6, rounds),
        extend_to=max(max_rounds, rounds) if max_rounds else 0,
        threshold=threshold_pct / 100,
        only=only,
    )

    def log(msg: str) -> None:
        click.echo(f"[compare] {msg}", err=True)

    gate = _compare.run_gate(spec, targets, known, settings, log=log)
    if as_json:
        emit(gate.as_json(), True)
    else:
        click.echo(_compare.format_report(gate))
    failed = [f"{r.name}: {r.error}" for r in gate.failures]
    for line in failed:
        click.echo(f"tenfold: scenario failed: {line}", err=True)
    if gate.regressions:
        raise CheckFailed(
            "regression: "
            + "; ".join(
                f"{r.name} {r.change:+.1%} [{r.low:+.1%}, {r.high:+.1%}] over {r.threshold:.0%}"
                for r in gate.regressions
                if r.change is not None and r.low is not None and r.high is not None
            )
        )
    if failed:
        sys.exit(1)


def _machine() -> dict[str, Any]:
    from tenfold.core._harness import machine_info

    return machine_info()


def _load_saved(paths: Sequence[Path]) -> dict[str, Any]:
    """Saved ``--json`` results, merged in the order given (one file: as it was)."""
    from tenfold.core._runner import merge_results

    results = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BenchError(f"{path}: not a saved bench result ({e})") from None
        if not isinstance(data, dict) or not isinstance(data.get("systems"), dict):
            raise BenchError(f"{path}: not a saved bench result (no 'systems' object)")
        results.append(data)
    return results[0] if len(results) == 1 else merge_results(results)


def _run_with_progress(
    systems: Sequence[str], mode: Mode, only: Sequence[str], *, quiet: bool
) -> dict[str, Any]:
    from tenfold.core import _runner

    if quiet or not sys.stdout.isatty():

        def note(system: str, i: int, n: int) -> None:
            if system:
                click.echo(f"[{i + 1}/{n}] {system} ...", err=True)

        return _runner.run_systems(systems, mode, only, progress=note)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("bench", total=len(systems))

        def update(system: str, i: int, n: int) -> None:
            bar.update(task, completed=i, description=f"bench {system}" if system else "done")

        return _runner.run_systems(systems, mode, only, progress=update)


@click.command("profile")
@click.argument("scenario")
@click.option("-p", "--package", "system", help="The system (when the scenario name is ambiguous).")
@click.option("--smoke", "mode", flag_value="smoke", help="Smallest sizes.")
@click.option(
    "--quick", "mode", flag_value="quick", default=True, help="make bench's sizes (default)."
)
@click.option("--full", "mode", flag_value="full", help="The document's sizes.")
@click.option(
    "-o", "--out", type=click.Path(path_type=Path, file_okay=False), default=Path("profile")
)
@json_option
def profile_command(scenario: str, system: str | None, mode: str, out: Path, as_json: bool) -> None:
    """Profile one scenario (ours): a py-spy flame graph and a memray memory flame graph."""
    from tenfold.core import _runner
    from tenfold.core.plugins import load_system, system_plugins

    if "/" in scenario and system is None:
        system, scenario = scenario.split("/", 1)
    plugins = [load_system(system)] if system else system_plugins()[0]
    owners = [
        p.name
        for p in plugins
        if (system is None or p.name == system)
        and p.scenarios is not None
        and any(s.name == scenario for s in p.scenarios())
    ]
    if not owners:
        raise BenchError(f"no scenario named {scenario!r}" + (f" in {system}" if system else ""))
    if len(owners) > 1:
        raise BenchError(f"scenario {scenario!r} is in {', '.join(owners)}: pass -p SYSTEM")
    paths = [str(p) for p in _runner.run_profile(owners[0], scenario, cast(Mode, mode), out)]
    emit({"wrote": paths}, as_json, lambda: "\n".join(f"wrote {p}" for p in paths))


@click.group("plugins")
def plugins_group() -> None:
    """The plugin registry."""


@plugins_group.command("list")
@json_option
def plugins_list(as_json: bool) -> None:
    """Every registered plugin with its state, and why a failed one failed."""
    from tenfold.core.plugins import PluginManager

    manager = PluginManager(timeout_s=30)
    manager.discover()
    manager.load_all()
    rows = [
        {"name": r.name, "state": r.state.value, "source": r.source, "reason": r.reason}
        for r in manager.records()
    ]

    def text() -> str:
        return "\n".join(
            f"{r['name']:<24} {r['state']:<12} {r['source']}"
            + (f"  ({r['reason']})" if r["reason"] else "")
            for r in rows
        )

    emit(rows, as_json, text)


# -- services -------------------------------------------------------------------------------

_SERVICE_KINDS = ("postgres", "redis", "etcd", "kafka", "swtpm")


def _state_file() -> Path:
    from tenfold.core.services import run_dir

    return run_dir() / "services.json"


def _read_state() -> dict[str, Any]:
    path = _state_file()
    if not path.is_file():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ServiceError(
            f"{path} is corrupt; remove it after stopping its servers by hand"
        ) from None
    return data


def _write_state(state: dict[str, Any]) -> None:
    path = _state_file()
    replace_file(path, json.dumps(state, indent=2))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _detach(service: Any) -> list[int]:
    """Take the service's processes off the at-exit stop list; return their pids."""
    from tenfold.core.services import _process

    pids = []
    with _process._LIVE_LOCK:
        for proc in list(_process._LIVE):
            if proc.pid is not None:
                pids.append(proc.pid)
            _process._LIVE.discard(proc)
    return pids


@click.group("services")
def services_group() -> None:
    """Start, check and stop the real servers on 127.0.0.1."""


@services_group.command("up")
@click.argument("kinds", nargs=-1, type=click.Choice(_SERVICE_KINDS))
@click.option("--members", default=3, show_default=True, help="etcd cluster size (1-9).")
@json_option
def services_up(kinds: tuple[str, ...], members: int, as_json: bool) -> None:
    """Start servers in the background (all kinds when none is named)."""
    from tenfold.core import services

    state = _read_state()
    makers: dict[str, Callable[[], Any]] = {
        "postgres": services.Postgres,
        "redis": services.Redis,
        "etcd": lambda: services.Etcd(members=members),
        "kafka": services.KafkaBroker,
        "swtpm": services.Swtpm,
    }
    started: dict[str, Any] = {}
    for kind in kinds or _SERVICE_KINDS:
        if kind in state and any(_pid_alive(p) for p in state[kind]["pids"]):
            started[kind] = state[kind]
            continue
        service = makers[kind]()
        service.keep_data = True
        service.__enter__()
        info: dict[str, Any] = {"workdir": str(service.workdir), "pids": _detach(service)}
        for attr in ("dsn", "url", "bootstrap", "tcti", "endpoints", "port"):
            if hasattr(service, attr):
                info[attr] = getattr(service, attr)
        state[kind] = started[kind] = info
        _write_state(state)
    emit(started, as_json, lambda: "\n".join(f"{k}: {_describe(v)}" for k, v in started.items()))


def _describe(info: dict[str, Any]) -> str:
    for key in ("dsn", "url", "bootstrap", "tcti", "endpoints"):
        if key in info:
            return f"{info[key]} (pids {', '.join(map(str, info['pids']))})"
    return str(info)


@services_group.command("status")
@json_option
def services_status(as_json: bool) -> None:
    """The servers started with ``services up`` and whether each still runs."""
    state = _read_state()
    out = {
        kind: {**info, "running": all(_pid_alive(p) for p in info["pids"])}
        for kind, info in state.items()
    }
    emit(
        out,
        as_json,
        lambda: (
            "\n".join(
                f"{k}: {'running' if v['running'] else 'DOWN'} {_describe(v)}"
                for k, v in out.items()
            )
            or "no services"
        ),
    )


@services_group.command("down")
@click.argument("kinds", nargs=-1, type=click.Choice(_SERVICE_KINDS))
@json_option
def services_down(kinds: tuple[str, ...], as_json: bool) -> None:
    """Stop servers by their own pids and remove their data."""
    state = _read_state()
    stopped: list[str] = []
    for kind in kinds or tuple(state):
        info = state.pop(kind, None)
        if info is None:
            continue
        for pid in info["pids"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT if kind == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(_pid_alive(p) for p in info["pids"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in info["pids"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(info["workdir"], ignore_errors=True)
        stopped.append(kind)
        if not as_json:
            click.echo(f"stopped {kind}")
    _write_state(state)
    if as_json:
        emit({"stopped": stopped}, True)


@click.command("config")
@click.argument("section", required=False)
@json_option
def config_command(section: str | None, as_json: bool) -> None:
    """Validate the configuration and show each setting's effective value and its source.

    Without SECTION: every system's section, checked (defaults, the file, then
    TENFOLD_<SECTION>__<KEY> variables). With SECTION: its settings, one a line.
    """
    from tenfold.core.config import (
        check_sections,
        config_path,
        effective_values,
        known_sections,
        read_toml,
    )

    path = config_path()
    doc = read_toml(path) if path else {}
    check_sections(doc, str(path) if path else "environment")
    names = [section] if section is not None else sorted(known_sections())
    result = {
        name: [{"key": k, "value": v, "source": src} for k, v, src in effective_values(name)]
        for name in names
    }

    def text() -> str:
        lines = [f"# {path if path else 'no configuration file: defaults'}"]
        for name, rows in result.items():
            lines.append(f"[{name}]")
            lines += [f"  {r['key']} = {r['value']!r}  # {r['source']}" for r in rows]
        return "\n".join(lines)

    emit({"file": str(path) if path else None, "sections": result}, as_json, text)


@click.group("credentials")
def credentials_group() -> None:
    """Issue and revoke the API keys and TLS certificates that tenfold servers accept."""


_CREDS_FILE = click.argument("file", type=click.Path(path_type=Path, dir_okay=False))


@credentials_group.command("issue")
@_CREDS_FILE
@click.option("--name", required=True, help="The client's name (its identity in the logs).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["reader", "writer", "bouncer", "admin"]),
    help="A role to grant (repeatable).",
)
@json_option
def credentials_issue(file: Path, name: str, roles: tuple[str, ...], as_json: bool) -> None:
    """Add a client to FILE with a new API key (printed once; FILE keeps only its digest)."""
    from tenfold.core.server import Credentials

    creds = Credentials.load(file) if file.exists() else Credentials()
    key = creds.issue(name, roles)
    creds.save(file)
    emit({"name": name, "roles": sorted(set(roles)), "key": key}, as_json, key)


@credentials_group.command("list")
@_CREDS_FILE
@json_option
def credentials_list(file: Path, as_json: bool) -> None:
    """List the clients in FILE and their roles (never their keys)."""
    from tenfold.core.server import Credentials

    clients = [{"name": c.name, "roles": sorted(c.roles)} for c in Credentials.load(file).clients()]
    emit(
        clients,
        as_json,
        lambda: "\n".join(f"{c['name']}\t{','.join(c['roles'])}" for c in clients) or "no clients",
    )


@credentials_group.command("revoke")
@_CREDS_FILE
@click.option("--name", required=True)
@json_option
def credentials_revoke(file: Path, name: str, as_json: bool) -> None:
    """Remove a client (and its key) from FILE; servers read FILE when they start."""
    from tenfold.core.server import Credentials

    creds = Credentials.load(file)
    creds.revoke(name)
    creds.save(file)
    emit({"revoked": name}, as_json, f"revoked {name}")


@credentials_group.command("tls")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.argument("names", nargs=-1, required=True)
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True)
@json_option
def credentials_tls(directory: Path, names: tuple[str, ...], days: int, as_json: bool) -> None:
    """Make a CA and a certificate per NAME in DIRECTORY (the CN is the client's identity)."""
    from tenfold.core.tls import make_tls_bundle

    if directory.exists() and (directory / "ca.pem").exists():
        raise click.UsageError(f"{directory} already holds a CA (ca.pem); use a new directory")
    try:
        bundle = make_tls_bundle(directory, list(dict.fromkeys(names)), days=days)
    except OSError as exc:
        raise click.UsageError(f"cannot write into {directory}: {exc.strerror}") from None
    out = {n: {"cert": str(f.cert), "key": str(f.key), "ca": str(f.ca)} for n, f in bundle.items()}
    emit(out, as_json, "\n".join(f"{n}: {f['cert']} {f['key']}" for n, f in out.items()))


def core_commands() -> Sequence[click.Command]:
    return [
        bench_command,
        profile_command,
        plugins_group,
        services_group,
        config_command,
        credentials_group,
    ]
