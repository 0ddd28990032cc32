"""Replication: an etcd cluster orders the log; every client keeps a verified replica.

etcd (Raft) decides the order; we never run consensus ourselves. Keys under
``/tenfold/ledger/<name>/``::

    head                  "<size>:<leaf hash hex of the last entry>"
    b/<start, 16 digits>  one block: framed entries start .. start+n-1

An append is one etcd transaction: *if* ``head`` still holds the value this
client last saw, put the new block and the new head. Raft applies transactions
in one order, so two writers can never both extend the same head, and the head
value (size and last leaf) never repeats, so a retried block can land at most
once. When a transaction's outcome is unknown (a timeout, the leader killed
mid-commit) the client re-reads the log with a linearizable read and drops the
events that are already there before it retries: acknowledged events are never
lost and never duplicated, and resubmitting an event id is harmless.

Replicas apply blocks only after walking the hash chain, so a block edited in
etcd behind the log's back is refused (:class:`ChainError`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions
import grpc  # type: ignore[import-untyped]

from tenfold.autoblocker_ledger._events import GENESIS, Entry, SecurityEvent, decode_entry
from tenfold.autoblocker_ledger._merkle import HASH_SIZE, MerkleTree, leaf_hash
from tenfold.autoblocker_ledger._signing import LogKey, SignedTreeHead
from tenfold.autoblocker_ledger._store import Receipt, frame, iter_frames
from tenfold.autoblocker_ledger.errors import ChainError, ReplicationError

_RETRYABLE: tuple[type[BaseException], ...] = (
    aetcd.exceptions.ClientError,
    grpc.aio.AioRpcError,
    asyncio.TimeoutError,
    OSError,
)
MAX_BLOCK_BYTES = 1_000_000  # an etcd value stays under the default 1.5 MiB request limit
_BLOCKS_PER_READ = 16  # a range read returns at most this many blocks (~16 MB)
_GRPC_OPTIONS = {
    "grpc.max_receive_message_length": 64 << 20,
    "grpc.max_send_message_length": 8 << 20,
}


def _pack(block: bytes) -> bytes:
    """Blocks travel compressed: etcd replicates and fsyncs a fifth of the bytes."""
    return b"Z" + zlib.compress(block, 1)


def _unpack(value: bytes, start: int) -> bytes:
    if value[:1] == b"Z":
        try:
            return zlib.decompress(value[1:])
        except zlib.error:
            raise ChainError(f"block at {start} in etcd is not a valid compressed block") from None
    return value


@dataclass
class _Block:
    start: int
    expected: bytes
    new_head: bytes
    block: bytes
    datas: list[bytes]
    taken: list[tuple[int, SecurityEvent, bytes]]


class ReplicatedLedger:
    """A client of the etcd-ordered log with a local, verified replica.

    Use as ``async with ReplicatedLedger(endpoints) as led``. Reads from
    :meth:`get` and :meth:`range` are local (as fresh as the last
    :meth:`sync`); :meth:`get_linearizable` first syncs through a quorum read.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        name: str = "default",
        timeout_s: float = 5.0,
        retry_for_s: float = 30.0,
        max_block_bytes: int = MAX_BLOCK_BYTES,
        key: LogKey | None = None,
        prefer: int = 0,
        pipeline_depth: int = 2,
        compress: bool = True,
    ) -> None:
        if not endpoints:
            raise ReplicationError("no etcd endpoints given")
        self.endpoints = list(endpoints)
        self.prefix = f"/tenfold/ledger/{name}/".encode()
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.max_block_bytes = max_block_bytes
        self.pipeline_depth = max(1, pipeline_depth)
        self.compress = compress
        self.key = key
        self._clients: list[aetcd.Client | None] = [None] * len(self.endpoints)
        self._current = prefer % len(self.endpoints)
        self.tree = MerkleTree()
        self._datas: list[bytes] = []
        self._events: list[SecurityEvent] = []
        self._ids: dict[str, int] = {}
        self._by_subject: dict[str, list[int]] = {}
        self._by_domain: dict[str, list[int]] = {}
        self._times: list[tuple[int, int]] = []  # (time_ms, index), sorted
        self._head = GENESIS
        self._lock = asyncio.Lock()
        self.retries = 0

    # -- connections ---------------------------------------------------------------
    def _client(self) -> aetcd.Client:
        i = self._current
        client = self._clients[i]
        if client is None:
            host, _, port = self.endpoints[i].rpartition(":")
            client = aetcd.Client(
                host=host, port=int(port), timeout=self.timeout_s, options=_GRPC_OPTIONS
            )
            self._clients[i] = client
        return client

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    async def _retrying(self, what: str, fn: Any) -> Any:
        """Run ``fn(client)``; on a connection-level failure move to the next member and retry."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.01
        while True:
            try:
                return await asyncio.wait_for(fn(self._client()), self.timeout_s)
            except _RETRYABLE as exc:
                self.retries += 1
                if time.monotonic() > deadline:
                    raise ReplicationError(
                        f"etcd did not answer {what} within {self.retry_for_s:g} s: {exc}"
                    ) from None
                self._rotate()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)

    async def __aenter__(self) -> ReplicatedLedger:
        await self.sync()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for i, client in enumerate(self._clients):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
                self._clients[i] = None

    # -- the replica ------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.tree.size

    def _head_value(self) -> bytes:
        return f"{self.tree.size}:{self._head.hex()}".encode()

    def _block_key(self, start: int) -> bytes:
        return self.prefix + b"b/" + b"%016d" % start

    def _apply_own(
        self, datas: list[bytes], events: list[SecurityEvent], leaves: list[bytes]
    ) -> None:
        """Apply a block this client built and etcd committed (already chained and validated)."""
        base = self.tree.size
        self.tree.extend_hashes(leaves)
        self._datas.extend(datas)
        self._events.extend(events)
        times = self._times
        in_order = not times or times[-1][0] <= events[0].time_ms
        for offset, ev in enumerate(events):
            index = base + offset
            self._ids[ev.event_id] = index
            self._by_subject.setdefault(ev.subject, []).append(index)
            self._by_domain.setdefault(ev.domain, []).append(index)
            if in_order and (not times or times[-1][0] <= ev.time_ms):
                times.append((ev.time_ms, index))
            else:
                in_order = False
                bisect.insort(times, (ev.time_ms, index))
        self._head = leaves[-1]

    def _apply_block(self, start: int, block: bytes) -> None:
        block = _unpack(block, start)
        if start != self.tree.size:
            raise ChainError(
                f"block at {start} does not follow the replica's {self.tree.size} entries"
            )
        prev = self._head
        for _off, data in iter_frames(block, where=f"etcd block {start}"):
            index = self.tree.size
            if data[:HASH_SIZE] != prev:
                raise ChainError(f"entry {index} from etcd breaks the hash chain")
            entry = decode_entry(index, data)
            prev = entry.leaf
            ev = entry.event
            self.tree.append_hash(prev)
            self._datas.append(data)
            self._events.append(ev)
            self._ids[ev.event_id] = index
            self._by_subject.setdefault(ev.subject, []).append(index)
            self._by_domain.setdefault(ev.domain, []).append(index)
            bisect.insort(self._times, (ev.time_ms, index))
        self._head = prev

    async def sync(self, *, linearizable: bool = True) -> int:
        """Pull blocks past the local size; linearizable uses etcd's quorum read (ReadIndex)."""
        start_key = self._block_key(self.tree.size)
        end_key = self.prefix + b"b0"  # just past every "b/..." key

        async def pull(client: aetcd.Client) -> list[tuple[bytes, bytes]]:
            req = client._build_get_range_request(
                key=start_key, range_end=end_key, serializable=not linearizable
            )
            req.limit = _BLOCKS_PER_READ
            resp = await client.kvstub.Range(req, timeout=self.timeout_s, metadata=client.metadata)
            return [(kv.key, kv.value) for kv in resp.kvs]

        async def pull_connected(client: aetcd.Client) -> list[tuple[bytes, bytes]]:
            await client.connect()
            try:
                return await pull(client)
            except grpc.aio.AioRpcError as exc:
                aetcd.exceptions._handle_exception(exc)
                raise  # pragma: no cover - _handle_exception always raises

        async with self._lock:
            while True:
                start_key = self._block_key(self.tree.size)
                kvs = await self._retrying("a range read", pull_connected)
                for key, value in kvs:
                    start = int(key[len(self.prefix) + 2 :])
                    if start < self.tree.size:
                        continue
                    self._apply_block(start, value)
                if len(kvs) < _BLOCKS_PER_READ:
                    return self.tree.size

    # -- appending ----------------------------------------------------------------------
    async def append(self, event: SecurityEvent) -> Receipt:
        return (await self.append_batch([event]))[0]

    async def append_batch(self, events: Sequence[SecurityEvent]) -> list[Receipt]:
        """Append events in order, exactly once each (by event id), as few transactions as fit."""
        receipts: dict[int, Receipt] = {}
        todo = list(enumerate(events))
        while todo:
            todo = await self._append_some(todo, receipts)
        return [receipts[i] for i in range(len(events))]

    def _build_blocks(
        self, rest: list[tuple[int, SecurityEvent]]
    ) -> tuple[list[_Block], list[tuple[int, SecurityEvent]]]:
        """Blocks whose etcd values fit the request limit, halving the raw budget if needed."""
        budget = self.max_block_bytes * (4 if self.compress else 1)
        while True:
            blocks, leftover = self._chain_blocks(rest, budget)
            if all(len(b.block) <= MAX_BLOCK_BYTES for b in blocks) or budget <= 4096:
                return blocks, leftover
            budget //= 2  # incompressible events: smaller blocks

    def _chain_blocks(
        self, rest: list[tuple[int, SecurityEvent]], budget: int
    ) -> tuple[list[_Block], list[tuple[int, SecurityEvent]]]:
        """Chain events into up to ``pipeline_depth`` blocks from the local head.

        Stops early at an event id repeated within the batch: it must wait until
        its first copy is committed, then it is recognised as a duplicate.
        """
        blocks: list[_Block] = []
        start = self.tree.size
        prev = self._head
        expected = self._head_value()
        seen: set[str] = set()
        i = 0
        while i < len(rest) and len(blocks) < self.pipeline_depth:
            frames: list[bytes] = []
            datas: list[bytes] = []
            taken: list[tuple[int, SecurityEvent, bytes]] = []
            nbytes = 0
            while i < len(rest) and nbytes < budget:
                pos, ev = rest[i]
                if ev.event_id in seen:
                    break
                data = prev + ev.canonical()
                prev = leaf_hash(data)
                f = frame(data)
                frames.append(f)
                datas.append(data)
                nbytes += len(f)
                seen.add(ev.event_id)
                taken.append((pos, ev, prev))
                i += 1
            if not frames:
                break
            end = start + len(frames)
            new_head = f"{end}:{prev.hex()}".encode()
            packed = _pack(b"".join(frames)) if self.compress else b"".join(frames)
            blocks.append(_Block(start, expected, new_head, packed, datas, taken))
            start, expected = end, new_head
            if i < len(rest) and rest[i][1].event_id in seen:
                break
        return blocks, rest[i:]

    async def _append_some(
        self, todo: list[tuple[int, SecurityEvent]], receipts: dict[int, Receipt]
    ) -> list[tuple[int, SecurityEvent]]:
        """Commit blocks from the front of ``todo``; return what is left.

        Up to ``pipeline_depth`` transactions are in flight at once, block k+1
        comparing against the head that block k creates. A later block can only
        commit if every earlier one did (its expected head names the earlier
        block's last leaf), so what committed is always a prefix: success of
        block j proves blocks 0..j are in the log.
        """
        async with self._lock:
            # Leaves we computed for blocks whose transaction outcome we never
            # learned: an entry found later is ours exactly when its leaf matches
            # (the leaf commits to the whole chain before it).
            maybe_ours: dict[str, bytes] = {}
            while True:
                # Drop events that the log already holds (duplicates, or our own
                # blocks from attempts whose outcome we did not learn).
                rest: list[tuple[int, SecurityEvent]] = []
                for pos, ev in todo:
                    known = self._ids.get(ev.event_id)
                    if known is not None:
                        leaf = self.tree.leaf_hash_at(known)
                        ours = maybe_ours.get(ev.event_id) == leaf
                        receipts[pos] = Receipt(known, ev.event_id, leaf, not ours)
                    else:
                        rest.append((pos, ev))
                if not rest:
                    return []
                blocks, leftover = self._build_blocks(rest)
                results = await asyncio.gather(
                    *(
                        asyncio.wait_for(
                            self._commit_block(b.start, b.expected, b.block, b.new_head),
                            self.timeout_s,
                        )
                        for b in blocks
                    ),
                    return_exceptions=True,
                )
                last_ok = max((j for j, r in enumerate(results) if r is True), default=-1)
                for b in blocks[: last_ok + 1]:
                    self._apply_own(
                        b.datas, [ev for _p, ev, _l in b.taken], [lf for _p, _e, lf in b.taken]
                    )
                    for pos, ev, leaf in b.taken:
                        receipts[pos] = Receipt(self._ids[ev.event_id], ev.event_id, leaf, False)
                if last_ok == len(blocks) - 1:
                    return leftover
                unknown = [r for r in results[last_ok + 1 :] if isinstance(r, BaseException)]
                for r in unknown:
                    if not isinstance(r, _RETRYABLE):
                        raise r
                if unknown:
                    # Outcome unknown: learn the truth from a quorum read, then retry.
                    self.retries += 1
                    for b in blocks[last_ok + 1 :]:
                        maybe_ours.update((ev.event_id, leaf) for _p, ev, leaf in b.taken)
                    self._rotate()
                    await asyncio.sleep(0.02)
                # Lost a race (another writer, or our own pipeline reordered): catch up.
                await self._sync_unlocked()
                todo = [(p, e) for b in blocks[last_ok + 1 :] for p, e, _l in b.taken] + leftover

    async def _commit_block(
        self, start: int, expected: bytes, block: bytes, new_head: bytes
    ) -> bool:
        """One transaction: if the head is still ``expected``, put the block and the new head."""
        client = self._client()
        tx = client.transactions
        head_key = self.prefix + b"head"
        compare = [tx.version(head_key) == 0] if start == 0 else [tx.value(head_key) == expected]
        ok, _ = await client.transaction(
            compare=compare,
            success=[tx.put(self._block_key(start), block), tx.put(head_key, new_head)],
            failure=[],
        )
        return bool(ok)

    async def _sync_unlocked(self) -> None:
        self._lock.release()
        try:
            await self.sync()
        finally:
            await self._lock.acquire()

    # -- reading --------------------------------------------------------------------------
    def get(self, index: int) -> Entry:
        """A local read from this replica."""
        if not 0 <= index < self.tree.size:
            raise IndexError(f"entry {index} outside a replica of {self.tree.size}")
        return Entry(
            index,
            self._datas[index][:HASH_SIZE],
            self._events[index],
            self.tree.leaf_hash_at(index),
        )

    def get_by_id(self, event_id: str) -> Entry | None:
        index = self._ids.get(event_id)
        return None if index is None else self.get(index)

    async def get_linearizable(self, index: int) -> Entry:
        """A read that reflects every append acknowledged before it began (etcd quorum read)."""
        await self.sync(linearizable=True)
        return self.get(index)

    def range(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        subject: str | None = None,
        domain: str | None = None,
        limit: int = 1000,
    ) -> list[Entry]:
        """Local range query by time window [since, until), subject and domain, in log order."""
        candidates: list[int] | None = None
        if subject is not None:
            candidates = self._by_subject.get(subject, [])
        if domain is not None:
            dom = self._by_domain.get(domain, [])
            candidates = dom if candidates is None else sorted(set(candidates) & set(dom))
        if since_ms is not None or until_ms is not None:
            lo = bisect.bisect_left(self._times, (since_ms if since_ms is not None else -1, -1))
            hi = (
                bisect.bisect_left(self._times, (until_ms, -1))
                if until_ms is not None
                else len(self._times)
            )
            window = sorted(i for _t, i in self._times[lo:hi])
            candidates = window if candidates is None else sorted(set(candidates) & set(window))
        if candidates is None:
            candidates = list(range(min(limit, self.tree.size)))
        return [self.get(i) for i in candidates[:limit]]

    def raw_entries(self) -> list[bytes]:
        return list(self._datas)

    def tree_head(self, key: LogKey | None = None) -> SignedTreeHead:
        signer = key or self.key
        if signer is None:
            raise ReplicationError("no log key to sign a tree head with")
        return signer.sign_tree_head(self.tree.size, self.tree.root(), int(time.time() * 1000))
