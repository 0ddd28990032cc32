"""``[attestation_authority]`` in tenfold.toml: freshness and lifetimes."""

from __future__ import annotations

from pydantic import Field

from tenfold.core.config import Section, load_section


class AttestationConfig(Section):
    """Timing of the verifier and the authority (all in seconds)."""

    nonce_ttl_s: float = Field(30.0, gt=0, description="How long an issued nonce stays usable.")
    poll_period_s: float = Field(10.0, gt=0, description="How often each agent is quoted.")
    cert_ttl_s: float = Field(300.0, gt=0, description="Lifetime of a node certificate.")
    ear_ttl_s: float = Field(300.0, gt=0, description="Lifetime of an EAR token.")


def load_config() -> AttestationConfig:
    """Read ``[attestation_authority]`` (defaults when absent); raises ConfigError on bad keys."""
    return load_section("attestation_authority", AttestationConfig)
