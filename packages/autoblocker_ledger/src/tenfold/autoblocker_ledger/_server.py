"""The ledger's HTTP API on the core server stack (:mod:`tenfold.core.server`).

Routes and the role each needs:

* ``POST /events`` (writer): JSON lines, at most ``max_batch_events`` per request;
  returns one receipt per event.
* ``GET /entries/{N}``, ``GET /sth``, ``GET /proof?index=N`` (reader).
* ``GET /decisions?startup=true`` then ``/decisions?since=P`` (bouncer): the
  decision stream a bouncer polls.
* ``POST /snapshot`` (admin): a snapshot into the server's snapshot directory.

Refused requests (bad credentials, wrong role, rate limit, oversized or stalled
bodies) are counted per client address; every ``refusals_per_event`` refusals
within ``window_s`` seconds the ledger records a ``ledger``/``http_refused``
security event about that address, so an autoblocker rule on that kind bans it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenfold.autoblocker_ledger._autoblock import Decision, DecisionStream
from tenfold.autoblocker_ledger._events import SecurityEvent
from tenfold.autoblocker_ledger._store import EmbeddedLedger, events_from_lines
from tenfold.autoblocker_ledger._verify import inclusion_bundle
from tenfold.core.server import (
    HttpError,
    Refusal,
    Request,
    Route,
    Router,
    Server,
    ServerOptions,
)

MAX_BATCH_EVENTS = 10_000
REFUSAL_DOMAIN = "ledger"
REFUSAL_KIND = "http_refused"


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


class RefusalRecorder:
    """Counts refusals per client address and records a security event every ``every``.

    Invariant: for each address, the counter holds the refusals since the start of
    its current window; it is reset when a window of ``window_s`` passes or when an
    event is written, so one event stands for ``every`` refusals in one window.
    At most ``max_clients`` addresses are tracked (the oldest dropped first).
    """

    def __init__(
        self,
        led: EmbeddedLedger,
        *,
        every: int = 20,
        window_s: float = 60.0,
        max_clients: int = 10_000,
    ) -> None:
        self.led = led
        self.every = every
        self.window_s = window_s
        self.max_clients = max_clients
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self.recorded = 0

    def __call__(self, refusal: Refusal) -> None:
        now = time.monotonic()
        with self._lock:
            start, n = self._counts.get(refusal.client_host, (now, 0))
            if now - start > self.window_s:
                start, n = now, 0
            n += 1
            if n < self.every:
                self._counts[refusal.client_host] = (start, n)
                if len(self._counts) > self.max_clients:
                    self._counts.pop(next(iter(self._counts)))
                return
            self._counts.pop(refusal.client_host, None)
        time_ms = int(time.time() * 1000)
        event = SecurityEvent(
            event_id=f"refused:{refusal.client_host}:{time_ms}",
            domain=REFUSAL_DOMAIN,
            kind=REFUSAL_KIND,
            subject=refusal.client_host[:256] or "?",
            time_ms=time_ms,
            evidence={
                "refusals": n,
                "window_s": self.window_s,
                "identity": refusal.identity[:200],
                "last_status": refusal.status,
                "last_reason": refusal.reason[:500],
            },
        )
        self.led.append(event)
        self.recorded += 1


def ledger_app(
    led: EmbeddedLedger,
    *,
    snapshot_dir: Path | None = None,
    max_batch_events: int = MAX_BATCH_EVENTS,
) -> Router:
    """The ledger's routes as a :class:`Router` (see the module doc)."""
    stream = DecisionStream(led)
    stream_lock = threading.Lock()  # the stream keeps a cursor: one reader at a time

    def append(req: Request) -> Any:
        lines = req.text().splitlines()
        if sum(1 for line in lines if line.strip()) > max_batch_events:
            raise HttpError(413, f"more than {max_batch_events} events in one request")
        receipts = led.append_batch(list(events_from_lines(lines)))
        return [
            {"index": r.index, "event_id": r.event_id, "duplicate": r.duplicate} for r in receipts
        ]

    def entry(req: Request) -> Any:
        index = req.params["index"]
        if index >= led.size:
            raise HttpError(404, f"no entry {index}: the log has {led.size}")
        e = led.get(index)
        return {"index": e.index, "leaf": e.leaf.hex(), **e.event.to_dict()}

    def sth(req: Request) -> Any:
        return led.tree_head().to_dict()

    def proof(req: Request) -> Any:
        index = req.query_int("index")
        head = led.tree_head()
        if index >= head.size:
            raise HttpError(404, f"no entry {index}: the log has {head.size}")
        return inclusion_bundle(led, index, head)

    def decisions(req: Request) -> Any:
        with stream_lock:
            if req.query.get("startup") == "true":
                batch = stream.snapshot(int(time.time() * 1000))
            else:
                batch = stream.changes(req.query_int("since", 0))
        return {
            "position": batch.position,
            "new": [_decision(d) for d in batch.new],
            "deleted": [_decision(d) for d in batch.deleted],
        }

    def snapshot(req: Request) -> Any:
        if snapshot_dir is None:
            raise HttpError(404, "snapshots are not enabled on this server (--snapshot-dir)")
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        dest = snapshot_dir / f"ledger-{time.strftime('%Y%m%dT%H%M%S')}-{led.size}.snap"
        head = led.snapshot(dest)
        return {"path": str(dest), "sth": head.to_dict()}

    def health(req: Request) -> Any:
        return {"status": "ok", "size": led.size}

    return Router(
        [
            Route("POST", "/events", append, role="writer"),
            Route("GET", "/entries/{index:int}", entry),
            Route("GET", "/sth", sth),
            Route("GET", "/proof", proof),
            Route("GET", "/decisions", decisions, role="bouncer"),
            Route("POST", "/snapshot", snapshot, role="admin"),
            Route("GET", "/health", health),
        ]
    )


def ledger_server(
    led: EmbeddedLedger,
    options: ServerOptions | None = None,
    *,
    snapshot_dir: Path | None = None,
    max_batch_events: int = MAX_BATCH_EVENTS,
    refusals_per_event: int = 20,
    window_s: float = 60.0,
) -> tuple[Server, RefusalRecorder]:
    """A :class:`Server` for ``led`` that records repeated refusals in the ledger."""
    recorder = RefusalRecorder(led, every=refusals_per_event, window_s=window_s)
    hooks: list[Callable[[Refusal], None]] = [recorder]
    app = ledger_app(led, snapshot_dir=snapshot_dir, max_batch_events=max_batch_events)
    server = Server(app, options, on_refusal=hooks, name="ledger")
    return server, recorder


def serve(
    led: EmbeddedLedger,
    options: ServerOptions,
    *,
    snapshot_dir: Path | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve ``led`` in the foreground until SIGINT/SIGTERM."""
    server, _ = ledger_server(led, options, snapshot_dir=snapshot_dir)
    server.serve_forever(announce)
