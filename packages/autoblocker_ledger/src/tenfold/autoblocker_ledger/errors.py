"""Exceptions raised by tenfold.autoblocker_ledger.

Bad input (a malformed event, a bad rule, an unreadable history) exits 2; a
verification that ran and failed (a proof, the hash chain, a signature) is a
failed check and exits 1.
"""

from __future__ import annotations

from tenfold.core.errors import CheckFailed, TenfoldError


class AutoblockerLedgerError(TenfoldError):
    """Root of every error raised by the Cross-Domain Autoblocker Ledger."""


class MalformedEvent(AutoblockerLedgerError):
    """A security event is missing a field, has a field of the wrong type, or is not valid JSON."""


class RuleError(AutoblockerLedgerError):
    """An autoblock rule file is malformed (bad regex, unknown key, bad threshold or scope)."""


class HistoryError(AutoblockerLedgerError):
    """An operation history given to the linearizability checker cannot be parsed."""


class StoreError(AutoblockerLedgerError):
    """The embedded store cannot read or write its segment files, index or snapshots."""


class StoreFull(StoreError):
    """The disk is full (or over quota): the append was refused and nothing was half-written."""


class StoreLocked(StoreError):
    """Another process (or another handle in this one) has the store open for writing."""


class NoSuchStore(StoreError):
    """A read named a directory that holds no store (reads never create one)."""


class EntryOutOfRange(AutoblockerLedgerError, IndexError):
    """An entry index outside the log (also an :class:`IndexError` for sequence-style callers)."""


class CorruptStore(StoreError):
    """A segment, index or snapshot on disk does not match what was written (torn or edited)."""


class BouncerError(AutoblockerLedgerError):
    """nftables is missing, we are not root, or ``nft`` refused a bouncer command."""


class ReplicationError(AutoblockerLedgerError):
    """The etcd cluster that orders the log could not be reached or did not commit in time."""


class VerificationFailed(AutoblockerLedgerError, CheckFailed):
    """A check over the log ran and failed (exit 1)."""


class ProofError(VerificationFailed):
    """An inclusion or consistency proof does not verify against the given roots and sizes."""


class ChainError(VerificationFailed):
    """An entry's hash-chain link does not match its predecessor (a tampered or reordered entry)."""


class SignatureError(VerificationFailed):
    """A signed tree head is signed by an unknown key or its signature does not verify."""


class ShardLayoutError(AutoblockerLedgerError):
    """A sharded ledger's layout is invalid, or differs from the one its shards recorded."""
