"""An RFC 6962 / RFC 9162 Merkle tree with inclusion and consistency proofs.

Hashing follows RFC 9162 section 2.1.1: a leaf hash is ``SHA-256(0x00 || data)``
and an interior node is ``SHA-256(0x01 || left || right)``; the empty tree's root
is ``SHA-256("")``. Domain separation by the prefix byte means a leaf can never
be passed off as a node.

The tree keeps every *perfect* subtree hash: ``levels[k]`` holds, packed 32 bytes
apiece, the roots of the aligned subtrees of ``2**k`` leaves that are complete.
That is about two hashes per leaf (64 MB at 1M leaves), each append costs one
leaf hash plus amortised one node hash, and the root or a proof for any size up
to the current one needs only O(log n) lookups and O(log n) fresh hashes along
the right border.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from tenfold.autoblocker_ledger.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256 over 0x00 followed by the entry."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256 over 0x01, left child, right child."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only Merkle tree over leaf hashes, answering roots and proofs at any past size."""

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, hashes: Iterable[bytes]) -> MerkleTree:
        tree = cls()
        tree.extend_hashes(hashes)
        return tree

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        return self._size

    def append(self, data: bytes) -> int:
        """Append an entry (hashed as a leaf); returns its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, hashed_leaf: bytes) -> int:
        """Append an already computed leaf hash; returns its index."""
        if len(hashed_leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(hashed_leaf)}")
        index = self._size
        levels = self._levels
        levels[0] += hashed_leaf
        self._size = index + 1
        # Invariant: levels[k] holds floor(size / 2**k) hashes. Whenever the new
        # leaf completes a pair at level k, the parent is added at level k+1.
        k = 0
        n = index + 1
        while n & 1 == 0:
            level = levels[k]
            parent = _sha256(b"\x01" + level[-64:]).digest()
            if k + 1 == len(levels):
                levels.append(bytearray())
            levels[k + 1] += parent
            n >>= 1
            k += 1
        return index

    def extend_hashes(self, hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, completing parents level by level (same result as appending one by one)."""
        batch = list(hashes)
        if not batch:
            return
        if any(len(h) != HASH_SIZE for h in batch):
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        levels = self._levels
        old, new = self._size, self._size + len(batch)
        levels[0] += b"".join(batch)
        k = 0
        # Invariant per level: levels[k] ends with floor(size / 2**k) hashes.
        while (new >> (k + 1)) > (old >> (k + 1)):
            if k + 1 == len(levels):
                levels.append(bytearray())
            child = levels[k]
            first, last = old >> (k + 1), new >> (k + 1)
            parents = [
                _sha256(b"\x01" + child[64 * j : 64 * j + 64]).digest() for j in range(first, last)
            ]
            levels[k + 1] += b"".join(parents)
            k += 1
        self._size = new

    def leaf_hash_at(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} outside a tree of {self._size}")
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    # -- hashes of ranges -----------------------------------------------------
    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range that RFC 6962's decomposition produces.

        Such a range starts at a multiple of the largest power of two not above
        its length, so its left part is always a stored perfect subtree; only the
        right border needs fresh hashing.
        """
        n = end - start
        if n & (n - 1) == 0:
            k = n.bit_length() - 1
            i = (start >> k) * HASH_SIZE
            return bytes(self._levels[k][i : i + HASH_SIZE])
        # Walk down the right border collecting perfect left parts, then fold up.
        lefts: list[bytes] = []
        while n & (n - 1):
            k = _split(n)
            lefts.append(self._range_hash(start, start + k))
            start += k
            n -= k
        acc = self._range_hash(start, start + n)
        for left in reversed(lefts):
            acc = _sha256(b"\x01" + left + acc).digest()
        return acc

    def root(self, size: int | None = None) -> bytes:
        """The tree head hash at ``size`` leaves (default: the current size)."""
        n = self._size if size is None else size
        if not 0 <= n <= self._size:
            raise ValueError(f"size {n} outside 0..{self._size}")
        if n == 0:
            return EMPTY_ROOT
        return self._range_hash(0, n)

    # -- proofs ---------------------------------------------------------------
    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 section 2.1.1 PATH(index, D[0:size]), leaf to root order."""
        n = self._size if size is None else size
        if not 0 <= n <= self._size:
            raise ValueError(f"size {n} outside 0..{self._size}")
        if not 0 <= index < n:
            raise ValueError(f"leaf {index} outside a tree of {n}")
        path: list[bytes] = []
        lo, hi = 0, n
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._range_hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._range_hash(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 6962 section 2.1.2 PROOF(size1, D[0:size2]), bottom-up order."""
        n = self._size if size2 is None else size2
        if not 0 <= n <= self._size:
            raise ValueError(f"size {n} outside 0..{self._size}")
        if not 0 < size1 <= n:
            raise ValueError(f"first size {size1} outside 1..{n}")
        path: list[bytes] = []
        lo, hi = 0, n
        complete = True  # SUBPROOF's flag: is D[lo:size1] the whole original old tree?
        while size1 != hi:
            k = _split(hi - lo)
            if size1 - lo <= k:
                path.append(self._range_hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._range_hash(lo, lo + k))
                lo += k
                complete = False
        if not complete:
            path.append(self._range_hash(lo, hi))
        path.reverse()
        return path


# -- verification (what a third party runs) -----------------------------------


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, expected {HASH_SIZE}")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root implied by a leaf hash and its audit path."""
    if size <= 0 or not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("leaf hash", leaf)
    fn, sn = index, size - 1
    r = leaf
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
        if sn == 0:
            raise ProofError(f"inclusion proof too long: {len(proof)} hashes for size {size}")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof too short: {len(proof)} hashes for size {size}")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` in the tree ``root``."""
    _check_hash("root", root)
    got = root_from_inclusion_proof(leaf, index, size, proof)
    if got != root:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} gives root {got.hex()[:16]}..., "
            f"expected {root.hex()[:16]}..."
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 section 2.1.4.2: raise :class:`ProofError` unless tree ``size2`` extends ``size1``.

    A consistency check from the empty tree proves nothing, so ``size1 == 0`` is
    refused, as the transparency-dev vectors require.
    """
    if size1 <= 0:
        raise ProofError("a consistency proof needs a non-empty first tree")
    if size2 < size1:
        raise ProofError(f"second size {size2} is smaller than first size {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty consistency proof")
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof for different sizes")
    _check_hash("first root", root1)
    _check_hash("second root", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)  # the old tree is itself a perfect subtree of the new
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof too short: {len(proof)} hashes")
    if fr != root1:
        raise ProofError(f"consistency proof does not reproduce the first root (size {size1})")
    if sr != root2:
        raise ProofError(f"consistency proof does not reproduce the second root (size {size2})")
