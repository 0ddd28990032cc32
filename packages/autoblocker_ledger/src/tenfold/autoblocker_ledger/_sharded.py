"""Sharded logs: N independent Merkle logs, one signed checkpoint over all their heads.

Routing. An event goes to shard ``blake2b-64(routing key) mod N`` where the
routing key is its ``subject`` (or its ``domain``, chosen per ledger); the
hash is BLAKE2b with an 8-byte digest and the personalisation
``tenfold-shard-v1``, read as a big-endian integer. It depends on nothing but
the key and N, so every client, on any machine and any Python, routes an event
to the same shard, and all of one subject's history sits in one shard (a range
query by subject reads one shard).

Layout. The routing rule is recorded as a :class:`ShardLayout` (name, shard
count, routing field, hash name, version) with each shard's data (the key
``/tenfold/shards/<name>/s<i>`` in shard i's etcd, or ``layout.json`` in an
embedded root); opening with a different layout, or shards given in another
order, is refused. Resharding is not implemented, but everything it needs is recorded:
a resharder reads the old layout, replays each shard's verified log routed by
the new count into a ledger of a new name, and checkpoints both.

Checkpoint. Each shard is its own RFC 9162 log with its own signed tree head.
The checkpoint is a second, small Merkle tree whose leaf ``i`` is
``"tenfold-shard-head-v1" || i (4 bytes BE) || size_i (8 bytes BE) || root_i``;
the log key signs ``"tenfold-ledger-checkpoint-v1" || N (4) || time_ms (8) ||
checkpoint root || BLAKE2b-256(layout JSON)``. One proof then covers any event:
the event's inclusion proof in its shard's tree, plus that shard head's
inclusion proof in the checkpoint tree; a third party checks both with the
public key alone, and also that the event routes to the shard it was found in.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tenfold.autoblocker_ledger._events import Entry, SecurityEvent, decode_entry
from tenfold.autoblocker_ledger._merkle import HASH_SIZE, MerkleTree, leaf_hash, verify_inclusion
from tenfold.autoblocker_ledger._signing import CHECKPOINT_CONTEXT, LogKey, SignedTreeHead
from tenfold.autoblocker_ledger._store import Receipt
from tenfold.autoblocker_ledger.errors import (
    MalformedEvent,
    ProofError,
    ShardLayoutError,
    SignatureError,
)
from tenfold.core.crypto import verify_ed25519
from tenfold.core.errors import CryptoError

RouteBy = Literal["subject", "domain"]
ROUTE_HASH = "blake2b-64"
LAYOUT_VERSION = 1
MAX_SHARDS = 1024
_PERSON = b"tenfold-shard-v1"
_HEAD_LEAF = b"tenfold-shard-head-v1"


def shard_for(routing_key: str, shards: int) -> int:
    """The shard of ``routing_key`` among ``shards``: BLAKE2b-64 of its UTF-8 bytes, mod N."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ShardLayoutError(f"shard count must be 1..{MAX_SHARDS}, got {shards}")
    digest = hashlib.blake2b(routing_key.encode(), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") % shards


@dataclass(frozen=True, slots=True)
class ShardLayout:
    """How a sharded ledger routes events: recorded with every shard, signed into checkpoints."""

    name: str
    shards: int
    route_by: RouteBy = "subject"
    hash: str = ROUTE_HASH
    version: int = LAYOUT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.shards, bool) or not isinstance(self.shards, int):
            raise ShardLayoutError(f"shard count must be an integer, got {self.shards!r}")
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ShardLayoutError(f"shard count must be 1..{MAX_SHARDS}, got {self.shards}")
        if self.route_by not in ("subject", "domain"):
            raise ShardLayoutError(f"route_by must be subject or domain, got {self.route_by!r}")
        if self.hash != ROUTE_HASH or self.version != LAYOUT_VERSION:
            raise ShardLayoutError(
                f"unknown shard layout {self.hash} v{self.version} "
                f"(this version reads {ROUTE_HASH} v{LAYOUT_VERSION})"
            )

    def shard_of(self, event: SecurityEvent) -> int:
        key = event.subject if self.route_by == "subject" else event.domain
        return shard_for(key, self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shards": self.shards,
            "route_by": self.route_by,
            "hash": self.hash,
            "version": self.version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> bytes:
        return hashlib.blake2b(self.to_json().encode(), digest_size=32).digest()

    @classmethod
    def from_dict(cls, raw: object) -> ShardLayout:
        if not isinstance(raw, dict):
            raise ShardLayoutError(f"a shard layout is a JSON object, got {type(raw).__name__}")
        try:
            return cls(
                name=str(raw["name"]),
                shards=raw["shards"],
                route_by=raw["route_by"],
                hash=str(raw["hash"]),
                version=raw["version"],
            )
        except KeyError as exc:
            raise ShardLayoutError(f"shard layout lacks {exc.args[0]!r}") from None


def head_leaf(shard: int, size: int, root: bytes) -> bytes:
    """Leaf data of shard ``shard``'s head in the checkpoint tree."""
    return _HEAD_LEAF + shard.to_bytes(4, "big") + size.to_bytes(8, "big") + root


def _checkpoint_message(count: int, time_ms: int, root: bytes, layout_digest: bytes) -> bytes:
    return (
        CHECKPOINT_CONTEXT
        + count.to_bytes(4, "big")
        + time_ms.to_bytes(8, "big")
        + root
        + layout_digest
    )


def _b64(x: bytes) -> str:
    return base64.b64encode(x).decode()


def _unb64(raw: object, what: str) -> bytes:
    try:
        return base64.b64decode(raw, validate=True)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise MalformedEvent(f"{what} is not base64: {exc}") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Every shard's (size, root) at one moment, signed as one Merkle root with the layout."""

    layout: ShardLayout
    heads: tuple[tuple[int, bytes], ...]
    time_ms: int
    signature: bytes

    def tree(self) -> MerkleTree:
        return MerkleTree.from_leaf_hashes(
            leaf_hash(head_leaf(i, size, root)) for i, (size, root) in enumerate(self.heads)
        )

    @property
    def root(self) -> bytes:
        return self.tree().root()

    @property
    def size(self) -> int:
        """Events under this checkpoint, all shards together."""
        return sum(size for size, _root in self.heads)

    def head_proof(self, shard: int) -> list[bytes]:
        """Shard ``shard``'s head's audit path in the checkpoint tree."""
        return self.tree().inclusion_proof(shard)

    def verify(self, public_key: bytes) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` signed exactly these heads."""
        if len(self.heads) != self.layout.shards:
            raise SignatureError(
                f"checkpoint holds {len(self.heads)} shard heads, its layout {self.layout.shards}"
            )
        _verify_checkpoint_signature(
            public_key, self.layout, self.time_ms, self.root, self.signature
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout.to_dict(),
            "time_ms": self.time_ms,
            "root": _b64(self.root),
            "heads": [{"size": s, "root": _b64(r)} for s, r in self.heads],
            "signature": _b64(self.signature),
        }

    @classmethod
    def from_dict(cls, raw: object) -> Checkpoint:
        if not isinstance(raw, dict) or not isinstance(raw.get("heads"), list):
            raise MalformedEvent("a checkpoint is a JSON object with a list of heads")
        heads = []
        for h in raw["heads"]:
            if not isinstance(h, dict):
                raise MalformedEvent("a checkpoint head is a JSON object")
            heads.append((_int(h.get("size"), "head size"), _unb64(h.get("root"), "head root")))
        return cls(
            layout=ShardLayout.from_dict(raw.get("layout")),
            heads=tuple(heads),
            time_ms=_int(raw.get("time_ms"), "checkpoint time_ms"),
            signature=_unb64(raw.get("signature"), "checkpoint signature"),
        )


def _int(raw: object, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < 1 << 63:
        raise MalformedEvent(f"{what} must be a non-negative integer, got {raw!r}")
    return raw


def _verify_checkpoint_signature(
    public_key: bytes, layout: ShardLayout, time_ms: int, root: bytes, signature: bytes
) -> None:
    if len(public_key) != 32:
        raise SignatureError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    message = _checkpoint_message(layout.shards, time_ms, root, layout.digest())
    try:
        verify_ed25519(public_key, message, signature)
    except CryptoError:
        raise SignatureError(
            f"checkpoint over {layout.shards} shards is not signed by key "
            f"{public_key.hex()[:16]}..."
        ) from None


def sign_checkpoint(
    key: LogKey, layout: ShardLayout, heads: Sequence[tuple[int, bytes]], time_ms: int
) -> Checkpoint:
    """Sign the shard heads (in shard order) as one checkpoint."""
    if len(heads) != layout.shards:
        raise ShardLayoutError(f"{len(heads)} shard heads for a layout of {layout.shards}")
    unsigned = Checkpoint(layout, tuple(heads), time_ms, b"")
    message = _checkpoint_message(layout.shards, time_ms, unsigned.root, layout.digest())
    return Checkpoint(layout, tuple(heads), time_ms, key.sign_checkpoint(message))


def checkpoint_bundle(
    checkpoint: Checkpoint, shard: int, index: int, data: bytes, proof: Sequence[bytes]
) -> dict[str, Any]:
    """A self-contained proof that entry ``index`` of shard ``shard`` is under ``checkpoint``."""
    size, root = checkpoint.heads[shard]
    return {
        "type": "sharded_inclusion",
        "layout": checkpoint.layout.to_dict(),
        "checkpoint": {
            "shards": checkpoint.layout.shards,
            "time_ms": checkpoint.time_ms,
            "root": _b64(checkpoint.root),
            "signature": _b64(checkpoint.signature),
        },
        "shard": shard,
        "shard_head": {"size": size, "root": _b64(root)},
        "head_proof": [_b64(p) for p in checkpoint.head_proof(shard)],
        "index": index,
        "entry": _b64(data),
        "proof": [_b64(p) for p in proof],
    }


def _b64_list(raw: object, what: str) -> list[bytes]:
    if not isinstance(raw, list):
        raise MalformedEvent(f"{what} must be a list of base64 hashes")
    return [_unb64(x, what) for x in raw]


def verify_checkpoint_bundle(bundle: object, public_key: bytes) -> dict[str, Any]:
    """Check a ``sharded_inclusion`` bundle with the public key alone.

    Order: the checkpoint signature (over its root and the layout), the shard
    head's position in the checkpoint tree, the entry's inclusion in the shard
    head's tree, and that the event routes to that shard under the layout.
    Raises a :class:`~tenfold.autoblocker_ledger.errors.VerificationFailed`
    subclass when a check fails, :class:`MalformedEvent` when the bundle is not one.
    """
    if not isinstance(bundle, dict) or bundle.get("type") != "sharded_inclusion":
        raise MalformedEvent("a sharded proof bundle is a JSON object of type sharded_inclusion")
    layout = ShardLayout.from_dict(bundle.get("layout"))
    cp = bundle.get("checkpoint")
    head = bundle.get("shard_head")
    if not isinstance(cp, dict) or not isinstance(head, dict):
        raise MalformedEvent("a sharded proof bundle holds a checkpoint and a shard_head object")
    count = _int(cp.get("shards"), "checkpoint shards")
    if count != layout.shards:
        raise ProofError(f"checkpoint covers {count} shards, its layout {layout.shards}")
    cp_root = _unb64(cp.get("root"), "checkpoint root")
    if len(cp_root) != HASH_SIZE:
        raise ProofError(f"checkpoint root is {len(cp_root)} bytes, expected {HASH_SIZE}")
    time_ms = _int(cp.get("time_ms"), "checkpoint time_ms")
    _verify_checkpoint_signature(
        public_key, layout, time_ms, cp_root, _unb64(cp.get("signature"), "checkpoint signature")
    )
    shard = _int(bundle.get("shard"), "shard")
    size = _int(head.get("size"), "shard head size")
    root = _unb64(head.get("root"), "shard head root")
    if len(root) != HASH_SIZE:
        raise ProofError(f"shard head root is {len(root)} bytes, expected {HASH_SIZE}")
    verify_inclusion(
        leaf_hash(head_leaf(shard, size, root)),
        shard,
        count,
        _b64_list(bundle.get("head_proof"), "head_proof"),
        cp_root,
    )
    index = _int(bundle.get("index"), "index")
    data = _unb64(bundle.get("entry"), "entry")
    verify_inclusion(leaf_hash(data), index, size, _b64_list(bundle.get("proof"), "proof"), root)
    try:
        event = decode_entry(index, data).event
    except MalformedEvent:
        raise ProofError(f"entry {index} of shard {shard} is not a valid event") from None
    if layout.shard_of(event) != shard:
        raise ProofError(
            f"event {event.event_id!r} routes to shard {layout.shard_of(event)}, "
            f"but the proof places it in shard {shard}"
        )
    return {
        "verified": "sharded_inclusion",
        "shard": shard,
        "index": index,
        "size": size,
        "checkpoint_size": count,
        "event": event.to_dict(),
    }


# -- the shard sets ----------------------------------------------------------------------


class _Shard(Protocol):
    """What a shard offers: a verified local tree and reads (both ledgers satisfy it)."""

    tree: MerkleTree

    def get(self, index: int) -> Entry: ...

    def get_by_id(self, event_id: str) -> Entry | None: ...

    def range(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        subject: str | None = None,
        domain: str | None = None,
        limit: int = 1000,
    ) -> list[Entry]: ...


@dataclass(frozen=True, slots=True)
class ShardReceipt:
    """Where an appended event landed: its shard and its index in that shard's log."""

    shard: int
    index: int
    event_id: str
    leaf: bytes
    duplicate: bool


class _ShardSet:
    """Routing, reads, checkpoints and proofs over shards that each keep a local tree."""

    layout: ShardLayout
    key: LogKey | None
    _shards: list[Any]

    def _route(self, events: Sequence[SecurityEvent]) -> list[list[int]]:
        """Positions of ``events`` per shard, each list in submission order."""
        routed: list[list[int]] = [[] for _ in range(self.layout.shards)]
        shard_of = self.layout.shard_of
        for pos, ev in enumerate(events):
            routed[shard_of(ev)].append(pos)
        return routed

    @staticmethod
    def _merge(
        events: Sequence[SecurityEvent],
        routed: list[list[int]],
        per_shard: Iterable[Sequence[Receipt]],
    ) -> list[ShardReceipt]:
        out: list[ShardReceipt | None] = [None] * len(events)
        for shard, (positions, receipts) in enumerate(zip(routed, per_shard, strict=True)):
            for pos, r in zip(positions, receipts, strict=True):
                out[pos] = ShardReceipt(shard, r.index, r.event_id, r.leaf, r.duplicate)
        return [r for r in out if r is not None]

    @property
    def shard_count(self) -> int:
        return self.layout.shards

    @property
    def size(self) -> int:
        """Entries in all shards together (as the local replicas hold them)."""
        return sum(s.tree.size for s in self._shards)

    def shard(self, i: int) -> _Shard:
        """Shard ``i`` itself (its own reads, tree and signed head)."""
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._shards):
            raise ShardLayoutError(f"shard {i!r} outside 0..{len(self._shards) - 1}")
        shard: _Shard = self._shards[i]
        return shard

    def shard_of(self, event: SecurityEvent) -> int:
        return self.layout.shard_of(event)

    def get(self, shard: int, index: int) -> Entry:
        return self.shard(shard).get(index)

    def locate(self, event_id: str) -> tuple[int, Entry] | None:
        """The shard and entry holding ``event_id`` (ids are not routing keys: every shard is asked)."""
        for i, s in enumerate(self._shards):
            entry = s.get_by_id(event_id)
            if entry is not None:
                return i, entry
        return None

    def range(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        subject: str | None = None,
        domain: str | None = None,
        limit: int = 1000,
    ) -> list[tuple[int, Entry]]:
        """(shard, entry) pairs matching every filter; a filter on the routing field reads one
        shard, otherwise every shard is read and the matches merged by time."""
        key = subject if self.layout.route_by == "subject" else domain
        which = range(len(self._shards)) if key is None else [shard_for(key, self.layout.shards)]
        found = [
            (i, e)
            for i in which
            for e in self._shards[i].range(
                since_ms=since_ms, until_ms=until_ms, subject=subject, domain=domain, limit=limit
            )
        ]
        if len(which) > 1:
            found.sort(key=lambda ie: (ie[1].event.time_ms, ie[0], ie[1].index))
        return found[:limit]

    def _signer(self, key: LogKey | None) -> LogKey:
        signer = key or self.key
        if signer is None:
            raise ShardLayoutError("no log key to sign with")
        return signer

    def shard_heads(self, key: LogKey | None = None) -> list[SignedTreeHead]:
        """Each shard's own signed tree head, in shard order."""
        signer = self._signer(key)
        now = int(time.time() * 1000)
        return [signer.sign_tree_head(s.tree.size, s.tree.root(), now) for s in self._shards]

    def checkpoint(self, key: LogKey | None = None) -> Checkpoint:
        """Sign every shard's current head as one checkpoint."""
        heads = [(s.tree.size, s.tree.root()) for s in self._shards]
        return sign_checkpoint(self._signer(key), self.layout, heads, int(time.time() * 1000))

    def proof(self, event_id: str, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
        """A bundle proving ``event_id`` is under ``checkpoint`` (a fresh one when not given)."""
        cp = checkpoint or self.checkpoint()
        found = self.locate(event_id)
        if found is None:
            raise ProofError(f"event {event_id!r} is in no shard")
        shard, entry = found
        size, _root = cp.heads[shard]
        if entry.index >= size:
            raise ProofError(
                f"event {event_id!r} (shard {shard}, index {entry.index}) came after the "
                f"checkpoint (shard size {size})"
            )
        proof = self._shards[shard].tree.inclusion_proof(entry.index, size)
        return checkpoint_bundle(cp, shard, entry.index, entry.data, proof)


def _check_endpoints(shard_endpoints: Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(shard_endpoints, str) or not shard_endpoints:
        raise ShardLayoutError("give one list of etcd endpoints per shard")
    out = []
    for i, eps in enumerate(shard_endpoints):
        if isinstance(eps, str) or not eps or not all(isinstance(e, str) and e for e in eps):
            raise ShardLayoutError(f"shard {i}: a non-empty list of host:port endpoints is needed")
        out.append(list(eps))
    return out


class ShardedLedger(_ShardSet):
    """N etcd-ordered logs (:class:`ReplicatedLedger` each), one signed checkpoint over them.

    ``shard_endpoints[i]`` are the etcd endpoints of shard ``i``: one cluster per
    shard, or shards sharing a cluster (each shard has its own key prefix,
    ``/tenfold/ledger/<name>-s<i>/``). Use as ``async with ShardedLedger(...)``;
    opening records the layout in every shard (or checks the recorded one).
    Appends are routed by :func:`shard_for` and the shards commit concurrently;
    a shard that is failing over delays only its own events.
    """

    def __init__(
        self,
        shard_endpoints: Sequence[Sequence[str]],
        *,
        name: str = "default",
        route_by: RouteBy = "subject",
        key: LogKey | None = None,
        **ledger_options: Any,
    ) -> None:
        from tenfold.autoblocker_ledger._replicated import ReplicatedLedger

        endpoints = _check_endpoints(shard_endpoints)
        self.layout = ShardLayout(name=name, shards=len(endpoints), route_by=route_by)
        self.key = key
        self._shards = [
            ReplicatedLedger(eps, name=f"{name}-s{i}", key=key, **ledger_options)
            for i, eps in enumerate(endpoints)
        ]

    @classmethod
    def from_config(cls, *, key: LogKey | None = None, **options: Any) -> ShardedLedger:
        """Shards from ``[autoblocker_ledger] shard_endpoints`` (one endpoint list per shard)."""
        from tenfold.autoblocker_ledger._config import load_config

        cfg = load_config()
        if not cfg.shard_endpoints:
            raise ShardLayoutError(
                "no [autoblocker_ledger] shard_endpoints configured "
                "(one list of etcd host:port endpoints per shard)"
            )
        options.setdefault("name", cfg.shard_name)
        options.setdefault("route_by", cfg.shard_route_by)
        options.setdefault("timeout_s", cfg.etcd_timeout_s)
        options.setdefault("pipeline_depth", cfg.pipeline_depth)
        return cls(cfg.shard_endpoints, key=key, **options)

    async def __aenter__(self) -> ShardedLedger:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Record (or check) the layout in every shard, then sync every replica."""
        await asyncio.gather(*(self._record_layout(i) for i in range(len(self._shards))))
        await self.sync()

    async def _record_layout(self, i: int) -> None:
        """Record shard ``i``'s layout in its cluster, or check the one recorded there.

        Keys ``/tenfold/shards/<name>/s<i>`` hold the layout plus the shard's
        position. A cluster holding shards of this ledger that this client does
        not place on it (shards whose endpoint lists differ from shard ``i``'s)
        is refused: endpoints given in another order would otherwise start empty
        logs beside the real ones. Shards given the same endpoints share a cluster.
        """
        shard = self._shards[i]
        base = f"/tenfold/shards/{self.layout.name}/".encode()
        key = base + b"s%d" % i
        mine = json.dumps({**self.layout.to_dict(), "shard": i}, sort_keys=True).encode()
        here = sorted(shard.endpoints)
        placed = {
            base + b"s%d" % j
            for j, other in enumerate(self._shards)
            if sorted(other.endpoints) == here
        }

        async def record(client: Any) -> dict[bytes, bytes]:
            await client.connect()
            recorded = {bytes(kv.key): bytes(kv.value) for kv in await client.get_prefix(base)}
            if key in recorded or not set(recorded) <= placed:
                return recorded
            tx = client.transactions
            ok, responses = await client.transaction(
                compare=[tx.version(key) == 0], success=[tx.put(key, mine)], failure=[tx.get(key)]
            )
            return {**recorded, key: mine if ok else bytes(responses[0][0][0])}

        recorded = await shard._retrying("recording the shard layout", record)
        where = shard.endpoints[0]
        strangers = sorted(k[len(base) :].decode() for k in set(recorded) - placed)
        if strangers:
            raise ShardLayoutError(
                f"the cluster at {where} holds shard(s) {', '.join(strangers)} of ledger "
                f"{self.layout.name!r}, given here for s{i} (endpoints in another order?)"
            )
        if recorded[key] != mine:
            raise ShardLayoutError(
                f"shard {i} ({where}) already holds layout {recorded[key].decode()[:200]}, "
                f"not {mine.decode()}"
            )

    @property
    def retries(self) -> int:
        """Transactions retried over all shards (failovers and lost head races)."""
        return sum(s.retries for s in self._shards)

    async def sync(self) -> int:
        """Pull every shard's new blocks (quorum reads, concurrently); returns the total size."""
        await asyncio.gather(*(s.sync() for s in self._shards))
        return self.size

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._shards), return_exceptions=True)

    async def append(self, event: SecurityEvent) -> ShardReceipt:
        return (await self.append_batch([event]))[0]

    async def append_batch(self, events: Sequence[SecurityEvent]) -> list[ShardReceipt]:
        """Append events, each exactly once (by id, within its shard), shards in parallel."""
        routed = self._route(events)
        per_shard = await asyncio.gather(
            *(
                self._shards[i].append_batch([events[p] for p in positions])
                for i, positions in enumerate(routed)
            )
        )
        return self._merge(events, routed, per_shard)

    async def checkpoint_linearizable(self, key: LogKey | None = None) -> Checkpoint:
        """A checkpoint over heads that include every append acknowledged before the call."""
        await self.sync()
        return self.checkpoint(key)


class EmbeddedShards(_ShardSet):
    """N embedded stores under one directory, one key, one signed checkpoint over them.

    ``root/layout.json`` records the layout, ``root/log.key`` and ``log.pub`` the
    key every shard and checkpoint is signed with, ``root/shard-<i>/`` each store.
    ``shards`` is needed to create the set; opening an existing one reads it.
    """

    def __init__(
        self,
        root: Path | str,
        shards: int | None = None,
        *,
        route_by: RouteBy = "subject",
        create: bool = True,
        **store_options: Any,
    ) -> None:
        from tenfold.autoblocker_ledger._store import EmbeddedLedger
        from tenfold.autoblocker_ledger.errors import NoSuchStore, StoreError

        self.path = Path(root)
        layout_path = self.path / "layout.json"
        if layout_path.exists():
            try:
                stored = ShardLayout.from_dict(json.loads(layout_path.read_text()))
            except (OSError, ValueError) as exc:
                raise ShardLayoutError(f"{layout_path}: unreadable layout: {exc}") from None
            if shards is not None and shards != stored.shards:
                raise ShardLayoutError(
                    f"{self.path} holds {stored.shards} shards, not {shards} (resharding is "
                    "not supported)"
                )
            if stored.route_by != route_by and shards is not None:
                raise ShardLayoutError(f"{self.path} routes by {stored.route_by}, not {route_by}")
            self.layout = stored
        elif not create:
            raise NoSuchStore(f"{self.path}: no sharded ledger here (no layout.json)")
        elif shards is None:
            raise ShardLayoutError(f"{self.path}: give the shard count to create a sharded ledger")
        else:
            self.layout = ShardLayout(
                name=self.path.name or "shards", shards=shards, route_by=route_by
            )
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                tmp = layout_path.with_name(".layout.json.tmp")
                tmp.write_text(self.layout.to_json() + "\n")
                tmp.replace(layout_path)
            except OSError as exc:
                raise StoreError(f"cannot create {self.path}: {exc.strerror}") from None
        self.key = LogKey.load_or_create(self.path)
        self._shards = []
        try:
            for i in range(self.layout.shards):
                self._shards.append(
                    EmbeddedLedger(self.path / f"shard-{i}", key=self.key, **store_options)
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for s in self._shards:
            s.close()

    def __enter__(self) -> EmbeddedShards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, event: SecurityEvent) -> ShardReceipt:
        return self.append_batch([event])[0]

    def append_batch(self, events: Sequence[SecurityEvent]) -> list[ShardReceipt]:
        """Append events, each shard's share in one group commit (shards one after another)."""
        routed = self._route(events)
        per_shard = [
            self._shards[i].append_batch([events[p] for p in positions]) if positions else []
            for i, positions in enumerate(routed)
        ]
        return self._merge(events, routed, per_shard)


def is_sharded_store(path: Path) -> bool:
    """Whether ``path`` holds an :class:`EmbeddedShards` set (its layout file)."""
    return (path / "layout.json").is_file()
