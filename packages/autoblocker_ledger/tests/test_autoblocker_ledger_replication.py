"""Replication over real etcd clusters: followers, duplicates, tampering, killed leaders."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aetcd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenfold.autoblocker_ledger._events import SecurityEvent, verify_chain
from tenfold.autoblocker_ledger._linearizability import KV, UNKNOWN, Operation, check_history
from tenfold.autoblocker_ledger._merkle import verify_consistency, verify_inclusion
from tenfold.autoblocker_ledger._replicated import ReplicatedLedger, _pack, _raw, _unpack
from tenfold.autoblocker_ledger._store import frame, iter_frames
from tenfold.autoblocker_ledger.errors import ChainError, ReplicationError
from tenfold.core.services import Etcd

pytestmark = pytest.mark.service


def _events(prefix: str, n: int, start: int = 0) -> list[SecurityEvent]:
    return [
        SecurityEvent(
            event_id=f"{prefix}-{i}",
            domain="network",
            kind="port_scan",
            subject=f"192.0.2.{i % 50}",
            time_ms=1_700_000_000_000 + i,
            evidence={"ports": i % 1000},
        )
        for i in range(start, start + n)
    ]


class _History:
    """A writer and readers over replicas, recorded as a key-value history to check.

    Each event id is a key: an acknowledged append is a put of its index, a
    failed one a put with an unknown outcome, and a read after a quorum read
    is a get of the index found (empty when absent).
    """

    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.acked: list[str] = []
        self.reads = 0
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def writer(
        self, led: ReplicatedLedger, stop: asyncio.Event, prefix: str, batch: int
    ) -> None:
        k = 0
        while not stop.is_set():
            events = _events(prefix, batch, batch * k)
            k += 1
            called = self.now()
            try:
                receipts = await led.append_batch(events)
            except ReplicationError:
                for ev in events:
                    self.ops.append(
                        Operation(0, ("put", ev.event_id), UNKNOWN, called, math.inf, ev.event_id)
                    )
                continue
            ret = self.now()
            for ev, r in zip(events, receipts, strict=True):
                self.acked.append(ev.event_id)
                self.ops.append(Operation(0, ("put", str(r.index)), None, called, ret, ev.event_id))

    async def reader(
        self,
        led: ReplicatedLedger,
        stop: asyncio.Event,
        prefix: str,
        span: int,
        *,
        seed: int,
        client: int = 1,
        batched: bool = False,
        pause_s: float = 0.005,
    ) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            target = f"{prefix}-{rng.randrange(0, span)}"
            called = self.now()
            try:
                if batched:
                    await led.read_barrier()
                else:
                    await led.sync(linearizable=True)
            except ReplicationError:
                continue
            entry = led.get_by_id(target)
            self.reads += 1
            self.ops.append(
                Operation(
                    client,
                    ("get", ""),
                    "" if entry is None else str(entry.index),
                    called,
                    self.now(),
                    target,
                )
            )
            await asyncio.sleep(pause_s)


def test_replicas_agree_and_duplicates_are_idempotent(etcd3: Etcd) -> None:
    async def run() -> None:
        eps = etcd3.endpoints
        async with (
            ReplicatedLedger(eps, name="agree") as a,
            ReplicatedLedger(eps, name="agree", prefer=1) as b,
        ):
            first = await a.append_batch(_events("x", 300))
            assert [r.index for r in first] == list(range(300))
            # b has not synced: it resubmits some of the same ids plus new ones.
            mixed = await b.append_batch([*_events("x", 5, 100), *_events("y", 10)])
            assert all(r.duplicate for r in mixed[:5])
            assert [r.index for r in mixed[:5]] == list(range(100, 105))
            assert [r.index for r in mixed[5:]] == list(range(300, 310))
            await a.sync()  # a quorum read: a serializable one may lag behind b's write
            assert a.size == b.size == 310
            assert a.tree.root() == b.tree.root()
            verify_chain(a.raw_entries())
            assert [e.index for e in a.range(subject="192.0.2.7", limit=3)] == [7, 57, 107]
            window = a.range(since_ms=1_700_000_000_010, until_ms=1_700_000_000_013)
            assert (
                sorted(e.event.event_id for e in window)
                == ["x-10", "x-11", "x-12", "y-10", "y-11", "y-12"][: len(window)]
            )
            proof = a.tree.inclusion_proof(123)
            verify_inclusion(a.get(123).leaf, 123, a.size, proof, a.tree.root())
            verify_consistency(
                300, 310, a.tree.consistency_proof(300), a.tree.root(300), b.tree.root()
            )
            entry = await b.get_linearizable(305)
            assert entry.event.event_id == "y-5"

    asyncio.run(run())


def test_pipelined_small_blocks_race_another_writer_without_forking(etcd3: Etcd) -> None:
    """Batches cut into many small blocks, four in flight, while a second writer races."""

    async def run() -> None:
        eps = etcd3.endpoints
        kw = {"name": "pipe", "block_target_bytes": 4096, "pipeline_depth": 4}
        async with ReplicatedLedger(eps, **kw) as a, ReplicatedLedger(eps, prefer=2, **kw) as b:
            # An id repeated inside one batch, far enough apart to land in another block.
            batch_a = [*_events("a", 300), _events("a", 1, 7)[0]]
            ra, rb = await asyncio.gather(
                a.append_batch(batch_a), b.append_batch(_events("b", 300))
            )
            assert ra[-1].duplicate and ra[-1].index == ra[7].index
            await a.sync()
            await b.sync()
            assert a.size == b.size == 600
            assert a.tree.root() == b.tree.root()
            verify_chain(a.raw_entries())
            for ev, r in zip([*batch_a, *_events("b", 300)], [*ra, *rb], strict=True):
                assert a.get(r.index).event.event_id == ev.event_id
                assert a.get(r.index).leaf == r.leaf
            # Blocks really were small: far more etcd keys than one per batch.
            host, _, port = eps[0].rpartition(":")
            async with aetcd.Client(host=host, port=int(port)) as raw:
                blocks = await raw.get_prefix(a.prefix + b"b/", keys_only=True)
            assert len(blocks) > 20

    asyncio.run(run())


def test_range_by_time_after_out_of_order_batches(etcd3: Etcd) -> None:
    """Submitters' clocks differ: a later batch can carry earlier times; the window still holds."""

    async def run() -> None:
        async with ReplicatedLedger(etcd3.endpoints, name="clocks") as led:
            await led.append_batch(_events("late", 50, 1000))
            assert len(led.range(since_ms=1_700_000_001_000, until_ms=1_700_000_001_010)) == 10
            await led.append_batch(_events("early", 50, 0))
            await led.append_batch(_events("mid", 50, 990))
            since, until = 1_700_000_000_995, 1_700_000_001_005
            want = [i for i in range(led.size) if since <= led.get(i).event.time_ms < until]
            assert [e.index for e in led.range(since_ms=since, until_ms=until)] == want
            assert len(want) == 15  # mid 995..1004 and late 1000..1004

    asyncio.run(run())


@given(st.binary(max_size=2048))
def test_block_values_round_trip_whichever_way_they_travel(block: bytes) -> None:
    assert _unpack(_pack(block), 0) == block
    assert _unpack(_raw(block), 0) == block


def test_an_uncompressed_block_that_starts_like_zlib_is_read_back(etcd3: Etcd) -> None:
    """A frame length whose low byte is 'Z' must not be mistaken for a compressed block."""
    pad = 0
    while True:
        ev = SecurityEvent("z-0", "network", "port_scan", "192.0.2.1", 1, {"pad": "x" * pad})
        if len(frame(bytes(32) + ev.canonical())) % 256 == ord("Z") + 8:
            break
        pad += 1

    async def run() -> None:
        eps = etcd3.endpoints
        async with ReplicatedLedger(eps, name="rawz", compress=False) as w:
            await w.append_batch([ev, *_events("z", 3, 1)])
        async with ReplicatedLedger(eps, name="rawz") as r:
            assert r.size == 4 and r.get(0).event == ev

    asyncio.run(run())


def test_a_block_edited_in_etcd_is_refused(etcd3: Etcd) -> None:
    async def run() -> None:
        async with ReplicatedLedger(etcd3.endpoints, name="tamper") as led:
            await led.append_batch(_events("t", 20))
            host, _, port = etcd3.endpoints[0].rpartition(":")
            async with aetcd.Client(host=host, port=int(port)) as raw:
                key = led._block_key(0)
                got = await raw.get(key)
                assert got is not None
                # Re-frame so the record checksums still pass: only the chain can tell.
                datas = [d for _o, d in iter_frames(_unpack(got.value, 0), where="test")]
                datas[3] = datas[3].replace(b"192.0.2.3", b"192.0.2.9")
                await raw.put(key, _pack(b"".join(frame(d) for d in datas)))
        with pytest.raises(ChainError):
            async with ReplicatedLedger(etcd3.endpoints, name="tamper"):
                pass

    asyncio.run(run())


def test_concurrent_writers_never_fork_the_log(etcd3: Etcd) -> None:
    async def run() -> None:
        eps = etcd3.endpoints
        writers = [ReplicatedLedger(eps, name="race", prefer=i) for i in range(3)]

        async def write(i: int, led: ReplicatedLedger) -> None:
            for k in range(5):
                await led.append_batch(_events(f"w{i}", 40, 40 * k))

        await asyncio.gather(*(write(i, w) for i, w in enumerate(writers)))
        async with ReplicatedLedger(eps, name="race") as check:
            ids = [check.get(i).event.event_id for i in range(check.size)]
            assert check.size == 600 and len(set(ids)) == 600
            verify_chain(check.raw_entries())
        for w in writers:
            await w.close()

    asyncio.run(run())


@pytest.mark.slow
def test_sigkill_leader_during_batch_commits_loses_and_duplicates_nothing() -> None:
    """Kill the leader while batches commit; record a history and check it."""
    with Etcd(members=3) as cluster:
        rec = _History()

        async def run() -> None:
            eps = cluster.endpoints
            leader = cluster.leader_index()
            async with (
                ReplicatedLedger(eps, name="kill", prefer=leader, timeout_s=2.0) as w,
                ReplicatedLedger(eps, name="kill", prefer=(leader + 1) % 3, timeout_s=2.0) as r,
            ):
                stop = asyncio.Event()
                tasks = [
                    asyncio.create_task(rec.writer(w, stop, "k", 50)),
                    asyncio.create_task(rec.reader(r, stop, "k", 50 * 40, seed=7)),
                ]
                await asyncio.sleep(0.5)
                cluster.kill(leader)
                await asyncio.sleep(1.5)
                await asyncio.to_thread(cluster.restart, leader)
                await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*tasks)
                assert w.retries > 0, "the leader kill never hit a commit"
            async with ReplicatedLedger(eps, name="kill", prefer=leader) as fresh:
                ids = [fresh.get(i).event.event_id for i in range(fresh.size)]
                assert len(ids) == len(set(ids)), "an event was committed twice"
                assert set(rec.acked) <= set(ids), "an acknowledged event was lost"
                verify_chain(fresh.raw_entries())

        asyncio.run(run())
        assert len(rec.acked) > 100
        result = check_history(KV, rec.ops, timeout_s=60)
        assert result.linearizable is True


@pytest.mark.slow
def test_appends_follow_the_leader_through_a_kill_and_a_restart() -> None:
    """Appends go to the leader; after SIGKILL they move to the new one, found by Status polls."""
    with Etcd(members=3) as cluster:

        async def run() -> None:
            leader = cluster.leader_index()
            follower = (leader + 1) % 3
            async with ReplicatedLedger(
                cluster.endpoints, name="lead", prefer=follower, timeout_s=1.0
            ) as led:
                await led.append_batch(_events("a", 10))
                assert led._writer == leader, "appends were not sent to the leader"
                cluster.kill(leader)
                receipts = await led.append_batch(_events("b", 10))
                assert [r.index for r in receipts] == list(range(10, 20))
                assert led._writer == await asyncio.to_thread(cluster.leader_index)
                assert led.retries >= 1
                await asyncio.to_thread(cluster.restart, leader)
                # A fresh client that can reach only the restarted member is served
                # (its own gRPC subchannel: no backoff inherited from the dead one).
                async with ReplicatedLedger(
                    [cluster.endpoints[leader]], name="lead", retry_for_s=10.0
                ) as back:
                    deadline = time.monotonic() + 10
                    while back.size < 20 and time.monotonic() < deadline:
                        await back.sync(linearizable=False)
                        await asyncio.sleep(0.02)
                    assert back.size == 20 and back.tree.root() == led.tree.root()

        asyncio.run(run())


@pytest.mark.slow
def test_follower_restart_catches_up() -> None:
    with Etcd(members=3) as cluster:

        async def run() -> None:
            leader = cluster.leader_index()
            follower = (leader + 1) % 3
            async with ReplicatedLedger(cluster.endpoints, name="fr", prefer=leader) as w:
                await w.append_batch(_events("a", 200))
                cluster.kill(follower)
                await w.append_batch(_events("b", 200))
                await asyncio.to_thread(cluster.restart, follower)
                await w.append_batch(_events("c", 200))
                # A replica that reads only from the restarted member (serializable,
                # local reads) converges to the same tree.
                only = [cluster.endpoints[follower]]
                async with ReplicatedLedger(only, name="fr") as f:
                    deadline = time.monotonic() + 10
                    while f.size < 600 and time.monotonic() < deadline:
                        await f.sync(linearizable=False)
                        await asyncio.sleep(0.05)
                    assert f.size == 600 and f.tree.root() == w.tree.root()

        asyncio.run(run())


_CGROUP2 = Path("/sys/fs/cgroup/unified")


@contextlib.contextmanager
def _isolate(cluster: Etcd, i: int) -> Iterator[None]:
    """Cut member ``i`` off from its peers with nftables (its client port stays reachable).

    The member's process goes into its own cgroup v2 group so that nftables can
    match its sockets (``socket cgroupv2``): its packets to the other members'
    peer ports and theirs to its sockets are dropped, as is all traffic on its
    own peer port. Everything is named per test and removed on exit.
    """
    name = f"tenfold_ledger_part_{os.getpid()}"
    group = _CGROUP2 / name
    group.mkdir()
    pid = cluster.pid(i)
    assert pid is not None
    (group / "cgroup.procs").write_text(str(pid))
    own = cluster.peer_ports[i]
    others = ", ".join(str(p) for j, p in enumerate(cluster.peer_ports) if j != i)
    match = f'socket cgroupv2 level 1 "unified/{name}"'
    script = (
        f"add table inet {name}\n"
        f"add chain inet {name} out {{ type filter hook output priority 0; }}\n"
        f"add chain inet {name} inp {{ type filter hook input priority 0; }}\n"
        f"add rule inet {name} out {match} tcp dport {{ {others} }} drop\n"
        f"add rule inet {name} out tcp sport {own} drop\n"
        f"add rule inet {name} inp tcp dport {own} drop\n"
        f"add rule inet {name} inp {match} tcp sport {{ {others} }} drop\n"
    )
    try:
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", name], check=False, capture_output=True)
        if cluster.alive(i):
            (_CGROUP2 / "cgroup.procs").write_text(str(pid))
        group.rmdir()


@pytest.mark.slow
@pytest.mark.root
def test_partitioned_leader_histories_stay_linearizable() -> None:
    """Isolate the leader with nftables while a writer and a reader run; check the history."""
    if os.geteuid() != 0:
        pytest.skip("nftables and cgroups need root")
    if not (_CGROUP2 / "cgroup.procs").exists():
        pytest.skip("needs a cgroup v2 hierarchy at /sys/fs/cgroup/unified for nft socket matching")
    with Etcd(members=3) as cluster:
        rec = _History()

        async def run() -> None:
            eps = cluster.endpoints
            leader = cluster.leader_index()
            async with (
                ReplicatedLedger(eps, name="part", prefer=leader, timeout_s=1.0) as w,
                ReplicatedLedger(eps, name="part", prefer=leader, timeout_s=1.0) as r,
                ReplicatedLedger(
                    [eps[leader]], name="part", timeout_s=1.0, retry_for_s=2.0
                ) as stale,
            ):
                stop = asyncio.Event()
                tasks = [
                    asyncio.create_task(rec.writer(w, stop, "p", 20)),
                    asyncio.create_task(rec.reader(r, stop, "p", 20 * 60, seed=11)),
                ]
                await asyncio.sleep(0.4)
                with _isolate(cluster, leader):
                    await asyncio.sleep(2.0)
                    size_before = w.size
                    await asyncio.sleep(1.0)
                    assert w.size > size_before, "the majority stopped accepting appends"
                    # A replica that can only reach the isolated member: local reads
                    # may be stale, but only ever a prefix of the real log.
                    await stale.sync(linearizable=False)
                    assert stale.size <= w.size
                    if stale.size:
                        verify_consistency(
                            stale.size,
                            w.size,
                            w.tree.consistency_proof(stale.size),
                            stale.tree.root(),
                            w.tree.root(),
                        )
                await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*tasks)
                assert w.retries > 0
            async with ReplicatedLedger(eps, name="part", prefer=leader) as fresh:
                ids = [fresh.get(i).event.event_id for i in range(fresh.size)]
                assert len(ids) == len(set(ids))
                assert set(rec.acked) <= set(ids)

        asyncio.run(run())
        result = check_history(KV, rec.ops, timeout_s=60)
        assert result.linearizable is True
    assert (
        "tenfold_ledger_part"
        not in subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, check=True
        ).stdout
    )


def test_batched_linearizable_reads_see_every_acknowledged_append(etcd3: Etcd) -> None:
    """64 readers share quorum reads (ReadIndex batching) and still read linearizably."""
    rec = _History()

    async def run() -> None:
        eps = etcd3.endpoints
        async with (
            ReplicatedLedger(eps, name="batched") as w,
            ReplicatedLedger(eps, name="batched", prefer=1) as r,
        ):
            stop = asyncio.Event()
            tasks = [asyncio.create_task(rec.writer(w, stop, "b", 10))]
            tasks += [
                asyncio.create_task(
                    rec.reader(r, stop, "b", 10 * 40, seed=k, client=1 + k, batched=True, pause_s=0)
                )
                for k in range(64)
            ]
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*tasks)
            assert r.quorum_reads < rec.reads / 4, (r.quorum_reads, rec.reads)
            # A read that began after an append was acknowledged sees it.
            acked = await w.append(_events("b-last", 1)[0])
            assert (await r.get_linearizable(acked.index)).event.event_id == "b-last-0"

    asyncio.run(run())
    assert len(rec.acked) > 20 and rec.reads > 200
    assert check_history(KV, rec.ops, timeout_s=60).linearizable is True
