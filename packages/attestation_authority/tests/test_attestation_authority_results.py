"""EAR results and node certificates: issue, verify, expire, revoke; EK acceptance by CA."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from tenfold.attestation_authority import (
    Agent,
    Authority,
    Reason,
    Registrar,
    Verdict,
    verify_certificate,
    verify_ear,
)
from tenfold.attestation_authority._structs import parse_public
from tenfold.attestation_authority.errors import CertificateRefused, RegistrationError


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


GOOD = Verdict("node-1", True, pcr_digest=b"\x5a" * 32, reset_count=3, nonce=b"n" * 20)
BAD = Verdict("node-1", False, Reason.POLICY_VIOLATION, "sha256:7 = ... is not a reference value")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def authority(clock: Clock) -> Authority:
    return Authority(cert_ttl_s=60, ear_ttl_s=60, clock=clock)


def node_key():
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_certificate_binds_node_key_to_verified_state(authority) -> None:
    key = node_key()
    cert = authority.sign_certificate(GOOD, key)
    info = authority.verify_certificate(cert)
    assert info.agent_id == "node-1"
    assert info.pcr_digest == b"\x5a" * 32 and info.reset_count == 3
    assert cert.public_key() == key
    assert cert.issuer == authority.ca_certificate.subject
    # A relying party holding only the CA certificate checks the same way, from DER bytes.
    from cryptography.hazmat.primitives.serialization import Encoding

    again = verify_certificate(
        cert.public_bytes(Encoding.DER),
        authority.ca_certificate.public_key(),
        now=authority._clock(),
    )
    assert again.serial == cert.serial_number


def test_expired_certificate_is_refused(authority, clock) -> None:
    cert = authority.sign_certificate(GOOD, node_key())
    clock.now += 61
    with pytest.raises(CertificateRefused) as info:
        authority.verify_certificate(cert)
    assert info.value.reason == "expired"


def test_failed_later_check_revokes(authority) -> None:
    first = authority.sign_certificate(GOOD, node_key())
    second = authority.sign_certificate(GOOD, node_key())
    other = authority.sign_certificate(Verdict("node-2", True, pcr_digest=b"x" * 32), node_key())
    assert authority.observe(GOOD) == 0
    assert authority.observe(BAD) == 2
    for cert in (first, second):
        with pytest.raises(CertificateRefused) as info:
            authority.verify_certificate(cert)
        assert info.value.reason == "revoked"
    assert authority.verify_certificate(other).agent_id == "node-2"


def test_refused_verdict_gets_no_certificate(authority) -> None:
    with pytest.raises(CertificateRefused, match="policy-violation"):
        authority.sign_certificate(BAD, node_key())


def test_certificate_from_another_authority_is_refused(authority, clock) -> None:
    rogue = Authority(clock=clock)
    cert = rogue.sign_certificate(GOOD, node_key())
    with pytest.raises(CertificateRefused) as info:
        authority.verify_certificate(cert)
    assert info.value.reason == "bad-signature"


def test_ear_carries_status_and_reason(authority, clock) -> None:
    claims = authority.verify_ear(authority.issue_ear(GOOD))
    sub = claims["submods"]["node-1"]
    assert sub["ear.status"] == "affirming"
    assert claims["eat_profile"].endswith("veraison/ear")
    bad = authority.verify_ear(authority.issue_ear(BAD))["submods"]["node-1"]
    assert bad["ear.status"] == "contraindicated"
    assert bad["ear.tenfold.reason"] == "policy-violation"


def test_ear_tampered_or_expired_is_refused(authority, clock) -> None:
    token = authority.issue_ear(GOOD)
    header, _payload, sig = token.split(".")
    forged = authority.issue_ear(BAD).split(".")[1]
    with pytest.raises(CertificateRefused, match="bad-signature"):
        verify_ear(f"{header}.{forged}.{sig}", authority.public_key, now=clock.now)
    with pytest.raises(CertificateRefused, match="bad-signature"):
        verify_ear(token, ed25519.Ed25519PrivateKey.generate().public_key(), now=clock.now)
    clock.now += 61
    with pytest.raises(CertificateRefused, match="expired"):
        authority.verify_ear(token)


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TPM Manufacturer CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def ek_certificate(ca_key, ca_cert, public_key):
    from cryptography.hazmat.primitives.serialization import Encoding

    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swtpm")]))]
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


@pytest.mark.service
def test_ek_accepted_by_manufacturer_ca(swtpm) -> None:
    ca_key, ca_cert = make_ca()
    with Agent(swtpm.tcti) as agent:
        ek_key = parse_public(agent.ek_public).key
        registrar = Registrar(ek_ca_certificates=[ca_cert])
        good = ek_certificate(ca_key, ca_cert, ek_key)
        challenge = registrar.register("node-1", agent.ek_public, agent.ak_public, good)
        secret = agent.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
        binding = registrar.activate("node-1", secret)
        assert registrar.ak_for("node-1") is binding.ak
        # A certificate for another key, or from another CA, is refused.
        wrong_key = ek_certificate(ca_key, ca_cert, node_key())
        with pytest.raises(RegistrationError, match="public key"):
            registrar.register("node-2", agent.ek_public, agent.ak_public, wrong_key)
        rogue_key, _rogue_cert = make_ca()
        with pytest.raises(RegistrationError, match="manufacturer CA"):
            registrar.register(
                "node-3",
                agent.ek_public,
                agent.ak_public,
                ek_certificate(rogue_key, ca_cert, ek_key),
            )


@pytest.mark.service
def test_registrar_refuses_a_signing_key_that_is_not_restricted(swtpm) -> None:
    with Agent(swtpm.tcti) as agent:
        registrar = Registrar()
        registrar.allow_ek(agent.ek_public)
        # The EK itself is a decryption key, not a restricted signer: it may not act as an AK.
        with pytest.raises(RegistrationError, match="restricted"):
            registrar.register("node-1", agent.ek_public, agent.ek_public)


@pytest.mark.service
def test_ek_certificate_through_an_intermediate_ca(swtpm) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    root_key, root = make_ca()
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TPM EK Intermediate")])
    now = dt.datetime.now(dt.UTC)
    inter = (
        x509.CertificateBuilder()
        .subject_name(inter_name)
        .issuer_name(root.subject)
        .public_key(inter_key.public_key())
        .serial_number(3)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    with Agent(swtpm.tcti) as agent:
        ek_key = parse_public(agent.ek_public).key
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(inter_name)
            .public_key(ek_key)
            .serial_number(4)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(inter_key, hashes.SHA256())
            .public_bytes(Encoding.DER)
        )
        Registrar(ek_ca_certificates=[inter, root]).register(
            "node-1", agent.ek_public, agent.ak_public, leaf
        )
        # Without the root, or without the intermediate, the chain does not close.
        for cas in ([inter], [root]):
            with pytest.raises(RegistrationError, match="manufacturer CA"):
                Registrar(ek_ca_certificates=cas).register(
                    "node-1", agent.ek_public, agent.ak_public, leaf
                )
