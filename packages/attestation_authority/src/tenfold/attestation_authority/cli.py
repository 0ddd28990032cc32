"""``tenfold attest``: run an agent, a registrar or a verifier; verify a recorded quote."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tenfold.core.cli import HTTP_URL, emit, json_option

if TYPE_CHECKING:
    from tenfold.core.tls import TlsFiles

_tls_dir = click.option(
    "--tls-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Mutual TLS: folder with ca.pem, NAME.pem and NAME.key (see `attest tls-bundle`).",
)


class _AgentId(click.ParamType[str, Any]):
    """An agent's id: 1-128 letters, digits, '.', '_' or '-' (it goes into URLs)."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import re

        text = str(value)
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", text):
            shown = text if len(text) <= 60 else text[:60] + "..."
            self.fail(f"{shown!r}: 1-128 letters, digits, '.', '_' or '-'", param, ctx)
        return text


_AGENT_ID = _AgentId()


def _tls(tls_dir: Path | None, name: str) -> TlsFiles | None:
    from tenfold.attestation_authority.errors import AttestationAuthorityError
    from tenfold.core.tls import TlsFiles

    if tls_dir is None:
        return None
    files = TlsFiles(tls_dir / f"{name}.pem", tls_dir / f"{name}.key", tls_dir / "ca.pem")
    for path in (files.cert, files.key, files.ca):
        if not path.is_file():
            raise AttestationAuthorityError(f"--tls-dir: {path} is missing")
    return files


def _listen(text: str) -> tuple[str, int]:
    from tenfold.attestation_authority.errors import AttestationAuthorityError

    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise AttestationAuthorityError(f"--listen {text!r} is not HOST:PORT")
    return host, int(port)


def _serve_forever(apps: list[tuple[Any, str, TlsFiles | None]], role: str, *extra: Any) -> None:
    """Serve until SIGINT/SIGTERM; prints one line per server with its URL."""
    import contextlib

    from tenfold.attestation_authority._http import serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        for app, listen, tls in apps:
            host, port = _listen(listen)
            url = stack.enter_context(serve(app, host=host, port=port, tls=tls))
            click.echo(f"{role} listening on {url}", err=True)
        for worker in extra:
            thread = threading.Thread(target=worker, args=(stop,), daemon=True)
            thread.start()
        stop.wait()


@click.group("attest")
def attest() -> None:
    """TPM remote attestation: agents, registrar, verifier, signed results."""


@attest.command("agent")
@click.option("--tcti", default=None, help="TCTI (default $TPM2TOOLS_TCTI or device:/dev/tpmrm0).")
@click.option("--listen", default="127.0.0.1:8890", show_default=True)
@click.option("--ak-type", type=click.Choice(["rsa", "ecc"]), default="rsa", show_default=True)
@_tls_dir
def agent_cmd(tcti: str | None, listen: str, ak_type: str, tls_dir: Path | None) -> None:
    """Serve this machine's TPM: keys, quotes on request, credential activation."""
    from tenfold.attestation_authority._agent import Agent, tcti_from_env
    from tenfold.attestation_authority._http import agent_app

    with Agent(tcti or tcti_from_env(), ak_type=ak_type) as agent:
        _serve_forever([(agent_app(agent), listen, _tls(tls_dir, "agent"))], "agent")


@attest.command("registrar")
@click.option("--listen", default="127.0.0.1:8891", show_default=True)
@click.option("--allow-ek", "allow", multiple=True, help="SHA-256 (hex) of an accepted EK.")
@click.option(
    "--ek-ca",
    "cas",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="TPM manufacturer root and intermediate CA certificates (PEM, bundles allowed).",
)
@_tls_dir
def registrar_cmd(
    listen: str, allow: tuple[str, ...], cas: tuple[Path, ...], tls_dir: Path | None
) -> None:
    """Bind agents' AKs to accepted EKs (MakeCredential / ActivateCredential)."""
    from cryptography import x509

    from tenfold.attestation_authority._http import registrar_app
    from tenfold.attestation_authority._registrar import Registrar

    certs = [cert for p in cas for cert in x509.load_pem_x509_certificates(p.read_bytes())]
    registrar = Registrar(ek_allowlist=allow, ek_ca_certificates=certs)
    _serve_forever([(registrar_app(registrar), listen, _tls(tls_dir, "registrar"))], "registrar")


@attest.command("verifier")
@click.option("--listen", default="127.0.0.1:8892", show_default=True)
@click.option(
    "--registrar", "registrar_url", type=HTTP_URL, required=True, help="The registrar's base URL."
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="Reference-value policy file.",
)
@click.option(
    "--ima-allowlist",
    "ima_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Allowed file digests for IMA rules (sha256sum format).",
)
@_tls_dir
def verifier_cmd(
    listen: str, registrar_url: str, policy_path: Path, ima_path: Path | None, tls_dir: Path | None
) -> None:
    """Attest enrolled agents every poll period; serve verdicts and EAR results."""
    from tenfold.attestation_authority._authority import Authority
    from tenfold.attestation_authority._config import load_config
    from tenfold.attestation_authority._http import Poller, RemoteRegistrar, verifier_app
    from tenfold.attestation_authority._ima import ImaAllowlist
    from tenfold.attestation_authority._policy import parse_policy
    from tenfold.attestation_authority._verifier import Verifier

    config = load_config()
    tls = _tls(tls_dir, "verifier")
    policy = parse_policy(policy_path.read_text())
    allowlist = ImaAllowlist.from_text(ima_path.read_text()) if ima_path else None
    verifier = Verifier(
        RemoteRegistrar(registrar_url, tls),
        policy,
        nonce_ttl_s=config.nonce_ttl_s,
        ima_allowlist=allowlist,
    )
    authority = Authority(cert_ttl_s=config.cert_ttl_s, ear_ttl_s=config.ear_ttl_s)
    poller = Poller(verifier, authority, period_s=config.poll_period_s, tls=tls)
    _serve_forever([(verifier_app(verifier, poller), listen, tls)], "verifier", poller.run)


@attest.command("enroll")
@click.option("--agent", "agent_url", type=HTTP_URL, required=True)
@click.option("--registrar", "registrar_url", type=HTTP_URL, required=True)
@click.option("--id", "agent_id", type=_AGENT_ID, required=True)
@click.option(
    "--verifier", "verifier_url", type=HTTP_URL, default=None, help="Also enrol for attestation."
)
@_tls_dir
@json_option
def enroll_cmd(
    agent_url: str,
    registrar_url: str,
    agent_id: str,
    verifier_url: str | None,
    tls_dir: Path | None,
    as_json: bool,
) -> None:
    """Register an agent (credential activation) and optionally enrol it with a verifier."""
    import httpx

    from tenfold.attestation_authority._http import enroll_over_http
    from tenfold.attestation_authority.errors import AttestationAuthorityError

    tls = _tls(tls_dir, "admin")
    try:
        ek_hash = enroll_over_http(agent_url, registrar_url, agent_id, tls)
        if verifier_url:
            with httpx.Client(verify=tls.client_context() if tls else True) as client:
                client.post(
                    f"{verifier_url}/agents/{agent_id}", json={"url": agent_url}
                ).raise_for_status()
    except httpx.HTTPError as exc:
        raise AttestationAuthorityError(f"enrolling {agent_id}: {exc}") from None
    emit({"agent_id": agent_id, "ek_hash": ek_hash}, as_json, f"{agent_id}: bound to EK {ek_hash}")


@attest.command("ek-hash")
@click.option("--agent", "agent_url", type=HTTP_URL, required=True, help="The agent's base URL.")
@_tls_dir
@json_option
def ek_hash_cmd(agent_url: str, tls_dir: Path | None, as_json: bool) -> None:
    """Print the SHA-256 of an agent's EK, the value for `attest registrar --allow-ek`."""
    import base64

    import httpx

    from tenfold.attestation_authority._registrar import ek_hash
    from tenfold.attestation_authority.errors import AttestationAuthorityError

    tls = _tls(tls_dir, "admin")
    try:
        with httpx.Client(verify=tls.client_context() if tls else True, timeout=10) as client:
            keys = client.get(f"{agent_url.rstrip('/')}/keys").raise_for_status().json()
        digest = ek_hash(base64.b64decode(keys["ek_public"]))
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise AttestationAuthorityError(f"cannot read the EK from {agent_url}: {exc}") from None
    emit({"ek_hash": digest}, as_json, digest)


@attest.command("tls-bundle")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", "names", multiple=True, default=("agent", "registrar", "verifier", "admin"))
@json_option
def tls_bundle_cmd(directory: Path, names: tuple[str, ...], as_json: bool) -> None:
    """Make a mutual-TLS CA and one certificate per party (for a lab or a test)."""
    from tenfold.attestation_authority._http import make_tls_bundle
    from tenfold.attestation_authority.errors import AttestationAuthorityError

    try:
        make_tls_bundle(directory, names)
    except OSError as exc:
        raise AttestationAuthorityError(f"cannot write {directory}: {exc.strerror}") from None
    emit(
        {"directory": str(directory), "ca": str(directory / "ca.pem"), "names": list(names)},
        as_json,
        f"wrote {directory}/ca.pem and {', '.join(names)}",
    )


@attest.command("verify-quote")
@click.argument("quote_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--ak",
    "ak_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The AK's TPM2B_PUBLIC, as the agent reported it.",
)
@click.option("--nonce", "nonce_hex", required=True, help="The expected nonce, hex.")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Reference-value policy file (default: no reference values).",
)
@json_option
def verify_quote_cmd(
    quote_dir: Path, ak_path: Path, nonce_hex: str, policy_path: Path | None, as_json: bool
) -> None:
    """Verify a recorded quote (quote.msg, quote.sig, quote.pcrs[, eventlog.bin]).

    Exit 0 when accepted, 1 when refused (the reason is printed), 2 on bad input.
    """
    from tenfold.attestation_authority._evidence import Evidence
    from tenfold.attestation_authority._http import verdict_json
    from tenfold.attestation_authority._policy import Policy, parse_policy
    from tenfold.attestation_authority._structs import PublicKey, parse_public
    from tenfold.attestation_authority._verifier import Verifier
    from tenfold.attestation_authority.errors import AttestationAuthorityError

    try:
        nonce = bytes.fromhex(nonce_hex)
    except ValueError:
        raise AttestationAuthorityError(f"--nonce {nonce_hex!r} is not hex") from None
    ak = parse_public(ak_path.read_bytes())
    policy = parse_policy(policy_path.read_text()) if policy_path else Policy({})

    class OneAk:
        def ak_for(self, agent_id: str) -> PublicKey | None:
            return ak

    verifier = Verifier(OneAk(), policy)
    verdict = verifier.verify_quote(
        quote_dir.name, Evidence.read_files(quote_dir), expected_nonce=nonce
    )
    if verdict.ok or as_json:
        emit(verdict_json(verdict), as_json, "accepted")
    verdict.raise_for_refusal()  # refused: one error line naming the reason, exit 1
