"""``lattice serve`` on the core server stack: GET /query?q=... (or /sparql?query=...), /health.

A small glue app kept apart from the engine: each query is bounded in size
(``max_query_bytes``), in time (``timeout_s``: DuckDB is interrupted, the client
gets 413) and in the rows it returns (``max_rows``: 413). One query runs at a
time (the store's DuckDB connection is not shared across threads).
"""

from __future__ import annotations

import threading
from typing import Any

from tenfold.core.server import HttpError, Request, Route, Router
from tenfold.semantic_lattice.errors import SemanticLatticeError

MAX_QUERY_BYTES = 64 * 1024
QUERY_TIMEOUT_S = 10.0
MAX_ROWS = 100_000


def run_query(store: Any, text: str) -> Any:
    """SPARQL when the text is a SELECT with a group pattern, Datalog otherwise."""
    if "select" in text.lower() and "{" in text:
        return store.sparql(text)
    return store.datalog(text)


def lattice_app(
    store: Any,
    *,
    max_query_bytes: int = MAX_QUERY_BYTES,
    timeout_s: float = QUERY_TIMEOUT_S,
    max_rows: int = MAX_ROWS,
) -> Router:
    """The query routes (reader) for an open :class:`LatticeStore`."""
    lock = threading.Lock()

    def health(req: Request) -> Any:
        with lock:
            return {"ok": True, "triples": store.count()}

    def query(req: Request) -> Any:
        text = req.query.get("q") or req.query.get("query") or ""
        if not text.strip():
            raise HttpError(400, "no query: pass ?q=... (SPARQL SELECT or Datalog)")
        if len(text.encode()) > max_query_bytes:
            raise HttpError(413, f"query is over the limit of {max_query_bytes} bytes")
        with lock:
            expired = threading.Event()

            def interrupt() -> None:
                expired.set()
                store.engine.con.interrupt()

            timer = threading.Timer(timeout_s, interrupt)
            timer.daemon = True
            timer.start()
            try:
                result = run_query(store, text)
            except Exception as exc:
                if expired.is_set():
                    raise HttpError(
                        413, f"query ran past its time budget of {timeout_s:g} s"
                    ) from None
                if isinstance(exc, SemanticLatticeError):
                    raise
                raise HttpError(400, f"query failed: {str(exc)[:300]}") from None
            finally:
                timer.cancel()
        if len(result.rows) > max_rows:
            raise HttpError(413, f"result has {len(result.rows)} rows; the limit is {max_rows}")
        return {"columns": result.columns, "rows": [list(r) for r in result.rows]}

    return Router(
        [
            Route("GET", "/health", health),
            Route("GET", "/query", query),
            Route("GET", "/sparql", query),
        ]
    )
