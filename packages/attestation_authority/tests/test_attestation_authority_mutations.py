"""Property: no byte flipped anywhere in a genuine swtpm quote gets it accepted with other values."""

import dataclasses
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.attestation_authority import Agent, Registrar, Verifier, parse_policy

pytestmark = pytest.mark.service

POLICY = "sha256:0-7 = *\nsha1:0 = *\n"


@pytest.fixture(scope="module")
def genuine(swtpm):
    with Agent(swtpm.tcti) as agent:
        registrar = Registrar()
        registrar.enroll(agent, "node-1")
        policy = parse_policy(POLICY)
        nonce = os.urandom(20)
        evidence = agent.quote(nonce, policy.selection)
    verifier = Verifier(registrar, policy)
    baseline = verifier.verify_quote("node-1", evidence, expected_nonce=nonce)
    assert baseline.ok
    return verifier, evidence, nonce, baseline


@settings(
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.sampled_from(["attest", "signature", "pcrs"]), st.data())
def test_single_byte_flip_is_refused_or_harmless(genuine, field, data) -> None:
    verifier, evidence, nonce, baseline = genuine
    blob = bytearray(getattr(evidence, field))
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= data.draw(st.integers(1, 255))
    mutated = dataclasses.replace(evidence, **{field: bytes(blob)})
    verdict = verifier.verify_quote("node-1", mutated, expected_nonce=nonce)
    if verdict.ok:
        # Only padding of the tpm2-tools PCR blob may change without meaning anything.
        assert field == "pcrs"
        assert verdict.pcrs == baseline.pcrs
    else:
        assert verdict.reason is not None and verdict.detail


@settings(
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.sampled_from(["attest", "signature", "pcrs"]), st.data())
def test_truncation_or_extension_of_any_field_is_refused(genuine, field, data) -> None:
    verifier, evidence, nonce, _ = genuine
    blob = getattr(evidence, field)
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob = blob + data.draw(st.binary(min_size=1, max_size=64))
    verdict = verifier.verify_quote(
        "node-1", dataclasses.replace(evidence, **{field: blob}), expected_nonce=nonce
    )
    assert not verdict.ok
