from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenfold.core.crypto import (
    AesGcm,
    Ed25519Key,
    blake3,
    read_key_file,
    verify_ed25519,
    write_key_file,
)
from tenfold.core.errors import CryptoError


def test_blake3_known_vector() -> None:
    assert blake3(b"").hex() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


@given(st.binary(max_size=2048), st.integers(0, 2047))
def test_sign_verify_and_tamper(message: bytes, flip: int) -> None:
    key = Ed25519Key.from_seed(b"\x11" * 32)
    sig = key.sign(message)
    verify_ed25519(key.public_bytes, message, sig)
    if message:
        i = flip % len(message)
        tampered = message[:i] + bytes([message[i] ^ 1]) + message[i + 1 :]
        with pytest.raises(CryptoError, match="does not verify"):
            verify_ed25519(key.public_bytes, tampered, sig)
    bad_sig = bytes([sig[0] ^ 0x80]) + sig[1:]
    with pytest.raises(CryptoError):
        verify_ed25519(key.public_bytes, message, bad_sig)


def test_signature_matches_rfc8032_test_1() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = Ed25519Key.from_seed(seed)
    assert (
        key.public_bytes.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert (
        key.sign(b"")
        .hex()
        .startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155")
    )


def test_wrong_sizes() -> None:
    with pytest.raises(CryptoError, match="seed must be 32 bytes"):
        Ed25519Key.from_seed(b"short")
    with pytest.raises(CryptoError, match="public key must be 32 bytes"):
        verify_ed25519(b"x", b"m", b"s" * 64)
    with pytest.raises(CryptoError, match="key must be 32 bytes"):
        AesGcm(b"k" * 16)


@given(st.binary(max_size=5000), st.binary(max_size=32))
def test_aes_gcm_roundtrip_and_tamper(plaintext: bytes, aad: bytes) -> None:
    aes = AesGcm(b"\x02" * 32)
    blob = aes.encrypt(plaintext, aad)
    assert aes.decrypt(blob, aad) == plaintext
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(CryptoError, match="authentication failed"):
        aes.decrypt(tampered, aad)
    with pytest.raises(CryptoError):
        aes.decrypt(blob, aad + b"x")


@given(st.binary(max_size=2000), st.binary(max_size=32))
def test_aes_gcm_frames_as_raw_aesgcm_with_a_fresh_nonce(plaintext: bytes, aad: bytes) -> None:
    """The framing is ``nonce || ciphertext || tag``, readable by raw AESGCM both ways,
    and every message gets its own random 96-bit nonce."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = b"\x03" * 32
    aes, raw = AesGcm(key), AESGCM(key)
    a, b = aes.encrypt(plaintext, aad), aes.encrypt(plaintext, aad)
    assert type(a) is bytes and len(a) == 12 + len(plaintext) + 16
    assert a[:12] != b[:12]
    assert raw.decrypt(a[:12], a[12:], aad or None) == plaintext
    nonce = b"\x07" * 12
    assert aes.decrypt(nonce + raw.encrypt(nonce, plaintext, aad or None), aad) == plaintext


def test_aes_gcm_no_aad_is_the_empty_aad() -> None:
    """Leaving the AAD out (``None`` on the hot path) and passing ``b""`` seal alike."""
    aes = AesGcm(b"\x04" * 32)
    assert aes.decrypt(aes.encrypt(b"data"), b"") == b"data"
    assert aes.decrypt(aes.encrypt(b"data", b"")) == b"data"
    with pytest.raises(CryptoError, match="authentication failed"):
        aes.decrypt(aes.encrypt(b"data"), b"x")


def test_aes_gcm_short_messages_are_named_short() -> None:
    aes = AesGcm(b"\x02" * 32)
    for n in range(28):
        with pytest.raises(CryptoError, match=rf"message too short \({n} bytes\)"):
            aes.decrypt(b"\x00" * n)
    with pytest.raises(CryptoError, match="authentication failed"):
        aes.decrypt(b"\x00" * 28)


def test_key_files_are_private(tmp_path: Path) -> None:
    key = Ed25519Key.generate()
    path = tmp_path / "signing.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Ed25519Key.load(path).public_bytes == key.public_bytes
    os.chmod(path, 0o644)
    with pytest.raises(CryptoError, match="accessible by others"):
        read_key_file(path)
    write_key_file(tmp_path / "short.key", b"abc")
    with pytest.raises(CryptoError, match="holds 3 bytes, expected 32"):
        Ed25519Key.load(tmp_path / "short.key")
    with pytest.raises(CryptoError, match="cannot read key file"):
        read_key_file(tmp_path / "missing.key")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
