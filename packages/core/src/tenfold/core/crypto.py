"""Cryptography for every system: Ed25519, BLAKE3, AES-256-GCM, key files.

Ed25519 goes straight to libsodium through PyNaCl's low-level bindings (no
per-call object construction on the hot path); AES-256-GCM uses OpenSSL through
``cryptography`` (AES-NI); BLAKE3 uses the Rust ``blake3`` extension. Failures
are :class:`CryptoError`, never a third-party exception.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import blake3 as _blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl import bindings as _sodium
from nacl.exceptions import BadSignatureError
from nacl.exceptions import CryptoError as _NaclError

from tenfold.core.errors import CryptoError

__all__ = [
    "AesGcm",
    "Ed25519Key",
    "blake3",
    "read_key_file",
    "verify_ed25519",
    "write_key_file",
]

_SIG_BYTES = 64
_PUB_BYTES = 32
_SEED_BYTES = 32
_NONCE_BYTES = 12
_urandom = os.urandom


class Ed25519Key:
    """An Ed25519 signing key (libsodium)."""

    __slots__ = ("_secret", "public_bytes")

    def __init__(self, secret: bytes, public: bytes) -> None:
        self._secret = secret
        self.public_bytes = public

    @classmethod
    def generate(cls) -> Ed25519Key:
        return cls.from_seed(secrets.token_bytes(_SEED_BYTES))

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Key:
        if len(seed) != _SEED_BYTES:
            raise CryptoError(f"Ed25519 seed must be {_SEED_BYTES} bytes, got {len(seed)}")
        public, secret = _sodium.crypto_sign_seed_keypair(seed)
        return cls(secret, public)

    @property
    def seed(self) -> bytes:
        return bytes(self._secret[:_SEED_BYTES])

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return bytes(_sodium.crypto_sign(message, self._secret)[:_SIG_BYTES])

    def save(self, path: Path) -> None:
        """Write the 32-byte seed to ``path`` with mode 0600."""
        write_key_file(path, self.seed)

    @classmethod
    def load(cls, path: Path) -> Ed25519Key:
        return cls.from_seed(read_key_file(path, size=_SEED_BYTES))


def verify_ed25519(public: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`CryptoError` unless ``signature`` is ``public``'s signature of ``message``."""
    if len(public) != _PUB_BYTES:
        raise CryptoError(f"Ed25519 public key must be {_PUB_BYTES} bytes, got {len(public)}")
    if len(signature) != _SIG_BYTES:
        raise CryptoError(f"Ed25519 signature must be {_SIG_BYTES} bytes, got {len(signature)}")
    try:
        _sodium.crypto_sign_open(signature + message, public)
    except (BadSignatureError, _NaclError, ValueError):
        raise CryptoError("Ed25519 signature does not verify") from None


def blake3(data: bytes) -> bytes:
    """The 32-byte BLAKE3 digest of ``data``."""
    return _blake3.blake3(data).digest()


class AesGcm:
    """AES-256-GCM with a random 96-bit nonce per message: ``nonce || ciphertext || tag``.

    The hot path is the raw ``cryptography`` call plus the framing. The AEAD is
    called as its users call it, ``aead.decrypt(...)``: under callgrind that is
    about 110 instructions a call fewer than a stored bound method. The AAD goes
    through as given, and no AAD is ``None``, not ``b""``: the same to GCM, but
    ``cryptography`` takes a buffer view of an empty ``bytes`` (about 600 of
    the 24K instructions of opening 4 KiB) and skips it for ``None``. A short
    or tampered message is told apart only once the AEAD has refused it.
    Sealing costs one copy (nonce and ciphertext joined), opening one (the
    ciphertext cut from the nonce): ``cryptography`` reads only ``bytes``
    without a detour through the buffer protocol, which costs more than the
    copies. What remains over the raw call is this method's own frame, about
    400 of the 23.6K instructions of opening 4 KiB.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise CryptoError(f"AES-256-GCM key must be 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @staticmethod
    def generate_key() -> bytes:
        return secrets.token_bytes(32)

    def encrypt(self, plaintext: bytes, aad: bytes | None = None) -> bytes:
        nonce = _urandom(12)  # _NONCE_BYTES, inlined
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes | None = None) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], aad)  # _NONCE_BYTES, inlined
        except (InvalidTag, ValueError):
            if len(blob) < _NONCE_BYTES + 16:
                raise CryptoError(f"AES-GCM message too short ({len(blob)} bytes)") from None
            raise CryptoError(
                "AES-GCM authentication failed (wrong key, AAD or tampered data)"
            ) from None


def write_key_file(path: Path, data: bytes) -> None:
    """Write key material atomically with mode 0600 (never readable by others, even briefly)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CryptoError(f"cannot write key file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_key_file(path: Path, *, size: int | None = None) -> bytes:
    """Read key material; refuses files readable by group or others, or of the wrong size."""
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise CryptoError(f"cannot read key file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise CryptoError(
            f"key file {path} is accessible by others (mode {st.st_mode & 0o777:o}); chmod 600"
        )
    if size is not None and len(data) != size:
        raise CryptoError(f"key file {path} holds {len(data)} bytes, expected {size}")
    return data
