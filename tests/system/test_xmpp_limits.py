"""Fair shares at the XMPP server (issue 18): what one client, authenticated or
not, may hold, over real TCP + TLS with the byte-level client."""

from __future__ import annotations

import pytest

from esxmpp.server import XmppServer
from esxmpp.testing import RawClient
from tests.system.test_xmpp_server import (
    DOMAIN,
    Certs,
    Recorder,
    client_ctx,
    make_certs,
    run,
    stream_error,
)

PING = "<iq type='get' id='{}'><ping xmlns='urn:xmpp:ping'/></iq>"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory)


async def pinged(c: RawClient, iq_id: str) -> bool:
    await c.send(PING.format(iq_id))
    return await c.xml() == f"<iq type='result' id='{iq_id}'/>"


def test_whitespace_between_stanzas_is_bounded(certs: Certs) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        flooder = await RawClient.open(srv.port)
        jid = await flooder.login(DOMAIN, client_ctx(certs, certs.client))
        other = await RawClient.open(srv.port)
        await other.login(DOMAIN, client_ctx(certs, certs.client2))
        # keepalives up to the default bound (4096 bytes) between two stanzas are fine
        for _ in range(4):
            await flooder.send(" \n\t\r" * 256)
        assert await pinged(flooder, "w1")
        await flooder.send(" " * 4096)
        assert await pinged(flooder, "w2")
        # one byte more in a gap closes that stream, with a precise error
        await flooder.send(" " * 4097)
        got = await flooder.closed()
        assert got.endswith(
            b"<iq type='result' id='w2'/>"
            + stream_error("policy-violation", "more than 4096 bytes of whitespace between stanzas")
        ), got[-300:]
        closed = await rec.wait_for(lambda e: e[0] == "closed" and e[1] == jid)
        assert closed[2] == ("policy-violation: more than 4096 bytes of whitespace between stanzas")
        # the other session goes on
        assert await pinged(other, "o1")
        flooder.close()
        other.close()

    run(certs, body)


TOO_MANY = "too many unauthenticated connections"


async def negotiating(port: int, source: str) -> RawClient:
    """A connection from ``source`` that sent its stream header and then stays put."""
    c = await RawClient.open(port, source=source)
    await c.header(DOMAIN)
    await c.element()  # features: the server holds it as pre-authentication
    return c


def test_preauth_share_per_address(certs: Certs) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        held = [await negotiating(srv.port, "127.0.0.2") for _ in range(4)]
        assert srv.preauth_count == 4
        # the flooding address is refused before TLS, with a precise error
        fifth = await RawClient.open(srv.port, source="127.0.0.2")
        got = await fifth.closed()
        assert got.startswith(b"<?xml version='1.0'?><stream:stream "), got
        assert got.endswith(stream_error("policy-violation", f"{TOO_MANY} from 127.0.0.2")), got
        # another address logs in and works although bound sessions are also at
        # max_sessions minus one: negotiating connections are not sessions
        legit = await RawClient.open(srv.port, source="127.0.0.1")
        jid = await legit.login(DOMAIN, client_ctx(certs, certs.client))
        assert await pinged(legit, "l1")
        assert await rec.wait_for(lambda e: e[0] == "opened") == ("opened", jid, False)
        assert (srv.preauth_count, len(srv.sessions())) == (4, 1)
        # the held ones are still negotiating, untouched
        await held[0].send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert await held[0].xml() == "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        for c in [*held, fifth, legit]:
            c.close()

    run(certs, body, max_sessions=2, max_preauth_connections=6, max_preauth_per_address=4)


def test_preauth_pool_full_drops_the_biggest_sources_oldest(certs: Certs) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        a = [await negotiating(srv.port, "127.0.0.2") for _ in range(4)]
        b = [await negotiating(srv.port, "127.0.0.3") for _ in range(2)]
        assert srv.preauth_count == 6  # the pool is full
        # a newcomer from a third address takes the slot of 127.0.0.2's oldest
        legit = await RawClient.open(srv.port, source="127.0.0.4")
        jid = await legit.login(DOMAIN, client_ctx(certs, certs.client))
        got = await a[0].closed()
        assert got.endswith(
            b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
            b"</starttls></stream:features>"
            + stream_error("resource-constraint", f"{TOO_MANY} from your address")
        ), got
        assert await pinged(legit, "l1")
        assert await rec.wait_for(lambda e: e[0] == "opened") == ("opened", jid, False)
        # bound, it left the pool: 3 + 2 negotiating, one slot free
        assert srv.preauth_count == 5
        b.append(await negotiating(srv.port, "127.0.0.3"))
        # full again with 3 + 3: no source holds more than a newcomer from 127.0.0.3
        # would, so the newcomer is refused and nobody is dropped
        refused = await RawClient.open(srv.port, source="127.0.0.3")
        assert (await refused.closed()).endswith(stream_error("resource-constraint", TOO_MANY))
        assert srv.preauth_count == 6
        for c in [*a[1:], *b]:
            await c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            assert await c.xml() == "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        for c in [*a, *b, legit, refused]:
            c.close()

    run(certs, body, max_sessions=2, max_preauth_connections=6, max_preauth_per_address=4)


def test_preauth_stanza_size_is_smaller_until_authenticated(certs: Certs) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        del rec
        big = "x" * 9000
        # before TLS and before SASL: 8192 bytes (the default) at most
        pre = await RawClient.open(srv.port)
        await pre.header(DOMAIN)
        await pre.element()
        await pre.send(f"<message><body>{big}</body></message>")
        assert (await pre.closed()).endswith(
            stream_error("policy-violation", "stanza larger than 8192 bytes")
        )
        sasl = await RawClient.open(srv.port)
        await sasl.starttls(DOMAIN, client_ctx(certs, certs.client))
        await sasl.header(DOMAIN)
        await sasl.element()
        await sasl.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{big}'/>")
        assert (await sasl.closed()).endswith(
            stream_error("policy-violation", "stanza larger than 8192 bytes")
        )
        # an oversized stream header is refused the same way
        hdr = await RawClient.open(srv.port)
        await hdr.send(
            f"<stream:stream to='{DOMAIN}' xmlns='jabber:client' x='{big}{big}' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        )
        assert (await hdr.closed()).endswith(
            stream_error("policy-violation", "stanza larger than 8192 bytes")
        )
        # once authenticated, max_stanza_bytes (65536) applies
        ok = await RawClient.open(srv.port)
        await ok.login(DOMAIN, client_ctx(certs, certs.client))
        assert await pinged(ok, big)
        for c in (pre, sasl, hdr, ok):
            c.close()

    run(certs, body)


def test_preauth_dropped_in_tls_handshake_is_closed_cleanly(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        del rec
        stalled = await negotiating(srv.port, "127.0.0.2")
        await stalled.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert await stalled.xml() == "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        second = await negotiating(srv.port, "127.0.0.2")
        # the pool (2) is full; the stalled handshake is 127.0.0.2's oldest: it is
        # dropped without a stream error (no XML can go out mid-handshake)
        legit = await RawClient.open(srv.port, source="127.0.0.3")
        await legit.login(DOMAIN, client_ctx(certs, certs.client))
        assert (await stalled.closed()).endswith(
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        )
        assert await pinged(legit, "l1")
        assert srv.preauth_count == 1
        assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
        for c in (stalled, second, legit):
            c.close()

    run(certs, body, max_preauth_connections=2, max_preauth_per_address=2)
