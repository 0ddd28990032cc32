"""Sharded ledgers: stable routing, one proof through the signed checkpoint, real etcd shards."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.autoblocker_ledger import (
    Checkpoint,
    EmbeddedShards,
    LogKey,
    SecurityEvent,
    ShardedLedger,
    ShardLayout,
    shard_for,
    verify_bundle,
)
from tenfold.autoblocker_ledger._events import GENESIS
from tenfold.autoblocker_ledger._merkle import MerkleTree, leaf_hash
from tenfold.autoblocker_ledger._sharded import (
    checkpoint_bundle,
    sign_checkpoint,
    verify_checkpoint_bundle,
)
from tenfold.autoblocker_ledger.errors import (
    MalformedEvent,
    ProofError,
    ShardLayoutError,
    SignatureError,
    VerificationFailed,
)
from tenfold.core.services import Etcd

KEY = LogKey.from_seed(bytes(range(32)))
OTHER = LogKey.from_seed(bytes(32))


def _event(i: int, subject: str | None = None, domain: str = "auth") -> SecurityEvent:
    return SecurityEvent(
        event_id=f"e-{i}",
        domain=domain,
        kind="ssh_failed_login",
        subject=subject or f"198.51.100.{i % 60}",
        time_ms=1_700_000_000_000 + i,
        evidence={"n": i},
    )


# -- routing ------------------------------------------------------------------------------


def test_routing_is_pinned_to_blake2b_64_mod_n() -> None:
    """The documented hash, written out: a change here would strand every recorded layout."""
    import hashlib

    for key in ("203.0.113.7", "auth", "", "ünïcode"):
        for n in (1, 2, 3, 8, 1024):
            h = hashlib.blake2b(key.encode(), digest_size=8, person=b"tenfold-shard-v1").digest()
            assert shard_for(key, n) == int.from_bytes(h, "big") % n
    # Pinned vectors: the same on every machine and every future version of layout v1.
    assert [shard_for("203.0.113.7", n) for n in (2, 3, 8, 1024)] == [1, 1, 3, 643]
    assert (shard_for("auth", 8), shard_for("", 5)) == (4, 0)


@given(st.text(max_size=80), st.integers(1, 1024))
def test_routing_is_stable_and_in_range(key: str, n: int) -> None:
    first = shard_for(key, n)
    assert 0 <= first < n
    assert shard_for(key, n) == first
    # Doubling the shard count splits a shard in two (mod 2N refines mod N): the
    # property that makes a later split-by-doubling reshard move half the keys.
    if 2 * n <= 1024:
        assert shard_for(key, 2 * n) % n == first


def test_routing_spreads_subjects_over_every_shard() -> None:
    counts = [0] * 8
    for i in range(4000):
        counts[shard_for(f"10.0.{i >> 8}.{i & 255}", 8)] += 1
    assert min(counts) > 400, counts  # 500 expected each


def test_bad_layouts_are_refused_with_one_line() -> None:
    with pytest.raises(ShardLayoutError, match="shard count"):
        ShardLayout("x", 0)
    with pytest.raises(ShardLayoutError, match="route_by"):
        ShardLayout("x", 2, route_by="kind")  # type: ignore[arg-type]
    with pytest.raises(ShardLayoutError, match="shard count"):
        shard_for("a", 2000)
    with pytest.raises(ShardLayoutError, match="one list"):
        ShardedLedger("127.0.0.1:2379")  # type: ignore[arg-type]


# -- proofs through the checkpoint (pure) -------------------------------------------------


def _build(events: list[SecurityEvent], layout: ShardLayout) -> tuple[list[MerkleTree], Any]:
    """Each shard's chained entries and tree, as a ledger would hold them."""
    datas: list[list[bytes]] = [[] for _ in range(layout.shards)]
    prev = [GENESIS] * layout.shards
    trees = [MerkleTree() for _ in range(layout.shards)]
    for ev in events:
        s = layout.shard_of(ev)
        data = prev[s] + ev.canonical()
        datas[s].append(data)
        trees[s].append(data)
        prev[s] = leaf_hash(data)
    return trees, datas


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=60, unique=True),
    st.integers(1, 9),
    st.sampled_from(["subject", "domain"]),
    st.data(),
)
def test_every_event_proves_through_the_checkpoint_and_tampering_fails(
    ids: list[int], n: int, route_by: str, data: st.DataObject
) -> None:
    domains = ("auth", "network", "cloud", "host", "ledger")
    events = [_event(i, domain=domains[i % 5]) for i in ids]
    layout = ShardLayout("prop", n, route_by=route_by)  # type: ignore[arg-type]
    trees, datas = _build(events, layout)
    cp = sign_checkpoint(KEY, layout, [(t.size, t.root()) for t in trees], 1234)
    cp.verify(KEY.public_bytes)
    assert cp.size == len(events)
    pick = data.draw(st.sampled_from(events))
    s = layout.shard_of(pick)
    index = next(k for k, d in enumerate(datas[s]) if d.endswith(pick.canonical()))
    bundle = checkpoint_bundle(cp, s, index, datas[s][index], trees[s].inclusion_proof(index))
    bundle = json.loads(json.dumps(bundle))  # what a third party receives
    out = verify_bundle(bundle, KEY.public_bytes)
    assert out["event"]["event_id"] == pick.event_id and out["shard"] == s
    with pytest.raises(SignatureError):
        verify_checkpoint_bundle(bundle, OTHER.public_bytes)
    # Any change to what the proof rests on is caught.
    field = data.draw(st.sampled_from(["entry", "shard_size", "cp_root", "shard", "layout"]))
    bad = copy.deepcopy(bundle)
    if field == "entry":
        raw = bytearray(base64.b64decode(bad["entry"]))
        raw[-2] ^= 1
        bad["entry"] = base64.b64encode(raw).decode()
    elif field == "shard_size":
        bad["shard_head"]["size"] += 1
    elif field == "cp_root":
        bad["checkpoint"]["root"] = base64.b64encode(bytes(32)).decode()
    elif field == "shard":
        if n == 1:
            return
        bad["shard"] = (s + 1) % n
    else:
        bad["layout"]["route_by"] = "domain" if route_by == "subject" else "subject"
    with pytest.raises((VerificationFailed, MalformedEvent)):
        verify_bundle(bad, KEY.public_bytes)


def test_checkpoint_round_trips_and_refuses_a_head_count_mismatch() -> None:
    layout = ShardLayout("rt", 3)
    cp = sign_checkpoint(KEY, layout, [(1, bytes(32)), (0, bytes(32)), (5, bytes(32))], 7)
    again = Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict())))
    again.verify(KEY.public_bytes)
    assert again.root == cp.root
    with pytest.raises(ShardLayoutError):
        sign_checkpoint(KEY, layout, [(1, bytes(32))], 7)
    forged = Checkpoint(layout, ((2, bytes(32)), *cp.heads[1:]), cp.time_ms, cp.signature)
    with pytest.raises(SignatureError):
        forged.verify(KEY.public_bytes)


# -- embedded shards ----------------------------------------------------------------------


def test_embedded_shards_route_read_prove_and_reopen(tmp_path: Path) -> None:
    events = [_event(i) for i in range(300)]
    with EmbeddedShards(tmp_path / "s", 4, fsync=False) as led:
        receipts = led.append_batch(events)
        assert [r.shard for r in receipts] == [led.shard_of(ev) for ev in events]
        assert led.size == 300 and all(led.shard(i).tree.size > 0 for i in range(4))
        again = led.append_batch(events[:5])
        assert all(r.duplicate for r in again)
        subj = events[7].subject
        hits = led.range(subject=subj)
        assert {e.event.event_id for _s, e in hits} == {
            ev.event_id for ev in events if ev.subject == subj
        }
        assert {s for s, _e in hits} == {shard_for(subj, 4)}
        merged = led.range(since_ms=events[10].time_ms, until_ms=events[20].time_ms)
        assert [e.event.event_id for _s, e in merged] == [ev.event_id for ev in events[10:20]]
        cp = led.checkpoint()
        bundle = led.proof("e-123", cp)
        pub = (tmp_path / "s" / "log.pub").read_text().strip()
        assert verify_bundle(bundle, bytes.fromhex(pub))["event"]["event_id"] == "e-123"
        with pytest.raises(ProofError, match="no shard"):
            led.proof("missing")
        heads = led.shard_heads()
        for i, h in enumerate(heads):
            h.verify(led.key.public_bytes)
            assert (h.size, h.root) == cp.heads[i]
    with EmbeddedShards(tmp_path / "s", fsync=False) as led:
        assert led.size == 300 and led.checkpoint().root == cp.root
    with pytest.raises(ShardLayoutError, match="resharding"):
        EmbeddedShards(tmp_path / "s", 8)


def test_cli_sharded_store_appends_proves_and_refuses_single_store_commands(
    tmp_path: Path, cli: Any
) -> None:
    store = str(tmp_path / "st")
    lines = "\n".join(json.dumps(_event(i).to_dict()) for i in range(40))
    r = cli("ledger", "append", "--store", store, "--shards", "3", "--json", stdin=lines)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["appended"] == 40
    assert {s for s, _i in out["positions"]} == {0, 1, 2}
    again = json.loads(cli("ledger", "append", "--store", store, "--json", stdin=lines).stdout)
    assert again["duplicates"] == 40 and again["checkpoint"]["root"] == out["checkpoint"]["root"]
    bundle = tmp_path / "p.json"
    made = cli("ledger", "proof", "--store", store, "--event-id", "e-7", "--out", str(bundle))
    assert made.returncode == 0
    pub = (tmp_path / "st" / "log.pub").read_text().strip()
    ok = cli("ledger", "verify", str(bundle), "--public-key", pub)
    assert ok.returncode == 0 and "through the checkpoint over 3 shards" in ok.stdout
    doc = json.loads(bundle.read_text())
    doc["shard_head"]["size"] += 1
    bundle.write_text(json.dumps(doc))
    assert cli("ledger", "verify", str(bundle), "--public-key", pub).returncode == 1
    bundle.write_text(json.dumps({"type": "sharded_inclusion"}))
    bad = cli("ledger", "verify", str(bundle), "--public-key", pub)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    shard = out["positions"][7][0]
    got = json.loads(
        cli("ledger", "get", "--store", store, "--shard", str(shard), "0", "--json").stdout
    )
    assert got["shard"] == shard
    rows = json.loads(
        cli("ledger", "range", "--store", store, "--subject", _event(7).subject, "--json").stdout
    )
    assert {r["event_id"] for r in rows} == {"e-7"}
    assert cli("ledger", "snapshot", "--store", store, str(tmp_path / "x")).returncode == 2
    assert cli("ledger", "get", "--store", store, "0").returncode == 2
    assert cli("ledger", "proof", "--store", store, "--index", "0").returncode == 2
    assert cli("ledger", "append", "--store", store, "--shards", "4", stdin=lines).returncode == 2
    cp = json.loads(cli("ledger", "checkpoint", "--store", store, "--json").stdout)
    Checkpoint.from_dict(cp).verify(bytes.fromhex(pub))


# -- real etcd shards ---------------------------------------------------------------------


@pytest.mark.service
def test_shards_on_separate_etcd_clusters_record_their_layout(tmp_path: Path) -> None:
    with (
        Etcd(members=1, workdir=tmp_path / "a") as a,
        Etcd(members=1, workdir=tmp_path / "b") as b,
    ):
        events = [_event(i) for i in range(400)]

        async def run() -> None:
            async with ShardedLedger([a.endpoints, b.endpoints], name="t", key=KEY) as led:
                receipts = await led.append_batch(events)
                assert [r.shard for r in receipts] == [led.shard_of(ev) for ev in events]
                assert not any(r.duplicate for r in receipts)
                cp = await led.checkpoint_linearizable()
                bundle = led.proof("e-399", cp)
            # A fresh client rebuilds both shards from etcd and reaches the same checkpoint.
            async with ShardedLedger([a.endpoints, b.endpoints], name="t", key=KEY) as fresh:
                assert fresh.size == 400
                assert fresh.checkpoint().root == cp.root
                again = await fresh.append_batch(events[:10])
                assert all(r.duplicate for r in again)
            out = verify_bundle(json.loads(json.dumps(bundle)), KEY.public_bytes)
            assert out["event"]["event_id"] == "e-399"
            # Shards given in the other order: refused, nothing written.
            with pytest.raises(ShardLayoutError, match="another order"):
                async with ShardedLedger([b.endpoints, a.endpoints], name="t", key=KEY):
                    pass
            with pytest.raises(ShardLayoutError, match="already holds layout"):
                async with ShardedLedger([a.endpoints, b.endpoints], name="t", route_by="domain"):
                    pass
            async with ShardedLedger([a.endpoints, b.endpoints], name="t", key=KEY) as same:
                assert same.size == 400  # the refused opens left nothing behind
            # Two shards may share one cluster: each finds its own layout key.
            async with ShardedLedger([a.endpoints, a.endpoints], name="u", key=KEY) as shared:
                await shared.append_batch(events[:50])
            async with ShardedLedger([a.endpoints, a.endpoints], name="u", key=KEY) as shared:
                assert shared.size == 50

        asyncio.run(run())


def _subject_for(shard: int, n: int, start: int = 0) -> str:
    """A subject that routes to ``shard``."""
    i = start
    while shard_for(f"203.0.113.{i}", n) != shard:
        i += 1
    return f"203.0.113.{i}"


@pytest.mark.service
@pytest.mark.slow
def test_killing_one_shards_leader_leaves_the_others_committing(tmp_path: Path) -> None:
    """SIGKILL shard 0's etcd leader while both shards take appends: shard 1 keeps
    committing through shard 0's election, shard 0 fails over and loses nothing
    acknowledged, and the checkpoint over both still verifies."""
    with (
        Etcd(members=3, workdir=tmp_path / "s0") as c0,
        Etcd(members=3, workdir=tmp_path / "s1") as c1,
    ):
        n = 2
        subjects = [_subject_for(0, n), _subject_for(1, n)]

        async def run() -> None:
            async with ShardedLedger(
                [c0.endpoints, c1.endpoints], name="kill", key=KEY, timeout_s=1.0
            ) as led:
                acked: dict[int, list[str]] = {0: [], 1: []}
                commit_times: dict[int, list[float]] = {0: [], 1: []}
                stop = asyncio.Event()

                async def writer(shard: int) -> None:
                    k = 0
                    while not stop.is_set():
                        batch = [
                            SecurityEvent(
                                f"s{shard}-{k}-{j}", "auth", "x", subjects[shard], k * 100 + j, {}
                            )
                            for j in range(20)
                        ]
                        k += 1
                        receipts = await led.append_batch(batch)
                        assert {r.shard for r in receipts} == {shard}
                        acked[shard] += [r.event_id for r in receipts]
                        commit_times[shard].append(time.monotonic())

                tasks = [asyncio.create_task(writer(s)) for s in (0, 1)]
                await asyncio.sleep(0.5)
                leader = await asyncio.to_thread(c0.leader_index)
                killed_at = time.monotonic()
                c0.kill(leader)
                await asyncio.sleep(1.5)
                stop.set()
                await asyncio.gather(*tasks)
                # Shard 1 went on committing while shard 0 was electing a new leader.
                during = [t for t in commit_times[1] if killed_at < t < killed_at + 1.0]
                assert len(during) >= 3, f"shard 1 committed {len(during)} batches after the kill"
                assert any(t > killed_at for t in commit_times[0]), "shard 0 never failed over"
                assert led.retries > 0
                cp = await led.checkpoint_linearizable()
                for shard in (0, 1):
                    bundle = led.proof(acked[shard][-1], cp)
                    out = verify_bundle(json.loads(json.dumps(bundle)), KEY.public_bytes)
                    assert out["shard"] == shard
            async with ShardedLedger([c0.endpoints, c1.endpoints], name="kill", key=KEY) as fresh:
                for shard in (0, 1):
                    ids = [e.event.event_id for e in fresh.shard(shard).range(limit=10**6)]
                    assert len(ids) == len(set(ids)), f"shard {shard} holds an event twice"
                    assert set(acked[shard]) <= set(ids), f"shard {shard} lost an acked event"
                fresh.checkpoint().verify(KEY.public_bytes)

        asyncio.run(run())
