"""A lab PKI for the project's mutual TLS: a CA, server and client certificates.

Both XMPP hops (end-system -> forwarder agent, agent -> route server) use
mutual TLS. What each side checks:

* a client verifies the server against ``server_name`` (default: the JID
  domain), so a **server** certificate carries its XMPP domain as DNS
  subjectAltName (and 127.0.0.1 and ::1, for labs on one machine), EKU
  serverAuth;
* the server reads the client's identity from its verified certificate
  (:func:`esxmpp.server.identity_from_cert`: a DNS subjectAltName or the
  commonName that is a system id), so a **client** certificate carries the
  12 hex digit system id as CN and DNS subjectAltName, EKU clientAuth.

Keys are ECDSA P-256, written PKCS#8 PEM with mode 0600; certificates PEM.
``esvpn certs`` (control/cli.py) is the command line over this module; the
tests use :func:`make_pki` through :mod:`esxmpp.testing`. For labs: a real
deployment has its own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from esxmpp.dialect import DialectError, format_system_id, parse_system_id

CA_NAME = "esvpn lab CA"


@dataclass(frozen=True)
class CertPair:
    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class Pki:
    """A CA (``cafile``, ``ca_keyfile``) that issues into ``directory``."""

    cafile: Path
    ca_keyfile: Path
    directory: Path
    days: int = 30

    def server(self, name: str) -> CertPair:
        """Certificate for server ``name`` (DNS SAN ``name``, plus 127.0.0.1 and ::1)."""
        return issue(self, name, server=True)

    def client(self, name: str) -> CertPair:
        """Client certificate with CN = DNS SAN = ``name`` (e.g. '01020304abcd')."""
        return issue(self, name, server=False)

    def paths(self, name: str, server: bool) -> CertPair:
        """Where the certificate for ``name`` is (or would be) written."""
        base = self.directory / f"{'server' if server else 'client'}-{name.replace(':', '')}"
        return CertPair(Path(f"{base}.pem"), Path(f"{base}.key"))


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(pair: CertPair, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(pair.keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pair.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(directory: Path, ca_name: str = "esvpn test CA", days: int = 30) -> Pki:
    """Create a self-signed CA in ``directory`` (ca.pem, ca.key), replacing one there."""
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
        .not_valid_after(now + datetime.timedelta(days=days))
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
    pair = CertPair(directory / "ca.pem", directory / "ca.key")
    _write(pair, key, cert)
    return Pki(pair.certfile, pair.keyfile, directory, days)


def open_pki(directory: Path, ca_name: str = CA_NAME, days: int = 365) -> tuple[Pki, bool]:
    """The CA in ``directory``, created when there is none; (pki, created)."""
    cafile, keyfile = directory / "ca.pem", directory / "ca.key"
    if cafile.exists() and keyfile.exists():
        return Pki(cafile, keyfile, directory, days), False
    if cafile.exists() or keyfile.exists():
        have, missing = (cafile, keyfile) if cafile.exists() else (keyfile, cafile)
        raise FileExistsError(f"{have} exists without {missing}")
    return make_pki(directory, ca_name, days), True


def issue(pki: Pki, name: str, server: bool) -> CertPair:
    """Issue a server or client certificate for ``name`` from ``pki``'s CA."""
    ca_cert = x509.load_pem_x509_certificate(pki.cafile.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_keyfile.read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.ca_keyfile}: not an EC private key")
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    if server:
        sans += [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, ec.EllipticCurvePublicKey):
        raise ValueError(f"{pki.cafile}: not an EC certificate")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=pki.days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pair = pki.paths(name, server)
    _write(pair, key, cert)
    return pair


def classify(name: str) -> tuple[str, bool]:
    """A name given to ``esvpn certs`` -> (certificate name, is server).

    A system id (12 hex digits, any accepted spelling) names a client, in the
    canonical form; anything else is a server's XMPP domain (lower case, as
    RFC 7622 compares domains).
    """
    try:
        return format_system_id(parse_system_id(name)), False
    except DialectError:
        pass
    d = name.lower().rstrip(".")
    if not d or any(not label or len(label) > 63 for label in d.split(".")):
        raise ValueError(f"{name!r}: neither a system id nor a domain name")
    if not all(c.isalnum() or c in "-." for c in d) or not d.isascii():
        raise ValueError(f"{name!r}: neither a system id nor a domain name")
    return d, True
