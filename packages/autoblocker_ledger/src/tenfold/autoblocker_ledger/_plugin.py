"""Registration of the Cross-Domain Autoblocker Ledger with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin


def kernel() -> None:
    """Deterministic: build a 4096-leaf tree and verify 64 inclusion proofs."""
    from tenfold.autoblocker_ledger._merkle import MerkleTree, leaf_hash, verify_inclusion

    tree = MerkleTree()
    for i in range(4096):
        tree.append(b"entry %d" % i)
    root = tree.root()
    for i in range(0, 4096, 64):
        verify_inclusion(leaf_hash(b"entry %d" % i), i, 4096, tree.inclusion_proof(i), root)


plugin = SystemPlugin(
    name="autoblocker_ledger",
    title="Cross-Domain Autoblocker Ledger",
    summary="A tamper-evident, etcd-replicated security-event log that turns detections into blocks",
    commands={
        "ledger": (
            "tenfold.autoblocker_ledger.cli:ledger",
            "The tamper-evident event log: append, read, verify, prove, serve",
        ),
        "autoblock": (
            "tenfold.autoblocker_ledger.cli:autoblock",
            "Turn log lines into ban decisions recorded in the ledger",
        ),
    },
    config=("autoblocker_ledger", "tenfold.autoblocker_ledger._config:LedgerConfig"),
    scenarios="tenfold.autoblocker_ledger.bench:scenarios",
    kernel="tenfold.autoblocker_ledger._plugin:kernel",
)
