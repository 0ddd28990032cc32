"""Registration of the Universal Attestation Authority with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin


def kernel() -> None:
    """Deterministic work for instruction counting: parse a policy and a quote structure."""
    from tenfold.attestation_authority._policy import parse_policy
    from tenfold.attestation_authority._structs import decode_tools_pcrs, encode_tools_pcrs

    policy = parse_policy("sha256:0-7 = " + "00" * 32 + "\nsha1:10 = replay\n")
    values = {sel.bank: {i: bytes(32) for i in sel.indices} for sel in policy.selection}
    for _ in range(200):
        decode_tools_pcrs(encode_tools_pcrs(values))


plugin = SystemPlugin(
    name="attestation_authority",
    title="Universal Attestation Authority",
    summary="TPM remote attestation with signed attestation results",
    commands={
        "attest": (
            "tenfold.attestation_authority.cli:attest",
            "TPM remote attestation: agent, registrar, verifier, signed results",
        ),
    },
    config=("attestation_authority", "tenfold.attestation_authority._config:AttestationConfig"),
    scenarios="tenfold.attestation_authority.bench:scenarios",
    kernel="tenfold.attestation_authority._plugin:kernel",
)
