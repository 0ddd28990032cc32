"""The platform's chaos experiment (platform_faults.toml) against the live platform, as root.

With an attack stream flowing into Kafka, the chaos engine SIGKILLs the pipeline
engine and the bouncer, stops PostgreSQL for 10 s and freezes the broker; after
each fault and its recovery the experiment's own check asserts that every
decision the ledger holds is in the bouncer's nftables sets, once, with its
inclusion proof verified and the signed tree head consistent with the one before
the fault. Here, after the run: every attacker whose burst Kafka acknowledged is
banned exactly once, the bouncer applied no decision twice (but the one a
SIGKILL may have caught between applying it and saving its place), and each
fault is in the ledger as a chaos event.

The etcd faults (the leader SIGKILLed, a member cut off) run against
``platform up --replicated`` in test_platform_etcd_faults.py.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tenfold.autoblocker_ledger import EmbeddedLedger
from tenfold.core.testing import needs_root
from tenfold.platform import Platform
from tenfold.platform._faults import AttackStream, _verify, run_faults
from tenfold.platform._platform import NETNS_DIR, PREFIX_ENV

# This run's instance (tests/conftest.py sets the prefix).
PREFIX = os.environ[PREFIX_ENV]
ATTACKER, VICTIM = f"{PREFIX}-attacker", f"{PREFIX}-victim"


pytestmark = [pytest.mark.service, pytest.mark.slow, needs_root("network namespaces and nftables")]

FAULTS = ["kill-engine", "kill-bouncer", "stop-postgres", "freeze-broker"]


@pytest.mark.root
def test_every_acknowledged_decision_is_enforced_once_through_the_faults(
    tmp_path: Path, kafka_broker, postgres, first_decision
) -> None:
    home, chaos = tmp_path / "home", tmp_path / "chaos"
    chaos.mkdir()
    plat = Platform(home)
    topic = f"signals-{os.getpid()}-{time.monotonic_ns()}"
    plat.up(
        kafka=kafka_broker.bootstrap, postgres=postgres.dsn, topic=topic, enforce="nft",
        chaos=chaos,
    )  # fmt: skip
    stream = AttackStream(kafka_broker.bootstrap, topic, per_s=4)
    stream.start()
    try:
        first_decision(plat)  # the first check counts bans made before it
        report, run = run_faults(
            plat, kafka=kafka_broker, postgres=postgres, stream=stream, slo_s=120
        )
        print(report, *(c.__dict__ for c in run.checks), sep="\n")  # shown when it fails
        assert report["status"] == "completed", report
        assert report["faults_injected"] == 4
        assert [c.after for c in run.checks] == FAULTS
        # The head seen before each fault is a prefix of the head after it.
        assert all(c.consistent_with is not None for c in run.checks)
        assert run.checks[-1].decisions > run.checks[0].decisions > 0  # bans kept coming

        stream.stop()  # every line acknowledged by Kafka
        decisions, problems, _ = _verify(run, time.monotonic() + 120)
        assert problems == []
        banned = Counter(d.value for d in decisions if d.action == "ban")
        assert set(banned) == set(stream.acked) and set(banned.values()) == {1}
        assert len(banned) >= 20
    finally:
        try:
            if stream.is_alive():
                stream.stop()
        finally:
            plat.down()
    assert not (NETNS_DIR / ATTACKER).exists() and not (NETNS_DIR / VICTIM).exists()

    # The bouncer's log shows each decision applied once, but for the one read
    # of the stream the SIGKILL may have caught (the bouncer applies what one read
    # brings, saves its place, then logs): applied and saved but not yet logged,
    # or applied and not yet saved, so applied again by the next run (nft keeps
    # one element). Those are consecutive decisions.
    applied = Counter(int(i) for i in re.findall(r"ledger index (\d+)\)", plat.log.read_text()))
    order = [d.index for d in decisions]
    odd = [k for k, i in enumerate(order) if applied[i] != 1]
    assert not odd or odd == list(range(odd[0], odd[-1] + 1)), odd
    assert all(applied[i] <= 2 for i in order) and set(applied) <= set(order)

    with EmbeddedLedger(home / "ledger") as led:
        entries = [led.get(i).event for i in range(led.size)]
    bans = Counter(ev.subject for ev in entries if ev.kind == "decision.ban")
    assert set(bans.values()) == {1}
    injected = [ev for ev in entries if ev.domain == "chaos" and ev.kind == "fault_injected"]
    assert sorted(ev.evidence["fault"] for ev in injected) == sorted(
        ["process_kill", "process_kill", "process_kill", "process_pause"]
    )
