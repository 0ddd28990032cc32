"""The SPARQL 1.1 Protocol over a :class:`LatticeStore`, as a plain ASGI application.

``sparql_app(store)`` answers, at ``/sparql``:

* ``GET ?query=...``, ``POST`` with ``application/x-www-form-urlencoded``
  (``query=...``) or with ``application/sparql-query`` (the query as the body),
  as sections 2.1.1-2.1.3 of the SPARQL 1.1 Protocol define them;
* results negotiated from the ``Accept`` header: SPARQL JSON (the default), XML,
  CSV and TSV for SELECT and ASK; N-Triples (also served for ``text/turtle``,
  of which it is a subset) for CONSTRUCT;
* ``400`` with a one-line ``text/plain`` message for a malformed or unsupported
  query (``unsupported: ...``), ``413`` for a query longer than the budget,
  ``503`` for one that runs past its time budget, ``400`` for SPARQL Update
  (the endpoint is read-only) and for ``default-graph-uri`` /
  ``named-graph-uri`` (the store holds one graph).

``/query?q=...`` keeps the older JSON rows endpoint (SPARQL or Datalog), and
``/health`` reports the number of triples. The store is not thread-safe: one
query runs at a time, in a worker thread so the event loop stays free. The
app is server-agnostic; ``tenfold lattice serve`` runs it under uvicorn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tenfold.semantic_lattice._sparql_results import MEDIA_TYPES, serialize_result
from tenfold.semantic_lattice._store import _looks_like_sparql
from tenfold.semantic_lattice.errors import BudgetExceededError, SemanticLatticeError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from tenfold.semantic_lattice._store import LatticeStore, QueryResult

__all__ = ["ProtocolBudget", "sparql_app"]

_SELECT_TYPES = {
    "application/sparql-results+json": "json",
    "application/json": "json",
    "application/sparql-results+xml": "xml",
    "application/xml": "xml",
    "text/xml": "xml",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
}
_GRAPH_TYPES = {"application/n-triples": "nt", "text/turtle": "nt", "text/plain": "nt"}
_FORMAT_PARAM = {"json": "json", "xml": "xml", "csv": "csv", "tsv": "tsv"}


@dataclass(frozen=True)
class ProtocolBudget:
    """Limits per request: query text size, run time, and rows in a result."""

    max_query_chars: int = 100_000
    timeout_s: float = 30.0
    max_rows: int = 1_000_000


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _negotiate(accept: str, table: dict[str, str], default: str) -> str:
    """The format of the acceptable media type with the highest q (ties: first listed)."""
    best, best_q = default, -1.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        fmt = table.get(media)
        if fmt is None and media in ("*/*", "application/*", "text/*"):
            fmt = default
        if fmt is not None and q > best_q:
            best, best_q = fmt, q
    return best


def sparql_app(store: LatticeStore, *, budget: ProtocolBudget | None = None) -> ASGIApp:
    """An ASGI app serving SPARQL 1.1 Protocol queries over ``store`` (see the module doc)."""
    limits = budget or ProtocolBudget()
    lock = Lock()

    def run(text: str, sparql: bool) -> QueryResult:
        with lock:
            if sparql or _looks_like_sparql(text):
                # The evaluator stops itself at the budget, so the lock is not held on.
                return store.sparql(text, timeout_s=limits.timeout_s)
            return store.datalog(text)

    async def answer(text: str, *, sparql: bool = True) -> QueryResult:
        if not text.strip():
            raise _Refused(400, "missing query: pass query=... (GET or form POST) or a body")
        if len(text) > limits.max_query_chars:
            raise _Refused(413, f"query of {len(text):,} characters exceeds the limit of "
                                f"{limits.max_query_chars:,}")  # fmt: skip
        try:
            # The evaluator stops itself at the budget; this catches the paths that
            # answer in one step (DuckDB) and gives the evaluator a second to report.
            with anyio.fail_after(limits.timeout_s + 1.0):
                result = await anyio.to_thread.run_sync(run, text, sparql, abandon_on_cancel=True)
        except (TimeoutError, BudgetExceededError):
            raise _Refused(
                503, f"query ran past its time budget of {limits.timeout_s:g} s"
            ) from None
        except SemanticLatticeError as exc:
            raise _Refused(400, str(exc)) from None
        if len(result.rows) > limits.max_rows:
            raise _Refused(
                413, f"result of {len(result.rows):,} rows exceeds the limit of {limits.max_rows:,}"
            )
        return result

    async def sparql_endpoint(request: Request) -> Response:
        try:
            text = await _query_text(request)
            result = await answer(text)
        except _Refused as exc:
            return PlainTextResponse(str(exc) + "\n", status_code=exc.status)
        accept = request.headers.get("accept", "")
        wanted = request.query_params.get("format") or request.query_params.get("output")
        if result.kind == "graph":
            body = "".join(f"{s} {p} {o} .\n" for s, p, o in result.rows)
            fmt = _negotiate(accept, _GRAPH_TYPES, "nt")
            media = (
                "text/turtle"
                if "text/turtle" in accept and "n-triples" not in accept
                else (MEDIA_TYPES[fmt])
            )
            return Response(body, media_type=f"{media}; charset=utf-8")
        fmt = _FORMAT_PARAM.get((wanted or "").lower()) or _negotiate(accept, _SELECT_TYPES, "json")
        boolean = result.boolean if result.kind == "ask" else None
        body = serialize_result(fmt, result.columns, result.rows, boolean)
        return Response(body, media_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8")

    async def rows_endpoint(request: Request) -> Response:
        text = request.query_params.get("q") or request.query_params.get("query") or ""
        try:
            result = await answer(text, sparql=False)
        except _Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return Response(
            json.dumps({"columns": result.columns, "rows": [list(r) for r in result.rows]},
                       default=str),
            media_type="application/json",
        )  # fmt: skip

    async def health(_: Request) -> Response:
        with lock:
            count = store.count()
        return JSONResponse({"ok": True, "triples": count})

    async def http_error(_: Request, exc: Exception) -> Response:
        # Routing errors (404, 405) as JSON, like every other error of the server stack.
        status = getattr(exc, "status_code", 500)
        return JSONResponse({"error": str(getattr(exc, "detail", exc))}, status_code=status)

    return Starlette(
        routes=[
            Route("/sparql", sparql_endpoint, methods=["GET", "POST"]),
            Route("/query", rows_endpoint, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


async def _query_text(request: Request) -> str:
    params = request.query_params
    if request.method == "GET":
        if "update" in params:
            raise _Refused(400, "unsupported: SPARQL Update (this endpoint is read-only)")
        _refuse_dataset(params.getlist("default-graph-uri") + params.getlist("named-graph-uri"))
        return params.get("query", "")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        try:
            form = parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise _Refused(400, "the form body is not UTF-8") from None
        if "update" in form:
            raise _Refused(400, "unsupported: SPARQL Update (this endpoint is read-only)")
        _refuse_dataset(form.get("default-graph-uri", []) + form.get("named-graph-uri", []))
        return form.get("query", [""])[0]
    if ctype == "application/sparql-query":
        _refuse_dataset(params.getlist("default-graph-uri") + params.getlist("named-graph-uri"))
        raw = await request.body()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(400, "the query body is not UTF-8") from None
    if ctype == "application/sparql-update":
        raise _Refused(400, "unsupported: SPARQL Update (this endpoint is read-only)")
    raise _Refused(
        415,
        f"unsupported content type {ctype or '(none)'}: use application/sparql-query "
        "or application/x-www-form-urlencoded",
    )


def _refuse_dataset(uris: list[str]) -> None:
    if uris:
        raise _Refused(
            400, "unsupported: default-graph-uri / named-graph-uri (the store holds one graph)"
        )
