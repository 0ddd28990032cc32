"""Chaos-engine faults into the ledger: the record shows what was deliberate.

The chaos engine writes an ``inject`` record to its journal (``DIR/NAME.journal``,
JSON lines) before each OS-level fault touches the kernel, and a ``reverted``
record when it is undone. The platform's engine follows those journals and
appends each such record as a ``chaos`` event (kinds ``fault_injected`` and
``fault_reverted``, subject the fault's id), with an id derived from the
journal's name, the fault and the record, so reading a journal again appends
nothing twice.
"""

from __future__ import annotations

import json
from hashlib import blake2b
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent

__all__ = ["ChaosFollower"]

CHAOS_DOMAIN = "chaos"
_KINDS = {"inject": "fault_injected", "reverted": "fault_reverted"}


def _event(journal: str, record: dict[str, Any], now_ms: int) -> LedgerEvent | None:
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent

    kind = _KINDS.get(str(record.get("op")))
    fault = str(record.get("id", ""))
    if kind is None or not fault:
        return None
    key = "\x00".join((journal, json.dumps(record, sort_keys=True)))
    evidence: dict[str, Any] = {"journal": journal, "fault": str(record.get("kind", ""))[:200]}
    if "deadline" in record:
        evidence["deadline"] = float(record["deadline"])
    if "why" in record:
        evidence["why"] = str(record["why"])[:200]
    if "params" in record:
        evidence["params"] = json.dumps(record["params"], sort_keys=True)[:4000]
    return LedgerEvent(
        f"chaos:{blake2b(key.encode(), digest_size=16).hexdigest()}",
        CHAOS_DOMAIN,
        kind,
        fault[:256],
        now_ms,
        evidence,
    )


class ChaosFollower:
    """Reads new records of every journal in ``directory``; :meth:`poll` returns their events."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[Path, int] = {}
        self.recorded = 0

    def poll(self, now_ms: int) -> list[LedgerEvent]:
        from tenfold.chaos_engine._journal import read_records
        from tenfold.chaos_engine.errors import JournalError

        out: list[LedgerEvent] = []
        try:
            journals = sorted(self.directory.glob("*.journal"))
        except OSError:
            return out
        for path in journals:
            offset = self.offsets.get(path, 0)
            try:
                if path.stat().st_size < offset:
                    offset = 0  # the chaos engine truncated it for a new run
                records, self.offsets[path] = read_records(path, offset)
            except (OSError, JournalError):
                continue
            for record in records:
                ev = _event(path.stem, record, now_ms)
                if ev is not None:
                    out.append(ev)
        return out
