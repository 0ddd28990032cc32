"""IMA: the measurement list replays into PCR 10 of each bank, and every file must be allowed."""

import dataclasses
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.attestation_authority import Agent, Reason, Registrar, Verifier, parse_policy
from tenfold.attestation_authority._ima import (
    ImaAllowlist,
    measure_file,
    parse_ima_list,
    replay_ima,
)
from tenfold.attestation_authority._structs import TPM_ALG_SHA1, TPM_ALG_SHA256
from tenfold.attestation_authority.errors import MalformedStructure
from tenfold.core.services import Swtpm

FILES = {"/usr/bin/bash": b"bash v5", "/usr/lib/libc.so.6": b"libc", "/etc/ld.so.cache": b"cache"}
POLICY = "sha1:10 = ima\nsha256:10 = ima\n"

paths = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
entries_st = st.lists(st.tuples(paths, st.binary(max_size=30)), max_size=12).map(
    lambda xs: [measure_file("/" + p, d) for p, d in xs]
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries_st)
def test_list_round_trips_and_replays_incrementally(entries) -> None:
    text = "".join(e.line() + "\n" for e in entries).encode()
    assert parse_ima_list(text) == entries
    for bank in (TPM_ALG_SHA1, TPM_ALG_SHA256):
        whole = replay_ima(entries, bank)
        for cut in range(len(entries) + 1):
            assert replay_ima(entries[cut:], bank, replay_ima(entries[:cut], bank)) == whole


def test_malformed_lists_name_the_line() -> None:
    good = measure_file("/bin/sh", b"sh").line()
    for bad, what in [
        (good + "\n10 zz ima-ng sha256:00 /x", "ima:2"),
        ("10 " + "00" * 20 + " ima sha1:00 /x", "unsupported template"),
        ("10 abc", "expected 5 fields"),
    ]:
        with pytest.raises(MalformedStructure, match=what):
            parse_ima_list(bad.encode())


def test_allowlist_reads_sha256sum_output() -> None:
    text = "".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d in FILES.items())
    allow = ImaAllowlist.from_text("# generated\n" + text)
    assert len(allow) == 3
    assert allow.check([measure_file(p, d) for p, d in FILES.items()]) is None
    assert "/usr/bin/bash" in (allow.check([measure_file("/usr/bin/bash", b"evil")]) or "")
    with pytest.raises(MalformedStructure, match="allowlist:1"):
        ImaAllowlist.from_text("nothex  /x\n")


@pytest.fixture
def ima_setup():
    # PCR 10 cannot be reset: each test gets its own TPM.
    with Swtpm() as tpm, Agent(tpm.tcti) as agent:
        registrar = Registrar()
        registrar.enroll(agent, "node-1")
        for path, data in FILES.items():
            agent.measure_file(path, data)
        text = "".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d in FILES.items())
        verifier = Verifier(
            registrar, parse_policy(POLICY), ima_allowlist=ImaAllowlist.from_text(text)
        )
        yield agent, verifier


def quote(agent, verifier):
    return agent.quote(verifier.generate_nonce("node-1"), verifier.policy_for("node-1").selection)


@pytest.mark.service
def test_genuine_ima_list_is_accepted_then_checked_incrementally(ima_setup) -> None:
    agent, verifier = ima_setup
    assert verifier.verify_quote("node-1", quote(agent, verifier)).ok
    agent.measure_file("/usr/bin/bash", b"bash v5")  # allowed content, measured again
    assert verifier.verify_quote("node-1", quote(agent, verifier)).ok
    agent.measure_file("/tmp/dropper", b"malware")
    verdict = verifier.verify_quote("node-1", quote(agent, verifier))
    assert verdict.reason is Reason.IMA_NOT_ALLOWED and "/tmp/dropper" in verdict.detail


@pytest.mark.service
def test_ima_list_hiding_a_file_does_not_replay(ima_setup) -> None:
    agent, verifier = ima_setup
    agent.measure_file("/tmp/dropper", b"malware")
    ev = quote(agent, verifier)
    lines = [x for x in ev.ima_log.decode().splitlines() if "/tmp/dropper" not in x]
    hidden = dataclasses.replace(ev, ima_log=("\n".join(lines) + "\n").encode())
    verdict = verifier.verify_quote("node-1", hidden)
    assert verdict.reason is Reason.IMA_LOG_MISMATCH


@pytest.mark.service
def test_ima_entry_with_a_forged_file_hash_is_refused(ima_setup) -> None:
    agent, verifier = ima_setup
    agent.measure_file("/usr/bin/bash", b"trojaned bash")
    ev = quote(agent, verifier)
    entries = parse_ima_list(ev.ima_log)
    # Claim the allowed digest but keep the template hash the TPM saw.
    forged = dataclasses.replace(entries[-1], file_hash=hashlib.sha256(b"bash v5").digest())
    text = "".join(e.line() + "\n" for e in [*entries[:-1], forged]).encode()
    verdict = verifier.verify_quote("node-1", dataclasses.replace(ev, ima_log=text))
    assert verdict.reason is Reason.IMA_LOG_MALFORMED and "template hash" in verdict.detail


@pytest.mark.service
def test_missing_ima_list_is_refused(ima_setup) -> None:
    agent, verifier = ima_setup
    ev = dataclasses.replace(quote(agent, verifier), ima_log=None)
    assert verifier.verify_quote("node-1", ev).reason is Reason.IMA_LOG_MISSING
