"""Registration of the Universal Attestation Authority with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="attestation_authority",
    title="Universal Attestation Authority",
    summary="TPM remote attestation with signed attestation results",
)
