"""The core abuse suite against `ledger serve`: API keys, and mutual TLS with roles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenfold.autoblocker_ledger._server import ledger_server
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.core.server import Credentials
from tenfold.core.server_abuse import ATTACKS, AbuseTarget, abuse_options, run_attack
from tenfold.core.tls import make_tls_bundle


def _write(c: Any, i: int) -> Any:
    ev = {"event_id": f"ack{i}", "domain": "auth", "kind": "k", "subject": "s", "time_ms": i}
    r = c.post("/events", content=json.dumps(ev))
    assert r.status_code == 200, r.text
    return r.json()[0]["index"], f"ack{i}"


def _read_back(c: Any, proof: Any) -> bool:
    index, event_id = proof
    r = c.get(f"/entries/{index}")
    return bool(r.status_code == 200 and r.json()["event_id"] == event_id)


@pytest.fixture(scope="module", params=["api-key", "mtls"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AbuseTarget]:
    tmp = tmp_path_factory.mktemp("ledger-abuse")
    led = EmbeddedLedger(tmp / "store")
    creds = Credentials()
    if request.param == "api-key":
        writer = creds.issue("sensor", ["writer", "reader"])
        bouncer = creds.issue("edge", ["bouncer"])
        server, _ = ledger_server(led, abuse_options(credentials=creds))
        headers = {"Authorization": f"Bearer {writer}"}
        wrong = ({"X-Api-Key": bouncer}, "POST", "/events")
        tls = None
    else:
        bundle = make_tls_bundle(tmp / "tls", ["server", "sensor", "edge"])
        creds.issue("sensor", ["writer", "reader"])
        creds.issue("edge", ["bouncer"])
        server, _ = ledger_server(led, abuse_options(credentials=creds, tls=bundle["server"]))
        headers = {}
        wrong = None  # the role check over mTLS is in test_ledger_mtls_roles
        tls = bundle["sensor"]
    with server:
        yield AbuseTarget(
            server=server,
            normal=("GET", "/entries/0", None),
            body_path="/events",
            headers=headers,
            wrong_role=wrong,
            write=_write,
            read_back=_read_back,
            client_tls=tls,
        )
    led.close()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_ledger_survives_abuse(attack: str, target: AbuseTarget) -> None:
    run_attack(attack, target)


def test_ledger_mtls_roles(tmp_path: Path) -> None:
    import httpx

    bundle = make_tls_bundle(tmp_path / "tls", ["server", "sensor", "edge", "stranger"])
    creds = Credentials()
    creds.issue("sensor", ["writer"])
    creds.issue("edge", ["bouncer"])
    with EmbeddedLedger(tmp_path / "s") as led:
        server, _ = ledger_server(led, abuse_options(credentials=creds, tls=bundle["server"]))
        with server:

            def client(name: str) -> httpx.Client:
                ctx = bundle[name].client_context()
                return httpx.Client(base_url=server.url, verify=ctx, timeout=10)

            ev = '{"event_id":"m1","domain":"d","kind":"k","subject":"s","time_ms":1}'
            with client("sensor") as c:
                assert c.post("/events", content=ev).status_code == 200
                assert c.get("/decisions", params={"since": 0}).status_code == 403
            with client("edge") as c:
                assert c.get("/decisions", params={"since": 0}).status_code == 200
                assert c.post("/events", content=ev).status_code == 403
            with client("stranger") as c:
                r = c.get("/sth")
                assert r.status_code == 403 and "stranger" in r.json()["error"]
