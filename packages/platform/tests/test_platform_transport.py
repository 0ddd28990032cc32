"""The transport: Kafka -> decode -> asset enrichment -> ledger sink, effectively once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tenfold.autoblocker_ledger import Autoblocker, EmbeddedLedger, load_rules
from tenfold.chaos_engine._journal import locked
from tenfold.pipeline_engine import Batch
from tenfold.platform import Platform
from tenfold.platform._engine import fetch
from tenfold.platform._platform import _alive
from tenfold.platform._transport import (
    Asset,
    LedgerSink,
    ensure_topic,
    load_assets,
    produce,
)

RULES = """
[[rule]]
name = "sshd"
domain = "auth"
kind = "ssh_failed_login"
pattern = 'Failed password for \\S+ from (?P<subject>[0-9.]+) port (?P<port>[0-9]+)'
max_retry = 3
find_time_s = 600
ban_time_s = 3600
"""


def _line(i: int, ip: str) -> str:
    return f"Dec  6 01:00:00 web sshd[{i}]: Failed password for root from {ip} port {i} ssh2"


def _events(blocker: Autoblocker, lines: list[str], stream: str = "t/0") -> list:
    return [
        ev
        for off, line in enumerate(lines)
        for ev in blocker.events_from_line(line, 1_700_000_000_000 + off, source=stream, offset=off)
    ]


def test_ledger_sink_replay_after_a_crash_appends_nothing_twice(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    store, positions = tmp_path / "ledger", tmp_path / "pos.json"
    lines = [_line(i, f"203.0.113.{i % 2}") for i in range(8)]
    made: list = []
    with EmbeddedLedger(store) as led:
        sink = LedgerSink(led, Autoblocker(load_rules(rules)), positions, on_decisions=made.extend)
        assert sink.open("p") == {}
        events = _events(sink.blocker, lines)
        sink.write(Batch(events[:5], 0, {"t/0": 5}))
        assert [d.value for d in made] == ["203.0.113.0"]  # 3 hits: events 0, 2, 4
        size = led.size
    assert json.loads(positions.read_text()) == {"t/0": 5}

    # The process died after the ledger commit, before the positions were stored:
    # the next run reads the batch again, and more after it.
    positions.unlink()
    made.clear()
    with EmbeddedLedger(store) as led:
        sink = LedgerSink(led, Autoblocker(load_rules(rules)), positions, on_decisions=made.extend)
        assert sink.open("p") == {}  # read from the start again
        sink.write(Batch(events, 0, {"t/0": 8}))
        assert (sink.duplicates, sink.appended) == (5, 3)
        assert [d.value for d in made] == ["203.0.113.1"]  # its 3rd hit is event 5
        ids = [led.get(i).event.event_id for i in range(led.size)]
        assert led.size == size + 4 and len(set(ids)) == len(ids)
        kinds = Counter(led.get(i).event.kind for i in range(led.size))
        assert kinds == {"ssh_failed_login": 8, "decision.ban": 2}


def test_a_decision_lost_between_the_two_commits_is_recorded_at_open(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    store = tmp_path / "ledger"
    blocker = Autoblocker(load_rules(rules))
    events = _events(blocker, [_line(i, "198.51.100.7") for i in range(3)])
    with EmbeddedLedger(store) as led:
        led.append_batch(events)  # the events' commit landed; the decision's did not
    made: list = []
    with EmbeddedLedger(store) as led:
        sink = LedgerSink(
            led, Autoblocker(load_rules(rules)), tmp_path / "p.json", on_decisions=made.extend
        )
        sink.open("p")
        assert [(d.action, d.value, d.index) for d in made] == [("ban", "198.51.100.7", 3)]
        sink.open("p")  # a second open (the engine reruns the pipeline) adds nothing
        assert led.size == 4
    with EmbeddedLedger(store) as led:  # and a later run derives the same id: not again
        sink = LedgerSink(led, Autoblocker(load_rules(rules)), tmp_path / "p.json")
        sink.open("p")
        assert led.size == 4 and sink.decisions == 0


class _Trickle(threading.Thread):
    """Produces ``lines`` at ``per_s``; holds after ``hold_at`` lines until ``release`` is set."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        lines: list[bytes],
        per_s: float,
        hold_at: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.args = (bootstrap, topic, lines, per_s)
        self.hold_at = len(lines) if hold_at is None else hold_at
        self.release = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        bootstrap, topic, lines, per_s = self.args
        try:
            step = 100
            t0 = time.monotonic()
            for k in range(0, len(lines), step):
                if k >= self.hold_at and not self.release.is_set():
                    self.release.wait()
                    t0 = time.monotonic() - k / per_s
                produce(bootstrap, topic, lines[k : k + step])
                lag = (k + step) / per_s - (time.monotonic() - t0)
                if lag > 0:
                    time.sleep(lag)
        except BaseException as exc:
            self.error = exc


@pytest.mark.service
@pytest.mark.slow
def test_engine_killed_mid_stream_every_event_in_the_ledger_once(
    tmp_path: Path, kafka_broker, postgres
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    plat = Platform(home)
    plat.rules.write_text(RULES)
    topic = f"signals-{os.getpid()}-{time.monotonic_ns()}"
    ensure_topic(kafka_broker.bootstrap, topic)
    ensure_topic(kafka_broker.bootstrap, topic)  # a second call finds it
    load_assets(postgres.dsn, [Asset("203.0.113.5", "web-5", "ops", "high", "203.0.113.0/24")])
    chaos = tmp_path / "chaos"
    chaos.mkdir()
    with locked(chaos / "platform-faults.journal") as journal:  # as the chaos engine writes it
        journal.append({"op": "inject", "id": "f1", "kind": "process_kill", "deadline": 1.0})
        journal.append({"op": "reverted", "id": "f1", "why": "expired"})
    plat.transport_conf.write_text(
        json.dumps(
            {
                "kafka": kafka_broker.bootstrap,
                "postgres": postgres.dsn,
                "topic": topic,
                "chaos": str(chaos),
            }
        )
    )
    n, attackers = 3000, 30
    lines = [_line(i, f"203.0.113.{i % attackers}").encode() for i in range(n)]
    for i in range(0, n, 7):  # noise no rule matches, and one message that is no event
        lines[i] = f"Dec  6 01:00:00 web cron[{i}]: session opened".encode()
    lines[11] = b'{"source": "x"}'
    expected = [line.decode() for line in lines if b"Failed" in line]
    # The second part waits for the kill: a slow engine start on a busy machine must
    # not let the engine catch up with the whole stream before it is killed.
    trickle = _Trickle(kafka_broker.bootstrap, topic, lines, per_s=2000, hold_at=1200)
    trickle.start()
    killed_at = None
    try:
        plat._start_engine(60)
        pid = plat._engine_pid()
        assert pid is not None
        deadline = time.monotonic() + 60
        while plat._stored_position(f"{topic}/0") < 800:
            assert time.monotonic() < deadline, plat.engine_log.read_text()
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)  # mid-stream, mid-batch perhaps
        killed_at = plat._stored_position(f"{topic}/0")
        while _alive(pid, b"_engine"):
            time.sleep(0.02)
        assert killed_at < n
        trickle.release.set()
        plat._start_engine(60)  # resumes from the stored positions
        trickle.join(60)
        assert trickle.error is None
        deadline = time.monotonic() + 60
        while plat._stored_position(f"{topic}/0") < n:
            assert time.monotonic() < deadline, plat.engine_log.read_text()
            time.sleep(0.05)
        url = plat.engine_url()
        assert url is not None
        counts = json.loads(fetch(f"{url}/platform")[0])
        # The chaos journal is followed on its own (every 0.2 s): wait for its two records.
        while counts["events"] < len(expected) + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
            counts = json.loads(fetch(f"{url}/platform")[0])
        assert counts["transport"]["positions"] == {f"{topic}/0": n}
        # A ban per attacker, and the policy's one escalation: all 30 share a /24.
        assert (counts["events"], counts["decisions"]) == (len(expected) + 3, attackers + 1)
        # The decision stream over HTTP: every ban once, resumable from any index.
        body, headers = fetch(f"{url}/stream?after=-1")
        stream = [json.loads(line) for line in body.splitlines()]
        assert len(stream) == attackers + 1 and int(headers["x-ledger-size"]) == counts["entries"]
        assert [d["value"] for d in stream if d["scope"] == "range"] == ["203.0.113.0/24"]
        later, _ = fetch(f"{url}/stream?after={stream[9]['index']}")
        assert [json.loads(x) for x in later.splitlines()] == stream[10:]
    finally:
        trickle.release.set()
        plat.down()
    with EmbeddedLedger(home / "ledger") as led:
        entries = [led.get(i).event for i in range(led.size)]
    recorded = Counter(ev.evidence["line"] for ev in entries if ev.kind == "ssh_failed_login")
    assert sorted(recorded) == sorted(expected) and set(recorded.values()) == {1}
    bans = Counter(ev.subject for ev in entries if ev.kind == "decision.ban")
    assert len(bans) == attackers + 1 and set(bans.values()) == {1}
    enriched = [ev for ev in entries if ev.subject == "203.0.113.5" and ev.kind != "decision.ban"]
    assert enriched and all(ev.evidence["asset_host"] == "web-5" for ev in enriched)
    assert all(ev.evidence["asset_network"] == "203.0.113.0/24" for ev in enriched)
    faults = [(ev.domain, ev.kind, ev.subject) for ev in entries if ev.domain == "chaos"]
    assert faults == [("chaos", "fault_injected", "f1"), ("chaos", "fault_reverted", "f1")]
    (dead,) = [ev for ev in entries if ev.kind == "dead_letter"]  # refused, and recorded once
    assert (dead.subject, dead.evidence["stage"]) == (f"{topic}/0@11", "decode")
    assert "bad security event" in str(dead.evidence["reason"])
