"""``tenfold platform up|status|replay|down``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from tenfold.core.cli import emit, json_option

HOME = click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".tenfold/platform"),
    show_default=True,
    help="Where the platform keeps its ledger, rules and bouncer state.",
)


@click.group("platform")
def platform() -> None:
    """One pipeline from signal to block: autoblocker -> ledger -> XDP bouncer."""


@platform.command("up")
@HOME
@click.option(
    "--rules",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Autoblocker rules (TOML); default: an sshd brute-force rule (5 in 60 s, 600 s ban).",
)
@click.option(
    "--kafka",
    metavar="BOOTSTRAP",
    default=None,
    help="Read signals from this Kafka broker (tenfold services up kafka); needs --postgres.",
)
@click.option(
    "--postgres",
    metavar="DSN",
    default=None,
    help="The asset inventory's PostgreSQL (tenfold services up postgres); needs --kafka.",
)
@click.option(
    "--assets",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Asset inventory to load (TOML, [[asset]] tables: address, host, owner, criticality, network).",
)
@click.option(
    "--services",
    "use_services",
    is_flag=True,
    help="Take --kafka and --postgres from the servers `tenfold services up` started.",
)
@click.option("--topic", default=None, help="The signals topic (default tenfold.signals).")
@click.option(
    "--chaos-journals",
    "chaos",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Record the chaos engine's faults from its journals here (tenfold chaos run "
    "--journal-dir); needs --kafka.",
)
@click.option(
    "--allow",
    multiple=True,
    metavar="CIDR",
    help="Never ban this address or network (repeatable; the ban policy contract proves it).",
)
@click.option(
    "--enforce",
    type=click.Choice(["xdp", "nft"]),
    default="xdp",
    show_default=True,
    help="The bouncer: the XDP block list (cloud kernel) or an nftables table (ledger).",
)
@click.option(
    "--model",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A learned detector (tenfold platform train-detector) scoring every event; needs --kafka.",
)
@click.option(
    "--attested",
    is_flag=True,
    help="Only attested nodes take part: the node's bouncer attests with its TPM (swtpm) and "
    "reads the ledger over mutual TLS with the authority's short-lived certificate; needs --kafka.",
)
@click.option(
    "--attest-period",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between a node's quotes (a failed one cuts its stream within this period).",
)
@click.option(
    "--replicated",
    is_flag=True,
    help="Record into the replicated ledger: a 3-member etcd cluster on 127.0.0.1 that up "
    "starts and down stops (default: the embedded ledger, no etcd).",
)
@json_option
def up_cmd(
    home: Path,
    rules: Path | None,
    kafka: str | None,
    postgres: str | None,
    assets: Path | None,
    use_services: bool,
    topic: str | None,
    model: Path | None,
    enforce: str,
    chaos: Path | None,
    allow: tuple[str, ...],
    attested: bool,
    attest_period: float,
    replicated: bool,
    as_json: bool,
) -> None:
    """Create the namespaces and start the XDP bouncer (root); with --kafka and
    --postgres also the engine: the pipeline from Kafka into the ledger."""
    from tenfold.platform._platform import Platform, services_endpoints

    if use_services:
        kafka, postgres = services_endpoints()
    status = Platform(home).up(
        rules,
        kafka=kafka,
        postgres=postgres,
        assets=assets,
        topic=topic,
        model=model,
        enforce=enforce,
        chaos=chaos,
        allow=allow,
        attested=attested,
        attest_period_s=attest_period,
        replicated=replicated,
    )
    emit(status, as_json, lambda: _status_text(status))


@platform.command("status")
@HOME
@json_option
def status_cmd(home: Path, as_json: bool) -> None:
    """Each part's health, and the event and decision counts."""
    from tenfold.platform._platform import Platform

    status = Platform(home).status()
    emit(status, as_json, lambda: _status_text(status))


@platform.command("replay")
@HOME
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@json_option
def replay_cmd(home: Path, file: Path, as_json: bool) -> None:
    """Push a recorded attack (auth-log lines) through the flow; print each decision,
    its ledger index and verified inclusion proof, and where it is enforced."""
    from tenfold.platform._platform import Platform

    result = Platform(home).replay(file).to_dict()
    emit(result, as_json, lambda: _replay_text(result))


@platform.command("down")
@HOME
@json_option
def down_cmd(home: Path, as_json: bool) -> None:
    """Stop the bouncer and delete the namespaces; stop the etcd members of --replicated.

    The embedded ledger is kept; the replicated one goes with its cluster's data."""
    from tenfold.platform._platform import Platform

    out = Platform(home).down()
    emit(
        out,
        as_json,
        lambda: (
            f"bouncer: {'stopped pid ' + str(out['bouncer_stopped']) if out['bouncer_stopped'] else 'not running'}\n"
            f"namespaces removed: {', '.join(out['namespaces_removed']) or 'none'}\n"
            + (f"etcd members stopped: pids {out['etcd_stopped']}\n" if out["etcd_stopped"] else "")
            + f"ledger kept: {out['ledger_kept'] or 'none (the replicated ledger lived in etcd)'}"
        ),
    )


@platform.command("faults")
@click.option(
    "--replicated",
    is_flag=True,
    help="Run the etcd faults (the leader SIGKILLed, a member cut off) against a platform "
    "with the replicated ledger.",
)
@click.option(
    "--experiment",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Another experiment file (the chaos engine's format, ${...} placeholders as in "
    "platform_faults.toml).",
)
@click.option(
    "--slo",
    "slo_s",
    type=click.FloatRange(1, 3600),
    default=120.0,
    show_default=True,
    help="Seconds within which every acknowledged decision must be enforced after a fault.",
)
@json_option
def faults_cmd(replicated: bool, experiment: Path | None, slo_s: float, as_json: bool) -> None:
    """Run the platform's chaos experiment (root): bring up Kafka, PostgreSQL and a platform
    of its own (its own namespaces), inject each fault while an attack flows, check after
    each, take it all down. Exit 0 when every check passes, 1 when one fails."""
    import math
    import sys

    from tenfold.platform._faults import fault_experiment

    if not math.isfinite(slo_s):
        raise click.BadParameter(f"{slo_s} is not a number of seconds", param_hint="--slo")

    out = fault_experiment(replicated=replicated, experiment=experiment, slo_s=slo_s)
    emit(out, as_json, lambda: _faults_text(out))
    if not out["passed"]:
        sys.exit(1)


def _faults_text(r: dict[str, Any]) -> str:
    rep = r["report"]
    lines = [f"{rep['title']}: {rep['status']}" + (f" ({rep['reason']})" if rep["reason"] else "")]
    for step in rep["steps_detail"]:
        mark = "ok" if step["ok"] else "FAILED"
        detail = f": {step['detail']}" if step["detail"] else ""
        lines.append(f"  {step['kind']:6} {step['id']}: {mark} in {step['s']:.2f} s{detail}")
    for c in r["checks"]:
        lines.append(
            f"  after {c['after']}: {c['enforced']}/{c['decisions']} decisions enforced once "
            f"within {c['recovered_s']:.2f} s, {c['proofs_verified']} proofs verified, tree of "
            f"{c['tree_size']} consistent with {c['consistent_with']}"
            + (f", etcd replica {c['etcd_replica']}" if c.get("etcd_replica") is not None else "")
        )
    lines.append(f"attack: {r['attackers']} attackers acknowledged by Kafka, {r['banned']} banned")
    if r.get("etcd"):
        lines += ["etcd after the faults:", *_etcd_text(r["etcd"])]
    lines += [f"  problem: {p}" for p in r["problems"]]
    lines.append("passed" if r["passed"] else "FAILED")
    return "\n".join(lines)


@platform.command("_bouncer", hidden=True)
@HOME
def bouncer_cmd(home: Path) -> None:
    """The background XDP bouncer that ``up`` starts."""
    from tenfold.platform._platform import run_bouncer

    run_bouncer(home)


@platform.command("train-detector")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sources", default=2000, show_default=True, type=click.IntRange(10, 1_000_000))
@click.option("--budget", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1))
@json_option
def train_cmd(out: Path, sources: int, budget: float, seed: int, as_json: bool) -> None:
    """Fit the learned detector on simulated sources (benign users, attackers) and save it."""
    import math

    from tenfold.platform._detect import train_detector

    if not math.isfinite(budget):
        raise click.BadParameter(f"{budget} is not a number of seconds", param_hint="--budget")
    r = train_detector(out, n_sources=sources, budget_s=budget, seed=seed)
    emit(
        r,
        as_json,
        lambda: (
            f"{r['model']}: {r['rows']} rows; {r['metric']} validation "
            f"{r['validation']:.3f}, holdout {r['holdout']:.3f}"
        ),
    )


@platform.command("backfill")
@HOME
@click.option(
    "--model",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The detector model to re-score with (tenfold platform train-detector).",
)
@click.option(
    "--start", default=0, show_default=True, type=click.IntRange(0), help="First ledger index."
)
@click.option(
    "--end",
    default=None,
    type=click.IntRange(0),
    help="Ledger index after the last (default: all).",
)
@click.option(
    "--parquet",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read the events from this Parquet export instead of the platform's ledger.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write one row per scored event here (Parquet).",
)
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(1, 1024))
@click.option(
    "--backend",
    type=click.Choice(["inline", "threads", "processes", "ray", "dask"]),
    default=None,
    help="The parallel framework's backend (default: its configured one).",
)
@click.option("--workers", default=None, type=click.IntRange(1, 1024))
@json_option
def backfill_cmd(
    home: Path,
    model: Path,
    start: int,
    end: int | None,
    parquet: Path | None,
    out: Path | None,
    partitions: int,
    backend: str | None,
    workers: int | None,
    as_json: bool,
) -> None:
    """Re-score a window of ledger events with a detector model, as a parallel graph;
    print what it would ban and how that differs from the ledger's learned bans."""
    from tenfold.platform._backfill import backfill, load_window
    from tenfold.platform._platform import Platform

    if parquet is not None:
        rows = load_window(parquet=parquet, start=start, end=end)
    else:
        url = Platform(home).engine_url()  # the engine holds the ledger while it runs
        rows = (
            load_window(url=url, start=start, end=end)
            if url
            else load_window(ledger=home / "ledger", start=start, end=end)
        )
    r = backfill(model, rows, partitions=partitions, backend=backend, workers=workers, out=out)
    emit(
        r,
        as_json,
        lambda: "\n".join(
            [
                f"window [{r['window']['start']}, {r['window']['end']}): {r['events']} events, "
                f"{r['scored']} scored in {r['partitions']} partitions ({r['backend']})",
                "would ban: "
                + (
                    ", ".join(f"{w['subject']} (at {w['at_index']})" for w in r["would_ban"])
                    or "none"
                ),
                f"differs from the ledger's learned bans: added {', '.join(r['differ']['added']) or 'none'}; "
                f"dropped {', '.join(r['differ']['dropped']) or 'none'}",
            ]
            + ([f"rows: {r['out']}"] if r["out"] else [])
        ),
    )


@platform.command("_engine", hidden=True)
@HOME
def engine_cmd(home: Path) -> None:
    """The background engine that ``up --kafka --postgres`` starts."""
    from tenfold.platform._engine import run_engine

    run_engine(home)


def _status_text(s: dict[str, Any]) -> str:
    b, led, enf = s["bouncer"], s["ledger"], s["enforced"]
    ns = ", ".join(f"{k} {'up' if v else 'absent'}" for k, v in s["namespaces"].items())
    bans = enf["bans"]
    now = time.time()
    return "\n".join(
        [
            f"namespaces: {ns}",
            f"bouncer: {'running' if b['running'] else 'stopped'}"
            + (f" (pid {b['pid']}, {b['where']})" if b["running"] else ""),
            *_engine_text(s.get("engine")),
            f"ledger: {led['entries']} entries, {led['events']} events, {led['decisions']} decisions"
            + (" (replicated: etcd)" if s.get("etcd") is not None else ""),
            *_etcd_text(s.get("etcd")),
            f"enforced: {len(bans)} bans, last ledger index applied {enf['last_index']}"
            + "".join(f"\n  {v} for {max(0.0, u - now):.0f} s more" for v, u in bans.items()),
        ]
    )


def _etcd_text(members: list[dict[str, Any]] | None) -> list[str]:
    if members is None:
        return []
    return [
        f"  etcd {m['name']} {m['endpoint']}: "
        + (
            ("leader" if m["leader"] else "follower")
            + f", term {m['raft_term']}, raft index {m['raft_index']}"
            if m["healthy"]
            else ("running, not answering" if m["running"] else "DOWN")
        )
        + (f" (pid {m['pid']})" if m["running"] else "")
        for m in members
    ]


def _engine_text(e: dict[str, Any] | None) -> list[str]:
    if e is None:
        return []
    if not e["running"]:
        return ["engine: stopped (tenfold platform up restarts it)"]
    pos = ", ".join(f"{k} at {v}" for k, v in (e.get("positions") or {}).items()) or "nothing read"
    trust = e.get("trust")
    nodes = (trust or {}).get("nodes") or {}
    return [
        f"engine: running (pid {e['pid']}, ledger served at {e['url']}); "
        f"{e['topic']}: {pos}; {e['appended']} appended, {e['duplicates']} duplicates skipped"
    ] + [
        f"node {n}: {'attested' if v['attested'] else 'REFUSED (' + v['detail'] + ')'}"
        f" (quotes every {trust['period_s']:g} s)"
        for n, v in nodes.items()
        if trust
    ]


def _replay_text(r: dict[str, Any]) -> str:
    out = [f"{r['source']}: {r['lines']} lines, {r['events']} events"]
    if not r["decisions"]:
        out.append("no decisions")
    for d in r["decisions"]:
        dec, proof, enf = d["decision"], d["proof"], d["enforced"]
        out.append(f"{dec['action']} {dec['scope']} {dec['value']} ({dec['reason']})")
        out.append(
            f"  ledger index {d['ledger_index']}: inclusion proof ({proof['hashes']} hashes) "
            f"verified against the signed tree head of size {proof['tree_size']}"
        )
        probe = enf["probe_from"]
        seen = (
            f"; a frame from {probe} was {'dropped' if enf['frame_dropped'] else 'DELIVERED'}"
            if probe
            else ""
        )
        out.append(f"  enforced: {enf['where']}{seen}")
    return "\n".join(out)
