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
@json_option
def up_cmd(home: Path, rules: Path | None, as_json: bool) -> None:
    """Create the namespaces and start the XDP bouncer (root)."""
    from tenfold.platform._platform import Platform

    status = Platform(home).up(rules)
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
    """Stop the bouncer and delete the namespaces (the ledger is kept)."""
    from tenfold.platform._platform import Platform

    out = Platform(home).down()
    emit(
        out,
        as_json,
        lambda: (
            f"bouncer: {'stopped pid ' + str(out['bouncer_stopped']) if out['bouncer_stopped'] else 'not running'}\n"
            f"namespaces removed: {', '.join(out['namespaces_removed']) or 'none'}\n"
            f"ledger kept: {out['ledger_kept'] or 'none'}"
        ),
    )


@platform.command("_bouncer", hidden=True)
@HOME
def bouncer_cmd(home: Path) -> None:
    """The background XDP bouncer that ``up`` starts."""
    from tenfold.platform._platform import run_bouncer

    run_bouncer(home)


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
            f"ledger: {led['entries']} entries, {led['events']} events, {led['decisions']} decisions",
            f"enforced: {len(bans)} bans, last ledger index applied {enf['last_index']}"
            + "".join(f"\n  {v} for {max(0.0, u - now):.0f} s more" for v, u in bans.items()),
        ]
    )


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
