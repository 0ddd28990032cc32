"""A small HTTP server for a saved model: POST /predict, GET /health.

Request: ``{"rows": [{"column": value, ...}, ...]}``; response:
``{"probabilities": [[p0, p1], ...], "classes": [...]}``. Bad rows get HTTP 400
with the reason; the server never dies on a bad request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tenfold.auto_learner._model import Model
from tenfold.auto_learner.errors import AutoLearnerError

__all__ = ["ModelServer"]

MAX_BODY = 16 * 1024 * 1024


class ModelServer:
    """A saved model served over HTTP: ``POST /predict`` with ``{"rows": [...]}``, ``GET /health``."""

    def __init__(self, model: Model, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        self.predictor = model.compiled()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(
                        200,
                        {"status": "ok", "family": model.family, "features": model.schema.names},
                    )
                else:
                    self._send(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:
                if self.path != "/predict":
                    self._send(404, {"error": f"no route {self.path}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > MAX_BODY:
                    self._send(400, {"error": f"body must be 1 to {MAX_BODY} bytes"})
                    return
                try:
                    doc = json.loads(self.rfile.read(length))
                    rows = doc["rows"]
                    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                        raise TypeError("rows must be a list of objects")
                    x = model.schema.encode_rows(rows)
                    proba = server.predictor.predict_proba(x)
                except (ValueError, KeyError, TypeError, AutoLearnerError) as exc:
                    self._send(400, {"error": f"{type(exc).__name__}: {exc}"})
                    return
                self._send(
                    200, {"probabilities": proba.round(6).tolist(), "classes": model.classes}
                )

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> ModelServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="tenfold-serve"
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
