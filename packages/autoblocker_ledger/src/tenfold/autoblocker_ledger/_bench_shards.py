"""Horizontal scaling by shards: events/s at 1/2/4/8 shards, one etcd cluster per shard.

A shard here is a one-member etcd 3.4 cluster of its own (its own process,
data directory and fsynced Raft log) running inside a measured node
(:class:`tenfold.core.nodes.NodeSet`: a network namespace with its own address
and a cgroup of ``NODE_CPU`` cores and ``NODE_MEMORY_MB`` MiB), the same budget
at every N, so each added shard brings the same CPU and the scaling factor is
not bent by the first shard having the whole machine. The one client process
runs on the host, outside the nodes, and reaches each shard at its node's
address; the disk is this machine's one disk for all shards. Both sides route
each event to ``shard_for(subject, N)``
and write the same events from one client process: ours through
:class:`ShardedLedger` (hash-chained blocks in head-CAS transactions, one Merkle
log per shard, a signed checkpoint after the run), the peer as plain etcd puts
batched into transactions of 128 per shard, all in flight at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Subject
from tenfold.core.declare import scaling_seed

SHARD_COUNTS = (1, 2, 4, 8)
_PER_SHARD_BATCH = 1_000  # events per shard in one submitted batch
NODE_CPU = 0.25  # cores per shard's node: 8 nodes fill this machine's 2 cores
NODE_MEMORY_MB = 512


def _clusters(ctx: BenchContext, shards: int) -> list[Any]:
    """One single-member etcd per shard, each inside its own node (made once per row)."""
    from tenfold.core.nodes import NodeSet
    from tenfold.core.services import Etcd

    nodes = ctx.once(
        f"shard-nodes{shards}",
        lambda: ctx.enter(NodeSet(shards, cpu=NODE_CPU, memory_mb=NODE_MEMORY_MB)),
    )

    def start(i: int) -> Any:
        return ctx.enter(Etcd(members=1, workdir=ctx.workdir / f"shard{i}", place=nodes[i]))

    return [ctx.once(f"shard-etcd{shards}-{i}", functools.partial(start, i)) for i in range(shards)]


def _batches(ctx: BenchContext, shards: int) -> list[list[Any]]:
    from tenfold.autoblocker_ledger.bench import _calls, _events

    n = ctx.size(1_000, 5_000, 40_000) * shards
    return ctx.once(
        f"shard-events{shards}",
        lambda: [_events(f"sh{shards}-{k}", n) for k in range(_calls(ctx))],
    )


def _ours(shards: int) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.autoblocker_ledger._sharded import ShardedLedger
        from tenfold.autoblocker_ledger._signing import LogKey
        from tenfold.autoblocker_ledger.bench import _loop, check_fresh, timed_batches

        clusters = _clusters(ctx, shards)
        run = _loop(ctx)
        batches = iter(_batches(ctx, shards))
        key = LogKey.generate()
        endpoints = [c.endpoints for c in clusters]
        led = ShardedLedger(endpoints, name=f"bench{shards}", key=key)
        run(led.open())
        ctx.callback(lambda: run(led.close()))
        step = _PER_SHARD_BATCH * shards

        def op() -> Outcome:
            events = next(batches)
            lat, receipts = timed_batches(events, step, lambda c: run(led.append_batch(c)))
            check_fresh(receipts)
            per_shard = Counter(r.shard for batch in receipts for r in batch)
            return Outcome(
                len(events),
                {"shards": shards, "retries": led.retries},
                latencies_ms=lat,
                result=tuple(per_shard[i] for i in range(shards)),
            )

        def check_checkpoint() -> None:
            """After the timed calls: a fresh client rebuilt from etcd signs the same checkpoint,
            and one event per shard proves through it with the public key alone."""
            from tenfold.autoblocker_ledger._verify import verify_bundle

            cp = led.checkpoint()
            fresh = ShardedLedger(endpoints, name=f"bench{shards}", key=key)
            try:
                run(fresh.open())
                if fresh.checkpoint().root != cp.root or fresh.size != led.size:
                    raise RuntimeError("shards rebuilt from etcd differ from the writer's")
                for i in range(shards):
                    shard = fresh.shard(i)
                    if shard.tree.size:
                        last = shard.get(shard.tree.size - 1).event.event_id
                        verify_bundle(fresh.proof(last, cp), key.public_bytes)
            finally:
                run(fresh.close())

        ctx.callback(check_checkpoint)  # before the writer closes (callbacks unwind LIFO)
        return op

    return prepare


def _peer(shards: int) -> Callable[[BenchContext], Op]:
    """Plain etcd puts per shard: each event routed like ours, put in transactions of 128."""

    def prepare(ctx: BenchContext) -> Op:
        from tenfold.autoblocker_ledger._sharded import shard_for
        from tenfold.autoblocker_ledger.bench import (
            _aetcd_client,
            _count_prefix,
            _loop,
            timed_batches,
            txn_puts,
        )

        clusters = _clusters(ctx, shards)
        run = _loop(ctx)
        batches = iter(_batches(ctx, shards))
        clients = [_aetcd_client(c.endpoints[0]) for c in clusters]
        for client in clients:
            run(client.connect())
            ctx.callback(functools.partial(_close, run, client))
        prefix = f"/peer-shard{shards}/".encode()
        written: Counter[int] = Counter()
        step = _PER_SHARD_BATCH * shards

        async def put_batch(chunk: list[Any]) -> Counter[int]:
            routed: list[list[Any]] = [[] for _ in range(shards)]
            for ev in chunk:
                routed[shard_for(ev.subject, shards)].append(ev)
            sends = [c for i, evs in enumerate(routed) for c in txn_puts(clients[i], prefix, evs)]
            await asyncio.gather(*sends)
            return Counter({i: len(evs) for i, evs in enumerate(routed)})

        def op() -> Outcome:
            events = next(batches)
            lat, counts = timed_batches(events, step, lambda c: run(put_batch(c)))
            per_shard: Counter[int] = Counter()
            for count in counts:
                per_shard.update(count)
            written.update(per_shard)
            return Outcome(
                len(events), latencies_ms=lat, result=tuple(per_shard[i] for i in range(shards))
            )

        def check_keys() -> None:
            """After the timed calls: every shard's cluster holds exactly the events put there."""
            for i, client in enumerate(clients):
                stored = run(_count_prefix(client, prefix))
                if stored != written[i]:
                    raise RuntimeError(f"shard {i} holds {stored} peer events, {written[i]} put")

        ctx.callback(check_keys)
        return op

    return prepare


def _close(run: Callable[[Any], Any], client: Any) -> None:
    run(client.close())


def shard_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name=f"append_{n}_nodes",
            unit="events",
            ours=Subject(f"tenfold ShardedLedger ({n} shard{'s' if n > 1 else ''})", _ours(n)),
            peer=Subject(f"aetcd txn per shard ({n} cluster{'s' if n > 1 else ''})", _peer(n)),
            seed=scaling_seed("Horizontal Scaling", "Autoblocker Ledger", n),
            table="Horizontal Scaling",
            row=f"{n} {'shard' if n == 1 else 'shards'}",
            counts=(
                f"security events durably committed across {n} shard(s); a shard (our 'node') "
                "is a one-member etcd 3.4 cluster of its own (own process, data directory, "
                f"fsync) inside a node: a network namespace with its own address and a cgroup "
                f"of {NODE_CPU:g} core and {NODE_MEMORY_MB} MiB, the same at every N; the one "
                "client process runs on the host outside the nodes, and every shard writes to "
                f"this machine's one disk; events routed by blake2b-64(subject) mod {n}, "
                f"submitted {_PER_SHARD_BATCH:,} per shard per batch, latency per event = its "
                "batch's"
            ),
            rounds=3,
            full_rounds=3,
            needs_root=True,
            modes=("smoke", "quick", "full") if n <= 2 else ("full",),
            fairness="both route the same events by the same hash to the same clusters from one "
            "client process and commit each shard's share in batched etcd transactions, all "
            "shards at once; ours also chains each shard's events into hash-linked blocks (head "
            "compare-and-swap) and keeps a Merkle log per shard, the peer writes plain keys",
            checks="every call's events per shard compared equal between the sides; after the "
            "run ours rebuilds every shard from etcd in a fresh client, gets the same signed "
            "checkpoint root, and verifies one event per shard through it with the public key "
            "alone; the peer's keys are counted per shard cluster",
        )
        for n in SHARD_COUNTS
    ]
