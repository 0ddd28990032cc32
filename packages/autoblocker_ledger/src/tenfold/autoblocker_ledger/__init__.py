"""Cross-Domain Autoblocker Ledger: A tamper-evident, etcd-replicated security-event log that turns detections into blocks."""

from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError as AutoblockerLedgerError

__all__ = ["AutoblockerLedgerError"]
