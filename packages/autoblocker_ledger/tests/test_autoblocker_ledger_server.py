"""The HTTP front: append, read, prove, and the decision stream a bouncer polls."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tenfold.autoblocker_ledger._autoblock import Decision
from tenfold.autoblocker_ledger._server import make_handler
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.autoblocker_ledger._verify import verify_bundle


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, EmbeddedLedger]]:
    led = EmbeddedLedger(tmp_path / "s")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(led))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", led
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        led.close()


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _post(url: str, body: str) -> object:
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_http_append_read_prove_and_stream(served: tuple[str, EmbeddedLedger]) -> None:
    base, led = served
    ev = {
        "event_id": "h1",
        "domain": "auth",
        "kind": "ssh_failed_login",
        "subject": "203.0.113.8",
        "time_ms": 10,
    }
    ban = Decision(
        "ban", "ip", "203.0.113.8", 3600, "auth", "test", "manual", int(time.time() * 1000)
    ).to_event(1)
    body = json.dumps(ev) + "\n" + ban.canonical().decode()
    receipts = _post(base + "/events", body)
    assert [r["index"] for r in receipts] == [0, 1]  # type: ignore[index, union-attr]
    assert _get(base + "/entries/0")["subject"] == "203.0.113.8"  # type: ignore[index]
    bundle = _get(base + "/proof?index=0")
    assert verify_bundle(bundle, led.key.public_bytes)["index"] == 0
    snap = _get(base + "/decisions?startup=true")
    assert [d["value"] for d in snap["new"]] == ["203.0.113.8"]  # type: ignore[index]
    assert _get(base + f"/decisions?since={snap['position']}")["new"] == []  # type: ignore[index]
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(base + "/events", '{"event_id": 5}')
    assert err.value.code == 400
