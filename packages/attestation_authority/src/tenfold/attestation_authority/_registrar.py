"""The registrar: binds an agent's AK to an accepted EK with MakeCredential / ActivateCredential.

An EK is accepted when the SHA-256 of its ``TPM2B_PUBLIC`` is in the allowlist,
or when its EK certificate chains (through intermediates) to a trusted,
self-signed manufacturer root and carries the same public key. The registrar then encrypts a random secret to the EK, bound
to the AK's name (TPM 2.0 Part 1, 24: credential protection); only the TPM that
holds both keys can recover it with ActivateCredential. A returned secret that
matches moves the binding into the cache that the verifier reads on every quote
(a dict lookup: an uncached lookup per check is what collapses other verifiers).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from tenfold.attestation_authority._structs import TPM_ALG_NULL, PublicKey, parse_public
from tenfold.attestation_authority.errors import MalformedStructure, RegistrationError

logger = logging.getLogger("tenfold.attestation_authority.registrar")

# TPMA_OBJECT bits (TPM 2.0 Part 2, 8.3.2).
FIXED_TPM = 1 << 1
FIXED_PARENT = 1 << 4
SENSITIVE_DATA_ORIGIN = 1 << 5
RESTRICTED = 1 << 16
DECRYPT = 1 << 17
SIGN_ENCRYPT = 1 << 18
_AK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN_ENCRYPT
SECRET_BYTES = 32
_MAX_CHAIN = 4  # EK certificate -> intermediates -> root


def ek_hash(ek_public: bytes) -> str:
    """The allowlist key of an EK: SHA-256 of its marshalled ``TPM2B_PUBLIC``, hex."""
    return hashlib.sha256(ek_public).hexdigest()


@dataclass(frozen=True, slots=True)
class Challenge:
    """MakeCredential output for the agent: ``TPM2B_ID_OBJECT`` and ``TPM2B_ENCRYPTED_SECRET``."""

    credential_blob: bytes
    encrypted_secret: bytes


@dataclass(frozen=True, slots=True)
class Binding:
    """An AK proven resident in the same TPM as an accepted EK."""

    agent_id: str
    ek_hash: str
    ek_public: bytes
    ak_public: bytes
    ak: PublicKey


@dataclass(frozen=True, slots=True)
class _Pending:
    secret: bytes
    ek_public: bytes
    ak_public: bytes
    ak: PublicKey


def check_ak_attributes(ak: PublicKey) -> None:
    """Refuse an AK that could sign arbitrary data (only a restricted TPM-resident signer may quote)."""
    missing = _AK_REQUIRED & ~ak.attributes
    if missing or ak.attributes & DECRYPT:
        raise RegistrationError(
            f"AK attributes 0x{ak.attributes:08x} are not a restricted, fixedTPM signing key"
        )
    if ak.sign_scheme == TPM_ALG_NULL:
        raise RegistrationError(
            "AK has no signing scheme; a quote's scheme must be fixed by the key"
        )


class Enrollee(Protocol):
    """What :meth:`Registrar.enroll` needs of an agent: its public areas and its TPM."""

    ek_public: bytes
    ak_public: bytes

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential: the secret, recoverable only by the TPM holding the EK."""
        ...


class Registrar:
    """Accepts EKs, challenges AKs, and caches the resulting bindings.

    ``ek_ca_certificates`` holds the manufacturers' roots (self-signed) and any
    intermediates between them and the EK certificates.
    """

    def __init__(
        self,
        *,
        ek_allowlist: Iterable[str] = (),
        ek_ca_certificates: Iterable[x509.Certificate] = (),
    ) -> None:
        self._allow = {h.lower() for h in ek_allowlist}
        self._cas = list(ek_ca_certificates)
        self._pending: dict[str, _Pending] = {}
        self._bindings: dict[str, Binding] = {}

    def allow_ek(self, ek_public: bytes) -> str:
        """Add an EK to the allowlist; returns its hash."""
        digest = ek_hash(ek_public)
        self._allow.add(digest)
        return digest

    def _chains_to_root(self, cert: x509.Certificate) -> bool:
        """Walk issuers up to a self-signed trusted root (intermediates from the same CA set).

        A manufacturer's EK certificates are usually issued by an intermediate under its
        root; the walk is bounded so a loop of cross-signed certificates cannot hang it.
        """
        for _ in range(_MAX_CHAIN):
            for ca in self._cas:
                if ca.subject != cert.issuer:
                    continue
                try:
                    cert.verify_directly_issued_by(ca)
                except (InvalidSignature, ValueError, TypeError):
                    continue
                if ca.subject == ca.issuer:
                    return True
                cert = ca
                break
            else:
                return False
        return False

    def _accept_ek(self, ek_public: bytes, ek_certificate: bytes | None) -> None:
        if ek_hash(ek_public) in self._allow:
            return
        if ek_certificate is None or not self._cas:
            raise RegistrationError(f"EK {ek_hash(ek_public)[:16]}... is not in the allowlist")
        try:
            cert = x509.load_der_x509_certificate(ek_certificate)
        except ValueError:
            try:
                cert = x509.load_pem_x509_certificate(ek_certificate)
            except ValueError:
                raise RegistrationError("EK certificate is neither DER nor PEM") from None
        if not self._chains_to_root(cert):
            raise RegistrationError("EK certificate is not issued by a trusted manufacturer CA")
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        try:
            ek_key = parse_public(ek_public).key
        except MalformedStructure as exc:
            raise RegistrationError(f"EK public area: {exc}") from None
        if cert.public_key().public_bytes(der, spki) != ek_key.public_bytes(der, spki):
            raise RegistrationError("EK certificate does not carry this EK's public key")

    def register(
        self,
        agent_id: str,
        ek_public: bytes,
        ak_public: bytes,
        ek_certificate: bytes | None = None,
    ) -> Challenge:
        """Accept the EK, check the AK, and return a credential only that TPM can activate."""
        from tpm2_pytss.types import TPM2B_NAME, TPM2B_PUBLIC
        from tpm2_pytss.utils import make_credential

        self._accept_ek(ek_public, ek_certificate)
        try:
            ak = parse_public(ak_public)
        except MalformedStructure as exc:
            raise RegistrationError(f"AK public area: {exc}") from None
        check_ak_attributes(ak)
        secret = os.urandom(SECRET_BYTES)
        try:
            ek_area, _ = TPM2B_PUBLIC.unmarshal(ek_public)
            blob, encrypted = make_credential(ek_area, secret, TPM2B_NAME(ak.name))
        except Exception as exc:  # tpm2-pytss raises ValueError/TypeError/TSS2_Exception
            raise RegistrationError(f"MakeCredential failed for this EK: {exc}") from None
        self._pending[agent_id] = _Pending(secret, ek_public, ak_public, ak)
        logger.info(
            "agent %s: EK %s accepted, credential issued", agent_id, ek_hash(ek_public)[:16]
        )
        return Challenge(blob.marshal(), encrypted.marshal())

    def activate(self, agent_id: str, secret: bytes) -> Binding:
        """Finish registration: the secret the agent's TPM recovered must match, once."""
        pending = self._pending.pop(agent_id, None)
        if pending is None:
            raise RegistrationError(f"no registration in progress for agent {agent_id!r}")
        if not hmac.compare_digest(secret, pending.secret):
            logger.warning("agent %s: credential activation returned the wrong secret", agent_id)
            raise RegistrationError(f"agent {agent_id!r}: AK is not bound to the EK")
        binding = Binding(
            agent_id, ek_hash(pending.ek_public), pending.ek_public, pending.ak_public, pending.ak
        )
        self._bindings[agent_id] = binding
        logger.info("agent %s: AK bound to EK %s", agent_id, binding.ek_hash[:16])
        return binding

    def enroll(self, agent: Enrollee, agent_id: str) -> Binding:
        """Both ends of enrollment in one process (tests, the bench): allow the agent's EK,
        register it, and activate the credential with the agent's own TPM."""
        self.allow_ek(agent.ek_public)
        challenge = self.register(agent_id, agent.ek_public, agent.ak_public)
        secret = agent.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
        return self.activate(agent_id, secret)

    def ak_for(self, agent_id: str) -> PublicKey | None:
        """The AK bound for ``agent_id``, from the cache; ``None`` when not bound."""
        binding = self._bindings.get(agent_id)
        return None if binding is None else binding.ak

    def binding(self, agent_id: str) -> Binding | None:
        return self._bindings.get(agent_id)

    def unbind(self, agent_id: str) -> None:
        """Forget an agent's binding (decommissioned, or its EK withdrawn)."""
        self._bindings.pop(agent_id, None)

    def __len__(self) -> int:
        return len(self._bindings)
