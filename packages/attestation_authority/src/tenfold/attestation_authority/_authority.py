"""The authority: signed attestation results (EAR) and short-lived node certificates.

EAR follows draft-ietf-rats-ear: a JWT (JWS compact, ``alg: EdDSA``, RFC 8037)
whose claims carry ``eat_profile``, ``iat``, ``ear.verifier-id`` and one
submodule per agent with ``ear.status`` (``affirming`` or ``contraindicated``)
and a trustworthiness vector. Certificates are X.509 v3, Ed25519-signed by the
authority's CA key, valid ``cert_ttl_s`` seconds, binding the node's public key
(subject CN and a URI SAN name the agent) to the verified state: a private
extension holds the quoted PCR digest and resetCount.

Revocation is by serial number: a failed later check of an agent revokes every
certificate issued to it, and ``verify_certificate`` refuses revoked serials.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from tenfold.attestation_authority._verifier import Verdict
from tenfold.attestation_authority.errors import CertificateRefused
from tenfold.core.crypto import verify_ed25519
from tenfold.core.errors import CryptoError

logger = logging.getLogger("tenfold.attestation_authority.authority")

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
# A private-arc OID for "attested state": pcrDigest (32..64 bytes) then resetCount (u32).
ATTESTED_STATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.9.1")
AGENT_URI_PREFIX = "urn:tenfold:agent:"
# EAR trustworthiness claims (draft-ietf-rats-ar4si): 2 affirming, 96 contraindicated.
_AFFIRMING, _CONTRAINDICATED = 2, 96


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What ``verify_certificate`` found in a valid certificate."""

    agent_id: str
    serial: int
    not_after: float
    pcr_digest: bytes
    reset_count: int


class Authority:
    """Issues EAR tokens and node certificates for verified agents; revokes on failure."""

    def __init__(
        self,
        key: ed25519.Ed25519PrivateKey | None = None,
        *,
        name: str = "tenfold attestation authority",
        cert_ttl_s: float = 300.0,
        ear_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key or ed25519.Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key()
        self.name = name
        self.cert_ttl_s = cert_ttl_s
        self.ear_ttl_s = ear_ttl_s
        self._clock = clock
        self._issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.fromtimestamp(clock(), dt.UTC)
        self.ca_certificate = (
            x509.CertificateBuilder()
            .subject_name(self._issuer)
            .issuer_name(self._issuer)
            .public_key(self.public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, None)
        )
        self._revoked: set[int] = set()
        self._issued: dict[str, set[int]] = {}

    # -- EAR ---------------------------------------------------------------------
    def issue_ear(self, verdict: Verdict, *, policy_id: str = "default") -> str:
        """An EAR JWT for ``verdict``, signed with the authority's Ed25519 key."""
        now = int(self._clock())
        status = "affirming" if verdict.ok else "contraindicated"
        level = _AFFIRMING if verdict.ok else _CONTRAINDICATED
        submod: dict[str, Any] = {
            "ear.status": status,
            "ear.trustworthiness-vector": {
                "instance-identity": level,
                "hardware": level,
                "executables": level,
            },
            "ear.appraisal-policy-id": policy_id,
        }
        if not verdict.ok and verdict.reason is not None:
            submod["ear.tenfold.reason"] = verdict.reason.value
            submod["ear.tenfold.detail"] = verdict.detail
        claims = {
            "eat_profile": EAR_PROFILE,
            "iat": now,
            "exp": now + int(self.ear_ttl_s),
            "eat_nonce": _b64url(verdict.nonce),
            "ear.verifier-id": {"developer": "tenfold", "build": "attestation_authority 0.1"},
            "submods": {verdict.agent_id: submod},
        }
        header = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signing_input = f"{header}.{payload}".encode()
        return f"{header}.{payload}.{_b64url(self._key.sign(signing_input))}"

    def verify_ear(self, token: str) -> dict[str, Any]:
        """Check an EAR's signature and expiry; return its claims."""
        return verify_ear(token, self.public_key, now=self._clock())

    # -- certificates ------------------------------------------------------------
    def sign_certificate(
        self, verdict: Verdict, node_key: CertificatePublicKeyTypes
    ) -> x509.Certificate:
        """A short-lived certificate binding ``node_key`` to the agent's verified state."""
        if not verdict.ok:
            raise CertificateRefused(
                "not-affirmed",
                f"agent {verdict.agent_id!r} failed attestation"
                f" ({verdict.reason.value if verdict.reason else '?'})",
            )
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        serial = x509.random_serial_number()
        state = verdict.pcr_digest + struct.pack(">I", verdict.reset_count)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, verdict.agent_id)]))
            .issuer_name(self._issuer)
            .public_key(node_key)
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(seconds=30))
            .not_valid_after(now + dt.timedelta(seconds=self.cert_ttl_s))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(AGENT_URI_PREFIX + verdict.agent_id)]
                ),
                critical=False,
            )
            .add_extension(x509.UnrecognizedExtension(ATTESTED_STATE_OID, state), critical=False)
            .sign(self._key, None)
        )
        self._issued.setdefault(verdict.agent_id, set()).add(serial)
        return cert

    def verify_certificate(self, cert: x509.Certificate | bytes) -> CertificateInfo:
        """For relying parties: signature, validity window and revocation; raises if refused."""
        return verify_certificate(cert, self.public_key, now=self._clock(), revoked=self._revoked)

    # -- revocation --------------------------------------------------------------
    def revoke(self, agent_id: str, reason: str = "") -> int:
        """Revoke every certificate issued to ``agent_id``; returns how many."""
        serials = self._issued.pop(agent_id, set())
        self._revoked |= serials
        if serials:
            logger.warning(
                "agent %s: %d certificate(s) revoked: %s", agent_id, len(serials), reason or "?"
            )
        return len(serials)

    def observe(self, verdict: Verdict) -> int:
        """Feed a later verdict: a refusal revokes the agent's certificates."""
        if verdict.ok:
            return 0
        return self.revoke(verdict.agent_id, verdict.reason.value if verdict.reason else "")

    @property
    def revoked(self) -> frozenset[int]:
        return frozenset(self._revoked)


def verify_ear(
    token: str, public_key: ed25519.Ed25519PublicKey, *, now: float | None = None
) -> dict[str, Any]:
    """Verify an EAR JWT (EdDSA) and its ``exp``; raises :class:`CertificateRefused`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise CertificateRefused("malformed", "an EAR is three base64url parts")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
        signature = _unb64url(parts[2])
    except ValueError:
        raise CertificateRefused("malformed", "EAR parts are not base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise CertificateRefused("bad-signature", "EAR is not signed with EdDSA")
    try:
        verify_ed25519(_raw(public_key), f"{parts[0]}.{parts[1]}".encode(), signature)
    except CryptoError:
        raise CertificateRefused("bad-signature", "EAR signature does not verify") from None
    if not isinstance(claims, dict):
        raise CertificateRefused("malformed", "EAR claims are not an object")
    now = time.time() if now is None else now
    if float(claims.get("exp", 0)) <= now:
        raise CertificateRefused("expired", f"EAR expired at {claims.get('exp')}")
    return claims


def verify_certificate(
    cert: x509.Certificate | bytes,
    issuer_key: ed25519.Ed25519PublicKey,
    *,
    now: float | None = None,
    revoked: frozenset[int] | set[int] = frozenset(),
) -> CertificateInfo:
    """Check a node certificate against the authority's key; raises :class:`CertificateRefused`."""
    if isinstance(cert, bytes):
        try:
            cert = (
                x509.load_pem_x509_certificate(cert)
                if cert.startswith(b"-----")
                else x509.load_der_x509_certificate(cert)
            )
        except ValueError:
            raise CertificateRefused("malformed", "not a DER or PEM certificate") from None
    try:
        # libsodium (tenfold.core.crypto) verifies Ed25519 about twice as fast as OpenSSL here.
        verify_ed25519(_raw(issuer_key), cert.tbs_certificate_bytes, cert.signature)
    except CryptoError:
        raise CertificateRefused("bad-signature", "not signed by this authority") from None
    now = time.time() if now is None else now
    not_before = cert.not_valid_before_utc.timestamp()
    not_after = cert.not_valid_after_utc.timestamp()
    if now < not_before:
        raise CertificateRefused("not-yet-valid", f"valid from {cert.not_valid_before_utc}")
    if now >= not_after:
        raise CertificateRefused("expired", f"expired at {cert.not_valid_after_utc}")
    if cert.serial_number in revoked:
        raise CertificateRefused("revoked", f"serial {cert.serial_number:x} is revoked")
    try:
        state = cert.extensions.get_extension_for_oid(ATTESTED_STATE_OID).value
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise CertificateRefused("malformed", f"missing extension: {exc}") from None
    raw = state.value if isinstance(state, x509.UnrecognizedExtension) else b""
    uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier)]
    agents = [u[len(AGENT_URI_PREFIX) :] for u in uris if u.startswith(AGENT_URI_PREFIX)]
    if len(raw) < 4 or not agents:
        raise CertificateRefused("malformed", "attested-state or agent name missing")
    return CertificateInfo(
        agents[0], cert.serial_number, not_after, raw[:-4], struct.unpack(">I", raw[-4:])[0]
    )


def _raw(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_pem(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
