"""The HTTP API end to end over mutual TLS: agent, registrar, verifier, continuous attestation."""

import ssl

import httpx
import pytest

from tenfold.attestation_authority import Agent, Authority, Registrar, Verifier, parse_policy
from tenfold.attestation_authority._http import (
    Poller,
    RemoteRegistrar,
    agent_app,
    enroll_over_http,
    make_tls_bundle,
    registrar_app,
    serve,
    verifier_app,
)
from tenfold.core.services import Swtpm

pytestmark = pytest.mark.service

POLICY = "sha256:0-7 = " + "0" * 64 + "\nsha256:23 = " + "0" * 64 + "\n"


@pytest.fixture
def tls(tmp_path):
    return make_tls_bundle(tmp_path / "tls", ["agent", "registrar", "verifier", "admin"])


@pytest.fixture
def agent(swtpm):
    from tpm2_pytss import ESYS_TR

    with Agent(swtpm.tcti) as a:
        a.esapi.pcr_reset(ESYS_TR.PCR23)
        yield a


def test_agent_to_signed_result_over_mtls(agent, tls) -> None:
    registrar = Registrar()
    registrar.allow_ek(agent.ek_public)
    authority = Authority()
    with (
        serve(agent_app(agent), tls=tls["agent"]) as agent_url,
        serve(registrar_app(registrar), tls=tls["registrar"]) as registrar_url,
    ):
        ek_hash = enroll_over_http(agent_url, registrar_url, "node-1", tls["admin"])
        assert registrar.binding("node-1").ek_hash == ek_hash

        remote = RemoteRegistrar(registrar_url, tls["verifier"])
        verifier = Verifier(remote, parse_policy(POLICY))
        poller = Poller(verifier, authority, period_s=60, tls=tls["verifier"])
        try:
            with serve(verifier_app(verifier, poller), tls=tls["verifier"]) as verifier_url:
                admin = httpx.Client(verify=tls["admin"].client_context())
                reply = admin.post(f"{verifier_url}/agents/node-1", json={"url": agent_url})
                assert reply.status_code == 200
                assert admin.get(f"{verifier_url}/agents/node-1").status_code == 404
                verdicts = poller.poll_due()
                assert [v.ok for v in verdicts] == [True]
                assert poller.poll_due() == []  # not due again before its period
                status = admin.get(f"{verifier_url}/agents/node-1").json()
                assert status["ok"] is True
                claims = authority.verify_ear(status["ear"])
                assert claims["submods"]["node-1"]["ear.status"] == "affirming"

                # The node asks for a certificate for its TLS key while it is affirmed.
                from cryptography import x509
                from cryptography.hazmat.primitives import serialization

                pem = agent_public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                issued = admin.post(f"{verifier_url}/agents/node-1/certificate", content=pem)
                assert issued.status_code == 200, issued.text
                cert = x509.load_pem_x509_certificate(issued.content)
                assert authority.verify_certificate(cert).agent_id == "node-1"

                # A later failed check: the EAR turns contraindicated and certificates are revoked.
                agent.extend(23, b"rootkit")
                later = poller.check("node-1")
                assert later.reason is not None and later.reason.value == "policy-violation"
                status = admin.get(f"{verifier_url}/agents/node-1").json()
                assert status["reason"] == "policy-violation"
                assert cert.serial_number in authority.revoked
                refused = admin.post(f"{verifier_url}/agents/node-1/certificate", content=pem)
                assert refused.status_code == 403
                garbage = admin.post(f"{verifier_url}/agents/node-2/certificate", content=b"x")
                assert garbage.status_code == 403  # no verdict for node-2
                admin.close()
        finally:
            poller.close()
            remote.close()


def agent_public_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_clients_without_a_trusted_certificate_are_refused(agent, tls, tmp_path) -> None:
    other = make_tls_bundle(tmp_path / "other", ["intruder"])["intruder"]
    with serve(agent_app(agent), tls=tls["agent"]) as url:
        ok = httpx.get(f"{url}/keys", verify=tls["admin"].client_context())
        assert ok.status_code == 200
        # No client certificate at all.
        bare = ssl.create_default_context(cafile=str(tls["admin"].ca))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/keys", verify=bare)
        # A client certificate from another CA.
        foreign = ssl.create_default_context(cafile=str(tls["admin"].ca))
        foreign.load_cert_chain(str(other.cert), str(other.key))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/keys", verify=foreign)


def test_bad_requests_get_400_not_a_crash(agent, tls) -> None:
    with serve(agent_app(agent), tls=tls["agent"]) as url:
        client = httpx.Client(verify=tls["admin"].client_context())
        assert client.post(f"{url}/quote", content=b"not json").status_code == 400
        bad = client.post(f"{url}/quote", json={"nonce": "zz"})
        assert bad.status_code == 400 and "hex" in bad.json()["error"]
        bad = client.post(f"{url}/quote", json={"nonce": "00" * 20, "selection": "md5:1"})
        assert bad.status_code == 400
        good = client.post(f"{url}/quote", json={"nonce": "00" * 20, "selection": "sha256:0,1"})
        assert good.status_code == 200 and set(good.json()) >= {"attest", "signature", "pcrs"}
        client.close()


def test_unreachable_agent_is_recorded_as_not_attested(agent, tls) -> None:
    registrar = Registrar()
    verifier = Verifier(registrar, parse_policy(POLICY))
    poller = Poller(verifier, Authority(), period_s=60, tls=tls["verifier"], timeout_s=1)
    try:
        poller.enroll("gone", "https://127.0.0.1:9")
        (verdict,) = poller.poll_due()
        assert not verdict.ok and verdict.reason.value == "agent-unreachable"
        assert poller.results["gone"][1] is not None
    finally:
        poller.close()


def test_poll_schedule_checks_each_agent_once_per_period(tls) -> None:
    verifier = Verifier(Registrar(), parse_policy(POLICY))
    poller = Poller(verifier, period_s=10, tls=tls["verifier"], timeout_s=1)
    try:
        for name in ("a", "b", "c"):
            poller.enroll(name, "https://127.0.0.1:9", now=0.0)
        poller.enroll("a", "https://127.0.0.1:9", now=0.0)  # re-enrolling does not duplicate
        assert sorted(v.agent_id for v in poller.poll_due(now=10)) == ["a", "b", "c"]
        assert poller.poll_due(now=15) == []
        assert len(poller.poll_due(now=20)) == 3
        # Far behind schedule: one check each, then the next period, not a burst.
        assert len(poller.poll_due(now=100)) == 3
        assert poller.poll_due(now=105) == []
        assert len(poller.poll_due(now=110)) == 3
    finally:
        poller.close()


def test_push_mode_nonce_then_evidence(agent, tls) -> None:
    registrar = Registrar()
    registrar.enroll(agent, "node-1")
    verifier = Verifier(registrar, parse_policy(POLICY))
    poller = Poller(verifier, tls=tls["verifier"])
    try:
        with serve(verifier_app(verifier, poller), tls=tls["verifier"]) as url:
            client = httpx.Client(verify=tls["agent"].client_context())
            nonce = bytes.fromhex(client.post(f"{url}/nonce/node-1").json()["nonce"])
            evidence = agent.quote(nonce, verifier.policy_for("node-1").selection)
            accepted = client.post(f"{url}/verify/node-1", json=evidence.to_json())
            assert accepted.status_code == 200 and accepted.json()["ok"] is True
            replayed = client.post(f"{url}/verify/node-1", json=evidence.to_json())
            assert replayed.status_code == 403
            assert replayed.json()["reason"] == "nonce-replayed"
            garbled = client.post(f"{url}/verify/node-1", json={"attest": "!!"})
            assert garbled.status_code == 400
            client.close()
    finally:
        poller.close()


def provision_ek_certificate(agent: Agent, der: bytes) -> None:
    """What a TPM manufacturer does: store the EK certificate at its NV index."""
    from tpm2_pytss import (
        ESYS_TR,
        TPM2_ALG,
        TPM2B_NV_PUBLIC,
        TPMA_NV,
        TPMS_NV_PUBLIC,
    )

    from tenfold.attestation_authority._agent import EK_CERT_NV_INDEX

    public = TPM2B_NV_PUBLIC(
        nvPublic=TPMS_NV_PUBLIC(
            nvIndex=EK_CERT_NV_INDEX,
            nameAlg=TPM2_ALG.SHA256,
            attributes=TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA,
            dataSize=len(der),
        )
    )
    handle = agent.esapi.nv_define_space(b"", public, ESYS_TR.OWNER)
    for offset in range(0, len(der), 512):
        agent.esapi.nv_write(handle, der[offset : offset + 512], offset, ESYS_TR.OWNER)


def test_ek_certificate_from_nv_is_accepted_by_the_manufacturer_ca(tls) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from tenfold.attestation_authority._structs import parse_public

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example TPM Manufacturer CA")])
    now = dt.datetime.now(dt.UTC)

    def issue(subject_key, name, signer):
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_name)
            .public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(signer, hashes.SHA256())
        )

    ca_cert = issue(ca_key.public_key(), ca_name, ca_key)
    with Swtpm() as tpm, Agent(tpm.tcti) as agent:  # NV changes stay on this TPM
        assert agent.ek_certificate() is None
        ek_key = parse_public(agent.ek_public).key
        der = issue(ek_key, x509.Name([]), ca_key).public_bytes(Encoding.DER)
        provision_ek_certificate(agent, der)
        assert agent.ek_certificate() == der

        registrar = Registrar(ek_ca_certificates=[ca_cert])  # no allowlist at all
        with (
            serve(agent_app(agent), tls=tls["agent"]) as agent_url,
            serve(registrar_app(registrar), tls=tls["registrar"]) as registrar_url,
        ):
            enroll_over_http(agent_url, registrar_url, "node-1", tls["admin"])
        assert registrar.ak_for("node-1") is not None


class _OneAgent:
    """A registrar that binds every agent id to one agent's AK."""

    def __init__(self, agent: Agent) -> None:
        from tenfold.attestation_authority._structs import parse_public

        self.ak = parse_public(agent.ak_public)

    def ak_for(self, agent_id: str):
        return self.ak


def test_poller_reconnects_when_an_agent_closed_its_keep_alive(agent, tls) -> None:
    """A restarted agent has dropped the poller's idle connection: the next poll opens
    a new one and attests, and every check of a round is accepted."""
    verifier = Verifier(_OneAgent(agent), parse_policy(POLICY))
    poller = Poller(verifier, period_s=10, tls=tls["verifier"], timeout_s=10, workers=2)
    try:
        with serve(agent_app(agent), tls=tls["agent"]) as url:
            for name in ("a", "b", "c"):
                poller.enroll(name, url, now=0.0)
            assert [v.ok for v in poller.poll_due(now=10)] == [True] * 3
        port = int(url.rsplit(":", 1)[1])
        with serve(agent_app(agent), port=port, tls=tls["agent"]) as again:
            assert again == url
            verdicts = poller.poll_due(now=20)
            assert [v.ok for v in verdicts] == [True] * 3, [v.detail for v in verdicts]
    finally:
        poller.close()


def test_poller_records_an_agent_error_status_as_not_attested(tls) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def busy(request):
        return JSONResponse({"error": "busy"}, status_code=503)

    verifier = Verifier(Registrar(), parse_policy(POLICY))
    poller = Poller(verifier, period_s=10, tls=tls["verifier"], timeout_s=10)
    try:
        with serve(
            Starlette(routes=[Route("/quote", busy, methods=["POST"])]), tls=tls["agent"]
        ) as url:
            poller.enroll("a", url, now=0.0)
            (verdict,) = poller.poll_due(now=10)
            assert not verdict.ok and verdict.reason.value == "agent-unreachable"
            assert "HTTP 503" in verdict.detail
    finally:
        poller.close()
