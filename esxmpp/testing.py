"""Test helpers: the test PKI (from :mod:`esxmpp.pki`) and a byte-level client.

Client certificates carry the system id as subject CN and DNS subjectAltName,
which is what :func:`esxmpp.server.identity_from_cert` reads.
"""

from __future__ import annotations

from typing import Any

from esxmpp.pki import CertPair, Pki, make_pki

__all__ = ["CertPair", "Pki", "RawClient", "make_pki"]


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
    async def open(cls, port: int, host: str = "127.0.0.1", source: str | None = None) -> RawClient:
        """Connect to host:port, from address ``source`` if given (e.g. '127.0.0.2')."""
        import asyncio

        local = (source, 0) if source is not None else None
        reader, writer = await asyncio.open_connection(host, port, local_addr=local)
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
