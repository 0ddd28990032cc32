"""Prometheus metrics over HTTP, on the core server stack (loopback, read-only)."""

from __future__ import annotations

from typing import Any

from tenfold.core.server import Reply, Request, Route, Router, Server, ServerOptions

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def metrics_app(pipeline: Any) -> Router:
    """``GET /metrics`` (reader): the pipeline's Prometheus exposition."""

    def metrics(req: Request) -> Reply:
        return Reply(pipeline.prometheus().encode(), content_type=PROMETHEUS_TEXT)

    return Router([Route("GET", "/metrics", metrics)])


def serve_metrics(pipeline: Any, port: int, options: ServerOptions | None = None) -> Server:
    """Serve ``pipeline``'s metrics on 127.0.0.1:``port`` in the background; returns the server."""
    options = options or ServerOptions(host="127.0.0.1", port=port, max_body_bytes=1024)
    return Server(metrics_app(pipeline), options, name="metrics").start()
