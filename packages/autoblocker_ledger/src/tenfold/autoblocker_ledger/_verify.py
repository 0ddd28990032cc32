"""Proof bundles: what the log hands out and what a third party checks.

A bundle is a JSON document holding a signed tree head and either an entry with
its inclusion proof, or a second signed head with the consistency proof between
them. :func:`verify_bundle` needs nothing but the bundle and the log's public
key: it checks the signatures, recomputes the leaf hash from the entry bytes,
and runs the RFC 9162 verification.
"""

from __future__ import annotations

import base64
from typing import Any

from tenfold.autoblocker_ledger._events import decode_entry
from tenfold.autoblocker_ledger._merkle import leaf_hash, verify_consistency, verify_inclusion
from tenfold.autoblocker_ledger._signing import SignedTreeHead
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.autoblocker_ledger.errors import MalformedEvent, ProofError


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(x).decode() for x in items]


def inclusion_bundle(ledger: EmbeddedLedger, index: int, sth: SignedTreeHead) -> dict[str, Any]:
    """A self-contained proof that entry ``index`` is in the tree ``sth`` signs (JSON-ready)."""
    data = ledger.raw_entries(index, index + 1)[0]
    return {
        "type": "inclusion",
        "sth": sth.to_dict(),
        "index": index,
        "entry": base64.b64encode(data).decode(),
        "proof": _b64(ledger.inclusion_proof(index, sth.size)),
    }


def consistency_bundle(
    ledger: EmbeddedLedger, old: SignedTreeHead, new: SignedTreeHead
) -> dict[str, Any]:
    return {
        "type": "consistency",
        "old": old.to_dict(),
        "sth": new.to_dict(),
        "proof": _b64(ledger.consistency_proof(old.size, new.size)),
    }


def _decode_list(raw: object) -> list[bytes]:
    if not isinstance(raw, list):
        raise MalformedEvent("proof must be a list of base64 hashes")
    try:
        return [base64.b64decode(x, validate=True) for x in raw]
    except (ValueError, TypeError) as exc:
        raise MalformedEvent(f"proof is not base64: {exc}") from None


def verify_bundle(bundle: object, public_key: bytes) -> dict[str, Any]:
    """Check a bundle against the log's key; raises a :class:`VerificationFailed` subclass.

    A ``sharded_inclusion`` bundle (from a sharded ledger) is checked through its
    signed checkpoint: see :func:`~tenfold.autoblocker_ledger._sharded.verify_checkpoint_bundle`.
    """
    if isinstance(bundle, dict) and bundle.get("type") == "sharded_inclusion":
        from tenfold.autoblocker_ledger._sharded import verify_checkpoint_bundle

        return verify_checkpoint_bundle(bundle, public_key)
    if not isinstance(bundle, dict) or bundle.get("type") not in ("inclusion", "consistency"):
        raise MalformedEvent(
            "a proof bundle is a JSON object with type inclusion, consistency or sharded_inclusion"
        )
    sth = SignedTreeHead.from_dict(bundle.get("sth"))
    sth.verify(public_key)
    proof = _decode_list(bundle.get("proof"))
    if bundle["type"] == "inclusion":
        try:
            data = base64.b64decode(bundle["entry"], validate=True)
            index = int(bundle["index"])
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedEvent(f"inclusion bundle lacks a valid entry or index: {exc}") from None
        verify_inclusion(leaf_hash(data), index, sth.size, proof, sth.root)
        try:
            event = decode_entry(index, data).event.to_dict()
        except MalformedEvent:
            raise ProofError(f"entry {index} is in the log but is not a valid event") from None
        return {"verified": "inclusion", "index": index, "size": sth.size, "event": event}
    old = SignedTreeHead.from_dict(bundle.get("old"))
    old.verify(public_key)
    verify_consistency(old.size, sth.size, proof, old.root, sth.root)
    return {"verified": "consistency", "old_size": old.size, "size": sth.size}
