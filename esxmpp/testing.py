"""Test PKI for XMPP over TLS: a CA, server and client certificates (PEM files).

For tests and labs only; needs the ``cryptography`` package (dev extra).
Client certificates carry the system id as subject CN and DNS subjectAltName,
which is what :func:`esxmpp.server.identity_from_cert` reads.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CertPair:
    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class Pki:
    cafile: Path
    ca_keyfile: Path
    directory: Path

    def server(self, name: str) -> CertPair:
        """Certificate for server ``name`` (DNS SAN ``name``, plus 127.0.0.1 and ::1)."""
        return _issue(self, name, [name], server=True)

    def client(self, name: str) -> CertPair:
        """Client certificate with CN = DNS SAN = ``name`` (e.g. '01020304abcd')."""
        return _issue(self, name, [name], server=False)


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: Any, cert: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(directory: Path, ca_name: str = "esvpn test CA") -> Pki:
    """Create a self-signed CA in ``directory`` (ca.pem, ca.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca", key, cert)
    return Pki(directory / "ca.pem", directory / "ca.key", directory)


def _issue(pki: Pki, cn: str, dns: list[str], server: bool) -> CertPair:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(pki.cafile.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_keyfile.read_bytes(), None)
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    if server:
        sans += [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    base = pki.directory / f"{'server' if server else 'client'}-{cn.replace(':', '')}"
    _write(base, key, cert)
    return CertPair(base.with_suffix(".pem"), base.with_suffix(".key"))
