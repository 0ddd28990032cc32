"""Sustained SPARQL-over-HTTP load on `lattice serve`, beside pyoxigraph behind the same server.

pyoxigraph ships no HTTP server (Oxigraph's server is a separate Rust binary), so
the peer is a pyoxigraph ``Store`` served the way a Python user would serve it:
behind the same core HTTP stack, answering the same GET /query?q=... with the same
JSON. Transport, limits and load generator are identical; the query engine differs.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from tenfold.core.bench import BenchContext, Scenario, Subject
from tenfold.core.server import HttpError, Request, Route, Router
from tenfold.core.server_load import LoadTarget, http_load_row, load_subject, served

EX = "http://example.org/load/"
_CLASSES = 50


def _turtle(ctx: BenchContext) -> str:
    n = int(ctx.size(2_000, 20_000, 100_000))
    lines = [f"@prefix ex: <{EX}> ."]
    for i in range(n):
        lines.append(f"ex:s{i} a ex:C{i % _CLASSES} ; ex:next ex:s{i + 1} .")
    return "\n".join(lines)


def _query(tag: str) -> str:
    return f"SELECT ?x WHERE {{ ?x a <{EX}C{tag}> }}"


_PATH = "/query?q=" + urllib.parse.quote(_query("@N@"), safe="")
_PATH = _PATH.replace(urllib.parse.quote("@N@", safe=""), "@N@")


def _ours(mtls: bool) -> Any:
    def make(ctx: BenchContext) -> LoadTarget:
        from tenfold.semantic_lattice import LatticeStore
        from tenfold.semantic_lattice._protocol import sparql_app

        def store() -> Any:
            s = ctx.enter(LatticeStore())
            s.load_text(_turtle(ctx))
            return s

        app = sparql_app(ctx.once("lattice-http-store", store))
        url, tls = served(ctx, f"lattice-{mtls}", app, mtls=mtls, name="lattice")
        return LoadTarget(url, "GET", _PATH, tls=tls)

    return make


def oxigraph_app(store: Any) -> Router:
    """pyoxigraph behind the core stack: GET /query?q=SPARQL -> {"columns", "rows"}."""
    import pyoxigraph

    def query(req: Request) -> Any:
        text = req.query.get("q") or ""
        try:
            result = store.query(text)
        except (SyntaxError, OSError, ValueError) as exc:
            raise HttpError(400, str(exc)) from None
        if not isinstance(result, pyoxigraph.QuerySolutions):
            raise HttpError(400, "only SELECT is served")
        columns = [v.value for v in result.variables]
        rows = [
            [str(sol[i]) if sol[i] is not None else None for i in range(len(columns))]
            for sol in result
        ]
        return {"columns": columns, "rows": rows}

    return Router([Route("GET", "/query", query)])


def _peer(ctx: BenchContext) -> LoadTarget:
    import pyoxigraph

    def store() -> Any:
        s = pyoxigraph.Store()
        s.load(_turtle(ctx).encode(), format=pyoxigraph.RdfFormat.TURTLE)
        return s

    app = oxigraph_app(ctx.once("oxigraph-http-store", store))
    url, _ = served(ctx, "oxigraph", app, mtls=False, name="oxigraph")
    return LoadTarget(url, "GET", _PATH)


def _check(target: LoadTarget) -> None:
    """Both servers give the same rows for one class (results compared)."""
    import httpx

    verify: Any = target.tls.client_context() if target.tls else True
    with httpx.Client(base_url=target.url, verify=verify, timeout=30) as c:
        rows = c.get("/query", params={"q": _query("7")}).json()["rows"]
    # Every 50th subject, from s7 on: the same set whichever engine answers.
    got = sorted(r[0] for r in rows)
    n = len(got)
    assert n > 0 and all(g.startswith(f"<{EX}s") for g in got), got[:3]
    assert all(int(g[len(EX) + 2 : -1]) % _CLASSES == 7 for g in got), got[:3]


def http_scenarios() -> list[Scenario]:
    return [
        http_load_row(
            "http_sparql",
            Subject(
                "tenfold lattice serve", load_subject(_ours(False), check=_check, modulo=_CLASSES)
            ),
            Subject(
                "pyoxigraph Store behind the same server",
                load_subject(_peer, check=_check, modulo=_CLASSES),
            ),
            row="SPARQL SELECT per request, one class of 50 (loopback, no TLS)",
            counts=(
                "SPARQL queries over HTTP/1.1 from a load generator in another process, closed "
                "loop at the concurrency whose p99 stays under 10 ms; each answers one class's "
                "members (1/50 of the subjects) as JSON; the peer is pyoxigraph on the same "
                "transport (it ships no Python HTTP server)"
            ),
            fairness="both answer the same SPARQL query per request from the same generator "
            "through the same server stack; ours from the lattice store, the peer from a "
            "pyoxigraph Store holding the same triples",
            checks="every response's rows are checked by the generator (the class's members)",
        ),
        http_load_row(
            "http_sparql_mtls",
            Subject(
                "tenfold lattice serve", load_subject(_ours(True), check=_check, modulo=_CLASSES)
            ),
            Subject("tenfold lattice serve (no TLS)", load_subject(_ours(False), modulo=_CLASSES)),
            row="SPARQL SELECT per request (mutual TLS vs none)",
            counts="the same queries with a client certificate checked on every connection; peer: no TLS",
            mtls_overhead=True,
            fairness="the same server with and without mutual TLS, the same generator and queries",
            checks="ours' responses are checked by the generator; the baseline's are counted",
        ),
    ]
