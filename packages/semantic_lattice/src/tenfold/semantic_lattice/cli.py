"""``tenfold lattice load|reason|query|explain|export|serve``: the store from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from tenfold.core.cli import Finite, emit, json_option, server_cli_options
from tenfold.semantic_lattice.errors import SemanticLatticeError

__all__ = ["lattice"]

_store_option = click.option(
    "--store",
    "store_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("lattice.duckdb"),
    show_default=True,
    help="The DuckDB file holding the triples, rules and closure.",
)


def _open(path: Path, *, must_exist: bool = True) -> Any:
    from tenfold.semantic_lattice._store import LatticeStore

    if must_exist and not path.exists():
        raise SemanticLatticeError(
            f"store {path} does not exist (create it with `tenfold lattice load`)"
        )
    return LatticeStore(path)


@click.group(name="lattice")
def lattice() -> None:
    """Dynamic Semantic Lattice Engine: RDF + Datalog with lattices over DuckDB."""


@lattice.command()
@_store_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["nt", "ttl", "csv"]), default=None)
@json_option
def load(store_path: Path, files: tuple[Path, ...], fmt: str | None, as_json: bool) -> None:
    """Load N-Triples, Turtle or CSV files into the store (created if missing)."""
    start = time.perf_counter()
    for f in files:  # before the store opens: a typo answers at once and creates nothing
        try:
            f.stat()
        except OSError as exc:
            raise SemanticLatticeError(f"cannot read {f}: {exc.strerror}") from None
    created = not store_path.exists()
    try:
        with _open(store_path, must_exist=False) as store:
            added = {str(f): store.load(f, fmt=fmt) for f in files}
            total = store.count()
    except BaseException:
        if created:  # a load that failed leaves no empty store behind
            for leftover in (store_path, store_path.with_name(store_path.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise
    result = {
        "store": str(store_path),
        "added": added,
        "triples": total,
        "seconds": time.perf_counter() - start,
    }
    emit(result, as_json, lambda: f"loaded {sum(added.values())} triples ({total} in {store_path})")


@lattice.command()
@_store_option
@click.option(
    "--rules",
    "rules",
    multiple=True,
    default=("owl-rl",),
    show_default=True,
    help="A pack (rdfs, rdfs-full, owl-rl, owl-rl-core) or a Datalog file; repeatable.",
)
@click.option("--timeout-s", type=Finite(), default=None, help="Time budget (seconds).")
@click.option("--max-rounds", type=click.IntRange(min=0), default=None, help="Round budget.")
@click.option(
    "--max-rows", type=click.IntRange(min=0), default=None, help="Budget of derived rows."
)
@click.option("--check", is_flag=True, help="Exit 1 when the data is inconsistent.")
@json_option
def reason(
    store_path: Path,
    rules: tuple[str, ...],
    timeout_s: float | None,
    max_rounds: int | None,
    max_rows: int | None,
    check: bool,
    as_json: bool,
) -> None:
    """Materialise the rules (incrementally after new loads) and report contradictions."""
    from tenfold.semantic_lattice._engine import Budget
    from tenfold.semantic_lattice._packs import PACKS

    with _open(store_path) as store:
        for rule in rules:
            if rule in PACKS:
                store.add_rules(rule)
            else:
                path = Path(rule)
                if not path.is_file():
                    raise SemanticLatticeError(
                        f"--rules {rule}: neither a pack ({', '.join(PACKS)}) nor a file"
                    )
                store.add_rules(path.read_text("utf-8"), source=str(path))
        from tenfold.core.progress import Progress

        budget = Budget(time_s=timeout_s, rounds=max_rounds, rows=max_rows)
        with Progress("lattice reason", unit="rounds", quiet=as_json) as progress:
            stats = store.reason(
                budget, on_round=lambda r, n: progress.update(r, note=f"{n:,} facts derived")
            )
        store.optimize()
        found = store.inconsistencies()
        result = {
            "rounds": stats.rounds,
            "derived": stats.derived,
            "seconds": stats.seconds,
            "triples": store.count(),
            "inconsistencies": [
                {"rule": i.rule, "triples": [list(t) for t in i.triples]} for i in found
            ],
        }
        emit(
            result,
            as_json,
            lambda: "\n".join(
                [f"derived {stats.derived} facts in {stats.rounds} rounds, {stats.seconds:.3f} s"]
                + [f"inconsistent: {i}" for i in found]
            ),
        )
        if check and found:
            store.check_consistency()


def _run_query(store: Any, text: str) -> Any:
    from tenfold.semantic_lattice._store import _looks_like_sparql

    if _looks_like_sparql(text):
        return store.sparql(text)
    return store.datalog(text)


@lattice.command()
@_store_option
@click.argument("text")
@json_option
def query(store_path: Path, text: str, as_json: bool) -> None:
    """Run a SPARQL query (SELECT, ASK, CONSTRUCT) or a Datalog query (``triple(X, rdf:type, C)``)."""
    with _open(store_path) as store:
        result = _run_query(store, text)
    if getattr(result, "kind", "select") == "ask":
        emit({"boolean": result.boolean}, as_json, "true" if result.boolean else "false")
        return
    doc = {"columns": result.columns, "rows": [list(r) for r in result.rows]}

    def cell(value: object) -> str:
        return "" if value is None else str(value)

    emit(
        doc,
        as_json,
        lambda: "\n".join(
            ["\t".join(result.columns)] + ["\t".join(map(cell, r)) for r in result.rows]
        ),
    )


@lattice.command()
@_store_option
@click.argument("text")
@json_option
def explain(store_path: Path, text: str, as_json: bool) -> None:
    """Show the SQL a query compiles to and DuckDB's plan for it."""
    with _open(store_path) as store:
        plan = store.explain(text)
    emit({"plan": plan}, as_json, plan)


@lattice.command()
@_store_option
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def export(store_path: Path, out: Path, as_json: bool) -> None:
    """Write the closure as N-Triples."""
    with _open(store_path) as store:
        n = store.export(out)
    emit({"triples": n, "path": str(out)}, as_json, f"wrote {n} triples to {out}")


@lattice.command()
@_store_option
@server_cli_options(7878)
@click.option(
    "--query-timeout-s",
    type=Finite(0.0, 3600.0, open_min=True),
    default=30.0,
    show_default=True,
    help="Time budget of one query; past it the client gets 503.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Rows in one result; more gets 413.",
)
def serve(store_path: Path, query_timeout_s: float, max_rows: int, **server: Any) -> None:
    """Serve the SPARQL 1.1 Protocol at /sparql (GET and POST, results by Accept header).

    Also GET /query?q=... (SPARQL or Datalog, JSON rows) and GET /health.

    Loopback without credentials serves everyone; any other address needs
    --credentials (API keys: tenfold credentials issue) or --tls-cert/--tls-key/--tls-ca.
    """
    from tenfold.core.server import Server, options_from_cli
    from tenfold.semantic_lattice._protocol import ProtocolBudget, sparql_app

    options = options_from_cli(server)
    store = _open(store_path)
    budget = ProtocolBudget(timeout_s=query_timeout_s, max_rows=max_rows)
    try:
        Server(
            sparql_app(store, budget=budget), options, name="lattice", role="reader"
        ).serve_forever(lambda url: click.echo(f"serving {store_path} on {url}/sparql", err=True))
    finally:
        store.close()
