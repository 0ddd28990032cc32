"""Registration of the Cross-Domain Autoblocker Ledger with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenfold.core.plugins import SystemPlugin

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario


def _commands() -> Sequence[click.Command]:
    from tenfold.autoblocker_ledger.cli import commands

    return commands()


def _scenarios() -> Sequence[Scenario]:
    from tenfold.autoblocker_ledger.bench import scenarios

    return scenarios()


def _kernel() -> None:
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
    commands=_commands,
    scenarios=_scenarios,
    kernel=_kernel,
)
