"""RFC 6962 / 9162 Merkle tree: the transparency-dev vectors, a reference model, tampering."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.autoblocker_ledger._merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from tenfold.autoblocker_ledger._signing import LogKey, SignedTreeHead
from tenfold.autoblocker_ledger.errors import ProofError, SignatureError

VECTORS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "merkle-vectors"
CASES = sorted(VECTORS.rglob("*.json"))


def _b64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def test_vectors_are_present() -> None:
    assert len(CASES) > 150, f"expected the merkle vectors under {VECTORS}"
    assert any(not json.loads(p.read_text())["wantErr"] for p in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda p: str(p.relative_to(VECTORS)))
def test_verifier_accepts_exactly_the_valid_vectors(case: Path) -> None:
    d = json.loads(case.read_text())
    proof = [_b64(p) for p in d["proof"] or []]
    try:
        if "leafIdx" in d:
            verify_inclusion(
                _b64(d["leafHash"]), d["leafIdx"], d["treeSize"], proof, _b64(d["root"])
            )
        else:
            verify_consistency(d["size1"], d["size2"], proof, _b64(d["root1"]), _b64(d["root2"]))
    except ProofError:
        rejected = True
    else:
        rejected = False
    assert rejected == d["wantErr"], d["desc"]


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH written directly from its recursive definition."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def _tree(n: int) -> tuple[MerkleTree, list[bytes]]:
    data = [f"entry-{i}".encode() for i in range(n)]
    tree = MerkleTree()
    for d in data:
        tree.append(d)
    return tree, data


def test_empty_tree_root() -> None:
    assert MerkleTree().root() == EMPTY_ROOT


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_roots_and_proofs_match_the_reference(n: int, data: st.DataObject) -> None:
    tree, leaves = _tree(n)
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(1, size))
    assert tree.root(size) == _reference_root(leaves[:size])
    verify_inclusion(
        leaf_hash(leaves[index]), index, size, tree.inclusion_proof(index, size), tree.root(size)
    )
    verify_consistency(
        first, size, tree.consistency_proof(first, size), tree.root(first), tree.root(size)
    )


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 200), data=st.data())
def test_any_flipped_bit_breaks_an_inclusion_proof(n: int, data: st.DataObject) -> None:
    tree, leaves = _tree(n)
    index = data.draw(st.integers(0, n - 1))
    proof = tree.inclusion_proof(index)
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = bytearray(proof[which])
    bad[bit // 8] ^= 1 << (bit % 8)
    proof[which] = bytes(bad)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[index]), index, n, proof, tree.root())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 120), data=st.data())
def test_rewritten_history_fails_consistency(n: int, data: st.DataObject) -> None:
    tree, leaves = _tree(n)
    first = data.draw(st.integers(1, n - 1))
    victim = data.draw(st.integers(0, first - 1))
    forged = MerkleTree()
    for i, d in enumerate(leaves):
        forged.append(b"rewritten" if i == victim else d)
    with pytest.raises(ProofError):
        verify_consistency(
            first, n, forged.consistency_proof(first), tree.root(first), forged.root()
        )


def test_wrong_index_and_size_are_rejected() -> None:
    tree, leaves = _tree(10)
    proof = tree.inclusion_proof(3)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[3]), 4, 10, proof, tree.root())
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[3]), 3, 20, proof, tree.root())
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[3]), 3, 10, [*proof, proof[0]], tree.root())


def test_signed_tree_head_round_trip_and_unknown_key() -> None:
    key, other = LogKey.generate(), LogKey.generate()
    tree, _ = _tree(5)
    sth = key.sign_tree_head(tree.size, tree.root(), 1_700_000_000_000)
    again = SignedTreeHead.from_dict(json.loads(sth.to_json()))
    again.verify(key.public_bytes)
    with pytest.raises(SignatureError):
        again.verify(other.public_bytes)
    forged = SignedTreeHead(sth.size, tree.root(4), sth.time_ms, sth.signature)
    with pytest.raises(SignatureError):
        forged.verify(key.public_bytes)
    with pytest.raises(SignatureError):
        SignedTreeHead.from_dict({"size": 1})
