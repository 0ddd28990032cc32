"""Universal Attestation Authority: TPM remote attestation with signed attestation results."""

from tenfold.attestation_authority.errors import AttestationAuthorityError as AttestationAuthorityError

__all__ = ["AttestationAuthorityError"]
