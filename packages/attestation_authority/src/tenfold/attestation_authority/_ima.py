"""The IMA measurement list (ASCII form) and a file-hash allowlist for it.

Each line of ``ascii_runtime_measurements`` reads::

    10 <template-hash> ima-ng sha256:<file-hash> <path>

The kernel extends PCR 10 of every bank with the bank's hash of the template
data; the ASCII list prints only the SHA-1 one, so for other banks the template
data is rebuilt from the fields (``ima-ng``: length-prefixed ``"<alg>:\\0" +
digest`` and ``path + "\\0"``; ``ima-sig`` adds a length-prefixed signature). A
violation (file changed while open) is recorded with an all-zero template hash
and extended as all-ones (Linux ``ima_add_violation``).

The allowlist is ``sha256sum`` output (``<hex>  <path>``, several hashes per path
allowed); a 20 MiB list of them loads into one dict of path -> set of digests.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tenfold.attestation_authority._structs import DIGEST_SIZES, hash_name
from tenfold.attestation_authority.errors import MalformedStructure

IMA_PCR = 10
BOOT_AGGREGATE = "boot_aggregate"
_TEMPLATES = ("ima-ng", "ima-sig")


@dataclass(frozen=True, slots=True)
class ImaEntry:
    """One measurement: PCR, the printed SHA-1 template hash, template, file digest and path."""

    pcr: int
    template_hash: bytes
    template: str
    file_alg: str
    file_hash: bytes
    path: str
    signature: bytes = b""

    def template_data(self) -> bytes:
        digest_field = self.file_alg.encode() + b":\x00" + self.file_hash
        name_field = self.path.encode() + b"\x00"
        out = struct.pack("<I", len(digest_field)) + digest_field
        out += struct.pack("<I", len(name_field)) + name_field
        if self.template == "ima-sig":
            out += struct.pack("<I", len(self.signature)) + self.signature
        return out

    @property
    def violation(self) -> bool:
        return not any(self.template_hash)

    def line(self) -> str:
        """The entry as the kernel prints it."""
        parts = [
            str(self.pcr),
            self.template_hash.hex(),
            self.template,
            f"{self.file_alg}:{self.file_hash.hex()}",
            self.path,
        ]
        if self.template == "ima-sig" and self.signature:
            parts.append(self.signature.hex())
        return " ".join(parts)


def measure_file(path: str, data: bytes, file_alg: str = "sha256") -> ImaEntry:
    """The ``ima-ng`` entry the kernel would record for a file with these contents."""
    entry = ImaEntry(IMA_PCR, b"", "ima-ng", file_alg, hashlib.new(file_alg, data).digest(), path)
    sha1 = hashlib.sha1(entry.template_data()).digest()
    return ImaEntry(IMA_PCR, sha1, "ima-ng", file_alg, entry.file_hash, path)


def parse_ima_list(text: bytes) -> list[ImaEntry]:
    """Parse the ASCII list; raises :class:`MalformedStructure` naming ``ima:line``."""
    entries: list[ImaEntry] = []
    try:
        lines = text.decode().splitlines()
    except UnicodeDecodeError:
        raise MalformedStructure("IMA list is not text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split(" ")
        if len(fields) < 5:
            raise MalformedStructure(f"ima:{number}: expected 5 fields, got {len(fields)}")
        pcr, template_hash, template, digest = fields[:4]
        if template not in _TEMPLATES:
            raise MalformedStructure(f"ima:{number}: unsupported template {template!r}")
        # A path may hold spaces; only ima-sig has a field after it (the signature, hex).
        signature = fields[-1] if template == "ima-sig" and len(fields) > 5 else ""
        path = " ".join(fields[4 : len(fields) - 1 if signature else len(fields)])
        alg, _, hex_digest = digest.partition(":")
        try:
            entry = ImaEntry(
                int(pcr),
                bytes.fromhex(template_hash),
                template,
                alg,
                bytes.fromhex(hex_digest),
                path,
                bytes.fromhex(signature),
            )
            hashlib.new(alg)
        except ValueError:
            raise MalformedStructure(f"ima:{number}: malformed field in {line[:80]!r}") from None
        if len(entry.template_hash) != 20:
            raise MalformedStructure(f"ima:{number}: template hash is not SHA-1 sized")
        entries.append(entry)
    return entries


def ima_extend_value(entry: ImaEntry, bank: int) -> bytes:
    """What the kernel extends into PCR 10 of ``bank`` for ``entry``."""
    size = DIGEST_SIZES[bank]
    if entry.violation:
        return b"\xff" * size
    if bank == 0x0004:
        return entry.template_hash
    return hashlib.new(hash_name(bank), entry.template_data()).digest()


def replay_ima(
    entries: Iterable[ImaEntry], bank: int, start: bytes | None = None, *, pcr: int = IMA_PCR
) -> bytes:
    """PCR ``pcr`` of ``bank`` after extending ``entries`` from ``start`` (zeros by default)."""
    name = hash_name(bank)
    value = bytes(DIGEST_SIZES[bank]) if start is None else start
    for entry in entries:
        if entry.pcr == pcr:
            value = hashlib.new(name, value + ima_extend_value(entry, bank)).digest()
    return value


def check_template_hashes(entries: Sequence[ImaEntry]) -> str | None:
    """The printed SHA-1 template hash must match the fields; ``None`` or the first mismatch."""
    for entry in entries:
        if (
            not entry.violation
            and hashlib.sha1(entry.template_data()).digest() != entry.template_hash
        ):
            return f"template hash of {entry.path} does not match its fields"
    return None


class ImaAllowlist:
    """Allowed file digests per path (``sha256sum`` format); ``check`` names the first outlier."""

    def __init__(self, allowed: dict[str, set[bytes]] | None = None) -> None:
        self._allowed: dict[str, set[bytes]] = allowed or {}

    def __len__(self) -> int:
        return len(self._allowed)

    @classmethod
    def from_text(cls, text: str) -> ImaAllowlist:
        """Read ``<hex>  <path>`` lines; ``#`` comments; raises on a malformed line."""
        allowed: dict[str, set[bytes]] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line or line.startswith("#"):
                continue
            digest, sep, path = line.partition("  ")
            if not sep:
                digest, sep, path = line.partition(" ")
            try:
                value = bytes.fromhex(digest)
            except ValueError:
                raise MalformedStructure(
                    f"allowlist:{number}: {digest[:20]!r} is not hex"
                ) from None
            if not sep or not path or len(value) not in (20, 32, 48, 64):
                raise MalformedStructure(f"allowlist:{number}: expected '<hex digest>  <path>'")
            allowed.setdefault(path, set()).add(value)
        return cls(allowed)

    def check(self, entries: Iterable[ImaEntry]) -> str | None:
        allowed = self._allowed
        for entry in entries:
            if entry.path == BOOT_AGGREGATE or entry.violation:
                continue
            if entry.file_hash not in allowed.get(entry.path, ()):
                return f"{entry.path} ({entry.file_alg}:{entry.file_hash.hex()[:16]}...)"
        return None
