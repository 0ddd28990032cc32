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
import itertools
import random
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions
import grpc  # type: ignore[import-untyped]

from tenfold.autoblocker_ledger._events import GENESIS, Entry, SecurityEvent, decode_entry
from tenfold.autoblocker_ledger._merkle import HASH_SIZE, MerkleTree, leaf_hash
from tenfold.autoblocker_ledger._reading import LogReader
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
# Raw bytes per block when a batch is cut into pipelined blocks: small enough
# that etcd replicates block k while the next one is being hashed, large
# enough that the per-transaction cost (one Raft entry, one fsync) stays small.
BLOCK_TARGET_BYTES = 192 << 10
_COMPRESS_MIN_BYTES = 4 << 10  # smaller blocks travel uncompressed
_THREAD_PACK_BYTES = 32 << 10  # blocks at least this big are compressed off the event loop
_RACE_BACKOFF_S = 0.05  # longest pause after losing the head to another writer
_LEADER_POLL_S = 0.01  # how often members are asked for the leader while one is missing
_STATUS_TIMEOUT_S = 0.25  # a member that cannot say who leads within this is skipped
_BLOCKS_PER_READ = 16  # a range read returns at most this many blocks (~16 MB)
_GRPC_OPTIONS = {
    "grpc.max_receive_message_length": 64 << 20,
    "grpc.max_send_message_length": 8 << 20,
    # gRPC shares subchannels per address across a process and backs off for
    # up to 120 s after a failed connect; a member that was killed and came
    # back would stay "unavailable" to every new client for that long. Own
    # subchannels and short backoff make a restarted member usable at once.
    "grpc.use_local_subchannel_pool": 1,
    "grpc.initial_reconnect_backoff_ms": 20,
    "grpc.min_reconnect_backoff_ms": 20,
    "grpc.max_reconnect_backoff_ms": 250,
}


def _pack(block: bytes) -> bytes:
    """Blocks travel compressed: etcd replicates and fsyncs a fifth of the bytes."""
    return b"Z" + zlib.compress(block, 1)


def _raw(block: bytes) -> bytes:
    """A block sent as is (small, or compression off); tagged so it is never taken for zlib."""
    return b"R" + block


def _unpack(value: bytes, start: int) -> bytes:
    tag = value[:1]
    if tag == b"Z":
        try:
            return zlib.decompress(value[1:])
        except zlib.error:
            raise ChainError(f"block at {start} in etcd is not a valid compressed block") from None
    if tag == b"R":
        return value[1:]
    return value  # untagged: written by a client from before the tags


@dataclass
class _Block:
    """Events chained onto an expected head, packed as one etcd value."""

    start: int
    expected: bytes
    new_head: bytes
    block: bytes  # the frames, uncompressed
    datas: list[bytes]
    positions: list[int]  # where each event sits in the caller's batch
    events: list[SecurityEvent]
    leaves: list[bytes]

    @property
    def end(self) -> int:
        return self.start + len(self.datas)


class ReplicatedLedger(LogReader):
    """A client of the etcd-ordered log with a local, verified replica.

    Use as ``async with ReplicatedLedger(endpoints) as led``. Reads from
    :meth:`get` and :meth:`range` are local (as fresh as the last
    :meth:`sync`); :meth:`get_linearizable` first syncs through a quorum read.

    Appends go to the member that leads (found with etcd's Status call, so no
    proposal pays a follower-to-leader hop); when it stops answering, the
    members are polled every ``_LEADER_POLL_S`` until one reports a new leader,
    instead of waiting out a client timeout.
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
        pipeline_depth: int = 4,
        compress: bool = True,
        block_target_bytes: int = BLOCK_TARGET_BYTES,
    ) -> None:
        if not endpoints:
            raise ReplicationError("no etcd endpoints given")
        self.endpoints = list(endpoints)
        self.prefix = f"/tenfold/ledger/{name}/".encode()
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.max_block_bytes = max_block_bytes
        self.block_target_bytes = max(4096, min(block_target_bytes, max_block_bytes))
        self.pipeline_depth = max(1, pipeline_depth)
        self.compress = compress
        self.key = key
        self._clients: list[aetcd.Client | None] = [None] * len(self.endpoints)
        self._current = prefer % len(self.endpoints)
        self._writer: int | None = None  # the member appends go to (the leader, once found)
        self.tree = MerkleTree()
        self._datas: list[bytes] = []
        self._events: list[SecurityEvent] = []
        self._ids: dict[str, int] = {}
        self._by_subject: dict[str, list[int]] = {}
        self._by_domain: dict[str, list[int]] = {}
        # (time_ms, index) pairs, appended in log order and sorted on the first
        # range query after an out-of-order append (submitters' clocks differ).
        self._times: list[tuple[int, int]] = []
        self._times_sorted = True
        self._indexed = 0  # entries below this are in the three indexes above
        self._head = GENESIS
        self._lock = asyncio.Lock()
        self.retries = 0
        # ReadIndex batching: readers wait for the next quorum read that *starts*
        # after they arrived; one such read serves every reader waiting for it.
        self._barrier_next: asyncio.Future[int] | None = None
        self._barrier_task: asyncio.Task[None] | None = None
        self.quorum_reads = 0  # quorum reads issued for linearizable reads (batching shows here)

    # -- connections ---------------------------------------------------------------
    def _client_at(self, i: int) -> aetcd.Client:
        client = self._clients[i]
        if client is None:
            host, _, port = self.endpoints[i].rpartition(":")
            client = aetcd.Client(
                host=host, port=int(port), timeout=self.timeout_s, options=_GRPC_OPTIONS
            )
            self._clients[i] = client
        return client

    def _client(self) -> aetcd.Client:
        return self._client_at(self._current)

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    async def _status(self, i: int) -> tuple[int, int, int] | None:
        """(member id, leader id, raft term) as member ``i`` sees them, or None if it is silent."""
        client = self._client_at(i)
        try:
            await client.connect()
            resp = await client.maintenancestub.Status(
                aetcd.rpc.StatusRequest(), timeout=_STATUS_TIMEOUT_S, metadata=client.metadata
            )
        except (*_RETRYABLE, grpc.RpcError):
            return None
        return int(resp.header.member_id), int(resp.leader), int(resp.raftTerm)

    async def _find_leader(self, deadline: float) -> int | None:
        """The index of the member that leads, asking every member at once.

        A leader claim is believed only from the member that makes it (it
        answered, so it is up) and, when claims disagree (an isolated old
        leader that has not stepped down yet), the one with the highest Raft
        term wins. While no member knows a leader (an election is running),
        ask again every ``_LEADER_POLL_S``; None once ``deadline`` passes.
        """
        while True:
            answers = await asyncio.gather(*(self._status(i) for i in range(len(self.endpoints))))
            best: tuple[int, int] | None = None  # (term, endpoint index)
            for i, answer in enumerate(answers):
                claims = answer is not None and answer[0] == answer[1] != 0
                if answer is not None and claims and (best is None or answer[2] > best[0]):
                    best = (answer[2], i)
            if best is not None:
                return best[1]
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(_LEADER_POLL_S)

    async def _failover(self, deadline: float) -> int:
        """After a connection-level failure: the member to use next (the leader, once known)."""
        leader = await self._find_leader(min(deadline, time.monotonic() + self.timeout_s))
        if leader is None:
            self._rotate()
            return self._current
        self._current = leader
        return leader

    async def _retrying(self, what: str, fn: Any) -> Any:
        """Run ``fn(client)``; on a connection-level failure find the leader and retry."""
        deadline = time.monotonic() + self.retry_for_s
        while True:
            try:
                return await asyncio.wait_for(fn(self._client()), self.timeout_s)
            except _RETRYABLE as exc:
                self.retries += 1
                if time.monotonic() > deadline:
                    raise ReplicationError(
                        f"etcd did not answer {what} within {self.retry_for_s:g} s: {exc}"
                    ) from None
                await self._failover(deadline)

    async def __aenter__(self) -> ReplicatedLedger:
        await self.sync()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        task = self._barrier_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
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

    def _index_events(self, base: int, events: Sequence[SecurityEvent]) -> None:
        """Record event ids now (appends dedupe on them); the range indexes catch up lazily."""
        self._ids.update(
            zip([ev.event_id for ev in events], range(base, base + len(events)), strict=True)
        )

    def _catch_up_indexes(self) -> None:
        """Extend the subject, domain and time indexes over entries applied since the last query.

        Kept off the append path: a writer pays for hashing and replication only,
        and the first range query after a burst indexes the burst in one pass.
        """
        first = self._indexed
        events = self._events
        if first == len(events):
            return
        by_subject = self._by_subject
        by_domain = self._by_domain
        for index in range(first, len(events)):
            ev = events[index]
            by_subject.setdefault(ev.subject, []).append(index)
            by_domain.setdefault(ev.domain, []).append(index)
        stamps = [ev.time_ms for ev in events[first:]]
        times = self._times
        if self._times_sorted and (
            (times and times[-1][0] > stamps[0])
            or any(a > b for a, b in itertools.pairwise(stamps))
        ):
            self._times_sorted = False
        times.extend(zip(stamps, range(first, len(events)), strict=True))
        if not self._times_sorted:
            times.sort()  # runs already in order: close to a linear merge
            self._times_sorted = True
        self._indexed = len(events)

    def _apply_own(self, block: _Block) -> None:
        """Apply a block this client built and etcd committed (already chained and validated)."""
        base = self.tree.size
        self.tree.extend_hashes(block.leaves)
        self._datas.extend(block.datas)
        self._events.extend(block.events)
        self._index_events(base, block.events)
        self._head = block.leaves[-1]

    def _apply_block(self, start: int, block: bytes) -> None:
        block = _unpack(block, start)
        if start != self.tree.size:
            raise ChainError(
                f"block at {start} does not follow the replica's {self.tree.size} entries"
            )
        prev = self._head
        datas: list[bytes] = []
        leaves: list[bytes] = []
        events: list[SecurityEvent] = []
        for _off, data in iter_frames(block, where=f"etcd block {start}"):
            index = start + len(datas)
            if data[:HASH_SIZE] != prev:
                raise ChainError(f"entry {index} from etcd breaks the hash chain")
            entry = decode_entry(index, data)
            prev = entry.leaf
            datas.append(data)
            leaves.append(prev)
            events.append(entry.event)
        if not datas:
            return
        self.tree.extend_hashes(leaves)
        self._datas.extend(datas)
        self._events.extend(events)
        self._index_events(start, events)
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

    def _next_block(
        self,
        rest: list[tuple[int, SecurityEvent]],
        i: int,
        tail: tuple[int, bytes, bytes],
        seen: set[str],
    ) -> tuple[_Block | None, int]:
        """Chain events ``rest[i:]`` onto ``tail`` (start, last leaf, head value) as one block.

        Stops at an event id repeated within the batch: it must wait until its
        first copy is committed, then it is recognised as a duplicate. A block
        holds about ``block_target_bytes`` of frames and never more than fits
        one etcd value uncompressed (zlib never grows it by more than 0.1%), so
        compression can run later, off the event loop.
        """
        start, prev, expected = tail
        limit = self.max_block_bytes - self.max_block_bytes // 512 - 64
        frames: list[bytes] = []
        datas: list[bytes] = []
        positions: list[int] = []
        events: list[SecurityEvent] = []
        leaves: list[bytes] = []
        nbytes = 0
        j = i
        while j < len(rest) and nbytes < self.block_target_bytes:
            pos, ev = rest[j]
            eid = ev.event_id
            if eid in seen:
                break
            data = prev + ev.canonical()
            f = frame(data)
            if frames and nbytes + len(f) > limit:
                break
            prev = leaf_hash(data)
            frames.append(f)
            datas.append(data)
            positions.append(pos)
            events.append(ev)
            leaves.append(prev)
            seen.add(eid)
            nbytes += len(f)
            j += 1
        if not frames:
            return None, i
        new_head = f"{start + len(datas)}:{prev.hex()}".encode()
        raw = b"".join(frames)
        return _Block(start, expected, new_head, raw, datas, positions, events, leaves), j

    async def _commit_or_error(self, b: _Block) -> bool | Exception:
        """The block's transaction outcome: True, False (head moved), or the error (unknown).

        zlib releases the GIL, so compressing in a worker thread overlaps with
        hashing the next block on the event loop (two cores, two jobs). Small
        blocks are sent as they are: setting up a zlib stream costs more than
        the bytes it would save.
        """
        try:
            raw = b.block
            if not self.compress or len(raw) < _COMPRESS_MIN_BYTES:
                value = _raw(raw)
            elif len(raw) < _THREAD_PACK_BYTES:
                value = _pack(raw)
            else:
                value = await asyncio.to_thread(_pack, raw)
            async with asyncio.timeout(self.timeout_s):
                return await self._commit_block(b.start, b.expected, value, b.new_head)
        except Exception as exc:  # every error is handed to the caller to classify
            return exc

    def _receipts_for(self, b: _Block, receipts: dict[int, Receipt]) -> None:
        for k, (pos, ev, leaf) in enumerate(zip(b.positions, b.events, b.leaves, strict=True)):
            receipts[pos] = Receipt(b.start + k, ev.event_id, leaf, False)

    async def _append_some(
        self, todo: list[tuple[int, SecurityEvent]], receipts: dict[int, Receipt]
    ) -> list[tuple[int, SecurityEvent]]:
        """Commit blocks from the front of ``todo``; return what is left.

        Blocks stream through a window of ``pipeline_depth`` transactions: block
        k+1 is hashed and sent while block k is being replicated, each comparing
        against the head its predecessor creates. A later block can only commit
        if every earlier one did (its expected head names the earlier block's
        last leaf), so what committed is always a prefix: success of block j
        proves blocks 0..j are in the log.
        """
        async with self._lock:
            if self._writer is None:
                # Proposals sent to a follower are forwarded to the leader: go there directly.
                leader = await self._find_leader(time.monotonic() + self.timeout_s)
                self._writer = self._current if leader is None else leader
            # Leaves we computed for blocks whose transaction outcome we never
            # learned: an entry found later is ours exactly when its leaf matches
            # (the leaf commits to the whole chain before it).
            maybe_ours: dict[str, bytes] = {}
            losses = 0
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
                failed, results, leftover = await self._stream_blocks(rest, receipts)
                if not failed:
                    return leftover
                for r in results:
                    if isinstance(r, Exception) and not isinstance(r, _RETRYABLE):
                        raise r
                if any(isinstance(r, Exception) for r in results):
                    # Outcome unknown: learn the truth from a quorum read, then retry.
                    self.retries += 1
                    for b in failed:
                        maybe_ours.update(
                            (ev.event_id, leaf) for ev, leaf in zip(b.events, b.leaves, strict=True)
                        )
                    self._writer = await self._failover(time.monotonic() + self.retry_for_s)
                else:
                    # Lost the head to another writer, whose next blocks are
                    # usually queued right behind the one that won: retrying at
                    # once mostly loses again. A random pause that grows with
                    # consecutive losses lets writers take turns.
                    losses += 1
                    await asyncio.sleep(random.uniform(0, min(_RACE_BACKOFF_S, 0.001 * 2**losses)))
                # Catch up with what the others committed, then retry the rest.
                await self._sync_unlocked()
                todo = [
                    pe for b in failed for pe in zip(b.positions, b.events, strict=True)
                ] + leftover

    async def _stream_blocks(
        self, rest: list[tuple[int, SecurityEvent]], receipts: dict[int, Receipt]
    ) -> tuple[list[_Block], list[bool | Exception], list[tuple[int, SecurityEvent]]]:
        """Send ``rest`` as pipelined blocks; apply each as it commits.

        Returns the blocks that did not commit (from the first failure on) with
        their outcomes, and the events never sent.
        """
        window: deque[tuple[_Block, asyncio.Task[bool | Exception]]] = deque()
        tail = (self.tree.size, self._head, self._head_value())
        seen: set[str] = set()
        i = 0
        building = True
        while True:
            if building and len(window) < self.pipeline_depth and i < len(rest):
                block, i = self._next_block(rest, i, tail, seen)
                if block is None:
                    building = False  # a repeated id: the caller retries it after this commits
                    continue
                window.append((block, asyncio.ensure_future(self._commit_or_error(block))))
                tail = (block.end, block.leaves[-1], block.new_head)
                if i < len(rest):
                    await asyncio.sleep(0)  # let the request leave before hashing the next block
                continue
            if not window:
                return [], [], rest[i:]
            block, task = window[0]
            outcome = await task
            if outcome is True:
                window.popleft()
                self._apply_own(block)
                self._receipts_for(block, receipts)
                continue
            # First failure: let the rest land, then keep what committed (a prefix).
            outcomes = [outcome, *[await t for _b, t in list(window)[1:]]]
            blocks = [b for b, _t in window]
            last_ok = max((j for j, r in enumerate(outcomes) if r is True), default=-1)
            for b in blocks[: last_ok + 1]:
                self._apply_own(b)
                self._receipts_for(b, receipts)
            return blocks[last_ok + 1 :], outcomes[last_ok + 1 :], rest[i:]

    async def _commit_block(
        self, start: int, expected: bytes, block: bytes, new_head: bytes
    ) -> bool:
        """One transaction: if the head is still ``expected``, put the block and the new head."""
        client = self._client_at(self._current if self._writer is None else self._writer)
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
    def _entry(self, index: int) -> Entry:
        """A local read from this replica (its chain was walked when the block was applied)."""
        return Entry(
            index,
            self._datas[index][:HASH_SIZE],
            self._events[index],
            self.tree.leaf_hash_at(index),
        )

    def _index_of(self, event_id: str) -> int | None:
        return self._ids.get(event_id)

    async def read_barrier(self) -> int:
        """Return once this replica holds every append acknowledged before the call began.

        ReadIndex-style batching: the caller waits for the next quorum read of the
        log that starts after it arrived (one already running may have missed an
        append acknowledged just before this call, so it is not used). Every
        caller that arrives before that read starts shares it, so 64 concurrent
        readers cost a couple of quorum reads, not 64. Returns the replica size.
        """
        fut = self._barrier_next
        if fut is None or fut.done():
            fut = self._barrier_next = asyncio.get_running_loop().create_future()
            if self._barrier_task is None or self._barrier_task.done():
                self._barrier_task = asyncio.create_task(self._run_barriers())
        return await asyncio.shield(fut)

    async def _run_barriers(self) -> None:
        while (fut := self._barrier_next) is not None:
            self._barrier_next = None  # callers from now on wait for the next round
            self.quorum_reads += 1
            try:
                size = await self.sync(linearizable=True)
            except BaseException as exc:
                if not fut.done():
                    fut.set_exception(exc)
                if not fut.cancelled():
                    fut.exception()  # marked retrieved: every waiter may have gone
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            if not fut.done():
                fut.set_result(size)

    async def get_linearizable(self, index: int) -> Entry:
        """A read that reflects every append acknowledged before it began (batched quorum read)."""
        await self.read_barrier()
        return self.get(index)

    def _matching(
        self,
        since_ms: int | None,
        until_ms: int | None,
        subject: str | None,
        domain: str | None,
        limit: int,
    ) -> list[int]:
        """Local range query by time window [since, until), subject and domain, in log order."""
        self._catch_up_indexes()
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
            return list(range(min(limit, self.tree.size)))
        return candidates[:limit]

    def raw_entries(self, start: int = 0, end: int | None = None) -> list[bytes]:
        return self._datas[start:end]

    def tree_head(self, key: LogKey | None = None) -> SignedTreeHead:
        signer = key or self.key
        if signer is None:
            raise ReplicationError("no log key to sign a tree head with")
        return signer.sign_tree_head(self.tree.size, self.tree.root(), int(time.time() * 1000))
