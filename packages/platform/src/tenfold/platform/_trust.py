"""Trust (``up --attested``): only attested nodes read the decision stream or append events.

Three parties, all on this machine:

* **The node** (the bouncer's process, agent ``victim``) owns a TPM (swtpm, its
  state under ``trust/victim/tpm``). It measures the files it runs into PCR 10
  as IMA would, registers its EK and AK with the engine (TPM2 credential
  activation), and every ``period_s`` pushes a fresh quote over its IMA list.
  A quote that verifies comes back with a short-lived X.509 certificate for the
  node's TLS key, issued by the attestation authority in the same request.
* **The engine** (relying party, verifier and authority): a plain loopback
  endpoint for registration and quotes (a node has no certificate yet when it
  first comes), and the ledger served with mutual TLS: a client must present a
  certificate the authority issued (or the operator's, from the platform's TLS
  CA). Each request of a node passes a gate: the node's latest verdict must
  affirm and be younger than its lease (three periods and 10 s). A failed
  verdict revokes the node's certificates, its requests are refused with 403
  from then on, and the refusal is recorded in the ledger (domain
  ``attestation``, kind ``node_refused``): once for the verdict, once for the
  first request refused after it (the cut subscription).
* **The operator** (``status``, ``replay``): a certificate from the platform's
  TLS CA, common name ``operator``, a name no node may register.

The core server names a client by its certificate's common name, which the
authority sets to the agent id; the gate therefore refuses per node (as
:meth:`Authority.revoke` revokes per agent), not per certificate serial.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.platform.errors import PlatformError

if TYPE_CHECKING:
    from tenfold.platform._platform import ReplayResult

__all__ = [
    "NODE",
    "NodeAttester",
    "TrustAnchor",
    "TrustPaths",
    "context_for",
    "explain_refusal",
    "provision",
    "remember_operator",
    "use_node",
]

NODE = "victim"
OPERATOR = "operator"
POLICY = "sha256:10 = ima\n"  # the node's IMA list must replay and hold only allowed files
_AGENT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class TrustPaths:
    """Where the trust material lives under the platform's home."""

    home: Path

    @property
    def dir(self) -> Path:
        return self.home / "trust"

    @property
    def conf(self) -> Path:
        return self.dir / "trust.json"

    @property
    def authority_key(self) -> Path:
        return self.dir / "authority.key"

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def clients_ca(self) -> Path:
        """The CAs the ledger accepts client certificates from: the authority's, the operator's."""
        return self.dir / "clients-ca.pem"

    @property
    def ek_allow(self) -> Path:
        return self.dir / "ek-allow.txt"

    def node_dir(self, node: str = NODE) -> Path:
        return self.dir / node

    def spool(self, node: str = NODE) -> Path:
        """Files dropped here are run on the node: measured into PCR 10 as IMA would."""
        return self.node_dir(node) / "exec"

    def enabled(self) -> bool:
        return self.conf.exists()

    def period_s(self) -> float:
        return float(json.loads(self.conf.read_text())["period_s"])


def node_files() -> dict[str, bytes]:
    """What the node runs, by path: the modules of the bouncer (its measured boot, in effect)."""
    import sys

    import tenfold.platform._platform as plat

    out = {}
    for mod in (plat, sys.modules[__name__]):
        path = Path(str(mod.__file__)).resolve()
        out[str(path)] = path.read_bytes()
    return out


def provision(home: Path, period_s: float) -> None:
    """The operator's step before the parts start: TLS material, the authority's key, the node's EK.

    The node's TPM is started once here to read its endorsement key, which the
    engine's registrar then accepts (the EK allowlist: swtpm has no
    manufacturer EK certificate to check instead).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tenfold.core.errors import TenfoldError
    from tenfold.core.services import Swtpm
    from tenfold.core.tls import make_tls_bundle

    if not period_s > 0 or period_s > 3600:
        raise PlatformError(f"--attest-period must be in (0, 3600] seconds, not {period_s}")
    paths = TrustPaths(home)
    paths.dir.mkdir(parents=True, exist_ok=True)
    make_tls_bundle(paths.tls_dir, ["engine", OPERATOR], ca_name="tenfold platform TLS CA")
    if not paths.authority_key.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        paths.authority_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        paths.authority_key.chmod(0o600)
    tpm_dir = paths.node_dir() / "tpm"
    try:
        with Swtpm(workdir=tpm_dir) as tpm, _agent(tpm.tcti, paths.node_dir()) as agent:
            paths.ek_allow.write_text(agent.ek_public.hex() + "\n")
            _orderly_shutdown(agent)
    except TenfoldError as exc:
        raise PlatformError(f"the node's TPM (swtpm in {tpm_dir}) did not start: {exc}") from None
    paths.conf.write_text(json.dumps({"period_s": period_s, "node": NODE}))


def _agent(tcti: str, node_dir: Path) -> Any:
    from tenfold.attestation_authority import Agent

    # The node's own logs only: the host's IMA list (readable as root) is not this TPM's.
    return Agent(
        tcti,
        boot_log_path=node_dir / "no-boot-log",
        ima_log_path=node_dir / "no-ima-log",
    )


def _orderly_shutdown(agent: Any) -> None:
    """TPM2_Shutdown before swtpm stops: otherwise the TPM's clock is no longer 'safe'
    when it starts again, and the verifier refuses every quote (clock-unsafe)."""
    from tenfold.attestation_authority import AttestationAuthorityError

    try:
        agent.shutdown()
    except AttestationAuthorityError as exc:
        print(f"node TPM: {exc}", flush=True)


# -- the operator's and the node's TLS contexts, by engine URL ----------------------------------

_OPERATOR_HOMES: dict[str, Path] = {}
_NODE: list[Callable[[], ssl.SSLContext | None]] = []


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def remember_operator(url: str, home: Path) -> None:
    """``url`` is the engine of the platform at ``home``: talk to it as its operator."""
    _OPERATOR_HOMES[_origin(url)] = home


def use_node(provider: Callable[[], ssl.SSLContext | None]) -> None:
    """This process is the node: every https request presents the node's certificate."""
    _NODE[:] = [provider]


def context_for(url: str) -> ssl.SSLContext | None:
    """The TLS context for a request to ``url`` (None for plain HTTP)."""
    if not url.startswith("https://"):
        return None
    if _NODE:
        ctx = _NODE[0]()
        if ctx is None:
            raise PlatformError(
                f"{_origin(url)}: this node holds no certificate from the attestation "
                "authority (its attestation failed or it has not attested yet): refused"
            )
        return ctx
    home = _OPERATOR_HOMES.get(_origin(url))
    if home is None:
        raise PlatformError(f"{_origin(url)}: no TLS credentials known for this engine")
    tls = TrustPaths(home).tls_dir
    return client_context(tls / f"{OPERATOR}.pem", tls / f"{OPERATOR}.key", tls / "ca.pem")


def client_context(cert: Path | None, key: Path | None, server_ca: Path) -> ssl.SSLContext:
    """Trust the engine's certificate (platform TLS CA); present ``cert`` (and ``key``) if given."""
    ctx = ssl.create_default_context(cafile=str(server_ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), None if key is None else str(key))
    return ctx


def explain_refusal(url: str, exc: BaseException) -> PlatformError | None:
    """A clear error for a TLS refusal by the engine (None when ``exc`` is something else)."""
    if not url.startswith("https://"):
        return None
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, ssl.SSLError | http.client.RemoteDisconnected | ConnectionResetError):
        return PlatformError(
            f"the ledger at {_origin(url)} refused the TLS connection: it takes only "
            "certificates the attestation authority issued to attested nodes (or the "
            f"operator's), and this client presented none it accepts ({exc})"
        )
    return None


# -- the engine: registrar, verifier, authority, and the gate ------------------------------------


@dataclass
class _Node:
    ok: bool = False
    last_ok: float = 0.0
    detail: str = "not attested yet"
    episode: int = 0  # counts refusals; each refusal's events carry it in their ids
    cut: bool = False  # a request was refused (and recorded) in this episode


class TrustAnchor:
    """The engine's side: registration, quotes, certificates, and the gate on every request."""

    def __init__(self, home: Path, led: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        from tenfold.attestation_authority import (
            Authority,
            ImaAllowlist,
            Registrar,
            Verifier,
            parse_policy,
        )
        from tenfold.core.tls import TlsFiles

        self.paths = TrustPaths(home)
        self.period_s = self.paths.period_s()
        # Generous: a loaded machine delays quotes; a failed quote needs no lease to be refused.
        self.lease_s = 3 * self.period_s + 10.0
        key = serialization.load_pem_private_key(self.paths.authority_key.read_bytes(), None)
        self.authority = Authority(
            key,  # type: ignore[arg-type]
            name="tenfold platform attestation authority",
            cert_ttl_s=max(30.0, 10 * self.period_s),
        )
        self.paths.clients_ca.write_bytes(
            self.authority.ca_certificate.public_bytes(serialization.Encoding.PEM)
            + (self.paths.tls_dir / "ca.pem").read_bytes()
        )
        self.tls = TlsFiles(
            self.paths.tls_dir / "engine.pem",
            self.paths.tls_dir / "engine.key",
            self.paths.clients_ca,
        )
        self.registrar = Registrar()
        for line in self.paths.ek_allow.read_text().split():
            self.registrar.allow_ek(bytes.fromhex(line))
        allow = "".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d in node_files().items())
        self.verifier = Verifier(
            self.registrar, parse_policy(POLICY), ima_allowlist=ImaAllowlist.from_text(allow)
        )
        self.led = led
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self.url = ""

    # -- the attestation endpoint (plain loopback: a node has no certificate at first) ------
    def routes(self) -> list[Any]:
        from tenfold.attestation_authority import Evidence
        from tenfold.core.server import HttpError, Route

        def agent(req: Any) -> str:
            name = str(req.params["agent"])
            if not _AGENT_RE.match(name) or name == OPERATOR:
                raise HttpError(400, f"agent id {name[:64]!r} is not a node name")
            return name

        def register(req: Any) -> dict[str, Any]:
            doc = req.json()
            ch = self.registrar.register(
                agent(req), _unb64(doc, "ek_public"), _unb64(doc, "ak_public")
            )
            return {
                "credential_blob": _b64(ch.credential_blob),
                "encrypted_secret": _b64(ch.encrypted_secret),
            }

        def activate(req: Any) -> dict[str, Any]:
            name = agent(req)
            binding = self.registrar.activate(name, _unb64(req.json(), "secret"))
            self.verifier.forget(name)
            return {"ek_hash": binding.ek_hash, "period_s": self.period_s}

        def nonce(req: Any) -> dict[str, Any]:
            name = agent(req)
            if self.registrar.ak_for(name) is None:
                raise HttpError(404, f"agent {name} is not registered")
            return {"nonce": self.verifier.generate_nonce(name).hex()}

        def quote(req: Any) -> dict[str, Any]:
            name = agent(req)
            doc = req.json()
            if not isinstance(doc, dict):
                raise HttpError(400, "body must be a JSON object")
            if self.registrar.ak_for(name) is None:
                raise HttpError(404, f"agent {name} is not registered")
            verdict = self.verifier.verify_quote(name, Evidence.from_json(doc.get("evidence")))
            return self.observe(verdict, doc.get("public_key"))

        return [
            Route("GET", "/attest/nodes", lambda req: self.nodes()),
            Route("POST", "/attest/{agent}/register", register),
            Route("POST", "/attest/{agent}/activate", activate),
            Route("POST", "/attest/{agent}/nonce", nonce),
            Route("POST", "/attest/{agent}/quote", quote),
        ]

    def observe(self, verdict: Any, public_key: Any) -> dict[str, Any]:
        """A node's verdict: a certificate for its key if it affirms; a refusal recorded if not."""
        from cryptography.hazmat.primitives import serialization

        from tenfold.core.server import HttpError

        name = verdict.agent_id
        refused = False
        revoked = episode = 0
        with self._lock:
            node = self._nodes.setdefault(name, _Node())
            if verdict.ok:
                node.ok, node.last_ok, node.detail = True, time.monotonic(), ""
            else:
                revoked = self.authority.observe(verdict)
                reason = verdict.reason.value if verdict.reason else "refused"
                refused = node.ok or node.episode == 0
                node.ok, node.detail = False, f"{reason}: {verdict.detail}"
                if refused:
                    node.episode += 1
                    node.cut = False
                episode = node.episode
        if refused:
            self._record(
                name,
                episode,
                "verdict",
                {
                    "reason": verdict.reason.value if verdict.reason else "refused",
                    "detail": verdict.detail[:500],
                    "certificates_revoked": revoked,
                    "refuses": "events and subscriptions",
                },
            )
        out: dict[str, Any] = {
            "ok": verdict.ok,
            "reason": verdict.reason.value if verdict.reason else None,
            "detail": verdict.detail,
            "period_s": self.period_s,
        }
        if verdict.ok and isinstance(public_key, str):
            try:
                key = serialization.load_pem_public_key(public_key.encode())
            except ValueError:
                raise HttpError(400, "public_key must be a PEM public key") from None
            cert = self.authority.sign_certificate(verdict, key)  # type: ignore[arg-type]
            out["certificate"] = cert.public_bytes(serialization.Encoding.PEM).decode()
        return out

    def _record(self, name: str, episode: int, what: str, evidence: dict[str, Any]) -> None:
        from tenfold.autoblocker_ledger import SecurityEvent

        self.led.append_batch(
            [
                SecurityEvent(
                    f"attestation:{name}:{episode}:{what.replace(' ', ':')}",
                    "attestation",
                    "node_refused",
                    name,
                    int(time.time() * 1000),
                    {"source": "attestation", "what": what, **evidence},
                )
            ]
        )

    # -- the gate --------------------------------------------------------------------------
    def admit(self, client: str, method: str, path: str) -> None:
        """Let the operator and attested nodes through; refuse (403) and record anyone else."""
        from tenfold.core.server import HttpError

        if client == OPERATOR:
            return
        now = time.monotonic()
        record = None
        with self._lock:
            node = self._nodes.get(client)
            if node is None:
                raise HttpError(403, f"node {client} has not attested")
            if node.ok and now - node.last_ok <= self.lease_s:
                return
            if node.ok:  # silent for longer than its lease: as good as a failed attestation
                node.ok = False
                node.episode += 1
                node.cut = False
                node.detail = f"no attestation for {now - node.last_ok:.1f} s"
                record = (node.episode, "lease", {"detail": node.detail})
            detail = node.detail
            if not node.cut:
                node.cut = True
                cut = (node.episode, f"{method} {path}", {"detail": detail})
            else:
                cut = None
        if record is not None:
            self._record(client, record[0], record[1], record[2])
        if cut is not None:
            self._record(client, cut[0], cut[1], {**cut[2], "refused": f"{method} {path}"})
        raise HttpError(403, f"node {client} is not attested ({detail}): refused")

    def gate(self, router: Any) -> None:
        """Put :meth:`admit` in front of every route of the ledger's router."""

        def guarded(handler: Callable[[Any], Any], method: str) -> Callable[[Any], Any]:
            def run(req: Any) -> Any:
                self.admit(req.client.name, method, req.path)
                return handler(req)

            return run

        router.routes = [
            (replace(route, handler=guarded(route.handler, route.method)), pattern, kinds)
            for route, pattern, kinds in router.routes
        ]

    def start(self) -> TrustAnchor:
        from tenfold.core.server import Router, Server, ServerOptions

        self._server = Server(Router(self.routes()), ServerOptions(port=0), name="attest").start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Each node: attested or not (and why), seconds since its last good quote, refusals."""
        now = time.monotonic()
        with self._lock:
            return {
                n: {
                    "attested": s.ok and now - s.last_ok <= self.lease_s,
                    "detail": s.detail,
                    "last_ok_s_ago": round(now - s.last_ok, 1) if s.last_ok else None,
                    "refusals": s.episode,
                }
                for n, s in self._nodes.items()
            }


def trust_status(home: Path, engine_ready: Path) -> dict[str, Any] | None:
    """For ``platform status``: the nodes' attestation as the engine sees it (None when off)."""
    paths = TrustPaths(home)
    if not paths.enabled():
        return None
    try:
        url = str(json.loads(engine_ready.read_text())["attest_url"])
        with urllib.request.urlopen(f"{url}/attest/nodes", timeout=5) as resp:
            nodes = json.loads(resp.read())
    except (OSError, ValueError, KeyError) as exc:
        return {"period_s": paths.period_s(), "nodes": None, "error": str(exc)}
    return {"period_s": paths.period_s(), "nodes": nodes}


# -- the node ------------------------------------------------------------------------------------


class NodeAttester:
    """The node's side: its TPM, registration, a quote every period, its certificate."""

    def __init__(self, home: Path, engine_ready: Path, node: str = NODE) -> None:
        self.paths = TrustPaths(home)
        self.node = node
        self.engine_ready = engine_ready
        self.dir = self.paths.node_dir(node)
        self.cert = self.dir / "node.pem"  # the certificate, then its key (mode 0600)
        self._ctx: ssl.SSLContext | None = None
        self._issued = 0.0
        self._ttl = 30.0
        self.period_s = self.paths.period_s()
        self.refused: str | None = None
        self._stop = threading.Event()
        self._tpm: Any = None
        self._agent: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 60.0) -> NodeAttester:
        """Start the TPM, measure what the node runs, register, attest once (raises if refused)."""
        from tenfold.core.services import Swtpm

        self.dir.mkdir(parents=True, exist_ok=True)
        self.paths.spool(self.node).mkdir(exist_ok=True)
        self.cert.unlink(missing_ok=True)
        # A node killed outright left its TPM running: stop it. (Without the orderly
        # TPM2_Shutdown its clock is unsafe now, and the verifier will say so.)
        _stop_swtpm(self.dir)
        self._tpm = Swtpm(workdir=self.dir / "tpm")
        self._tpm.__enter__()
        (self.dir / "swtpm.pid").write_text(f"{self._tpm.pid}\n")
        try:
            self._agent = _agent(self._tpm.tcti, self.dir)
            for path, data in node_files().items():
                self._agent.measure_file(path, data)
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    self._register()
                    self.attest()
                    break
                except PlatformError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            if self._ctx is None:
                raise PlatformError(f"node {self.node}: attestation refused: {self.refused}")
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name="attest", daemon=True)
        self._thread.start()
        return self

    def context(self) -> ssl.SSLContext | None:
        return self._ctx

    def _url(self) -> str:
        try:
            return str(json.loads(self.engine_ready.read_text())["attest_url"])
        except (OSError, ValueError, KeyError) as exc:
            raise PlatformError(f"no attestation endpoint announced ({exc})") from None

    def _post(self, path: str, doc: Any) -> dict[str, Any]:
        url = f"{self._url()}/attest/{self.node}/{path}"
        req = urllib.request.Request(
            url, json.dumps(doc).encode(), {"content-type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                out: dict[str, Any] = json.loads(resp.read())
                return out
        except urllib.error.HTTPError as exc:
            body = exc.read()[:300].decode(errors="replace")
            if exc.code == 404:
                raise _Unregistered(body) from None
            raise PlatformError(f"{url}: HTTP {exc.code}: {body}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PlatformError(f"{url}: {exc}") from None

    def _register(self) -> None:
        agent = self._agent
        ch = self._post(
            "register", {"ek_public": _b64(agent.ek_public), "ak_public": _b64(agent.ak_public)}
        )
        secret = agent.activate_credential(
            _unb64(ch, "credential_blob"), _unb64(ch, "encrypted_secret")
        )
        self._post("activate", {"secret": _b64(secret)})

    def attest(self) -> None:
        """Measure any file run since, quote, and renew the certificate when half its life is gone."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from tenfold.attestation_authority import AttestationAuthorityError

        spool = self.paths.spool(self.node)
        for f in sorted(spool.glob("*.json")) if spool.exists() else []:
            ran = json.loads(f.read_text())  # a file the node ran: IMA measures it
            self._agent.measure_file(str(ran["path"]), base64.b64decode(ran["content"]))
            f.unlink()
        try:
            nonce = bytes.fromhex(str(self._post("nonce", {})["nonce"]))
            selection = self._selection()
            evidence = self._agent.quote(nonce, selection)
        except _Unregistered:
            self._register()  # the engine restarted and forgot the node: register again
            return self.attest()
        except AttestationAuthorityError as exc:
            raise PlatformError(f"node {self.node}: the TPM failed: {exc}") from None
        renew = self._ctx is None or time.monotonic() - self._issued > self._ttl / 2
        key = ec.generate_private_key(ec.SECP256R1()) if renew else None
        doc: dict[str, Any] = {"evidence": evidence.to_json()}
        if key is not None:
            doc["public_key"] = (
                key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        try:
            reply = self._post("quote", doc)
        except _Unregistered:
            self._register()
            return self.attest()
        if not reply.get("ok"):
            # Refused: the authority revoked the certificate and renews none. The node
            # keeps presenting it, as a compromised node would: the engine's gate is
            # what cuts it off, and it records that it did.
            self.refused = f"{reply.get('reason')}: {reply.get('detail')}"
            return None
        self.refused = None
        if key is not None and "certificate" in reply:
            # Certificate and key in one file, replaced at once: a reader never pairs
            # a new key with an old certificate.
            tmp = self.cert.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            tmp.touch(mode=0o600)
            tmp.write_bytes(
                reply["certificate"].encode()
                + key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            tmp.replace(self.cert)
            self._ctx = client_context(self.cert, None, self.paths.tls_dir / "ca.pem")
            self._issued = time.monotonic()
            from cryptography import x509

            c = x509.load_pem_x509_certificate(reply["certificate"].encode())
            # Its life from now (not_valid_before is back-dated for clock skew): renewed
            # at half of it, so a valid certificate is always presented.
            self._ttl = c.not_valid_after_utc.timestamp() - time.time()
        return None

    def _selection(self) -> Any:
        from tenfold.attestation_authority import parse_policy

        return parse_policy(POLICY).selection

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.attest()
            except PlatformError as exc:
                print(f"attestation: {exc}", flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._agent is not None:
            _orderly_shutdown(self._agent)
            self._agent.close()
            self._agent = None
        if self._tpm is not None:
            self._tpm.__exit__(None, None, None)
            self._tpm = None
        (self.dir / "swtpm.pid").unlink(missing_ok=True)


class _Unregistered(PlatformError):
    """The engine does not know this node (it restarted): register again."""


def stop_orphans(home: Path) -> None:
    """``down``: a node killed without its clean exit leaves its swtpm: stop it by its pid."""
    _stop_swtpm(TrustPaths(home).node_dir())
    shutil.rmtree(TrustPaths(home).spool(), ignore_errors=True)


def _stop_swtpm(node_dir: Path) -> None:
    """Stop the swtpm whose pid ``node_dir/swtpm.pid`` names, if it is still that swtpm."""
    import os
    import signal

    pid_file = node_dir / "swtpm.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if b"swtpm" in cmdline and str(node_dir).encode() in cmdline:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(doc: Any, name: str) -> bytes:
    from tenfold.core.server import HttpError

    value = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(value, str):
        raise HttpError(400, f"field {name!r} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise HttpError(400, f"field {name!r} is not base64") from None


# -- replay of a recorded failed attestation --------------------------------------------------


def attestation_attack(path: Path, lines: list[str]) -> list[tuple[str, str, bytes]] | None:
    """A recorded failed attestation (JSON lines: attack, node, runs, content), else None.

    Each line is a file some attacker ran on the node: ``{"attack": "failed_attestation",
    "node": "victim", "runs": "/tmp/dropper", "content": "..."}``.
    """
    first = next((line for line in lines if line.strip()), "")
    try:
        head = json.loads(first)
    except ValueError:
        return None
    if not isinstance(head, dict) or head.get("attack") != "failed_attestation":
        return None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise PlatformError(f"{path}:{n}: not JSON: {exc}") from None
        runs, node = doc.get("runs"), doc.get("node", NODE)
        if not isinstance(runs, str) or not runs or node != NODE:
            raise PlatformError(
                f"{path}:{n}: a failed attestation names the file it runs ('runs') on node {NODE!r}"
            )
        out.append((node, runs, str(doc.get("content", "")).encode()))
    return out


def replay_attestation(
    plat: Any, path: Path, attack: list[tuple[str, str, bytes]], timeout_s: float
) -> ReplayResult:
    """Run the files on the node, then wait for its refusal in the ledger and verify its proof."""
    from tenfold.autoblocker_ledger import verify_bundle
    from tenfold.platform._engine import fetch
    from tenfold.platform._platform import ReplayResult

    url = plat.engine_url()
    paths = TrustPaths(plat.home)
    if url is None or not url.startswith("https://") or not paths.enabled():
        raise PlatformError(
            "a failed attestation needs attested nodes: tenfold platform up --attested"
        )
    before = int(json.loads(fetch(f"{url}/platform")[0])["entries"])
    spool = paths.spool()
    spool.mkdir(parents=True, exist_ok=True)
    for n, (_node, runs, data) in enumerate(attack):
        tmp = spool / f".{n}.tmp"
        tmp.write_text(json.dumps({"path": runs, "content": _b64(data)}))
        tmp.rename(spool / f"{time.time_ns()}-{n}.json")
    # The node quotes within one period; its next stream request is then refused.
    wait_s = max(timeout_s, 4 * paths.period_s() + 30)
    deadline = time.monotonic() + wait_s
    found: dict[str, dict[str, Any]] = {}
    seen = before
    while not ("verdict" in found and any(w not in ("verdict", "lease") for w in found)):
        if time.monotonic() > deadline:
            raise PlatformError(
                f"node {NODE} was not refused (and its stream cut) within {wait_s:.0f} s"
            )
        size = int(json.loads(fetch(f"{url}/platform")[0])["entries"])
        for i in range(seen, size):
            e = json.loads(fetch(f"{url}/entries/{i}")[0])
            if e.get("domain") == "attestation" and e.get("subject") == NODE:
                ev = e.get("evidence") or {}
                found.setdefault(str(ev.get("what")), e)
        seen = size
        time.sleep(0.1)
    key = bytes.fromhex((plat.ledger_dir / "log.pub").read_text().strip())
    result = ReplayResult(str(path), len(attack), seen - before)
    for what, e in found.items():
        bundle = json.loads(fetch(f"{url}/proof?index={e['index']}")[0])
        verify_bundle(bundle, key)  # as a third party would, with the public key only
        ev = e.get("evidence") or {}
        result.decisions.append(
            {
                "decision": {
                    "action": "refuse",
                    "scope": "node",
                    "value": NODE,
                    "until": None,
                    "reason": f"{e['domain']}/{e['kind']}: "
                    + str(ev.get("refused") or ev.get("reason") or what)
                    + (f" ({ev['detail']})" if ev.get("detail") else ""),
                },
                "ledger_index": e["index"],
                "proof": {
                    "tree_size": int(bundle["sth"]["size"]),
                    "root": str(bundle["sth"]["root"]),
                    "hashes": len(bundle["proof"]),
                    "verified": True,
                    "public_key": key.hex(),
                },
                "enforced": {
                    "where": f"the ledger's mutual-TLS gate: node {NODE}'s certificates "
                    "revoked, its stream and events refused",
                    "probe_from": None,
                    "frame_dropped": None,
                },
            }
        )
    result.decisions.sort(key=lambda d: d["ledger_index"])
    return result
