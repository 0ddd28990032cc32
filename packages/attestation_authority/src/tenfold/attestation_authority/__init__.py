"""Universal Attestation Authority: TPM remote attestation with signed attestation results.

The RATS roles (RFC 9334): an :class:`Agent` (attester) quotes its TPM; the
:class:`Registrar` binds the agent's AK to an accepted EK; the :class:`Verifier`
issues one-time nonces and checks quotes against reference values
(:func:`parse_policy`); the :class:`Authority` turns verdicts into EAR tokens
and short-lived X.509 certificates that relying parties check with
:func:`verify_certificate`.
"""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.attestation_authority import errors as errors
    from tenfold.attestation_authority._agent import Agent as Agent
    from tenfold.attestation_authority._authority import Authority as Authority
    from tenfold.attestation_authority._authority import CertificateInfo as CertificateInfo
    from tenfold.attestation_authority._authority import verify_certificate as verify_certificate
    from tenfold.attestation_authority._authority import verify_ear as verify_ear
    from tenfold.attestation_authority._eventlog import Event as Event
    from tenfold.attestation_authority._eventlog import encode_event_log as encode_event_log
    from tenfold.attestation_authority._eventlog import parse_event_log as parse_event_log
    from tenfold.attestation_authority._eventlog import replay_event_log as replay_event_log
    from tenfold.attestation_authority._evidence import Evidence as Evidence
    from tenfold.attestation_authority._ima import ImaAllowlist as ImaAllowlist
    from tenfold.attestation_authority._ima import ImaEntry as ImaEntry
    from tenfold.attestation_authority._ima import parse_ima_list as parse_ima_list
    from tenfold.attestation_authority._nonce import NonceStore as NonceStore
    from tenfold.attestation_authority._policy import Policy as Policy
    from tenfold.attestation_authority._policy import parse_policy as parse_policy
    from tenfold.attestation_authority._registrar import Binding as Binding
    from tenfold.attestation_authority._registrar import Challenge as Challenge
    from tenfold.attestation_authority._registrar import Registrar as Registrar
    from tenfold.attestation_authority._structs import PcrSelection as PcrSelection
    from tenfold.attestation_authority._verifier import Reason as Reason
    from tenfold.attestation_authority._verifier import Verdict as Verdict
    from tenfold.attestation_authority._verifier import Verifier as Verifier
    from tenfold.attestation_authority.errors import (
        AttestationAuthorityError as AttestationAuthorityError,
    )

__all__ = [
    "Agent",
    "AttestationAuthorityError",
    "Authority",
    "Binding",
    "CertificateInfo",
    "Challenge",
    "Event",
    "Evidence",
    "ImaAllowlist",
    "ImaEntry",
    "NonceStore",
    "PcrSelection",
    "Policy",
    "Reason",
    "Registrar",
    "Verdict",
    "Verifier",
    "encode_event_log",
    "errors",
    "parse_event_log",
    "parse_ima_list",
    "parse_policy",
    "replay_event_log",
    "verify_certificate",
    "verify_ear",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._agent": ["Agent"],
        "._authority": ["Authority", "CertificateInfo", "verify_certificate", "verify_ear"],
        "._eventlog": ["Event", "encode_event_log", "parse_event_log", "replay_event_log"],
        "._evidence": ["Evidence"],
        "._ima": ["ImaAllowlist", "ImaEntry", "parse_ima_list"],
        "._nonce": ["NonceStore"],
        "._policy": ["Policy", "parse_policy"],
        "._registrar": ["Binding", "Challenge", "Registrar"],
        "._structs": ["PcrSelection"],
        "._verifier": ["Reason", "Verdict", "Verifier"],
        ".errors": ["AttestationAuthorityError", "errors"],
    },
    __all__,
)
