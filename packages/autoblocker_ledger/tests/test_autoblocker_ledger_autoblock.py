"""Rules become decisions, decisions become ledger entries, bouncers follow the stream."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tenfold.autoblocker_ledger._autoblock import (
    Autoblocker,
    Decision,
    DecisionStream,
    Rule,
    load_rules,
    parse_rules,
    scoped_value,
)
from tenfold.autoblocker_ledger._bouncer import NftBouncer
from tenfold.autoblocker_ledger._events import SecurityEvent
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.autoblocker_ledger._testing import SSHD
from tenfold.autoblocker_ledger.errors import RuleError

SCAN = Rule(
    name="scan",
    domain="network",
    kind="port_scan",
    max_retry=2,
    find_time_s=10,
    ban_time_s=30,
    scope="range",
)


def _line(ip: str) -> str:
    return f"Nov 26 10:00:00 host sshd[42]: Failed password for root from {ip} port 22 ssh2"


def test_fail2ban_style_threshold_bans_once_within_the_window() -> None:
    ab = Autoblocker([SSHD])
    decisions: list[Decision] = []
    for k, t in enumerate([0, 10_000, 70_000, 80_000, 90_000, 95_000]):
        for ev in ab.events_from_line(_line("203.0.113.7"), t):
            decisions += ab.observe(ev)
        assert k >= 0
    # hits at 0 and 10 s fall out of the 60 s window by 70 s; 70/80/90 s make three.
    assert [(d.action, d.value, d.time_ms) for d in decisions] == [("ban", "203.0.113.7", 90_000)]
    assert decisions[0].origin == "auth" and decisions[0].rule == "sshd"
    assert ab.events_from_line("Accepted password for root from 203.0.113.7", 1) == []


def test_range_scope_and_expiry_unban() -> None:
    ab = Autoblocker([SCAN])
    ev = [
        SecurityEvent(f"s{i}", "network", "port_scan", f"198.51.100.{i}", 1000 * i)
        for i in range(2)
    ]
    assert ab.observe(ev[0]) == []
    (ban,) = ab.observe(ev[1])
    assert (ban.scope, ban.value, ban.duration_s) == ("range", "198.51.100.0/24", 30)
    (unban,) = ab.expire(1000 + 30_000)
    assert (unban.action, unban.value) == ("unban", "198.51.100.0/24")


def test_scoped_values() -> None:
    assert scoped_value("10.1.2.3", "range", 16) == "10.1.0.0/16"
    assert scoped_value("2001:db8::1", "ip", 24) == "2001:db8::1"
    assert scoped_value("alice", "subject", 24) == "alice"
    with pytest.raises(RuleError):
        scoped_value("alice", "ip", 24)


def test_learned_detector_hook() -> None:
    def detector(event: SecurityEvent) -> Decision | None:
        score = event.evidence.get("anomaly", 0)
        if isinstance(score, float) and score > 0.9:
            return Decision(
                "ban",
                "subject",
                event.subject,
                60,
                event.domain,
                f"anomaly {score}",
                "model",
                event.time_ms,
            )
        return None

    ab = Autoblocker([], detectors=[detector])
    assert ab.observe(SecurityEvent("m1", "cloud", "flow", "tenant-7", 5, {"anomaly": 0.2})) == []
    (d,) = ab.observe(SecurityEvent("m2", "cloud", "flow", "tenant-7", 6, {"anomaly": 0.97}))
    assert (d.scope, d.value, d.rule) == ("subject", "tenant-7", "model")


def test_decisions_are_ledger_entries_and_stream_to_bouncers(tmp_path: Path) -> None:
    ab = Autoblocker([SSHD, SCAN])
    with EmbeddedLedger(tmp_path / "s") as led:
        stream = DecisionStream(led)
        for t in (0, 1000, 2000):
            for ev in ab.events_from_line(_line("203.0.113.9"), t):
                led.append(ev)
                led.append_batch(ab.decision_events(ab.observe(ev)))
        snap = stream.snapshot(now_ms=3000)
        assert [(d.scope, d.value) for d in snap.new] == [("ip", "203.0.113.9")]
        for i, t in enumerate((4000, 5000)):
            ev = SecurityEvent(f"scan{i}", "network", "port_scan", f"198.51.100.{i}", t)
            led.append(ev)
            led.append_batch(ab.decision_events(ab.observe(ev)))
        change = stream.changes(snap.position)
        assert [d.value for d in change.new] == ["198.51.100.0/24"] and change.deleted == []
        late = SecurityEvent("tick", "network", "heartbeat", "n/a", 40_000)
        led.append_batch(ab.decision_events(ab.observe(late)))
        gone = stream.changes(change.position)
        assert [d.value for d in gone.deleted] == ["198.51.100.0/24"]
        # The decisions are tamper-evident like any entry.
        kinds = [e.event.kind for e in led.range(domain="autoblocker")]
        assert kinds == ["decision.ban", "decision.ban", "decision.unban"]


def test_rule_files_are_validated(tmp_path: Path) -> None:
    p = tmp_path / "rules.toml"
    p.write_text('[[rule]]\nname = "x"\nkind = "k"\npattern = "(unclosed"\n')
    with pytest.raises(RuleError, match="regular expression"):
        load_rules(p)
    with pytest.raises(RuleError, match="max_retry"):
        parse_rules({"rule": [{"name": "x", "kind": "k", "max_retry": 0}]})
    with pytest.raises(RuleError, match="scope"):
        parse_rules({"rule": [{"name": "x", "kind": "k", "scope": "planet"}]})
    with pytest.raises(RuleError, match="unique"):
        parse_rules({"rule": [{"name": "x", "kind": "k"}, {"name": "x", "kind": "j"}]})
    with pytest.raises(RuleError, match="group"):
        parse_rules({"rule": [{"name": "x", "kind": "k", "pattern": "(?P<ip>.*)"}]})
    p.write_text("not toml [")
    with pytest.raises(RuleError, match="TOML"):
        load_rules(p)


@pytest.mark.root
def test_nft_bouncer_applies_the_stream_and_removes_its_table(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("nftables needs root")
    ab = Autoblocker([SSHD, SCAN])
    with EmbeddedLedger(tmp_path / "s") as led:
        for t in (0, 1, 2):
            for ev in ab.events_from_line(_line("203.0.113.5"), t):
                led.append(ev)
                led.append_batch(ab.decision_events(ab.observe(ev)))
        stream = DecisionStream(led)
        table = f"tenfold_ledger_test_{os.getpid()}"
        with NftBouncer(table) as bouncer:
            bouncer.sync(stream, now_ms=10)
            assert bouncer.blocked() == ["203.0.113.5"]
            for i, t in enumerate((20, 21)):
                ev = SecurityEvent(f"scan{i}", "network", "port_scan", f"198.51.100.{i}", t)
                led.append(ev)
                led.append_batch(ab.decision_events(ab.observe(ev)))
            bouncer.sync(stream, now_ms=30)
            assert bouncer.blocked() == ["198.51.100.0/24", "203.0.113.5"]
            led.append_batch(ab.decision_events(ab.expire(10**9)))
            bouncer.sync(stream, now_ms=10**9)
            assert bouncer.blocked() == []
        tables = subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, check=True
        ).stdout
        assert table not in tables
