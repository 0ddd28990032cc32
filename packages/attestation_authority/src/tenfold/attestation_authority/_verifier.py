"""The verifier: quote verification against a bound AK, fresh nonces and reference values.

``verify_quote`` runs every check in a fixed order and stops at the first that
fails, returning a :class:`Verdict` whose ``reason`` names it:

1. structure: TPMS_ATTEST parses exactly (truncated / oversized refused);
2. magic is TPM_GENERATED and the type is a quote;
3. the agent has an AK bound to an accepted EK (registrar cache);
4. the signature verifies with that AK, with the AK's own scheme and hash;
5. extraData is a nonce this verifier issued to this agent, unexpired, unused;
   (after 4, so a forged quote cannot burn a genuine agent's nonce);
6. the PCR values hash to the signed pcrDigest over the signed selection;
7. the selection is exactly the policy's (bank and indices);
8. resetCount / restartCount / clock never go backwards for the agent;
9. every PCR holds an allowed reference value;
10. the event log replays to the quoted PCRs the policy marks ``replay``.

The per-agent clock state is updated only by a quote that passed 1-8, that is
by genuine, fresh TPM output.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tenfold.attestation_authority._eventlog import parse_event_log, replay
from tenfold.attestation_authority._evidence import Evidence
from tenfold.attestation_authority._ima import (
    ImaAllowlist,
    check_template_hashes,
    parse_ima_list,
    replay_ima,
)
from tenfold.attestation_authority._nonce import NonceStatus, NonceStore
from tenfold.attestation_authority._policy import Expect, Policy
from tenfold.attestation_authority._structs import (
    BANK_NAMES,
    HASH_CONSTRUCTORS,
    TPM_ALG_ECC,
    TPM_ALG_ECDSA,
    TPM_ALG_NULL,
    TPM_ALG_RSAPSS,
    TPM_ALG_RSASSA,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    PublicKey,
    decode_tools_pcrs,
    hash_name,
    parse_attest,
    parse_signature,
)
from tenfold.attestation_authority.errors import MalformedStructure, QuoteRefused

logger = logging.getLogger("tenfold.attestation_authority.verifier")


class Reason(enum.Enum):
    """Why a quote was refused; the value is the stable name used in results and logs."""

    ATTEST_MALFORMED = "attest-malformed"
    ATTEST_OVERSIZED = "attest-oversized"
    BAD_MAGIC = "bad-magic"
    NOT_A_QUOTE = "not-a-quote"
    AK_NOT_BOUND = "ak-not-bound"
    SIGNATURE_INVALID = "signature-invalid"
    NONCE_UNKNOWN = "nonce-unknown"
    NONCE_EXPIRED = "nonce-expired"
    NONCE_REPLAYED = "nonce-replayed"
    NONCE_OTHER_AGENT = "nonce-other-agent"
    NONCE_MISMATCH = "nonce-mismatch"
    PCR_VALUES_MALFORMED = "pcr-values-malformed"
    PCR_DIGEST_MISMATCH = "pcr-digest-mismatch"
    PCR_SELECTION = "pcr-selection"
    RESET_COUNT_BACKWARDS = "reset-count-backwards"
    CLOCK_BACKWARDS = "clock-backwards"
    CLOCK_UNSAFE = "clock-unsafe"
    POLICY_VIOLATION = "policy-violation"
    EVENT_LOG_MISSING = "event-log-missing"
    EVENT_LOG_MALFORMED = "event-log-malformed"
    EVENT_LOG_MISMATCH = "event-log-mismatch"
    IMA_LOG_MISSING = "ima-log-missing"
    IMA_LOG_MALFORMED = "ima-log-malformed"
    IMA_LOG_MISMATCH = "ima-log-mismatch"
    IMA_NOT_ALLOWED = "ima-not-allowed"
    AGENT_UNREACHABLE = "agent-unreachable"


_NONCE_REASONS: Mapping[NonceStatus, Reason] = {
    NonceStatus.UNKNOWN: Reason.NONCE_UNKNOWN,
    NonceStatus.EXPIRED: Reason.NONCE_EXPIRED,
    NonceStatus.REPLAYED: Reason.NONCE_REPLAYED,
    NonceStatus.OTHER_AGENT: Reason.NONCE_OTHER_AGENT,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one quote verification: ``ok`` or the ``reason`` it was refused."""

    agent_id: str
    ok: bool
    reason: Reason | None = None
    detail: str = ""
    pcrs: Mapping[int, Mapping[int, bytes]] = field(default_factory=dict)
    pcr_digest: bytes = b""
    reset_count: int = 0
    restart_count: int = 0
    clock: int = 0
    nonce: bytes = b""

    def raise_for_refusal(self) -> Verdict:
        """Return self if ok; raise :class:`QuoteRefused` naming the reason otherwise."""
        if not self.ok:
            raise QuoteRefused(self.reason.value if self.reason else "refused", self.detail)
        return self


class AkDirectory(Protocol):
    """Where the verifier finds an agent's bound AK (the registrar's binding cache)."""

    def ak_for(self, agent_id: str) -> PublicKey | None: ...


@dataclass(frozen=True, slots=True)
class _ImaProgress:
    """How far an agent's IMA list is verified: entries checked and PCR values after them."""

    reset_count: int
    entries: int
    values: Mapping[tuple[int, int], bytes]


@dataclass(frozen=True, slots=True)
class _ClockState:
    reset_count: int
    restart_count: int
    clock: int


_HASHES: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


_PKCS1 = padding.PKCS1v15()
# Hash and ECDSA parameter objects are immutable: built once, not per quote.
_ALGORITHMS: Mapping[int, hashes.HashAlgorithm] = {
    alg: _HASHES[hash_name(alg)]() for alg in (0x0004, 0x000B, 0x000C, 0x000D)
}
_ECDSA: Mapping[int, ec.ECDSA] = {alg: ec.ECDSA(h) for alg, h in _ALGORITHMS.items()}


def verify_signature(ak: PublicKey, signature: bytes, message: bytes) -> str | None:
    """Check a TPMT_SIGNATURE over ``message`` with ``ak``; ``None`` if valid, else why not."""
    try:
        sig = parse_signature(signature)
    except MalformedStructure as exc:
        return str(exc)
    if ak.sign_scheme not in (TPM_ALG_NULL, sig.scheme):
        return f"scheme 0x{sig.scheme:04x} is not the AK's 0x{ak.sign_scheme:04x}"
    if ak.sign_hash not in (TPM_ALG_NULL, sig.hash_alg):
        return f"hash 0x{sig.hash_alg:04x} is not the AK's 0x{ak.sign_hash:04x}"
    algorithm = _ALGORITHMS.get(sig.hash_alg)
    if algorithm is None:
        return f"unsupported hash algorithm 0x{sig.hash_alg:04x}"
    key = ak.key
    try:
        if ak.key_type == TPM_ALG_ECC:
            if sig.scheme != TPM_ALG_ECDSA:
                return f"scheme 0x{sig.scheme:04x} does not fit an ECC key"
            cast(ec.EllipticCurvePublicKey, key).verify(sig.value, message, _ECDSA[sig.hash_alg])
        elif sig.scheme == TPM_ALG_RSASSA:
            cast(rsa.RSAPublicKey, key).verify(sig.value, message, _PKCS1, algorithm)
        elif sig.scheme == TPM_ALG_RSAPSS:
            pss = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
            cast(rsa.RSAPublicKey, key).verify(sig.value, message, pss, algorithm)
        else:
            return f"scheme 0x{sig.scheme:04x} does not fit an RSA key"
    except InvalidSignature:
        return "signature does not verify with the bound AK"
    except ValueError as exc:  # e.g. a malformed DER signature
        return f"signature is malformed: {exc}"
    return None


class Verifier:
    """Verifies quotes from many agents; issues their nonces and keeps their clock state.

    Thread-safe: nonce issue and verification take one lock (the nonce store and the
    per-agent clock and IMA state change together), so HTTP handlers and poller threads
    may share a verifier.
    """

    def __init__(
        self,
        directory: AkDirectory,
        policy: Policy | None = None,
        *,
        nonce_ttl_s: float = 30.0,
        nonces: NonceStore | None = None,
        ima_allowlist: ImaAllowlist | None = None,
    ) -> None:
        self.directory = directory
        self.ima_allowlist = ima_allowlist
        self._ima: dict[str, _ImaProgress] = {}
        self._lock = threading.Lock()
        self.default_policy = policy or Policy({})
        self.nonces = nonces or NonceStore(nonce_ttl_s)
        self._policies: dict[str, Policy] = {}
        self._clocks: dict[str, _ClockState] = {}

    def set_policy(self, agent_id: str, policy: Policy) -> None:
        """Use ``policy`` for ``agent_id`` instead of the default."""
        self._policies[agent_id] = policy

    def policy_for(self, agent_id: str) -> Policy:
        return self._policies.get(agent_id, self.default_policy)

    def generate_nonce(self, agent_id: str = "") -> bytes:
        """A fresh one-time nonce for ``agent_id`` (valid ``nonce_ttl_s`` seconds)."""
        with self._lock:
            return self.nonces.generate_nonce(agent_id)

    def forget(self, agent_id: str) -> None:
        """Drop the agent's clock and IMA state (after re-registration, for instance)."""
        with self._lock:
            self._clocks.pop(agent_id, None)
            self._ima.pop(agent_id, None)

    def verify_quote(
        self, agent_id: str, evidence: Evidence, *, expected_nonce: bytes | None = None
    ) -> Verdict:
        """Run every check on ``evidence`` from ``agent_id``; the verdict names the first failure.

        ``expected_nonce`` replaces the nonce store for callers that keep their own
        freshness (checking a recorded quote); by default the nonce must be one this
        verifier issued, and it is spent.
        """
        with self._lock:
            verdict = self._verify(agent_id, evidence, expected_nonce)
        if not verdict.ok and verdict.reason is not None:
            logger.warning(
                "agent %s: quote refused (%s): %s", agent_id, verdict.reason.value, verdict.detail
            )
        return verdict

    def _verify(self, agent_id: str, evidence: Evidence, expected_nonce: bytes | None) -> Verdict:
        def refuse(reason: Reason, detail: str) -> Verdict:
            return Verdict(agent_id, False, reason, detail)

        try:
            attest = parse_attest(evidence.attest)
        except MalformedStructure as exc:
            reason = Reason.ATTEST_OVERSIZED if exc.oversized else Reason.ATTEST_MALFORMED
            return refuse(reason, str(exc))
        if attest.magic != TPM_GENERATED_VALUE:
            return refuse(Reason.BAD_MAGIC, f"magic 0x{attest.magic:08x} is not TPM_GENERATED")
        if attest.type != TPM_ST_ATTEST_QUOTE:
            return refuse(Reason.NOT_A_QUOTE, f"attestation type 0x{attest.type:04x}")

        ak = self.directory.ak_for(agent_id)
        if ak is None:
            return refuse(Reason.AK_NOT_BOUND, f"no AK bound to an accepted EK for {agent_id!r}")
        problem = verify_signature(ak, evidence.signature, evidence.attest)
        if problem is not None:
            return refuse(Reason.SIGNATURE_INVALID, problem)

        nonce = attest.extra_data
        if expected_nonce is not None:
            if nonce != expected_nonce:
                return refuse(Reason.NONCE_MISMATCH, "extraData is not the expected nonce")
        else:
            status = self.nonces.consume(nonce, agent_id)
            if status is not NonceStatus.FRESH:
                return refuse(_NONCE_REASONS[status], f"nonce {nonce.hex()} is {status.value[6:]}")

        try:
            selections, values = decode_tools_pcrs(evidence.pcrs)
        except MalformedStructure as exc:
            return refuse(Reason.PCR_VALUES_MALFORMED, str(exc))
        if selections != attest.selections:
            return refuse(
                Reason.PCR_VALUES_MALFORMED, "PCR values do not follow the signed selection"
            )
        # The registrar only binds AKs with a fixed scheme, so sign_hash names the quote's hash.
        construct = HASH_CONSTRUCTORS.get(ak.sign_hash)
        if construct is None:
            return refuse(Reason.SIGNATURE_INVALID, f"AK hash 0x{ak.sign_hash:04x} unsupported")
        if construct(b"".join(values)).digest() != attest.pcr_digest:
            return refuse(Reason.PCR_DIGEST_MISMATCH, "PCR values do not hash to the signed digest")
        pcrs: dict[int, dict[int, bytes]] = {}
        it = iter(values)
        try:
            for sel in selections:
                bank_values = pcrs.setdefault(sel.bank, {})
                for index in sel.indices:
                    bank_values[index] = next(it)
        except StopIteration:
            return refuse(Reason.PCR_VALUES_MALFORMED, "fewer PCR values than selected")

        policy = self.policy_for(agent_id)
        if policy.rules and selections != policy.selection:
            return refuse(
                Reason.PCR_SELECTION,
                f"quoted {_describe(selections)}, policy asks {_describe(policy.selection)}",
            )

        previous = self._clocks.get(agent_id)
        if not attest.safe:
            return refuse(Reason.CLOCK_UNSAFE, "TPM clock safe flag is clear")
        if previous is not None:
            if attest.reset_count < previous.reset_count:
                return refuse(
                    Reason.RESET_COUNT_BACKWARDS,
                    f"resetCount {attest.reset_count} < {previous.reset_count} seen before",
                )
            if attest.reset_count == previous.reset_count:
                if attest.restart_count < previous.restart_count:
                    return refuse(
                        Reason.RESET_COUNT_BACKWARDS,
                        f"restartCount {attest.restart_count} < {previous.restart_count}",
                    )
                if attest.clock < previous.clock:
                    return refuse(
                        Reason.CLOCK_BACKWARDS,
                        f"clock {attest.clock} < {previous.clock} seen before",
                    )
        self._clocks[agent_id] = _ClockState(
            attest.reset_count,
            attest.restart_count,
            max(attest.clock, getattr(previous, "clock", 0)),
        )

        replayed: dict[int, dict[int, bytes]] | None = None
        ima: _ImaProgress | None = None
        for (bank, index), rule in policy.rules.items():
            value = pcrs[bank][index]
            if rule is Expect.ANY:
                continue
            if rule is Expect.IMA:
                outcome = self._check_ima(
                    agent_id, evidence, attest.reset_count, bank, index, value, ima
                )
                if isinstance(outcome, Verdict):
                    return outcome
                ima = outcome
                continue
            if rule is Expect.REPLAY:
                if replayed is None:
                    if evidence.event_log is None:
                        return refuse(Reason.EVENT_LOG_MISSING, "policy asks replay, no event log")
                    try:
                        _, events = parse_event_log(evidence.event_log)
                        replayed = {b: replay(events, b) for b in pcrs}
                    except MalformedStructure as exc:
                        return refuse(Reason.EVENT_LOG_MALFORMED, str(exc))
                expected = replayed[bank].get(index, bytes(len(value)))
                if expected != value:
                    return refuse(
                        Reason.EVENT_LOG_MISMATCH,
                        f"event log replays {BANK_NAMES[bank]}:{index} to {expected.hex()},"
                        f" quoted {value.hex()}",
                    )
            elif value not in rule:
                return refuse(
                    Reason.POLICY_VIOLATION,
                    f"{BANK_NAMES[bank]}:{index} = {value.hex()} is not a reference value",
                )

        if ima is not None:
            self._ima[agent_id] = ima
        return Verdict(
            agent_id,
            True,
            pcrs=pcrs,
            pcr_digest=attest.pcr_digest,
            reset_count=attest.reset_count,
            restart_count=attest.restart_count,
            clock=attest.clock,
            nonce=nonce,
        )

    def _check_ima(
        self,
        agent_id: str,
        evidence: Evidence,
        reset_count: int,
        bank: int,
        index: int,
        quoted: bytes,
        progress: _ImaProgress | None,
    ) -> Verdict | _ImaProgress:
        """Replay the IMA list into ``bank:index`` and check new entries against the allowlist.

        Only entries after the last verified position are replayed and checked (from the
        PCR value recorded there), unless the TPM was reset or the list got shorter: the
        quoted PCR proves the new entries extend exactly what was verified before.
        """

        def refuse(reason: Reason, detail: str) -> Verdict:
            return Verdict(agent_id, False, reason, detail)

        if evidence.ima_log is None:
            return refuse(Reason.IMA_LOG_MISSING, "policy asks IMA, no IMA measurement list")
        try:
            entries = parse_ima_list(evidence.ima_log)
        except MalformedStructure as exc:
            return refuse(Reason.IMA_LOG_MALFORMED, str(exc))
        entries = [e for e in entries if e.pcr == index]
        before = progress or self._ima.get(agent_id)
        skip, start = 0, None
        if (
            before is not None
            and before.reset_count == reset_count
            and before.entries <= len(entries)
            and (bank, index) in before.values
        ):
            skip, start = before.entries, before.values[(bank, index)]
        new = entries[skip:]
        problem = check_template_hashes(new)
        if problem is not None:
            return refuse(Reason.IMA_LOG_MALFORMED, problem)
        expected = replay_ima(new, bank, start, pcr=index)
        if expected != quoted:
            return refuse(
                Reason.IMA_LOG_MISMATCH,
                f"IMA list replays {BANK_NAMES[bank]}:{index} to {expected.hex()},"
                f" quoted {quoted.hex()}",
            )
        if self.ima_allowlist is not None:
            outlier = self.ima_allowlist.check(new)
            if outlier is not None:
                return refuse(Reason.IMA_NOT_ALLOWED, f"not in the allowlist: {outlier}")
        values = dict(progress.values) if progress is not None else {}
        values[(bank, index)] = quoted
        return _ImaProgress(reset_count, len(entries), values)


def _describe(selections: tuple[PcrSelection, ...]) -> str:
    """``sha256:0,1,7+sha1:10``, the tpm2-tools spelling of a selection."""
    return (
        "+".join(f"{s.bank_name}:{','.join(str(i) for i in s.indices)}" for s in selections)
        or "nothing"
    )
