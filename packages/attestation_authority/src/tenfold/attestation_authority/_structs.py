"""TPM 2.0 wire structures the verifier reads, parsed by hand from big-endian bytes.

Everything here follows TPM 2.0 Library Part 2 (Structures): ``TPMS_ATTEST``
(10.12.12), ``TPMT_SIGNATURE`` (11.3.4), ``TPMT_PUBLIC`` (12.2.4) and
``TPML_PCR_SELECTION`` (10.9.7). Parsers take untrusted bytes: every read is
bounds-checked and a structure must consume its buffer exactly, so a truncated
or oversized blob is refused with :class:`MalformedStructure` naming the field.

The "tools" PCR blob is the in-memory layout that ``tpm2_quote -o`` writes and
that ``tpm2_checkquote -f`` and Keylime's ``checkquote`` read (little-endian
``TPML_PCR_SELECTION`` followed by ``TPML_DIGEST`` blocks of eight); the
verifier uses the same file so it can be measured against both on equal input.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tenfold.attestation_authority.errors import MalformedStructure

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018

TPM_ALG_RSA = 0x0001
TPM_ALG_SHA1 = 0x0004
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_NULL = 0x0010
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAPSS = 0x0016
TPM_ALG_ECDSA = 0x0018
TPM_ALG_ECC = 0x0023

TPM_ECC_NIST_P256 = 0x0003
TPM_ECC_NIST_P384 = 0x0004

BANK_NAMES: Mapping[int, str] = {
    TPM_ALG_SHA1: "sha1",
    TPM_ALG_SHA256: "sha256",
    TPM_ALG_SHA384: "sha384",
    TPM_ALG_SHA512: "sha512",
}
BANK_IDS: Mapping[str, int] = {name: alg for alg, name in BANK_NAMES.items()}
DIGEST_SIZES: Mapping[int, int] = {
    TPM_ALG_SHA1: 20,
    TPM_ALG_SHA256: 32,
    TPM_ALG_SHA384: 48,
    TPM_ALG_SHA512: 64,
}
PCR_COUNT = 24
ATTEST_MAX_BYTES = 1024  # a TPM2B_ATTEST buffer is at most sizeof(TPMS_ATTEST); 1 KiB is ample

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_CLOCK = struct.Struct(">QIIB")
_HEAD = struct.Struct(">IH")
_U16LE = struct.Struct("<H")
_U32LE = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """One bank of a ``TPML_PCR_SELECTION``: the hash algorithm and the PCR indices, ascending."""

    bank: int
    indices: tuple[int, ...]

    @property
    def bank_name(self) -> str:
        return BANK_NAMES.get(self.bank, f"0x{self.bank:04x}")


@dataclass(frozen=True, slots=True)
class Attest:
    """A parsed ``TPMS_ATTEST`` of type quote."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    selections: tuple[PcrSelection, ...]
    pcr_digest: bytes


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed ``TPMT_SIGNATURE``: scheme, hash, and the signature ready for ``cryptography``."""

    scheme: int
    hash_alg: int
    # DER for ECDSA, the raw modulus-sized block for RSA.
    value: bytes


def _need(buf: bytes, offset: int, size: int, field: str) -> None:
    if offset + size > len(buf):
        raise MalformedStructure(
            f"truncated at {field}: need {size} bytes at offset {offset}, have {len(buf) - offset}"
        )


def _tpm2b(buf: bytes, offset: int, field: str) -> tuple[bytes, int]:
    _need(buf, offset, 2, field)
    (size,) = _U16.unpack_from(buf, offset)
    offset += 2
    _need(buf, offset, size, field)
    return buf[offset : offset + size], offset + size


# Parsed selections by their exact bytes: a fleet quotes a handful of distinct selections.
_SELECTION_CACHE: dict[bytes, tuple[PcrSelection, ...]] = {}


def _selection(buf: bytes, offset: int) -> tuple[tuple[PcrSelection, ...], int]:
    # Fast path: a quote whose digest is SHA-256 ends in 00 20 + 32 bytes; if the bytes in
    # between are a selection already parsed, they are that selection exactly.
    end = len(buf) - 34
    if end > offset and buf[end : end + 2] == b"\x00\x20":
        hit = _SELECTION_CACHE.get(buf[offset:end])
        if hit is not None:
            return hit, end
    start = offset
    _need(buf, offset, 4, "pcrSelect.count")
    (count,) = _U32.unpack_from(buf, offset)
    offset += 4
    if count > 16:  # HASH_COUNT: one entry per implemented bank at most
        raise MalformedStructure(f"pcrSelect.count {count} exceeds 16 banks")
    out = []
    for _ in range(count):
        _need(buf, offset, 3, "pcrSelections.hash")
        bank, size = struct.unpack_from(">HB", buf, offset)
        offset += 3
        if size > 4:  # PCR_SELECT_MAX for 32 PCRs
            raise MalformedStructure(f"sizeofSelect {size} exceeds 4")
        _need(buf, offset, size, "pcrSelections.pcrSelect")
        bits = int.from_bytes(buf[offset : offset + size], "little")
        offset += size
        out.append(PcrSelection(bank, tuple(i for i in range(size * 8) if bits >> i & 1)))
    if len(_SELECTION_CACHE) < 1024:
        _SELECTION_CACHE[buf[start:offset]] = tuple(out)
    return tuple(out), offset


def parse_attest(buf: bytes) -> Attest:
    """Parse a marshalled ``TPMS_ATTEST`` of a quote; the buffer must be consumed exactly."""
    if len(buf) > ATTEST_MAX_BYTES:
        raise MalformedStructure(
            f"oversized TPMS_ATTEST: {len(buf)} bytes > {ATTEST_MAX_BYTES}", oversized=True
        )
    _need(buf, 0, 6, "magic/type")
    magic, typ = _HEAD.unpack_from(buf, 0)
    signer, offset = _tpm2b(buf, 6, "qualifiedSigner")
    extra, offset = _tpm2b(buf, offset, "extraData")
    _need(buf, offset, _CLOCK.size + 8, "clockInfo")
    clock, reset, restart, safe = _CLOCK.unpack_from(buf, offset)
    offset += _CLOCK.size
    (firmware,) = struct.unpack_from(">Q", buf, offset)
    offset += 8
    if typ != TPM_ST_ATTEST_QUOTE:
        # The type decides the shape of ``attested``; anything but a quote ends here.
        return Attest(
            magic, typ, signer, extra, clock, reset, restart, bool(safe), firmware, (), b""
        )
    selections, offset = _selection(buf, offset)
    digest, offset = _tpm2b(buf, offset, "pcrDigest")
    if offset != len(buf):
        raise MalformedStructure(
            f"oversized TPMS_ATTEST: {len(buf) - offset} trailing bytes", oversized=True
        )
    return Attest(
        magic, typ, signer, extra, clock, reset, restart, bool(safe), firmware, selections, digest
    )


def _der_integer(raw: bytes) -> bytes:
    raw = raw.lstrip(b"\x00") or b"\x00"
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return b"\x02" + _der_length(len(raw)) + raw


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def parse_signature(buf: bytes) -> Signature:
    """Parse a marshalled ``TPMT_SIGNATURE`` (RSASSA, RSAPSS or ECDSA)."""
    _need(buf, 0, 4, "sigAlg/hash")
    scheme, hash_alg = struct.unpack_from(">HH", buf, 0)
    if scheme == TPM_ALG_ECDSA:
        r, offset = _tpm2b(buf, 4, "signatureR")
        s, offset = _tpm2b(buf, offset, "signatureS")
        body = _der_integer(r) + _der_integer(s)
        value = b"\x30" + _der_length(len(body)) + body
    elif scheme in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS):
        value, offset = _tpm2b(buf, 4, "signature")
    else:
        raise MalformedStructure(f"unsupported signature scheme 0x{scheme:04x}")
    if offset != len(buf):
        raise MalformedStructure(f"oversized TPMT_SIGNATURE: {len(buf) - offset} trailing bytes")
    return Signature(scheme, hash_alg, value)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A TPM object's public area: the key for ``cryptography`` and the TPM name."""

    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    name: bytes
    name_alg: int
    attributes: int
    sign_scheme: int
    sign_hash: int
    key_type: int = TPM_ALG_RSA


_CURVES: Mapping[int, ec.EllipticCurve] = {
    TPM_ECC_NIST_P256: ec.SECP256R1(),
    TPM_ECC_NIST_P384: ec.SECP384R1(),
}
HASH_CONSTRUCTORS: Mapping[int, Callable[..., Any]] = {
    TPM_ALG_SHA1: hashlib.sha1,
    TPM_ALG_SHA256: hashlib.sha256,
    TPM_ALG_SHA384: hashlib.sha384,
    TPM_ALG_SHA512: hashlib.sha512,
}
_HASHLIB: Mapping[int, str] = {
    TPM_ALG_SHA1: "sha1",
    TPM_ALG_SHA256: "sha256",
    TPM_ALG_SHA384: "sha384",
    TPM_ALG_SHA512: "sha512",
}


def hash_name(alg: int) -> str:
    """The hashlib name of a TPM hash algorithm id; raises :class:`MalformedStructure` if unknown."""
    try:
        return _HASHLIB[alg]
    except KeyError:
        raise MalformedStructure(f"unsupported hash algorithm 0x{alg:04x}") from None


def parse_public(buf: bytes) -> PublicKey:
    """Parse a ``TPM2B_PUBLIC`` (size-prefixed ``TPMT_PUBLIC``) into a key and its TPM name."""
    area, end = _tpm2b(buf, 0, "TPM2B_PUBLIC.size")
    if end != len(buf):
        raise MalformedStructure(f"oversized TPM2B_PUBLIC: {len(buf) - end} trailing bytes")
    _need(area, 0, 8, "type/nameAlg/objectAttributes")
    typ, name_alg, attributes = struct.unpack_from(">HHI", area, 0)
    _, offset = _tpm2b(area, 8, "authPolicy")
    _need(area, offset, 2, "symmetric")
    (sym,) = _U16.unpack_from(area, offset)
    offset += 2 if sym == TPM_ALG_NULL else 6
    _need(area, offset, 2, "scheme")
    (scheme,) = _U16.unpack_from(area, offset)
    offset += 2
    scheme_hash = TPM_ALG_NULL
    if scheme != TPM_ALG_NULL:
        _need(area, offset, 2, "scheme.hashAlg")
        (scheme_hash,) = _U16.unpack_from(area, offset)
        offset += 2
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if typ == TPM_ALG_RSA:
        _need(area, offset, 6, "rsaDetail")
        _bits, exponent = struct.unpack_from(">HI", area, offset)
        modulus, offset = _tpm2b(area, offset + 6, "unique.rsa")
        key = rsa.RSAPublicNumbers(exponent or 65537, int.from_bytes(modulus, "big")).public_key()
    elif typ == TPM_ALG_ECC:
        _need(area, offset, 4, "eccDetail")
        curve_id, kdf = struct.unpack_from(">HH", area, offset)
        offset += 4 if kdf == TPM_ALG_NULL else 6
        x, offset = _tpm2b(area, offset, "unique.ecc.x")
        y, offset = _tpm2b(area, offset, "unique.ecc.y")
        curve = _CURVES.get(curve_id)
        if curve is None:
            raise MalformedStructure(f"unsupported ECC curve 0x{curve_id:04x}")
        try:
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        except ValueError as exc:
            raise MalformedStructure(f"ECC point is not on the curve: {exc}") from None
    else:
        raise MalformedStructure(f"unsupported key type 0x{typ:04x}")
    if offset != len(area):
        raise MalformedStructure(f"oversized TPMT_PUBLIC: {len(area) - offset} trailing bytes")
    name = _U16.pack(name_alg) + hashlib.new(hash_name(name_alg), area).digest()
    return PublicKey(key, name, name_alg, attributes, scheme, scheme_hash, typ)


# -- the tpm2-tools PCR blob ------------------------------------------------------

_TOOLS_SELECTION = struct.Struct("<HB4sx")  # TPMS_PCR_SELECTION as laid out in memory
_TOOLS_DIGEST_SLOT = 2 + 64  # TPM2B_DIGEST: size + sizeof(TPMU_HA)
_TOOLS_DIGEST_LIST = 4 + 8 * _TOOLS_DIGEST_SLOT


def encode_tools_pcrs(values: Mapping[int, Mapping[int, bytes]]) -> bytes:
    """Write PCR values (bank -> index -> digest) in the tpm2-tools ``pcrs.out`` layout."""
    if len(values) > 16:
        raise MalformedStructure("more than 16 PCR banks")
    out = bytearray(struct.pack("<I", len(values)))
    ordered: list[bytes] = []
    for bank, pcrs in values.items():
        bits = 0
        for index in sorted(pcrs):
            bits |= 1 << index
            ordered.append(pcrs[index])
        out += _TOOLS_SELECTION.pack(bank, 3, bits.to_bytes(4, "little"))
    out += bytes(_TOOLS_SELECTION.size * (16 - len(values)))
    chunks = [ordered[i : i + 8] for i in range(0, len(ordered), 8)]
    out += struct.pack("<I", len(chunks))
    for chunk in chunks:
        out += struct.pack("<I", len(chunk))
        for slot in range(8):
            digest = chunk[slot] if slot < len(chunk) else b""
            out += struct.pack("<H", len(digest)) + digest.ljust(64, b"\x00")
    return bytes(out)


_HEADER_CACHE: dict[bytes, tuple[tuple[PcrSelection, ...], int]] = {}


def _tools_header(head: bytes) -> tuple[tuple[PcrSelection, ...], int]:
    """Selections and digest-list count of a blob header; few distinct headers exist, so cached."""
    hit = _HEADER_CACHE.get(head)
    if hit is not None:
        return hit
    (count,) = struct.unpack_from("<I", head, 0)
    if count > 16:
        raise MalformedStructure(f"PCR blob selection count {count} exceeds 16")
    selections = []
    for i in range(count):
        bank, size, select = _TOOLS_SELECTION.unpack_from(head, 4 + i * _TOOLS_SELECTION.size)
        if size > 4:
            raise MalformedStructure(f"PCR blob sizeofSelect {size} exceeds 4")
        bits = int.from_bytes(select[:size], "little")
        selections.append(PcrSelection(bank, tuple(j for j in range(size * 8) if bits >> j & 1)))
    (lists,) = struct.unpack_from("<I", head, len(head) - 4)
    result = (tuple(selections), lists)
    if len(_HEADER_CACHE) < 4096:
        _HEADER_CACHE[head] = result
    return result


_TOOLS_HEAD = 4 + 16 * _TOOLS_SELECTION.size + 4


def decode_tools_pcrs(blob: bytes) -> tuple[tuple[PcrSelection, ...], list[bytes]]:
    """Read a tpm2-tools ``pcrs.out`` blob: the selections and the digests in quote order."""
    if len(blob) < _TOOLS_HEAD:
        raise MalformedStructure(f"truncated PCR blob: {len(blob)} bytes < {_TOOLS_HEAD}")
    selections, lists = _tools_header(blob[:_TOOLS_HEAD])
    if len(blob) != _TOOLS_HEAD + lists * _TOOLS_DIGEST_LIST:
        raise MalformedStructure(
            f"PCR blob is {len(blob)} bytes, expected {_TOOLS_HEAD + lists * _TOOLS_DIGEST_LIST}"
        )
    digests: list[bytes] = []
    offset = _TOOLS_HEAD
    unpack = _U16LE.unpack_from
    for _ in range(lists):
        (n,) = _U32LE.unpack_from(blob, offset)
        if n > 8:
            raise MalformedStructure(f"PCR blob digest list count {n} exceeds 8")
        base = offset + 4
        for _ in range(n):
            (size,) = unpack(blob, base)
            if size > 64:
                raise MalformedStructure(f"PCR blob digest size {size} exceeds 64")
            digests.append(blob[base + 2 : base + 2 + size])
            base += _TOOLS_DIGEST_SLOT
        offset += _TOOLS_DIGEST_LIST
    return selections, digests
