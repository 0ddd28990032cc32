"""Benchmark scenarios: section 9 of the performance document, ours beside Keylime and tpm2-tools.

Quotes come from a real swtpm (not a hardware TPM: one takes about 85 ms a
quote); verification scenarios run on recorded quote files, the same bytes for
ours and the peer, with one in ten recorded quotes also sent again with its
signature tampered: both must accept every genuine quote and reject every
tampered one, inside the timed loop. Each check is timed on its own (latency
per quote). What each row is (name, unit, document row, what it counts, its
fairness sentence) is data, in ``bench.toml`` beside this module.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Subject
from tenfold.core.declare import declared_rows, dist_version
from tenfold.core.errors import BenchError

ZERO = "0" * 64
_AK_PERSISTENT = "0x81010002"
POLICY_TEXT = f"sha256:0-7 = {ZERO}\n"


@dataclass
class Recording:
    """Quotes recorded from swtpm: (agent id, nonce, evidence), the AKs and their registrar."""

    quotes: list[tuple[str, bytes, Any]]
    ak_public: dict[str, bytes]
    registrar: Any


_RECORDINGS: dict[tuple[int, int, str], Recording] = {}


def record_quotes(
    ctx: BenchContext, agents: int, per_agent: int, ak_type: str = "rsa"
) -> Recording:
    """Enroll ``agents`` real agents (one AK each on one swtpm) and record their quotes.

    Each agent goes through MakeCredential / ActivateCredential with the registrar.
    Recordings are kept for the process: every verification scenario reads the same
    bytes, and swtpm's RSA signing (about 15 ms a quote here) is paid once.
    """
    key = (agents, per_agent, ak_type)
    if key in _RECORDINGS:
        return _RECORDINGS[key]
    from tenfold.attestation_authority import Agent, Registrar, Verifier, parse_policy
    from tenfold.core.services import Swtpm

    quotes: list[tuple[str, bytes, Any]] = []
    ak_public: dict[str, bytes] = {}
    registrar = Registrar()
    policy = parse_policy(POLICY_TEXT)
    nonces = Verifier(registrar, policy)
    with Swtpm(ctx.workdir / f"swtpm-recording-{ak_type}") as tpm:
        for k in range(agents):
            agent_id = f"agent-{k:05d}"
            with Agent(tpm.tcti, ak_label=agent_id.encode(), ak_type=ak_type) as agent:
                registrar.enroll(agent, agent_id)
                ak_public[agent_id] = agent.ak_public
                for _ in range(per_agent):
                    nonce = nonces.generate_nonce(agent_id)
                    quotes.append((agent_id, nonce, agent.quote(nonce, policy.selection)))
    _RECORDINGS[key] = Recording(quotes, ak_public, registrar)
    return _RECORDINGS[key]


def _recording(ctx: BenchContext, ak_type: str = "rsa") -> Recording:
    return record_quotes(ctx, ctx.size(2, 4, 4), ctx.size(5, 50, 250), ak_type)


class SimulatedFleet:
    """An AK directory for ``size`` simulated agents, each replaying one recorded quote.

    Agent ``i`` is answered by recorded quote ``i mod len(quotes)`` and bound to the
    (genuinely registered) AK that signed it, so each check does the full work of a
    real one: nonce store, signature, PCR digest, policy, clock state per agent.
    """

    def __init__(self, recording: Recording, size: int) -> None:
        self.checks: list[tuple[str, bytes, Any]] = []
        self.ak_public: list[bytes] = []
        self._aks: dict[str, Any] = {}
        for i in range(size):
            owner, nonce, evidence = recording.quotes[i % len(recording.quotes)]
            agent_id = f"sim-{i:05d}"
            self._aks[agent_id] = recording.registrar.ak_for(owner)
            self.checks.append((agent_id, nonce, evidence))
            self.ak_public.append(recording.ak_public[owner])

    def ak_for(self, agent_id: str) -> Any:
        return self._aks.get(agent_id)


# -- verify quote ---------------------------------------------------------------------

TAMPER_EVERY = 10


def tampered(evidence: Any) -> Any:
    """The same quote with the last byte of its signature flipped: a verifier must reject it."""
    sig = bytearray(evidence.signature)
    sig[-1] ^= 0x01
    return dataclasses.replace(evidence, signature=bytes(sig))


def with_tampered(checks: Sequence[tuple[Any, ...]]) -> list[tuple[bool, tuple[Any, ...]]]:
    """Every check as (genuine, check), plus a tampered copy of one in ``TAMPER_EVERY``
    (at least one), interleaved right after its genuine original."""
    out: list[tuple[bool, tuple[Any, ...]]] = []
    for i, check in enumerate(checks):
        out.append((True, check))
        if i % TAMPER_EVERY == 0:
            *head, evidence = check
            out.append((False, (*head, tampered(evidence))))
    return out


def _verdicts(genuine: int, accepted: int, tampered_n: int, rejected: int, who: str) -> None:
    if accepted != genuine or rejected != tampered_n:
        raise BenchError(
            f"{who} accepted {accepted} of {genuine} genuine quotes and rejected "
            f"{rejected} of {tampered_n} tampered ones"
        )


def _timed_verdicts(
    work: Sequence[tuple[bool, Sequence[Any]]],
    check: Callable[..., bool],
    genuine_n: int,
    tampered_n: int,
    who: str,
) -> Outcome:
    """One timed call of a verification row: ``check(*item)`` for every (genuine, item), one at a
    time and each timed alone; every genuine quote must be accepted and every tampered one
    rejected (the row fails otherwise), and the two counts are the call's comparable result."""
    accepted = rejected = 0
    lat: list[float] = []
    clock = time.perf_counter
    for genuine, item in work:
        t0 = clock()
        ok = check(*item)
        lat.append((clock() - t0) * 1000)
        if genuine:
            accepted += ok
        else:
            rejected += not ok
    _verdicts(genuine_n, accepted, tampered_n, rejected, who)
    return Outcome(
        len(work),
        {"accepted": accepted, "tampered_rejected": rejected},
        latencies_ms=lat,
        result=(accepted, rejected),
    )


def _verify_op(ctx: BenchContext, size: int, ak_type: str = "rsa") -> Op:
    """Our full verification of ``size`` recorded quotes, each from its own (simulated) agent."""
    from tenfold.attestation_authority import Verifier, parse_policy

    fleet = SimulatedFleet(_recording(ctx, ak_type), size)
    verifier = Verifier(fleet, parse_policy(POLICY_TEXT))
    admit, verify = verifier.nonces.admit, verifier.verify_quote
    work = with_tampered(fleet.checks)
    bad = sum(1 for genuine, _ in work if not genuine)

    def check(agent_id: str, nonce: bytes, evidence: Any) -> bool:
        admit(nonce, agent_id)  # the recorded nonce becomes live again: full store check
        return bool(verify(agent_id, evidence).ok)

    return lambda: _timed_verdicts(work, check, size, bad, "ours")


def _ours_verify(ctx: BenchContext) -> Op:
    return _verify_op(ctx, len(_recording(ctx).quotes))


def _ours_verify_ecdsa(ctx: BenchContext) -> Op:
    return _verify_op(ctx, len(_recording(ctx, "ecc").quotes), "ecc")


def keylime_checker() -> tuple[str, Callable[[bytes, bytes, str, dict[str, list[str]]], bool]]:
    """Keylime's quote check: ``Tpm.check_quote`` if its imports resolve, else its core.

    The core is what ``Tpm._tpm2_checkquote`` runs (AK from TPM2B_PUBLIC, then
    ``tpm_util.checkquote``: signature, nonce, PCR digest) followed by the PCR
    allowlist comparison of ``check_pcrs``.
    """
    from cryptography.hazmat.primitives import serialization
    from keylime.tpm import tpm2_objects, tpm_util

    try:
        from keylime.common.algorithms import Hash
        from keylime.tpm.tpm_main import Tpm

        tpm = Tpm()

        def full(ak: bytes, nonce: bytes, quote: str, policy: dict[str, list[str]]) -> bool:
            failure = tpm.check_quote(None, nonce, None, quote, ak, policy, hash_alg=Hash.SHA256)
            return bool(failure.recoverable) and not failure.events

        return "Tpm.check_quote", full
    except ImportError:
        pass

    def core(ak: bytes, nonce: bytes, quote: str, policy: dict[str, list[str]]) -> bool:
        pem = tpm2_objects.pubkey_from_tpm2b_public(ak).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        parts = quote[1:].split(":")
        blobs = [base64.b64decode(p) for p in parts[:3]]
        pcrs = tpm_util.checkquote(pem, nonce, blobs[1], blobs[0], blobs[2], "sha256")
        return all(pcrs.get(int(k)) in v for k, v in policy.items())

    return "tpm_util.checkquote + PCR allowlist", core


def keylime_quote_string(evidence: Any) -> str:
    """The ``r<quote>:<sig>:<pcrs>`` form Keylime agents send."""
    return "r" + ":".join(
        base64.b64encode(b).decode() for b in (evidence.attest, evidence.signature, evidence.pcrs)
    )


def _keylime_verify(ctx: BenchContext, ak_type: str = "rsa") -> Op:
    _, check = keylime_checker()
    rec = _recording(ctx, ak_type)
    policy = {str(i): [ZERO] for i in range(8)}
    work = [
        (genuine, (rec.ak_public[a], nonce, keylime_quote_string(ev)))
        for genuine, (a, nonce, ev) in with_tampered(rec.quotes)
    ]
    bad = sum(1 for genuine, _ in work if not genuine)

    def accepts(ak: bytes, nonce: bytes, quote: str) -> bool:
        try:
            return bool(check(ak, nonce, quote, policy))
        except Exception:  # Keylime's checkquote raises on a bad signature: a rejection
            return False

    return lambda: _timed_verdicts(work, accepts, len(work) - bad, bad, "keylime")


def _keylime_verify_ecdsa(ctx: BenchContext) -> Op:
    return _keylime_verify(ctx, "ecc")


def _tpm2_tools_verify(ctx: BenchContext) -> Op:
    from cryptography.hazmat.primitives import serialization

    from tenfold.attestation_authority._structs import parse_public

    binary = shutil.which("tpm2_checkquote")
    if binary is None:
        raise BenchError("tpm2_checkquote (Debian tpm2-tools) is not installed")
    fleet = SimulatedFleet(_recording(ctx), ctx.size(5, 20, 50))
    jobs = []
    work = with_tampered(fleet.checks)
    owners = [n for n, _ in enumerate(fleet.checks) for _ in range(1 + (n % TAMPER_EVERY == 0))]
    bad = sum(1 for genuine, _ in work if not genuine)
    for k, (_, (_, nonce, evidence)) in enumerate(work):
        n = owners[k]
        folder = ctx.workdir / "tools" / str(k)
        evidence.write_files(folder)
        pem = parse_public(fleet.ak_public[n]).key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (folder / "ak.pem").write_bytes(pem)
        jobs.append(
            [binary, "-u", str(folder / "ak.pem"), "-m", str(folder / "quote.msg"),
             "-s", str(folder / "quote.sig"), "-f", str(folder / "quote.pcrs"),
             "-g", "sha256", "-q", nonce.hex()]
        )  # fmt: skip

    def check(job: list[str]) -> bool:
        return subprocess.run(job, capture_output=True, check=False).returncode == 0

    runs = [(genuine, (job,)) for (genuine, _), job in zip(work, jobs, strict=True)]
    return lambda: _timed_verdicts(runs, check, len(work) - bad, bad, "tpm2_checkquote")


def _ours_verify_sample(ctx: BenchContext) -> Op:
    return _verify_op(ctx, ctx.size(5, 20, 50))


# -- nonce, quote -----------------------------------------------------------------------


def _ours_nonce(ctx: BenchContext) -> Op:
    from tenfold.attestation_authority import NonceStore

    n = ctx.size(1000, 20_000, 1_000_000)
    # A short TTL so expiry runs inside the timed loop, as in a verifier under steady load
    # (and the store stays at a few hundred thousand live nonces, not tens of millions).
    store = NonceStore(2.0)
    generate = store.generate_nonce

    def op() -> Outcome:
        nonce = b""
        for _ in range(n):
            nonce = generate("agent")
        return Outcome(n, result=len(nonce))

    return op


def _keylime_nonce(ctx: BenchContext) -> Op:
    from keylime.tpm import tpm_util

    n = ctx.size(1000, 20_000, 1_000_000)
    make = tpm_util.random_password

    def op() -> Outcome:
        nonce = ""
        for _ in range(n):
            nonce = make(20)
        return Outcome(n, result=len(nonce))

    return op


def _ours_quote(ctx: BenchContext) -> Op:
    from tenfold.attestation_authority import Agent, parse_policy
    from tenfold.core.services import Swtpm

    tpm = ctx.enter(Swtpm(ctx.workdir / "swtpm-ours"))
    # ECDSA P-256, the same key type as the tpm2-tools side, so both pay the same TPM signing.
    agent = ctx.enter(Agent(tpm.tcti, ak_type="ecc"))
    selection = parse_policy(POLICY_TEXT).selection
    n = ctx.size(3, 50, 200)

    def op() -> int:
        for i in range(n):
            agent.quote(i.to_bytes(20, "big"), selection)
        return n

    return op


def _tools_quote(ctx: BenchContext) -> Op:
    from tenfold.core.services import Swtpm

    for tool in ("tpm2_createprimary", "tpm2_quote"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} (Debian tpm2-tools) is not installed")
    tpm = ctx.enter(Swtpm(ctx.workdir / "swtpm-tools"))
    env = {"TPM2TOOLS_TCTI": tpm.tcti, "PATH": "/usr/bin:/bin"}
    folder = ctx.workdir / "tools-quote"
    folder.mkdir(parents=True, exist_ok=True)
    attrs = "restricted|sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda"
    subprocess.run(
        ["tpm2_createprimary", "-C", "e", "-G", "ecc256:ecdsa-sha256:null", "-a", attrs,
         "-c", str(folder / "ak.ctx")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    # Without a resource manager every tool run would leave its loaded context behind: make
    # the AK persistent, as a CLI deployment does, and drop the transient copy.
    for argv in (
        ["tpm2_evictcontrol", "-C", "o", "-c", str(folder / "ak.ctx"), _AK_PERSISTENT],
        ["tpm2_flushcontext", "-t"],
    ):
        subprocess.run(argv, env=env, check=True, capture_output=True)
    n = ctx.size(3, 20, 100)

    def op() -> int:
        for i in range(n):
            subprocess.run(
                ["tpm2_quote", "-c", _AK_PERSISTENT, "-l", "sha256:0,1,2,3,4,5,6,7",
                 "-q", i.to_bytes(20, "big").hex(), "-m", str(folder / "q.msg"),
                 "-s", str(folder / "q.sig"), "-o", str(folder / "q.pcrs"), "-g", "sha256"],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
        return n

    return op


# -- certificates ------------------------------------------------------------------------


def _verdict() -> Any:
    from tenfold.attestation_authority import Verdict

    return Verdict("agent-00001", True, pcr_digest=b"\x11" * 32, reset_count=1, nonce=b"n" * 20)


def _ours_sign_cert(ctx: BenchContext) -> Op:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tenfold.attestation_authority import Authority

    authority = Authority()
    node = ec.generate_private_key(ec.SECP256R1()).public_key()
    verdict = _verdict()
    n = ctx.size(10, 200, 2000)

    def op() -> int:
        for _ in range(n):
            authority.sign_certificate(verdict, node)
        return n

    return op


def _ours_verify_cert(ctx: BenchContext) -> Op:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    from tenfold.attestation_authority import Authority

    authority = Authority()
    node = ec.generate_private_key(ec.SECP256R1()).public_key()
    n = ctx.size(10, 200, 2000)
    certs = [
        authority.sign_certificate(_verdict(), node).public_bytes(Encoding.DER) for _ in range(50)
    ]

    def op() -> int:
        for i in range(n):
            authority.verify_certificate(certs[i % 50])
        return n

    return op


# -- fleet --------------------------------------------------------------------------------


def _fleet(agents_full: int) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.attestation_authority import Verifier, parse_policy

        agents = ctx.size(10, agents_full, agents_full)
        fleet = SimulatedFleet(_recording(ctx), agents)
        verifier = Verifier(fleet, parse_policy(POLICY_TEXT))
        admit, verify = verifier.nonces.admit, verifier.verify_quote

        def op() -> Outcome:
            # One polling round: every agent's quote checked once, each check timed.
            accepted = 0
            lat: list[float] = []
            clock = time.perf_counter
            for agent_id, nonce, evidence in fleet.checks:
                t0 = clock()
                admit(nonce, agent_id)
                accepted += verify(agent_id, evidence).ok
                lat.append((clock() - t0) * 1000)
            if accepted != agents:
                raise BenchError(f"{accepted} of {agents} agents attested")
            return Outcome(agents, {"agents": agents}, latencies_ms=lat)

        return op

    return prepare


def _fleet_http(ctx: BenchContext) -> Op:
    """A polling round over mutual TLS: fresh nonces, real swtpm quotes, full verification.

    One agent server fronts one swtpm (ECDSA P-256 AK, its quickest signer); every
    simulated agent id is bound to that AK, so each check is a real HTTPS request,
    a real TPM quote over the fresh nonce, and the verifier's full checks.
    """
    from tenfold.attestation_authority import Agent, Verifier, parse_policy
    from tenfold.attestation_authority._http import Poller, agent_app, make_tls_bundle, serve
    from tenfold.attestation_authority._structs import parse_public
    from tenfold.core.services import Swtpm

    agents = ctx.size(10, 1000, 1000)
    tls = make_tls_bundle(ctx.workdir / "tls", ["agent", "verifier"])
    tpm = ctx.enter(Swtpm(ctx.workdir / "swtpm-fleet"))
    agent = ctx.enter(Agent(tpm.tcti, ak_type="ecc"))
    url = ctx.enter(serve(agent_app(agent), tls=tls["agent"]))
    ak = parse_public(agent.ak_public)

    class OneTpm:
        def ak_for(self, agent_id: str) -> Any:
            return ak

    verifier = Verifier(OneTpm(), parse_policy(POLICY_TEXT))
    poller = Poller(verifier, period_s=10.0, tls=tls["verifier"], workers=8)
    ctx.callback(poller.close)
    for i in range(agents):
        poller.enroll(f"node-{i:05d}", url, now=0.0)
    clock = [0.0]

    def op() -> Outcome:
        clock[0] += 10.0  # one period later: every agent is due
        verdicts = poller.poll_due(now=clock[0])
        accepted = sum(v.ok for v in verdicts)
        if accepted != agents:
            bad = next(v for v in verdicts if not v.ok)
            raise BenchError(f"{accepted} of {agents} agents attested; first refusal: {bad}")
        return Outcome(agents, {"agents": agents})

    return op


# -- cryptographic operations -------------------------------------------------------------


def _crypto(kind: str, peer: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        n = ctx.size(100, 2_000, 100_000)
        data = ctx.rng.randbytes(1024)
        fn: Callable[[], object]
        seed = b"\x09" * 32  # the same key on both sides: Ed25519 signatures are deterministic
        if peer:
            from cryptography.hazmat.primitives.asymmetric import ed25519

            key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            pub = key.public_key()
            sig = key.sign(data)
            fn = (lambda: key.sign(data)) if kind == "sign" else (lambda: pub.verify(sig, data))
        else:
            from tenfold.core import crypto

            if kind in ("sign", "verify"):
                k = crypto.Ed25519Key.from_seed(seed)
                s = k.sign(data)
                public = k.public_bytes
                if kind == "sign":
                    fn = lambda: k.sign(data)  # noqa: E731
                else:
                    fn = lambda: crypto.verify_ed25519(public, data, s)  # noqa: E731
            elif kind == "blake3":
                fn = lambda: crypto.blake3(data)  # noqa: E731
            else:
                gcm = crypto.AesGcm(crypto.AesGcm.generate_key())
                blob = gcm.encrypt(data)
                encrypt = kind == "encrypt"
                fn = (lambda: gcm.encrypt(data)) if encrypt else (lambda: gcm.decrypt(blob))

        def op() -> Outcome:
            out: object = None
            for _ in range(n):
                out = fn()
            # What the last call gave: a signature, a digest; None for verify (it raises).
            return Outcome(
                n, result=out.hex() if kind == "sign" and isinstance(out, bytes) else None
            )

        return op

    return prepare


def scenarios() -> Sequence[Scenario]:
    keylime = f"keylime {dist_version('keylime')}"
    crypto_rows = [
        ("ed25519_sign", "Ed25519 Sign", "sign", True),
        ("ed25519_verify", "Ed25519 Verify", "verify", True),
        ("blake3_1kb", "BLAKE3 Hash (1KB)", "blake3", False),
        ("aes_gcm_encrypt_1kb", "AES-GCM Encrypt (1KB)", "encrypt", False),
        ("aes_gcm_decrypt_1kb", "AES-GCM Decrypt (1KB)", "decrypt", False),
    ]
    rows = declared_rows(
        __name__,
        keylime=keylime,
        checker=keylime_label(),
        pytss=f"tpm2-pytss {dist_version('tpm2-pytss')}",
    )
    out = [*rows["attestation"], *rows["fleet"]]
    for name, row, kind, has_peer in crypto_rows:
        out.append(
            Scenario(
                name=name,
                unit="ops",
                table="Cryptographic Operations",
                row=row,
                counts="1 KiB messages" if kind != "sign" else "1 KiB messages, PyNaCl",
                ours=Subject("tenfold.core.crypto", _crypto(kind, False), sequential=True),
                peer=Subject(
                    f"cryptography {dist_version('cryptography')}",
                    _crypto(kind, True),
                    sequential=True,
                )
                if has_peer
                else None,
                fairness="both run the same operation on the same 1 KiB message with the same "
                "key, one after another",
                checks="Ed25519 is deterministic: the harness compares the last signature of each "
                "side"
                if kind == "sign"
                else "every verification must pass (a failure raises)",
            )
        )
    return out


def keylime_label() -> str:
    try:
        return keylime_checker()[0]
    except ImportError:
        return "checkquote"
