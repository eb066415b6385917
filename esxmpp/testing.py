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

    Path(f"{path}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    Path(f"{path}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


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
    return CertPair(Path(f"{base}.pem"), Path(f"{base}.key"))


class RawClient:
    """A byte-level XMPP client for tests that check exact stanzas on the wire.

    Reads go through :class:`esxmpp.stream.StreamParser`; every byte received
    on the current stream is also kept in ``raw`` (reset at each restart).
    """

    def __init__(self, reader: Any, writer: Any, max_stanza_bytes: int = 1 << 20) -> None:
        from esxmpp.stream import StreamEvent, StreamParser

        self.reader = reader
        self.writer = writer
        self.max_stanza_bytes = max_stanza_bytes
        self.parser = StreamParser(max_stanza_bytes, 64)
        self.events: list[StreamEvent] = []
        self.raw = b""
        self.jid = ""

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> RawClient:
        import asyncio

        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def restart(self) -> None:
        from esxmpp.stream import StreamParser

        self.parser.close()
        self.parser = StreamParser(self.max_stanza_bytes, 64)
        self.events = []
        self.raw = b""

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def header(self, domain: str) -> None:
        """Send a stream header for ``domain``."""
        await self.send(
            f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        )

    async def event(self, timeout: float = 5.0) -> Any:
        """Next stream event (StreamOpen, Stanza, StreamClose); EOFError at end of input."""
        import asyncio

        while not self.events:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("connection closed")
            self.raw += data
            self.events.extend(self.parser.feed(data))
        return self.events.pop(0)

    async def element(self, timeout: float = 5.0) -> Any:
        """Next stanza/top-level element (skipping the stream header)."""
        from esxmpp.stream import Stanza, StreamOpen

        while True:
            ev = await self.event(timeout)
            if isinstance(ev, StreamOpen):
                continue
            if isinstance(ev, Stanza):
                return ev.element
            raise EOFError("stream closed")

    async def xml(self, timeout: float = 5.0) -> str:
        """Next element serialised like :func:`esxmpp.dialect.serialize`."""
        from esxmpp.dialect import serialize

        return serialize(await self.element(timeout))

    async def closed(self, timeout: float = 5.0) -> bytes:
        """Read to EOF; return everything this stream received (``raw``)."""
        import asyncio

        while True:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return self.raw
            self.raw += data

    async def starttls(self, domain: str, ctx: Any) -> None:
        await self.header(domain)
        await self.element()  # features
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.element()  # proceed
        await self.writer.start_tls(ctx, server_hostname=domain)
        from esxmpp.config import shrink_tls_read_buffer

        shrink_tls_read_buffer(self.writer)
        self.restart()

    async def login(
        self, domain: str, ctx: Any, user: str | None = None, password: str | None = None
    ) -> str:
        """STARTTLS, SASL (EXTERNAL, or PLAIN with user/password), bind; returns the JID."""
        import base64

        await self.starttls(domain, ctx)
        await self.header(domain)
        await self.element()  # features
        if user is None:
            await self.send(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>"
            )
        else:
            cred = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            await self.send(
                f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{cred}</auth>"
            )
        res = await self.element()
        if not res.tag.endswith("success"):
            from esxmpp.dialect import serialize

            raise PermissionError(serialize(res))
        self.restart()
        await self.header(domain)
        await self.element()  # features
        await self.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>raw</resource></bind></iq>"
        )
        res = await self.element()
        jid = res.find(
            "{urn:ietf:params:xml:ns:xmpp-bind}bind/{urn:ietf:params:xml:ns:xmpp-bind}jid"
        )
        if jid is None:
            from esxmpp.dialect import serialize

            raise PermissionError(serialize(res))
        self.jid = jid.text or ""
        return self.jid

    def close(self) -> None:
        self.writer.transport.abort()
