"""Cross-Domain Autoblocker Ledger: A tamper-evident, etcd-replicated security-event log that turns detections into blocks."""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.autoblocker_ledger._autoblock import Autoblocker as Autoblocker
    from tenfold.autoblocker_ledger._autoblock import Decision as Decision
    from tenfold.autoblocker_ledger._autoblock import DecisionStream as DecisionStream
    from tenfold.autoblocker_ledger._autoblock import Rule as Rule
    from tenfold.autoblocker_ledger._autoblock import StreamBatch as StreamBatch
    from tenfold.autoblocker_ledger._autoblock import load_rules as load_rules
    from tenfold.autoblocker_ledger._bouncer import NftBouncer as NftBouncer
    from tenfold.autoblocker_ledger._bouncer import stream_decision as stream_decision
    from tenfold.autoblocker_ledger._bouncer import stream_decisions as stream_decisions
    from tenfold.autoblocker_ledger._events import Entry as Entry
    from tenfold.autoblocker_ledger._events import SecurityEvent as SecurityEvent
    from tenfold.autoblocker_ledger._linearizability import KV as KV
    from tenfold.autoblocker_ledger._linearizability import REGISTER as REGISTER
    from tenfold.autoblocker_ledger._linearizability import UNKNOWN as UNKNOWN
    from tenfold.autoblocker_ledger._linearizability import CheckResult as CheckResult
    from tenfold.autoblocker_ledger._linearizability import Model as Model
    from tenfold.autoblocker_ledger._linearizability import Operation as Operation
    from tenfold.autoblocker_ledger._linearizability import check_history as check_history
    from tenfold.autoblocker_ledger._linearizability import load_history as load_history
    from tenfold.autoblocker_ledger._merkle import MerkleTree as MerkleTree
    from tenfold.autoblocker_ledger._merkle import leaf_hash as leaf_hash
    from tenfold.autoblocker_ledger._merkle import verify_consistency as verify_consistency
    from tenfold.autoblocker_ledger._merkle import verify_inclusion as verify_inclusion
    from tenfold.autoblocker_ledger._replicated import ReplicatedLedger as ReplicatedLedger
    from tenfold.autoblocker_ledger._server import ledger_server as ledger_server
    from tenfold.autoblocker_ledger._sharded import Checkpoint as Checkpoint
    from tenfold.autoblocker_ledger._sharded import EmbeddedShards as EmbeddedShards
    from tenfold.autoblocker_ledger._sharded import ShardedLedger as ShardedLedger
    from tenfold.autoblocker_ledger._sharded import ShardLayout as ShardLayout
    from tenfold.autoblocker_ledger._sharded import ShardReceipt as ShardReceipt
    from tenfold.autoblocker_ledger._sharded import shard_for as shard_for
    from tenfold.autoblocker_ledger._signing import LogKey as LogKey
    from tenfold.autoblocker_ledger._signing import SignedTreeHead as SignedTreeHead
    from tenfold.autoblocker_ledger._store import EmbeddedLedger as EmbeddedLedger
    from tenfold.autoblocker_ledger._store import Receipt as Receipt
    from tenfold.autoblocker_ledger._verify import inclusion_bundle as inclusion_bundle
    from tenfold.autoblocker_ledger._verify import verify_bundle as verify_bundle
    from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError as AutoblockerLedgerError

__all__ = [
    "KV",
    "REGISTER",
    "UNKNOWN",
    "Autoblocker",
    "AutoblockerLedgerError",
    "CheckResult",
    "Checkpoint",
    "Decision",
    "DecisionStream",
    "EmbeddedLedger",
    "EmbeddedShards",
    "Entry",
    "LogKey",
    "MerkleTree",
    "Model",
    "NftBouncer",
    "Operation",
    "Receipt",
    "ReplicatedLedger",
    "Rule",
    "SecurityEvent",
    "ShardLayout",
    "ShardReceipt",
    "ShardedLedger",
    "SignedTreeHead",
    "StreamBatch",
    "check_history",
    "inclusion_bundle",
    "leaf_hash",
    "ledger_server",
    "load_history",
    "load_rules",
    "shard_for",
    "stream_decision",
    "stream_decisions",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._autoblock": [
            "Autoblocker",
            "Decision",
            "DecisionStream",
            "Rule",
            "StreamBatch",
            "load_rules",
        ],
        "._bouncer": ["NftBouncer", "stream_decision", "stream_decisions"],
        "._events": ["Entry", "SecurityEvent"],
        "._linearizability": [
            "CheckResult",
            "KV",
            "Model",
            "Operation",
            "REGISTER",
            "UNKNOWN",
            "check_history",
            "load_history",
        ],
        "._merkle": ["MerkleTree", "leaf_hash", "verify_consistency", "verify_inclusion"],
        "._replicated": ["ReplicatedLedger"],
        "._server": ["ledger_server"],
        "._sharded": [
            "Checkpoint",
            "EmbeddedShards",
            "ShardLayout",
            "ShardReceipt",
            "ShardedLedger",
            "shard_for",
        ],
        "._signing": ["LogKey", "SignedTreeHead"],
        "._store": ["EmbeddedLedger", "Receipt"],
        "._verify": ["inclusion_bundle", "verify_bundle"],
        ".errors": ["AutoblockerLedgerError"],
    },
    __all__,
)
