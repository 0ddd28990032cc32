"""Exceptions raised by tenfold.autoblocker_ledger."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class AutoblockerLedgerError(TenfoldError):
    """Root of every error raised by the Cross-Domain Autoblocker Ledger."""
