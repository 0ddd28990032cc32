"""Registration of the Cross-Domain Autoblocker Ledger with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="autoblocker_ledger",
    title="Cross-Domain Autoblocker Ledger",
    summary="A tamper-evident, etcd-replicated security-event log that turns detections into blocks",
)
