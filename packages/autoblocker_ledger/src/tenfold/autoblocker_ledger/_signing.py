"""Signed tree heads (RFC 9162 section 4.10, in a compact form of our own).

A tree head commits to a size and a root at a time; the log signs
``b"tenfold-ledger-sth-v1" || size (8 bytes BE) || time_ms (8 bytes BE) || root``
with Ed25519. A third party holding the log's public key checks the signature,
then proofs against the root.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.autoblocker_ledger._merkle import HASH_SIZE
from tenfold.autoblocker_ledger.errors import SignatureError
from tenfold.core.crypto import Ed25519Key, verify_ed25519
from tenfold.core.errors import CryptoError

_CONTEXT = b"tenfold-ledger-sth-v1"
_INDEX_CONTEXT = b"tenfold-ledger-index-v1"
CHECKPOINT_CONTEXT = b"tenfold-ledger-checkpoint-v1"  # sharded checkpoints (see _sharded)


def _index_message(size: int, root: bytes, digest: bytes) -> bytes:
    return _INDEX_CONTEXT + size.to_bytes(8, "big") + root + digest


def verify_index_signature(
    public_key: bytes, size: int, root: bytes, digest: bytes, signature: bytes
) -> None:
    """Raise :class:`SignatureError` unless ``public_key`` vouched for this index digest."""
    try:
        verify_ed25519(public_key, _index_message(size, root, digest), signature)
    except CryptoError:
        raise SignatureError(
            f"the index in the snapshot (size {size}) is not signed by key {public_key.hex()[:16]}..."
        ) from None


def _message(size: int, time_ms: int, root: bytes) -> bytes:
    return _CONTEXT + size.to_bytes(8, "big") + time_ms.to_bytes(8, "big") + root


class LogKey:
    """The log's Ed25519 signing key."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519Key) -> None:
        self._key = key

    @classmethod
    def from_seed(cls, seed: bytes) -> LogKey:
        try:
            return cls(Ed25519Key.from_seed(seed))
        except CryptoError as exc:
            raise SignatureError(str(exc)) from None

    @classmethod
    def generate(cls) -> LogKey:
        return cls(Ed25519Key.generate())

    @classmethod
    def load(cls, path: Path) -> LogKey:
        try:
            return cls(Ed25519Key.load(path))
        except CryptoError as exc:
            raise SignatureError(f"log key: {exc}") from None

    @classmethod
    def load_or_create(cls, folder: Path) -> LogKey:
        """``folder/log.key``, made (with ``log.pub`` beside it, 64 hex digits) when absent."""
        key_path = folder / "log.key"
        if key_path.exists():
            return cls.load(key_path)
        key = cls.generate()
        key.save(key_path)
        (folder / "log.pub").write_text(key.public_bytes.hex() + "\n")
        return key

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._key.save(path)

    @property
    def public_bytes(self) -> bytes:
        return self._key.public_bytes

    def sign_index(self, size: int, root: bytes, digest: bytes) -> bytes:
        """Vouch that the SQLite index with BLAKE3 ``digest`` was built from the tree at ``size``."""
        return self._key.sign(_index_message(size, root, digest))

    def sign_checkpoint(self, message: bytes) -> bytes:
        """Sign a sharded checkpoint's message (built by ``_sharded``, which owns its context)."""
        if not message.startswith(CHECKPOINT_CONTEXT):
            raise SignatureError("a checkpoint message starts with the checkpoint context")
        return self._key.sign(message)

    def sign_tree_head(self, size: int, root: bytes, time_ms: int) -> SignedTreeHead:
        sig = self._key.sign(_message(size, time_ms, root))
        return SignedTreeHead(size=size, root=root, time_ms=time_ms, signature=sig)


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A size and root the log has committed to, with the log's signature over them."""

    size: int
    root: bytes
    time_ms: int
    signature: bytes

    def verify(self, public_key: bytes) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` signed exactly this head."""
        if len(public_key) != 32:
            raise SignatureError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
        if len(self.root) != HASH_SIZE:
            raise SignatureError(f"tree head root is {len(self.root)} bytes, expected {HASH_SIZE}")
        try:
            verify_ed25519(public_key, _message(self.size, self.time_ms, self.root), self.signature)
        except CryptoError:
            raise SignatureError(
                f"tree head (size {self.size}) is not signed by key {public_key.hex()[:16]}..."
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "time_ms": self.time_ms,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, raw: object) -> SignedTreeHead:
        if not isinstance(raw, dict):
            raise SignatureError(f"a signed tree head is a JSON object, got {type(raw).__name__}")
        try:
            return cls(
                size=int(raw["size"]),
                root=base64.b64decode(raw["root"], validate=True),
                time_ms=int(raw["time_ms"]),
                signature=base64.b64decode(raw["signature"], validate=True),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise SignatureError(f"malformed signed tree head: {exc!r}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
