"""The HTTP front: append, read, prove, the decision stream, roles, and refusals recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenfold.autoblocker_ledger._autoblock import Autoblocker, Decision, Rule
from tenfold.autoblocker_ledger._server import REFUSAL_KIND, ledger_server
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.autoblocker_ledger._verify import verify_bundle
from tenfold.core.server import Credentials, ServerOptions


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, EmbeddedLedger]]:
    led = EmbeddedLedger(tmp_path / "s")
    server, _ = ledger_server(led, ServerOptions(), snapshot_dir=tmp_path / "snaps")
    with server:
        yield server.url, led
    led.close()


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
    with httpx.Client(base_url=base) as c:
        receipts = c.post("/events", content=body).json()
        assert [r["index"] for r in receipts] == [0, 1]
        assert c.get("/entries/0").json()["subject"] == "203.0.113.8"
        assert c.get("/entries/7").status_code == 404
        bundle = c.get("/proof", params={"index": 0}).json()
        assert verify_bundle(bundle, led.key.public_bytes)["index"] == 0
        snap = c.get("/decisions", params={"startup": "true"}).json()
        assert [d["value"] for d in snap["new"]] == ["203.0.113.8"]
        assert c.get("/decisions", params={"since": snap["position"]}).json()["new"] == []
        bad = c.post("/events", content='{"event_id": 5}')
        assert bad.status_code == 400 and bad.json()["error"].startswith("line 1:")
        assert c.get("/proof", params={"index": "x"}).status_code == 400
        shot = c.post("/snapshot")
        assert shot.status_code == 200 and Path(shot.json()["path"]).is_file()


def _ev(i: int) -> str:
    return json.dumps(
        {"event_id": f"e{i}", "domain": "auth", "kind": "k", "subject": "s", "time_ms": i}
    )


def test_roles_and_repeated_refusals_become_a_security_event(tmp_path: Path) -> None:
    creds = Credentials()
    writer = creds.issue("sensor-1", ["writer"])
    bouncer = creds.issue("edge-fw", ["bouncer"])
    admin = creds.issue("ops", ["admin"])
    led = EmbeddedLedger(tmp_path / "s")
    server, recorder = ledger_server(
        led, ServerOptions(credentials=creds), refusals_per_event=5, window_s=60
    )
    with server, httpx.Client(base_url=server.url) as c:
        w = {"Authorization": f"Bearer {writer}"}
        b = {"X-Api-Key": bouncer}
        assert c.post("/events", content=_ev(1), headers=w).status_code == 200
        assert c.post("/events", content=_ev(2), headers=b).status_code == 403  # wrong role
        assert c.get("/decisions", params={"startup": "true"}, headers=b).status_code == 200
        assert c.get("/decisions", params={"startup": "true"}, headers=w).status_code == 403
        assert c.post("/snapshot", headers=w).status_code == 403
        assert c.post("/snapshot", headers={"X-Api-Key": admin}).status_code == 404  # no dir
        assert c.get("/sth").status_code == 401
        assert c.get("/sth", headers={"X-Api-Key": "tfk_guess"}).json()["status"] == 401
        for _ in range(10):
            c.get("/sth")
        deadline = time.monotonic() + 5
        while recorder.recorded < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    refusals = [e for e in led.entries() if e.event.kind == REFUSAL_KIND]
    assert len(refusals) >= 2 and refusals[0].event.subject == "127.0.0.1"
    assert refusals[0].event.evidence["refusals"] == 5
    # The project's own autoblocker bans the offender from those events.
    blocker = Autoblocker(
        [Rule(name="http-abuse", domain="ledger", kind=REFUSAL_KIND, max_retry=2)]
    )
    bans = [d for e in refusals for d in blocker.observe(e.event)]
    assert [(d.action, d.value) for d in bans] == [("ban", "127.0.0.1")]
    led.close()


def test_beyond_loopback_without_credentials_is_refused(tmp_path: Path) -> None:
    from tenfold.core.errors import ServerError

    with EmbeddedLedger(tmp_path / "s") as led, pytest.raises(ServerError, match="credentials"):
        ledger_server(led, ServerOptions(host="0.0.0.0"))


def test_events_per_request_are_bounded_and_nothing_of_a_refused_batch_is_written(
    tmp_path: Path,
) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        server, _ = ledger_server(led, ServerOptions(), max_batch_events=3)
        with server, httpx.Client(base_url=server.url) as c:
            r = c.post("/events", content="\n".join(_ev(i) for i in range(4)))
            assert r.status_code == 413 and "more than 3 events" in r.json()["error"]
            bad = "\n".join([_ev(10), '{"event_id": "x", "time_ms": 10000000000000000000}'])
            assert c.post("/events", content=bad).status_code == 400
            assert led.size == 0
            assert c.post("/events", content="\n".join(_ev(i) for i in range(3))).status_code == 200
            assert led.size == 3
