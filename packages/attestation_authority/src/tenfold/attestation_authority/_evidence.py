"""Evidence: what an agent sends for one quote, in the file layout tpm2-tools uses."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.attestation_authority.errors import MalformedStructure

# File names as ``tpm2_quote -m/-s/-o`` write them, so ``tpm2_checkquote`` reads the same files.
ATTEST_FILE = "quote.msg"
SIGNATURE_FILE = "quote.sig"
PCRS_FILE = "quote.pcrs"
EVENT_LOG_FILE = "eventlog.bin"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One quote: TPMS_ATTEST, TPMT_SIGNATURE and PCR values (tpm2-tools blob), plus logs."""

    attest: bytes
    signature: bytes
    pcrs: bytes
    event_log: bytes | None = None
    ima_log: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attest": base64.b64encode(self.attest).decode(),
            "signature": base64.b64encode(self.signature).decode(),
            "pcrs": base64.b64encode(self.pcrs).decode(),
        }
        if self.event_log is not None:
            out["event_log"] = base64.b64encode(self.event_log).decode()
        if self.ima_log is not None:
            out["ima_log"] = base64.b64encode(self.ima_log).decode()
        return out

    @classmethod
    def from_json(cls, doc: Any) -> Evidence:
        """Read evidence from its JSON form; raises :class:`MalformedStructure` on bad fields."""
        if not isinstance(doc, dict):
            raise MalformedStructure("evidence must be a JSON object")

        def field(name: str) -> bytes | None:
            value = doc.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise MalformedStructure(f"evidence field {name!r} must be base64 text")
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise MalformedStructure(f"evidence field {name!r} is not valid base64") from None

        def required(name: str) -> bytes:
            value = field(name)
            if value is None:
                raise MalformedStructure(f"evidence is missing {name!r}")
            return value

        return cls(
            required("attest"),
            required("signature"),
            required("pcrs"),
            field("event_log"),
            field("ima_log"),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    def write_files(self, directory: Path) -> None:
        """Write quote.msg, quote.sig and quote.pcrs (and eventlog.bin) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ATTEST_FILE).write_bytes(self.attest)
        (directory / SIGNATURE_FILE).write_bytes(self.signature)
        (directory / PCRS_FILE).write_bytes(self.pcrs)
        if self.event_log is not None:
            (directory / EVENT_LOG_FILE).write_bytes(self.event_log)

    @classmethod
    def read_files(cls, directory: Path) -> Evidence:
        """Read the files :meth:`write_files` writes; raises :class:`MalformedStructure` if absent."""
        try:
            attest = (directory / ATTEST_FILE).read_bytes()
            signature = (directory / SIGNATURE_FILE).read_bytes()
            pcrs = (directory / PCRS_FILE).read_bytes()
        except OSError as exc:
            raise MalformedStructure(f"cannot read quote files in {directory}: {exc}") from None
        log = directory / EVENT_LOG_FILE
        return cls(attest, signature, pcrs, log.read_bytes() if log.exists() else None)
