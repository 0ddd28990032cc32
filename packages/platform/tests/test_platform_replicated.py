"""``tenfold platform up --replicated`` as root: the decisions go to the etcd-ordered ledger.

An attack into Kafka is decided by the engine and recorded in the replicated
ledger (three etcd members the platform started); its inclusion proof verifies
with the platform's public key, the XDP bouncer drops the attacker's frame, and
a replica rebuilt from etcd alone, by a client that never talked to the
platform, holds the same decision at the same index under the same root.
``down`` stops the members and removes their data.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tenfold.autoblocker_ledger import ReplicatedLedger, inclusion_bundle, verify_bundle
from tenfold.core.testing import needs_root, run_cli
from tenfold.platform import Platform
from tenfold.platform._platform import NETNS_DIR, PREFIX_ENV, _delivered
from tenfold.platform._replicated import LOG_NAME, SyncLedger, _is_member
from tenfold.platform._testing import sshd_failures

PREFIX = os.environ[PREFIX_ENV]  # tests/conftest.py: this run's own namespaces

pytestmark = [pytest.mark.service, pytest.mark.slow, needs_root("network namespaces and XDP")]


async def _from_etcd(endpoints: list[str], index: int) -> tuple[int, dict[str, Any], bytes]:
    async with ReplicatedLedger(endpoints, name=LOG_NAME) as fresh:
        entry = fresh.get(index)
        return fresh.size, entry.event.to_dict(), fresh.tree.root()


@pytest.mark.root
def test_an_attack_is_recorded_in_the_replicated_ledger_and_enforced(
    tmp_path: Path, kafka_broker, postgres
) -> None:
    home = tmp_path / "home"
    plat = Platform(home)
    topic = f"signals-{os.getpid()}-{time.monotonic_ns()}"
    members: list[dict[str, Any]] = []
    try:
        up = run_cli(
            "platform", "up", "--home", str(home), "--kafka", kafka_broker.bootstrap,
            "--postgres", postgres.dsn, "--topic", topic, "--replicated", "--json", cwd=tmp_path,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        st = json.loads(up.stdout)
        assert st["engine"]["running"] and st["bouncer"]["running"]
        assert st["namespaces"] == {f"{PREFIX}-attacker": True, f"{PREFIX}-victim": True}
        members = json.loads(plat.etcd_file.read_text())["members"]
        assert len(members) == 3

        r = run_cli(
            "platform", "replay", str(sshd_failures(tmp_path / "a.log", "203.0.113.7")),
            "--home", str(home), "--json", cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        (d,) = json.loads(r.stdout)["decisions"]
        assert d["decision"]["action"] == "ban" and d["decision"]["value"] == "203.0.113.7"
        assert d["proof"]["verified"] and d["enforced"]["frame_dropped"] is True
        assert _delivered("203.0.113.8", plat=plat)  # the neighbour is not banned

        # The record is etcd's: nothing was written to an embedded store, and a
        # replica rebuilt from etcd alone holds the decision under the same key.
        assert sorted(p.name for p in (home / "ledger").iterdir()) == ["log.key", "log.pub"]
        key = bytes.fromhex((home / "ledger" / "log.pub").read_text())
        eps = [m["endpoint"] for m in members]
        size, event, root = asyncio.run(_from_etcd(eps, d["ledger_index"]))
        assert event["kind"] == "decision.ban" and event["subject"] == "203.0.113.7"
        assert size >= d["proof"]["tree_size"]
        with SyncLedger(eps, home / "ledger") as led:
            assert led.size == size and led.tree_head().root == root
            bundle = inclusion_bundle(led, d["ledger_index"], led.tree_head())
        assert verify_bundle(json.loads(json.dumps(bundle)), key)["index"] == d["ledger_index"]

        st = json.loads(
            run_cli("platform", "status", "--home", str(home), "--json", cwd=tmp_path).stdout
        )
        assert st["ledger"]["decisions"] == 1 and st["ledger"]["entries"] == size
        assert [m["healthy"] for m in st["etcd"]] == [True, True, True]
        assert sum(m["leader"] for m in st["etcd"]) == 1
    finally:
        down = run_cli("platform", "down", "--home", str(home), "--json", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    out = json.loads(down.stdout)
    assert sorted(out["etcd_stopped"]) == sorted(m["pid"] for m in members)
    assert not any(_is_member(m["pid"], m) for m in members)
    assert not plat.etcd_dir.exists() and not plat.etcd_file.exists()
    assert not (NETNS_DIR / f"{PREFIX}-victim").exists()
    assert not (NETNS_DIR / f"{PREFIX}-attacker").exists()
