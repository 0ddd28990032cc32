"""The HTTP server for a saved model, on the core server stack: POST /predict, GET /health.

Request: ``{"rows": [{"column": value, ...}, ...]}`` with at most ``max_batch_rows``
rows (413 beyond); response: ``{"probabilities": [[p0, p1], ...], "classes": [...]}``.
Bad rows get HTTP 400 with the reason; the server never dies on a bad request.
Limits, timeouts, credentials and rate limits are :mod:`tenfold.core.server`'s.
"""

from __future__ import annotations

from typing import Any

from tenfold.auto_learner._model import Model
from tenfold.auto_learner.errors import AutoLearnerError
from tenfold.core.server import HttpError, Request, Route, Router, Server, ServerOptions

__all__ = ["ModelServer"]

MAX_BODY = 16 * 1024 * 1024
MAX_BATCH_ROWS = 10_000


def model_app(model: Model, *, max_batch_rows: int = MAX_BATCH_ROWS) -> Router:
    """``POST /predict`` (reader) and ``GET /health`` (reader) for ``model``."""
    predictor = model.compiled()

    def health(req: Request) -> Any:
        return {"status": "ok", "family": model.family, "features": model.schema.names}

    def predict(req: Request) -> Any:
        doc = req.json()
        rows = doc.get("rows") if isinstance(doc, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise HttpError(400, 'body must be {"rows": [{column: value, ...}, ...]}')
        if len(rows) > max_batch_rows:
            raise HttpError(413, f"{len(rows)} rows in one request; the limit is {max_batch_rows}")
        if not rows:
            return {"probabilities": [], "classes": model.classes}
        try:
            x = model.schema.encode_rows(rows)
            proba = predictor.predict_proba(x)
        except (ValueError, KeyError, TypeError, AutoLearnerError) as exc:
            raise HttpError(400, f"{type(exc).__name__}: {exc}") from None
        return {"probabilities": proba.round(6).tolist(), "classes": model.classes}

    return Router(
        [Route("GET", "/health", health), Route("POST", "/predict", predict, role="reader")]
    )


class ModelServer:
    """Serve ``model``: ``start()`` in the background (tests, notebooks) or ``serve_forever()``."""

    def __init__(
        self,
        model: Model,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: ServerOptions | None = None,
        max_batch_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        self.model = model
        if options is None:
            options = ServerOptions(host=host, port=port, max_body_bytes=MAX_BODY)
        self.server = Server(model_app(model, max_batch_rows=max_batch_rows), options, name="learn")
        self._started = False

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> ModelServer:
        self.server.start()
        self._started = True
        return self

    def serve_forever(self, announce: Any = None) -> None:
        self.server.serve_forever(announce)

    def stop(self) -> None:
        if self._started:
            self.server.stop()
            self._started = False
