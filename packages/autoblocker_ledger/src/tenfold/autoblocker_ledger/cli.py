"""``tenfold ledger ...`` and ``tenfold autoblock ...``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from tenfold.core.cli import (
    Finite,
    emit,
    follow_decisions,
    follow_options,
    json_option,
    server_cli_options,
)

STORE = click.option(
    "--store",
    "store",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of the embedded store (default: [autoblocker_ledger] store, .tenfold/ledger).",
)


def _store_path(store: Path | None) -> Path:
    from tenfold.autoblocker_ledger._config import load_config

    return store or Path(load_config().store)


def _sharded(store: Path | None) -> bool:
    from tenfold.autoblocker_ledger._sharded import is_sharded_store

    return is_sharded_store(_store_path(store))


def _open(store: Path | None, *, create: bool = False) -> Any:
    """Open the store; only commands that write (``create=True``) may make a new one."""
    from tenfold.autoblocker_ledger._config import load_config
    from tenfold.autoblocker_ledger._store import EmbeddedLedger

    cfg = load_config()
    path = _store_path(store)
    if _sharded(store):
        from tenfold.autoblocker_ledger.errors import ShardLayoutError

        raise ShardLayoutError(
            f"{path} is a sharded store: this command works on one store "
            "(sharded stores take append, get --shard, range, proof --event-id and checkpoint)"
        )
    if create and store is not None and not path.exists() and not path.parent.is_dir():
        from tenfold.autoblocker_ledger.errors import NoSuchStore

        # A typo'd --store is not created with its parents (the default path is).
        raise NoSuchStore(f"cannot create store {path}: folder {path.parent} does not exist")
    return EmbeddedLedger(path, segment_bytes=cfg.segment_bytes, fsync=cfg.fsync, create=create)


def _open_shards(store: Path | None, shards: int | None = None, *, create: bool = False) -> Any:
    """Open (or, given ``shards`` and ``create``, make) a sharded embedded store."""
    from tenfold.autoblocker_ledger._config import load_config
    from tenfold.autoblocker_ledger._sharded import EmbeddedShards

    cfg = load_config()
    path = _store_path(store)
    if create and store is not None and not path.exists() and not path.parent.is_dir():
        from tenfold.autoblocker_ledger.errors import NoSuchStore

        raise NoSuchStore(f"cannot create store {path}: folder {path.parent} does not exist")
    if shards is not None and not _sharded(store) and (path / "segments").is_dir():
        from tenfold.autoblocker_ledger.errors import ShardLayoutError

        raise ShardLayoutError(f"{path} is a single store; it cannot be opened with --shards")
    return EmbeddedShards(
        path,
        shards,
        route_by=cfg.shard_route_by,
        create=create,
        segment_bytes=cfg.segment_bytes,
        fsync=cfg.fsync,
    )


def _text(raw: bytes, name: str) -> str:
    """Input bytes as UTF-8; invalid bytes are refused naming the input and the offset."""
    from tenfold.autoblocker_ledger.errors import MalformedEvent

    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"{name}: not valid UTF-8 (byte {exc.start})") from None


def _read_json(raw: bytes, name: str, what: str) -> Any:
    """Parse a JSON document given as bytes; one clear error for bad UTF-8, JSON or nesting."""
    from tenfold.autoblocker_ledger.errors import MalformedEvent

    text = _text(raw, name)
    try:
        return json.loads(text)
    except RecursionError:
        raise MalformedEvent(f"{name}: {what} is nested too deeply") from None
    except ValueError as exc:
        raise MalformedEvent(f"{name}: {what} is not JSON: {exc}") from None


def _source_name(stream: IO[bytes]) -> str:
    name = getattr(stream, "name", "<stdin>")
    return "<stdin>" if name in ("-", "<stdin>") or not isinstance(name, str) else name


def _entry_dict(entry: Any) -> dict[str, Any]:
    return {
        "index": entry.index,
        "leaf": entry.leaf.hex(),
        "prev": entry.prev.hex(),
        **entry.event.to_dict(),
    }


def _read_public_key(value: str) -> bytes:
    from tenfold.autoblocker_ledger._events import shown
    from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError

    try:
        is_file = len(value) < 4096 and Path(value).is_file()
        text = Path(value).read_bytes().decode("ascii", "replace") if is_file else value
    except (OSError, ValueError) as exc:
        raise AutoblockerLedgerError(f"cannot read public key {shown(value)}: {exc}") from None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise AutoblockerLedgerError(
            f"public key must be 64 hex digits or a file holding them: {shown(value)}"
        ) from None
    if len(key) != 32:
        raise AutoblockerLedgerError(f"public key must be 32 bytes, got {len(key)}")
    return key


@click.group("ledger")
def ledger() -> None:
    """The tamper-evident security-event log (embedded store)."""


SHARDS = click.option(
    "--shards",
    type=click.IntRange(1, 1024),
    default=None,
    help="Create the store as N shards routed by subject (blake2b-64 mod N), one signed "
    "checkpoint over them; an existing sharded store is found by itself.",
)


@ledger.command("append")
@STORE
@SHARDS
@click.argument("source", type=click.File("rb"), default="-")
@json_option
def append_cmd(store: Path | None, shards: int | None, source: IO[bytes], as_json: bool) -> None:
    """Append JSON-lines events from SOURCE (default stdin); duplicates by event id are skipped."""
    from tenfold.autoblocker_ledger._store import events_from_lines
    from tenfold.autoblocker_ledger.errors import MalformedEvent

    name = _source_name(source)
    try:
        events = list(events_from_lines(_text(line, name) for line in source))
    except MalformedEvent as exc:
        raise MalformedEvent(f"{name}: {exc}") from None
    if shards is not None or _sharded(store):
        with _open_shards(store, shards, create=True) as sled:
            got = sled.append_batch(events)
            cp = sled.checkpoint()
        sout = {
            "appended": sum(not r.duplicate for r in got),
            "duplicates": sum(r.duplicate for r in got),
            "positions": [[r.shard, r.index] for r in got],
            "checkpoint": cp.to_dict(),
        }
        emit(
            sout,
            as_json,
            lambda: (
                f"appended {sout['appended']}, duplicates {sout['duplicates']}, "
                f"size {cp.size} in {cp.layout.shards} shards"
            ),
        )
        return
    with _open(store, create=True) as led:
        receipts = led.append_batch(events)
        sth = led.tree_head()
    out = {
        "appended": sum(not r.duplicate for r in receipts),
        "duplicates": sum(r.duplicate for r in receipts),
        "indices": [r.index for r in receipts],
        "sth": sth.to_dict(),
    }
    emit(
        out,
        as_json,
        lambda: f"appended {out['appended']}, duplicates {out['duplicates']}, size {sth.size}",
    )


@ledger.command("get")
@STORE
@click.option("--shard", type=int, default=None, help="The shard of a sharded store.")
@click.argument("index", type=int)
@json_option
def get_cmd(store: Path | None, shard: int | None, index: int, as_json: bool) -> None:
    """Print entry INDEX (of shard --shard in a sharded store)."""
    from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError

    if _sharded(store):
        if shard is None:
            raise AutoblockerLedgerError("a sharded store needs --shard for get")
        with _open_shards(store) as sled:
            one = sled.shard(shard)
            if not 0 <= index < one.tree.size:
                raise AutoblockerLedgerError(
                    f"entry {index} outside shard {shard} of {one.tree.size} entries"
                )
            emit({"shard": shard, **_entry_dict(one.get(index))}, as_json)
        return
    if shard is not None:
        raise AutoblockerLedgerError("--shard is for sharded stores; this one is single")
    with _open(store) as led:
        if not 0 <= index < led.size:
            raise AutoblockerLedgerError(f"entry {index} outside a log of {led.size} entries")
        emit(_entry_dict(led.get(index)), as_json)


@ledger.command("range")
@STORE
@click.option("--since-ms", type=int, default=None)
@click.option("--until-ms", type=int, default=None)
@click.option("--subject", default=None)
@click.option("--domain", default=None)
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@json_option
def range_cmd(
    store: Path | None,
    since_ms: int | None,
    until_ms: int | None,
    subject: str | None,
    domain: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Entries by time window, subject and domain, in log order (by time across shards)."""
    if _sharded(store):
        with _open_shards(store) as sled:
            rows = [
                {"shard": sh, **_entry_dict(e)}
                for sh, e in sled.range(
                    since_ms=since_ms,
                    until_ms=until_ms,
                    subject=subject,
                    domain=domain,
                    limit=limit,
                )
            ]
        emit(rows, as_json, lambda: "\n".join(json.dumps(r) for r in rows))
        return
    with _open(store) as led:
        rows = [
            _entry_dict(e)
            for e in led.range(
                since_ms=since_ms, until_ms=until_ms, subject=subject, domain=domain, limit=limit
            )
        ]
    emit(rows, as_json, lambda: "\n".join(json.dumps(r) for r in rows))


@ledger.command("proof")
@STORE
@click.option("--index", type=int, default=None, help="Inclusion proof for this entry.")
@click.option(
    "--from-sth",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Consistency proof from this older signed tree head (JSON file).",
)
@click.option(
    "--event-id",
    default=None,
    help="Sharded stores: inclusion of this event through a fresh signed checkpoint.",
)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@json_option
def proof_cmd(
    store: Path | None,
    index: int | None,
    from_sth: Path | None,
    event_id: str | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Write a proof bundle (inclusion of --index, or consistency from --from-sth) for third parties.

    In a sharded store, --event-id gives one bundle: the event's inclusion in its
    shard plus that shard head's place in the signed checkpoint over all shards.
    """
    from tenfold.autoblocker_ledger._signing import SignedTreeHead
    from tenfold.autoblocker_ledger._verify import consistency_bundle, inclusion_bundle
    from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError

    if _sharded(store):
        if event_id is None or index is not None or from_sth is not None:
            raise AutoblockerLedgerError("a sharded store takes --event-id (and only that)")
        with _open_shards(store) as sled:
            bundle = sled.proof(event_id)
            bundle["public_key"] = sled.key.public_bytes.hex()
        _emit_bundle(bundle, out, as_json)
        return
    if event_id is not None:
        raise AutoblockerLedgerError("--event-id is for sharded stores; give --index here")
    if (index is None) == (from_sth is None):
        raise AutoblockerLedgerError("give exactly one of --index or --from-sth")
    with _open(store) as led:
        sth = led.tree_head()
        if index is not None:
            if not 0 <= index < sth.size:
                raise AutoblockerLedgerError(f"entry {index} outside a log of {sth.size} entries")
            bundle = inclusion_bundle(led, index, sth)
        else:
            assert from_sth is not None
            try:
                raw = from_sth.read_bytes()
            except OSError as exc:
                raise AutoblockerLedgerError(f"cannot read {from_sth}: {exc.strerror}") from None
            old = SignedTreeHead.from_dict(_read_json(raw, str(from_sth), "the tree head"))
            if not 0 < old.size <= sth.size:
                raise AutoblockerLedgerError(f"old tree head size {old.size} outside 1..{sth.size}")
            bundle = consistency_bundle(led, old, sth)
        bundle["public_key"] = led.key.public_bytes.hex()
    _emit_bundle(bundle, out, as_json)


def _emit_bundle(bundle: dict[str, Any], out: Path | None, as_json: bool) -> None:
    """A proof bundle on stdout, or written atomically to ``out``."""
    text = json.dumps(bundle, indent=2)
    if out is None:
        emit(bundle, as_json, text)  # the bundle is JSON either way; --json prints it compact
    else:
        _write_atomically(out, text + "\n")
        if as_json:
            sth = bundle.get("sth")
            size = sth.get("size") if isinstance(sth, dict) else None
            emit({"out": str(out), "type": bundle.get("type"), "size": size}, True)


def _write_atomically(out: Path, text: str) -> None:
    """Write ``out`` through a temporary file; an unwritable path is one clear error."""
    from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError
    from tenfold.core.files import replace_file

    try:
        replace_file(out, text)  # nothing half-written is left behind
    except OSError as exc:
        raise AutoblockerLedgerError(f"cannot write {out}: {exc.strerror}") from None


@ledger.command("verify")
@click.argument("bundle", type=click.File("rb"), default="-")
@click.option(
    "--public-key", required=True, help="The log's Ed25519 public key (hex, or a file holding it)."
)
@json_option
def verify_cmd(bundle: IO[bytes], public_key: str, as_json: bool) -> None:
    """Verify a proof bundle as a third party: signature, then the RFC 9162 proof. Exit 1 if it fails."""
    from tenfold.autoblocker_ledger._verify import verify_bundle

    doc = _read_json(bundle.read(), _source_name(bundle), "the proof bundle")
    result = verify_bundle(doc, _read_public_key(public_key))

    def text() -> str:
        if result["verified"] == "sharded_inclusion":
            return (
                f"ok: inclusion proof verifies in shard {result['shard']} at size "
                f"{result['size']}, through the checkpoint over {result['checkpoint_size']} shards"
            )
        return f"ok: {result['verified']} proof verifies at size {result['size']}"

    emit(result, as_json, text)


@ledger.command("checkpoint")
@STORE
@json_option
def checkpoint_cmd(store: Path | None, as_json: bool) -> None:
    """Sign and print a checkpoint over every shard's head (sharded stores)."""
    from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError

    if not _sharded(store):
        raise AutoblockerLedgerError(
            f"{_store_path(store)} is not a sharded store (create one with append --shards N)"
        )
    with _open_shards(store) as sled:
        cp = sled.checkpoint()
    out = cp.to_dict()
    emit(
        out,
        as_json,
        lambda: (
            f"checkpoint over {cp.layout.shards} shards, {cp.size} entries, "
            f"root {cp.root.hex()[:16]}..."
        ),
    )


@ledger.command("snapshot")
@STORE
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def snapshot_cmd(store: Path | None, out: Path, as_json: bool) -> None:
    """Write a self-contained, signed snapshot of the log to OUT."""
    with _open(store) as led:
        t0 = time.perf_counter()
        sth = led.snapshot(out)
        emit(
            {
                "sth": sth.to_dict(),
                "seconds": time.perf_counter() - t0,
                "public_key": led.key.public_bytes.hex(),
            },
            as_json,
        )


@ledger.command("recover")
@STORE
@click.argument("snapshot", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--public-key",
    default=None,
    help="Trusted log key (hex or file); default: the key the snapshot names.",
)
@json_option
def recover_cmd(store: Path | None, snapshot: Path, public_key: str | None, as_json: bool) -> None:
    """Rebuild a store from SNAPSHOT, re-verifying signature, chain and tree."""
    from tenfold.autoblocker_ledger._store import EmbeddedLedger

    trusted = _read_public_key(public_key) if public_key else None
    t0 = time.perf_counter()
    from tenfold.autoblocker_ledger._config import load_config
    from tenfold.core.progress import Progress

    target = store or Path(load_config().store)
    with (
        Progress("ledger recover", unit="s", quiet=as_json, clock=True, interval_s=10),
        EmbeddedLedger.recover(snapshot, target, trusted_key=trusted) as led,
    ):
        size, root = led.size, led.tree.root().hex()
    out = {"size": size, "root": root, "seconds": time.perf_counter() - t0}
    emit(out, as_json, f"recovered {size} entries, root {root[:16]}...")


@ledger.command("serve")
@STORE
@server_cli_options(8089)
@click.option(
    "--snapshot-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where POST /snapshot (admin) writes snapshots; off without it.",
)
def serve_cmd(store: Path | None, snapshot_dir: Path | None, **server: Any) -> None:
    """Serve the log over HTTP: POST /events, GET /entries/N, /sth, /proof?index=N, /decisions.

    Loopback without credentials serves everyone as admin; any other address needs
    --credentials (API keys: tenfold credentials issue) or --tls-cert/--tls-key/--tls-ca.
    """
    from tenfold.autoblocker_ledger._server import serve
    from tenfold.core.server import options_from_cli

    options = options_from_cli(server)
    with _open(store, create=True) as led:
        serve(
            led,
            options,
            snapshot_dir=snapshot_dir,
            announce=lambda url: click.echo(f"serving the ledger on {url}", err=True),
        )


@click.group("autoblock")
def autoblock() -> None:
    """Turn detections into block decisions recorded in the ledger."""


def _log_lines(log: IO[bytes]) -> Iterator[tuple[int, str]]:
    """``(byte offset, line)`` of every line; bytes that are not UTF-8 become U+FFFD.

    Log lines are written by attackers: they are read as bytes, never decoded
    strictly, so one bad byte sequence cannot stop the run.
    """
    offset = 0
    for raw in log:
        yield offset, raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
        offset += len(raw)


@autoblock.command("run")
@click.argument("rules", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@STORE
@click.option(
    "--log", "log", type=click.File("rb"), default="-", help="Log lines to scan (default stdin)."
)
@click.option(
    "--nft",
    "nft_seconds",
    type=Finite(0.0, open_min=True),
    default=None,
    help="Also run the nftables bouncer (root) for this many seconds, then remove its table.",
)
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="jsonl: print each decision as it is recorded, in the decision stream every bouncer "
    "reads (tenfold kernel xdp follow, tenfold autoblock nft-follow).",
)
@json_option
def run_cmd(
    rules: Path,
    store: Path | None,
    log: IO[bytes],
    nft_seconds: float | None,
    out_format: str,
    as_json: bool,
) -> None:
    """Scan log lines with RULES (fail2ban-style), record events and decisions, print the decisions.

    Event ids come from the input (the log's path, the line's byte offset and
    its text), so scanning the same log again records nothing twice.
    """
    import os

    from tenfold.autoblocker_ledger._autoblock import (
        Autoblocker,
        Decision,
        DecisionStream,
        load_rules,
    )
    from tenfold.autoblocker_ledger._bouncer import stream_decision
    from tenfold.core.events import encode_decision

    if as_json and out_format == "jsonl":
        raise click.UsageError("give --json or --format jsonl, not both")
    blocker = Autoblocker(load_rules(rules))
    name = _source_name(log)
    source = name if name == "<stdin>" else os.path.realpath(name)
    decisions: list[Decision] = []
    with _open(store, create=True) as led:
        for offset, line in _log_lines(log):
            now = int(time.time() * 1000)
            for found in blocker.events_from_line(line, now, source=source, offset=offset):
                receipt = led.append(found)
                # Seen in an earlier run: replay it as it was recorded (its time too).
                ev = led.get(receipt.index).event if receipt.duplicate else found
                new = blocker.observe(ev)
                if new:
                    receipts = led.append_batch(blocker.decision_events(new))
                    fresh = [(d, r) for d, r in zip(new, receipts, strict=True) if not r.duplicate]
                    decisions.extend(d for d, _ in fresh)
                    if out_format == "jsonl":
                        for d, r in fresh:
                            sd = stream_decision(d, r.index)
                            if sd is not None:
                                sys.stdout.buffer.write(encode_decision(sd))
                        sys.stdout.buffer.flush()
        if blocker.skipped:
            click.echo(
                f"{name}: skipped {blocker.skipped} matches whose subject is not a valid "
                "event subject (empty, over 256 characters, or not Unicode)",
                err=True,
            )
        out = [
            {
                "action": d.action,
                "scope": d.scope,
                "value": d.value,
                "duration_s": d.duration_s,
                "origin": d.origin,
                "reason": d.reason,
                "rule": d.rule,
            }
            for d in decisions
        ]
        if out_format != "jsonl":
            emit(
                out,
                as_json,
                lambda: (
                    "\n".join(
                        f"{o['action']} {o['scope']} {o['value']} for {o['duration_s']:g} s ({o['rule']}: {o['reason']})"
                        for o in out
                    )
                    or "no decisions"
                ),
            )
        if nft_seconds is not None:
            from tenfold.autoblocker_ledger._bouncer import NftBouncer

            with NftBouncer() as bouncer:
                stream = DecisionStream(led)
                deadline = time.monotonic() + nft_seconds
                while True:
                    bouncer.sync(stream, int(time.time() * 1000))
                    click.echo(
                        f"nft table inet {bouncer.table}: {', '.join(bouncer.blocked()) or 'empty'}",
                        err=True,
                    )
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    sys.stdout.flush()


@autoblock.command("decisions")
@STORE
@click.option(
    "--after",
    type=click.IntRange(-1),
    default=-1,
    show_default=True,
    help="Only decisions recorded after this ledger index (a follower's last one).",
)
def decisions_cmd(store: Path | None, after: int) -> None:
    """Print the ledger's decisions as the decision stream (JSON lines), in ledger order."""
    from tenfold.autoblocker_ledger._bouncer import stream_decisions
    from tenfold.core.events import encode_decision

    with _open(store) as led:
        for d in stream_decisions(led, after):
            sys.stdout.buffer.write(encode_decision(d))
    sys.stdout.buffer.flush()


@autoblock.command("nft-follow")
@follow_options
@click.option("--table", default=None, help="nftables table name (default tenfold_ledger_<pid>).")
def nft_follow_cmd(
    decisions: IO[bytes], table: str | None, state_path: Path | None, exit_at_eof: bool
) -> None:
    """The nftables bouncer (root): apply the decision stream to its own table, removed on exit."""
    import re

    if table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", table):
        shown = table if len(table) <= 40 else table[:40] + "..."
        raise click.BadParameter(f"{shown!r}: 1-64 letters, digits or '_'", param_hint="--table")
    from tenfold.autoblocker_ledger._bouncer import NftBouncer

    with NftBouncer(table) as bouncer:
        follow_decisions(bouncer, decisions, state_path, exit_at_eof)
