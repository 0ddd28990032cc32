"""The replicated ledger's chaos experiment (platform_etcd_faults.toml), as root.

The platform runs with ``--replicated`` (three etcd members) and the transport,
an attack stream flows into Kafka, and the chaos engine SIGKILLs the etcd leader
(restarted, leadership handed on) and then freezes the member that leads next
(a partition of one member as its peers see it; 127.0.0.1 allows no real one).
After each fault the experiment's own check asserts that every decision the
ledger acknowledged is enforced once, proved, with the tree head consistent and
etcd's replica equal to what the engine signed. Here, after the run: every
attacker whose burst Kafka acknowledged is banned exactly once, in etcd.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from tenfold.autoblocker_ledger import ReplicatedLedger
from tenfold.core.testing import needs_root
from tenfold.platform import Platform
from tenfold.platform._faults import ETCD_EXPERIMENT, AttackStream, _verify, run_faults
from tenfold.platform._replicated import LOG_NAME, _is_member, settled_health

pytestmark = [pytest.mark.service, pytest.mark.slow, needs_root("network namespaces and nftables")]


async def _bans_in_etcd(endpoints: list[str]) -> Counter[str]:
    async with ReplicatedLedger(endpoints, name=LOG_NAME) as led:
        return Counter(e.event.subject for e in led.entries() if e.event.kind == "decision.ban")


@pytest.mark.root
def test_every_acknowledged_decision_survives_the_etcd_faults(
    tmp_path: Path, kafka_broker, postgres, first_decision
) -> None:
    home, chaos = tmp_path / "home", tmp_path / "chaos"
    chaos.mkdir()
    plat = Platform(home)
    topic = f"signals-{os.getpid()}-{time.monotonic_ns()}"
    plat.up(
        kafka=kafka_broker.bootstrap, postgres=postgres.dsn, topic=topic, enforce="nft",
        chaos=chaos, replicated=True,
    )  # fmt: skip
    members = json.loads(plat.etcd_file.read_text())["members"]
    stream = AttackStream(kafka_broker.bootstrap, topic, per_s=4)
    stream.start()
    try:
        first_decision(plat)  # the first check counts bans made before it
        report, run = run_faults(
            plat, kafka=kafka_broker, postgres=postgres, stream=stream, slo_s=60,
            experiment=ETCD_EXPERIMENT,
        )  # fmt: skip
        print(report, *(c.__dict__ for c in run.checks), sep="\n")  # shown when it fails
        assert report["status"] == "completed", report
        assert report["faults_injected"] == 2
        assert [c.after for c in run.checks] == ["kill-etcd-leader", "partition-etcd-leader"]
        assert all(c.consistent_with is not None for c in run.checks)
        assert all(c.etcd_replica is not None and c.etcd_replica >= c.tree_size for c in run.checks)
        assert run.checks[-1].decisions > run.checks[0].decisions > 0  # bans kept coming

        health = settled_health(plat.etcd_file, 60) or []  # a thawed member catches up
        assert [m["healthy"] for m in health] == [True, True, True]  # the killed one is back
        assert (
            health[0]["pid"] != members[0]["pid"]
            or health[1]["pid"] != members[1]["pid"]
            or (health[2]["pid"] != members[2]["pid"])
        )  # one member was restarted (a new pid)

        stream.stop()  # every line acknowledged by Kafka
        decisions, problems, _ = _verify(run, time.monotonic() + 60)
        assert problems == []
        banned = Counter(d.value for d in decisions if d.action == "ban")
        assert set(banned) == set(stream.acked) and set(banned.values()) == {1}
        in_etcd = asyncio.run(_bans_in_etcd([m["endpoint"] for m in members]))
        assert set(in_etcd) == set(stream.acked) and set(in_etcd.values()) == {1}
    finally:
        try:
            if stream.is_alive():
                stream.stop()
        finally:
            out = plat.down()
    pids = set(out["etcd_stopped"])
    assert len(pids) == 3 and not any(_is_member(m["pid"], m) for m in members)
    assert not plat.etcd_dir.exists()
