"""Exceptions raised by tenfold.attestation_authority."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class AttestationAuthorityError(TenfoldError):
    """Root of every error raised by the Universal Attestation Authority."""
