"""Every attack of the issue, against quotes from a real swtpm; each refusal names its reason."""

import dataclasses
import logging
import shutil
import struct
import subprocess
import time

import pytest

from tenfold.attestation_authority import (
    Agent,
    Evidence,
    PcrSelection,
    Reason,
    Registrar,
    Verifier,
    encode_event_log,
    parse_event_log,
    parse_policy,
)
from tenfold.attestation_authority._eventlog import Event
from tenfold.attestation_authority._structs import TPM_ALG_SHA1, TPM_ALG_SHA256, encode_tools_pcrs
from tenfold.attestation_authority.errors import QuoteRefused, RegistrationError, TpmError
from tenfold.core.services import Swtpm

pytestmark = pytest.mark.service

ZERO = "0" * 64
# PCRs 16 (debug) and 23 (application) are resettable from locality 0, so every test
# starts them from zero on the module's shared swtpm.
POLICY = f"sha256:0-6 = {ZERO}\nsha256:7 = *\nsha256:16 = replay\nsha256:23 = {ZERO}\n"
ALL = (0, 1, 2, 3, 4, 5, 6, 7, 16, 23)


@pytest.fixture
def agent(swtpm: Swtpm):
    from tpm2_pytss import ESYS_TR

    with Agent(swtpm.tcti) as a:
        a.esapi.pcr_reset(ESYS_TR.PCR16)
        a.esapi.pcr_reset(ESYS_TR.PCR23)
        yield a


@pytest.fixture
def setup(agent: Agent):
    registrar = Registrar()
    registrar.enroll(agent, "node-1")
    verifier = Verifier(registrar, parse_policy(POLICY))
    agent.extend(16, b"debug kernel command line")
    return agent, registrar, verifier


def fresh_quote(agent: Agent, verifier: Verifier, agent_id: str = "node-1") -> Evidence:
    nonce = verifier.generate_nonce(agent_id)
    return agent.quote(nonce, verifier.policy_for(agent_id).selection)


def refused(verifier: Verifier, evidence: Evidence, reason: Reason, caplog, agent_id="node-1"):
    with caplog.at_level(logging.WARNING, logger="tenfold.attestation_authority"):
        verdict = verifier.verify_quote(agent_id, evidence)
    assert not verdict.ok
    assert verdict.reason is reason, verdict
    assert f"({reason.value})" in caplog.text
    with pytest.raises(QuoteRefused) as info:
        verdict.raise_for_refusal()
    assert info.value.reason == reason.value
    return verdict


def test_genuine_quote_is_accepted_with_its_pcrs(setup) -> None:
    agent, _, verifier = setup
    verdict = verifier.verify_quote("node-1", fresh_quote(agent, verifier))
    assert verdict.ok, verdict
    assert set(verdict.pcrs[TPM_ALG_SHA256]) == set(ALL)
    assert verdict.pcrs[TPM_ALG_SHA256][16] != bytes(32)
    assert verdict.raise_for_refusal() is verdict


def test_forged_signature(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    sig = bytearray(ev.signature)
    sig[10] ^= 0x01
    refused(
        verifier, dataclasses.replace(ev, signature=bytes(sig)), Reason.SIGNATURE_INVALID, caplog
    )


def test_quote_signed_by_a_different_ak_of_the_same_tpm(swtpm, setup, caplog) -> None:
    agent, _, verifier = setup
    nonce = verifier.generate_nonce("node-1")
    agent.close()
    with Agent(swtpm.tcti, ak_label=b"some other key") as other:
        ev = other.quote(nonce, verifier.policy_for("node-1").selection)
    refused(verifier, ev, Reason.SIGNATURE_INVALID, caplog)


def test_quote_from_another_tpm(setup, caplog) -> None:
    _, _, verifier = setup
    nonce = verifier.generate_nonce("node-1")
    with Swtpm() as tpm2, Agent(tpm2.tcti) as other:
        ev = other.quote(nonce, verifier.policy_for("node-1").selection)
    refused(verifier, ev, Reason.SIGNATURE_INVALID, caplog)


def test_replayed_nonce(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    assert verifier.verify_quote("node-1", ev).ok
    refused(verifier, ev, Reason.NONCE_REPLAYED, caplog)


def test_expired_nonce(setup, caplog) -> None:
    agent, registrar, _ = setup
    verifier = Verifier(registrar, parse_policy(POLICY), nonce_ttl_s=0.05)
    ev = fresh_quote(agent, verifier)
    time.sleep(0.1)
    refused(verifier, ev, Reason.NONCE_EXPIRED, caplog)


def test_nonce_never_issued(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = agent.quote(b"\x42" * 20, verifier.policy_for("node-1").selection)
    refused(verifier, ev, Reason.NONCE_UNKNOWN, caplog)


def test_nonce_issued_to_another_agent(setup, caplog) -> None:
    agent, _, verifier = setup
    nonce = verifier.generate_nonce("node-2")
    ev = agent.quote(nonce, verifier.policy_for("node-1").selection)
    refused(verifier, ev, Reason.NONCE_OTHER_AGENT, caplog)


def test_forged_signature_does_not_burn_the_agents_nonce(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    forged = dataclasses.replace(ev, signature=ev.signature[:-1] + bytes([ev.signature[-1] ^ 1]))
    refused(verifier, forged, Reason.SIGNATURE_INVALID, caplog)
    assert verifier.verify_quote("node-1", ev).ok


@pytest.mark.parametrize(
    "selection",
    [
        (PcrSelection(TPM_ALG_SHA1, ALL),),  # wrong bank
        (PcrSelection(TPM_ALG_SHA256, tuple(i for i in ALL if i != 7)),),  # PCR 7 left out
        (PcrSelection(TPM_ALG_SHA256, tuple(sorted((*ALL, 8)))),),  # an extra PCR
    ],
    ids=["wrong-bank", "missing-pcr", "extra-pcr"],
)
def test_wrong_bank_or_selection(setup, selection, caplog) -> None:
    agent, _, verifier = setup
    ev = agent.quote(verifier.generate_nonce("node-1"), selection)
    refused(verifier, ev, Reason.PCR_SELECTION, caplog)


def test_tampered_pcr_values(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    # Claim a clean PCR 16 (hiding the debug kernel) in the same selection layout.
    values = {TPM_ALG_SHA256: {i: bytes(32) for i in ALL}}
    refused(
        verifier,
        dataclasses.replace(ev, pcrs=encode_tools_pcrs(values)),
        Reason.PCR_DIGEST_MISMATCH,
        caplog,
    )


def test_pcr_values_for_another_selection(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    values = {TPM_ALG_SHA256: {i: bytes(32) for i in (0, 1, 2)}}
    refused(
        verifier,
        dataclasses.replace(ev, pcrs=encode_tools_pcrs(values)),
        Reason.PCR_VALUES_MALFORMED,
        caplog,
    )


def test_reference_value_violation(setup, caplog) -> None:
    agent, registrar, _ = setup
    agent.extend(23, b"unexpected application")
    verifier = Verifier(registrar, parse_policy(POLICY))
    verdict = refused(verifier, fresh_quote(agent, verifier), Reason.POLICY_VIOLATION, caplog)
    assert "sha256:23" in verdict.detail


def test_clock_going_backwards(setup, caplog) -> None:
    agent, _, verifier = setup
    first = fresh_quote(agent, verifier)
    time.sleep(0.02)
    second = fresh_quote(agent, verifier)
    assert verifier.verify_quote("node-1", second).ok
    refused(verifier, first, Reason.CLOCK_BACKWARDS, caplog)


def power_cycle(swtpm: Swtpm, agent: Agent) -> None:
    """An orderly TPM2_Shutdown, then _TPM_Init over swtpm's control channel: a TPM Reset."""
    from tpm2_pytss import TPM2_SU

    agent.esapi.shutdown(TPM2_SU.CLEAR)
    agent.close()
    ioctl = shutil.which("swtpm_ioctl")
    assert ioctl, "swtpm_ioctl (Debian swtpm-tools) is required"
    subprocess.run([ioctl, "--tcp", f"127.0.0.1:{swtpm.ctrl_port}", "-i"], check=True, timeout=10)


def test_reset_count_going_backwards(swtpm, setup, caplog) -> None:
    agent, _, verifier = setup
    before = fresh_quote(agent, verifier)
    held_nonce = verifier.generate_nonce("node-1")
    power_cycle(swtpm, agent)
    with Agent(swtpm.tcti) as rebooted:
        rebooted.extend(16, b"debug kernel command line")
        rebooted_ev = rebooted.quote(held_nonce, verifier.policy_for("node-1").selection)
        after = verifier.verify_quote("node-1", rebooted_ev)
    assert after.ok, after
    verdict = refused(verifier, before, Reason.RESET_COUNT_BACKWARDS, caplog)
    assert "resetCount" in verdict.detail


def test_ak_not_bound(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier, "stranger")
    refused(verifier, ev, Reason.AK_NOT_BOUND, caplog, agent_id="stranger")


def test_ak_of_another_tpm_cannot_be_bound_to_this_ek(agent) -> None:
    registrar = Registrar()
    registrar.allow_ek(agent.ek_public)
    with Swtpm() as tpm2, Agent(tpm2.tcti) as other:
        # The credential is bound to the foreign AK's name: this TPM cannot activate it ...
        challenge = registrar.register("node-x", agent.ek_public, other.ak_public)
        with pytest.raises(TpmError):
            agent.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
        # ... and the foreign TPM does not hold the EK it was encrypted to.
        with pytest.raises(TpmError):
            other.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
    with pytest.raises(RegistrationError, match="not bound"):
        registrar.activate("node-x", b"\x00" * 32)
    assert registrar.ak_for("node-x") is None


def test_ek_not_in_allowlist_is_refused(agent) -> None:
    with pytest.raises(RegistrationError, match="allowlist"):
        Registrar().register("node-1", agent.ek_public, agent.ak_public)


@pytest.mark.parametrize("cut", [1, 20, 60])
def test_truncated_attest(setup, cut, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    refused(
        verifier, dataclasses.replace(ev, attest=ev.attest[:-cut]), Reason.ATTEST_MALFORMED, caplog
    )


@pytest.mark.parametrize("extra", [1, 4096])
def test_oversized_attest(setup, extra, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    bigger = dataclasses.replace(ev, attest=ev.attest + b"\x00" * extra)
    refused(verifier, bigger, Reason.ATTEST_OVERSIZED, caplog)


def test_magic_other_than_tpm_generated(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    forged = struct.pack(">I", 0xFF544348) + ev.attest[4:]
    verdict = refused(verifier, dataclasses.replace(ev, attest=forged), Reason.BAD_MAGIC, caplog)
    assert "0xff544348" in verdict.detail


def test_event_log_that_does_not_replay(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    assert ev.event_log is not None
    banks, events = parse_event_log(ev.event_log)
    # Claim the production kernel was measured instead of the debug one.
    clean = [
        Event(e.pcr, e.type, {b: bytes(len(d)) for b, d in e.digests.items()}, b"prod")
        for e in events
    ]
    forged = dataclasses.replace(ev, event_log=encode_event_log(list(banks), clean))
    verdict = refused(verifier, forged, Reason.EVENT_LOG_MISMATCH, caplog)
    assert "sha256:16" in verdict.detail


def test_event_log_missing_or_garbled(setup, caplog) -> None:
    agent, _, verifier = setup
    ev = fresh_quote(agent, verifier)
    refused(verifier, dataclasses.replace(ev, event_log=None), Reason.EVENT_LOG_MISSING, caplog)
    ev = fresh_quote(agent, verifier)
    refused(
        verifier,
        dataclasses.replace(ev, event_log=b"\x00" * 10),
        Reason.EVENT_LOG_MALFORMED,
        caplog,
    )


def test_extend_without_logging_is_caught_by_replay(setup, caplog) -> None:
    from tpm2_pytss import ESYS_TR, TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

    agent, _, verifier = setup
    hidden = TPML_DIGEST_VALUES(
        [TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=b"\x07" * 32))]
    )
    agent.esapi.pcr_extend(ESYS_TR.PCR16, hidden)
    refused(verifier, fresh_quote(agent, verifier), Reason.EVENT_LOG_MISMATCH, caplog)


def test_quote_after_a_pcr_changed_behind_the_agent_carries_the_new_values(agent: Agent) -> None:
    # The agent remembers the values of its last quote instead of reading PCRs each time;
    # an extend it did not make (another TPM user) must still end in the values quoted.
    from tpm2_pytss import ESYS_TR, TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

    selection = (PcrSelection(TPM_ALG_SHA256, (0, 23)),)
    first = agent.quote(b"n" * 20, selection)
    digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=b"\x17" * 32))
    agent.esapi.pcr_extend(ESYS_TR.PCR23, TPML_DIGEST_VALUES([digest]))
    second = agent.quote(b"m" * 20, selection)
    current = agent.read_pcrs(selection)
    assert second.pcrs == encode_tools_pcrs(current)
    assert second.pcrs != first.pcrs
    registrar = Registrar()
    registrar.enroll(agent, "node-2")
    verifier = Verifier(registrar, parse_policy(f"sha256:0 = {ZERO}\nsha256:23 = *\n"))
    nonce = verifier.generate_nonce("node-2")
    assert verifier.verify_quote("node-2", agent.quote(nonce, selection)).ok
