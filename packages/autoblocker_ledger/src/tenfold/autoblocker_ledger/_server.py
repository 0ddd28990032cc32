"""A small HTTP front for an embedded ledger (standard library only).

``POST /events`` (JSON lines) appends; ``GET /entries/N``, ``/sth``,
``/proof?index=N`` read; ``GET /decisions?startup=true`` and
``/decisions?since=P`` serve the decision stream to bouncers.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tenfold.autoblocker_ledger._autoblock import Decision, DecisionStream
from tenfold.autoblocker_ledger._store import EmbeddedLedger, events_from_lines
from tenfold.autoblocker_ledger._verify import inclusion_bundle
from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError


def _decision(d: Decision) -> dict[str, Any]:
    return {
        "action": d.action,
        "scope": d.scope,
        "value": d.value,
        "duration_s": d.duration_s,
        "origin": d.origin,
        "reason": d.reason,
        "rule": d.rule,
        "time_ms": d.time_ms,
    }


def make_handler(led: EmbeddedLedger) -> type[BaseHTTPRequestHandler]:
    stream = DecisionStream(led)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, obj: Any) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return

        def do_POST(self) -> None:
            if urlparse(self.path).path != "/events":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            text = self.rfile.read(length).decode("utf-8", "replace")
            try:
                receipts = led.append_batch(list(events_from_lines(text.splitlines())))
            except AutoblockerLedgerError as exc:
                self._send(400, {"error": str(exc)})
                return
            self._send(
                200,
                [
                    {"index": r.index, "event_id": r.event_id, "duplicate": r.duplicate}
                    for r in receipts
                ],
            )

        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/sth":
                    self._send(200, led.tree_head().to_dict())
                elif url.path.startswith("/entries/"):
                    e = led.get(int(url.path.rsplit("/", 1)[1]))
                    self._send(200, {"index": e.index, "leaf": e.leaf.hex(), **e.event.to_dict()})
                elif url.path == "/proof":
                    self._send(200, inclusion_bundle(led, int(q["index"]), led.tree_head()))
                elif url.path == "/decisions":
                    now = int(time.time() * 1000)
                    if q.get("startup") == "true":
                        batch = stream.snapshot(now)
                    else:
                        batch = stream.changes(int(q.get("since", "0")))
                    self._send(
                        200,
                        {
                            "position": batch.position,
                            "new": [_decision(d) for d in batch.new],
                            "deleted": [_decision(d) for d in batch.deleted],
                        },
                    )
                else:
                    self._send(404, {"error": "not found"})
            except (ValueError, KeyError, IndexError, AutoblockerLedgerError) as exc:
                self._send(400, {"error": str(exc)})

    return Handler


def serve(led: EmbeddedLedger, host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), make_handler(led))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
