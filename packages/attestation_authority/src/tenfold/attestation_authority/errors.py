"""Exceptions raised by tenfold.attestation_authority."""

from __future__ import annotations

from tenfold.core.errors import CheckFailed, TenfoldError


class AttestationAuthorityError(TenfoldError):
    """Root of every error raised by the Universal Attestation Authority."""


class MalformedStructure(AttestationAuthorityError):
    """A TPM structure, PCR blob or event log is truncated, oversized or not well formed."""

    def __init__(self, message: str, *, oversized: bool = False) -> None:
        super().__init__(message)
        self.oversized = oversized


class PolicySyntaxError(AttestationAuthorityError):
    """Reference-value policy text does not parse; the message names line and column."""


class RegistrationError(AttestationAuthorityError):
    """An EK is not accepted, or an AK could not be bound to it (credential activation failed)."""


class TpmError(AttestationAuthorityError):
    """The TPM refused or failed a command (the TSS return code is in the message)."""


class QuoteRefused(AttestationAuthorityError, CheckFailed):
    """A quote was verified and refused; ``reason`` names the failed check."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"quote refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class CertificateRefused(AttestationAuthorityError, CheckFailed):
    """A certificate or attestation result does not verify, has expired or was revoked."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"certificate refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
