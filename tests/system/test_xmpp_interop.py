"""Clients from other projects (Debian's go-sendxmpp and sendxmpp) against our server.

Both log in with SASL PLAIN over STARTTLS (lab mode, certificate check off:
``-n``), bind, and send raw §6 stanzas; the server must accept and answer them.
"""

from __future__ import annotations

import asyncio

import pytest

from esxmpp import dialect as d
from esxmpp.server import XmppServer
from tests.system.test_xmpp_server import (
    DOMAIN,
    ENTRY,
    Certs,
    Recorder,
    make_certs,
    run,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory)


USER = "0a0b0c0d0e0f"
NODE = f"{USER}:10.1.1.1/32"
SUBSCRIBE = (
    "<iq type='set' id='s1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
    "<subscribe node='vpn-customer-name'/><options><x xmlns='jabber:x:data' type='submit'>"
    "<field var='vpn#vlan_id'><value>42</value></field></x></options></pubsub></iq>"
)
PUBLISH = (
    "<iq type='set' id='s2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
    f"<publish node='{NODE}'><item><entry xmlns='http://ietf.org/protocol/bgpvpn'>"
    "<nlri af='1'>10.1.1.1/32</nlri><next-hop af='1'>192.0.2.1</next-hop>"
    "<version id='1'/><label>10000</label></entry></item></publish></pubsub></iq>"
)
BAD_ASSOCIATE = (
    "<iq type='set' id='s3'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
    f"<collection node='other-vpn'><associate node='{NODE}'/></collection></pubsub></iq>"
)


async def run_tool(argv: list[str], stdin: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


def test_go_sendxmpp_raw_stanzas_accepted_and_answered(certs: Certs) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        out = await run_tool(
            [
                "go-sendxmpp",
                "-d",
                "-n",
                "-u",
                f"{USER}@{DOMAIN}",
                "-p",
                "lab-secret",
                "-j",
                f"127.0.0.1:{srv.port}",
                "--raw",
            ],
            SUBSCRIBE + PUBLISH + BAD_ASSOCIATE + "\n",
        )
        # go-sendxmpp -d prints what it receives
        assert f"<jid>{USER}@{DOMAIN}/go-sendxmpp." in out
        assert "<iq type='result' id='s1'/>" in out
        assert "<iq type='result' id='s2'/>" in out
        assert (
            "<iq type='error' id='s3'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
            "not subscribed to VPN 'other-vpn'</text></error></iq>"
        ) in out
        assert [e[2] for e in rec.log if e[0] == "request"] == [
            d.Subscribe("vpn-customer-name", 42),
            d.Publish(NODE, ENTRY),
        ]
        closed = await rec.wait_for(lambda e: e[0] == "closed")
        assert closed[1].startswith(f"{USER}@{DOMAIN}/go-sendxmpp.")

    run(certs, body, retention=60.0)


def test_perl_sendxmpp_raw_stanzas_accepted(certs: Certs) -> None:
    # sendxmpp takes the JID domain from the server name: serve "localhost".
    server = certs.pki.server("localhost")

    async def body(srv: XmppServer, rec: Recorder) -> None:
        out = await run_tool(
            [
                "sendxmpp",
                "-d",
                "-t",
                "-n",
                "-u",
                USER,
                "-p",
                "lab-secret",
                "-j",
                f"localhost:{srv.port}",
                "--raw",
            ],
            SUBSCRIBE + PUBLISH + "\n",
        )
        assert f"<jid>{USER}@localhost/sendxmpp</jid>" in out
        opened = await rec.wait_for(lambda e: e[0] == "opened")
        assert opened[1] == f"{USER}@localhost/sendxmpp"
        # sendxmpp closes the stream right after sending; the server still handles
        # every stanza before the close, in order.
        await rec.wait_for(lambda e: e[0] == "closed")
        assert [e[2] for e in rec.log if e[0] == "request"] == [
            d.Subscribe("vpn-customer-name", 42),
            d.Publish(NODE, ENTRY),
        ]

    run(
        certs,
        body,
        domain="localhost",
        certfile=server.certfile,
        keyfile=server.keyfile,
        retention=60.0,
    )
