"""TLS material for mutual TLS: a deployment CA and leaf certificates, and SSL contexts.

Every tenfold server that serves beyond loopback can require mutual TLS: it asks
each client for a certificate issued by the deployment's CA (``ssl.CERT_REQUIRED``)
and takes the certificate's common name as the client's identity. The bundle
helper makes such a CA and one leaf per name for a test, a lab, or a first
deployment; a site with its own PKI points :class:`TlsFiles` at its files instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.core.errors import CryptoError

__all__ = ["TlsFiles", "make_tls_bundle", "peer_common_name"]


@dataclass(frozen=True)
class TlsFiles:
    """One party's TLS material: its certificate and key, and the CA it trusts for peers."""

    cert: Path
    key: Path
    ca: Path

    def server_context(self) -> ssl.SSLContext:
        """A server context that requires a client certificate from the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that presents this certificate and trusts servers from the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def check(self) -> None:
        """Raise :class:`CryptoError` naming the file if any of the three is missing or bad."""
        for label, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if not path.is_file():
                raise CryptoError(f"TLS {label} file {path} does not exist")
        try:
            self.server_context()
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise CryptoError(
                f"TLS files {self.cert}, {self.key}, {self.ca} do not load: {exc}"
            ) from None


def peer_common_name(peercert: Any) -> str | None:
    """The subject common name of a certificate as ``ssl.SSLSocket.getpeercert()`` gives it."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*$"
)


def _alt_names(name: str, extra: Sequence[str]) -> list[Any]:
    """localhost, 127.0.0.1, the name itself when it is an address or a host name, ``extra``."""
    from cryptography import x509

    out: list[Any] = []
    for value in ["localhost", "127.0.0.1", name, *extra]:
        try:
            entry: Any = x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            if not _HOSTNAME.match(value):
                if value in extra:
                    raise CryptoError(
                        f"{value!r} is neither an IP address nor a host name"
                    ) from None
                continue
            entry = x509.DNSName(value)
        if entry not in out:
            out.append(entry)
    return out


def make_tls_bundle(
    directory: Path,
    names: Sequence[str],
    *,
    days: int = 30,
    ca_name: str = "tenfold mTLS CA",
    hosts: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, TlsFiles]:
    """A CA and one leaf per name (server and client auth).

    Writes ``ca.pem`` and ``<name>.pem`` / ``<name>.key`` (mode 0600) into
    ``directory``; the leaf's common name is ``name``, which servers take as the
    client's identity. Each leaf is valid for localhost and 127.0.0.1, for its
    name when that is an IP address or a host name (name a server's leaf after
    the host clients dial), and for ``hosts[name]``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out = {}
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName(_alt_names(name, (hosts or {}).get(name, ()))),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        out[name] = TlsFiles(cert_path, key_path, ca_path)
    return out
