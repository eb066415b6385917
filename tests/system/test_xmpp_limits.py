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
