"""Hostile and malformed streams: the server stays up and other sessions are untouched.

Bounded: a fixed seed, a few thousand streams, a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import xml.etree.ElementTree as ET

import pytest

from esxmpp import dialect as d
from esxmpp.client import XmppClient
from esxmpp.server import XmppServer
from esxmpp.testing import RawClient
from tests.system.test_xmpp_server import (
    DOMAIN,
    ENTRY,
    NODE,
    Certs,
    Recorder,
    client_config,
    client_ctx,
    make_certs,
    run,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory)


HDR = (
    f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
).encode()

LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        f"<!ENTITY lol{i} '{('&lol' + str(i - 1) + ';') * 10 if i > 1 else '&lol;' * 10}'>".encode()
        for i in range(1, 10)
    )
    + b"]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"
)

HOSTILE: list[bytes] = [
    LAUGHS,
    HDR + b"<!DOCTYPE x SYSTEM 'http://attacker/x.dtd'>",
    HDR + b"<!-- c -->",
    HDR + b"<?pi x?>",
    HDR + b"<iq>&lol;</iq>",
    HDR + b"<a>" * 5000,
    HDR + b"<message><body>" + b"A" * 200_000,
    HDR + b"<message b='" + b"B" * 200_000,
    HDR + b"<a>\xff\xfe\xfd</a>",
    HDR + b"\xc0\xaf\xed\xa0\x80",
    HDR + b"<a></b>",
    HDR + b"just text",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # TLS ClientHello
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"<?xml version='1.0' encoding='UTF-16'?><x/>",
    b"<stream:stream xmlns:stream='urn:evil'>",
    HDR + b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>" * 3,
    HDR + b"</stream:stream>trailing",
    b"\x00" * 1000,
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = rng.choice([b"<", b">", b"&", b"'", b"</", b"<!", b"<?", b"]]>", b"\x00"])
        elif op == 2:
            del b[pos : pos + rng.randint(1, 20)]
        elif op == 3:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
        else:
            b = b[:pos]
    return bytes(b)


GOOD_STANZAS = [
    d.to_bytes(d.build_request(d.Subscribe("vpn1", 100), "x")),
    d.to_bytes(d.build_request(d.Publish(NODE, ENTRY), "x")),
    d.to_bytes(d.build_request(d.Associate("vpn1", NODE), "x")),
    b"<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
    b"<presence/>",
]


async def hostile_stream(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = b""
    try:
        writer.write(data)
        writer.write_eof()
        await writer.drain()
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            got += chunk
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
    return got


async def wait_connections(srv: XmppServer, n: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while srv.connection_count != n:
        assert loop.time() < deadline, f"{srv.connection_count} connections, expected {n}"
        await asyncio.sleep(0.01)  # polling with a deadline, not waiting a fixed time


def no_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Hostile input must only ever take the expected paths: no exception logged."""
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


def test_hostile_streams_leave_server_and_sessions_intact(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        good = XmppClient(client_config(certs, srv.port))
        await good.connect()
        await good.subscribe("vpn1", 100)

        # The known attacks: each gets its own stream error or a plain close.
        for data in HOSTILE:
            out = await hostile_stream(srv.port, data)
            # a stream error, or (EOF before anything wrong was complete) a plain close
            assert out == b"" or out.endswith(b"</stream:stream>"), (data, out)
        laughs = await hostile_stream(srv.port, LAUGHS)
        assert laughs.endswith(
            b"<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>DOCTYPE is not allowed in XMPP"
            b"</text></stream:error></stream:stream>"
        )

        # Thousands of mutated streams, 64 at a time.
        rng = random.Random(20120801)
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            base = HDR + b"".join(rng.choice(GOOD_STANZAS) for _ in range(rng.randint(0, 3)))
            data = mutate(rng, base) if i % 3 else HOSTILE[i % len(HOSTILE)]
            async with sem:
                await hostile_stream(srv.port, data)

        await asyncio.gather(*(one(i) for i in range(2000)))

        # Half-open connections (a prefix of a header, then nothing): the negotiation
        # timeout closes each with the server's header and connection-timeout.
        half = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(20)]
        for i, (_r, w) in enumerate(half):
            w.write(HDR[: i * 7])
        timeout_tail = (
            f"' from='{DOMAIN}' version='1.0' xml:lang='en'>"
            "<stream:error><connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>negotiation took too long"
            "</text></stream:error></stream:stream>"
        ).encode()
        for r, _w in half:
            rest = await asyncio.wait_for(r.read(), 5)
            head, sep, tail = rest.partition(b" id='")
            assert (head + sep, len(tail) - len(timeout_tail)) == (
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams' id='",
                16,  # the stream id: 8 random bytes in hex
            ), rest
            assert tail.endswith(timeout_tail), rest
        for _r, w in half:
            w.transport.abort()

        await wait_connections(srv, 1)
        assert good.connected
        assert await good.ping() >= 0
        await good.publish(NODE, ENTRY)
        assert [e[2] for e in rec.log if e[0] == "request"] == [
            d.Subscribe("vpn1", 100),
            d.Publish(NODE, ENTRY),
        ]
        await good.close()

    # one source sends all of it (64 streams at a time, then 20 half-open ones):
    # a share per address that lets every stream reach the parser
    run(
        certs,
        body,
        negotiation_timeout=1.0,
        max_stanza_bytes=16384,
        retention=0.0,
        max_preauth_per_address=128,
    )
    no_internal_errors(caplog)


def random_pubsub(rng: random.Random, i: int) -> bytes:
    """Well-formed iqs with random pubsub content: each must get exactly one answer."""
    choices: list[d.Request] = [
        d.Subscribe("vpn1", 100),
        d.Publish(NODE, ENTRY),
        d.Associate("vpn1", NODE),
    ]
    req = rng.choice(choices)
    el = d.build_request(req, "x")
    el.set("id", f"f{i}")
    nodes = list(el.iter())
    for _ in range(rng.randint(1, 4)):
        n = rng.choice(nodes)
        op = rng.randrange(6)
        if op == 0 and n.attrib:
            del n.attrib[rng.choice(list(n.attrib))]
        elif op == 1 and n.attrib:
            n.set(
                rng.choice(list(n.attrib)), rng.choice(["", "x" * 200, "0", "-1", "\u00e9", "::"])
            )
        elif op == 2:
            n.text = rng.choice(["", " ", "4095", "1.2.3.4/33", "ff::/129", "99999999999", "a"])
        elif op == 3 and n is not el:
            n.tag = rng.choice(["{urn:x}y", "item", "{http://jabber.org/protocol/pubsub}bogus"])
        elif op == 4:
            ET.SubElement(n, "{urn:extra}extra")
        elif len(n):
            n.remove(n[0])
    if el.get("id") != f"f{i}":
        el.set("id", f"f{i}")
    el.set("type", "set")
    return d.to_bytes(el)


def test_random_pubsub_requests_each_get_one_precise_answer(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        del rec
        raw = await RawClient.open(srv.port)
        await raw.login(DOMAIN, client_ctx(certs, certs.client))
        rng = random.Random(6120)
        n = 1500
        for i in range(n):
            await raw.send(random_pubsub(rng, i))
        answers: dict[str, str] = {}
        while len(answers) < n:
            el = await raw.element()
            if el.get("id", "").startswith("ping"):
                continue
            assert el.get("type") in ("result", "error")
            answers[el.get("id", "")] = el.get("type", "")
            if el.get("type") == "error":
                err = d.parse_iq_error(el)
                assert err.condition != "internal-server-error", err
                assert err.text
        assert set(answers) == {f"f{i}" for i in range(n)}
        kinds = sorted(answers.values())
        assert kinds.count("result") > 50 and kinds.count("error") > 500, kinds.count("result")
        assert srv.session(bytes.fromhex("01020304abcd")) is not None
        raw.close()

    run(certs, body)
    no_internal_errors(caplog)


def test_hostile_content_inside_authenticated_sessions(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    cases = [
        # inside the stream element a DOCTYPE is not even XML: expat stops at once
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]>", "not-well-formed", "not well-formed (invalid token)"),
        (
            b"<iq type='get' id='1'><!-- x --></iq>",
            "restricted-xml",
            "comments are not allowed in XMPP",
        ),
        (b"<?evil?>", "restricted-xml", "processing instructions are not allowed in XMPP"),
        (b"<iq>&ent;</iq>", "restricted-xml", "entity references are not allowed"),
        (b"<iq>" + b"<a>" * 20, "policy-violation", "elements nested deeper than 16"),
        (b"<message><body>" + b"x" * 20000, "policy-violation", "stanza larger than 16384 bytes"),
        (b"<iq>\xed\xa0\x80</iq>", "not-well-formed", "not well-formed (invalid token)"),
        (b"<foo/>", "unsupported-stanza-type", "<{jabber:client}foo> is not a stanza"),
    ]

    async def body(srv: XmppServer, rec: Recorder) -> None:
        del rec
        good = XmppClient(client_config(certs, srv.port, certs.client2))
        await good.connect()
        for data, condition, text in cases:
            raw = await RawClient.open(srv.port)
            jid = await raw.login(DOMAIN, client_ctx(certs, certs.client))
            host, port = raw.writer.get_extra_info("sockname")[:2]
            caplog.clear()
            await raw.send(data)
            escaped = text.replace("<", "&lt;").replace(">", "&gt;")
            tail = (
                f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                f"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{escaped}"
                "</text></stream:error></stream:stream>"
            ).encode()
            got = await raw.closed()
            assert got.endswith(tail), (data[:40], got[-300:])
            # the violation is logged, once, with the peer, the JID and the condition
            logged = [
                (r.levelno, r.getMessage()) for r in caplog.records if r.name == "esxmpp.server"
            ]
            assert logged == [
                (logging.WARNING, f"{host}:{port} {jid}: stream error {condition}: {text}")
            ], logged
            assert await good.ping() >= 0
        await wait_connections(srv, 1)
        await good.subscribe("still-fine")
        await good.close()

    run(certs, body, max_stanza_bytes=16384)
    no_internal_errors(caplog)


def test_mutated_bytes_inside_authenticated_sessions(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(srv: XmppServer, rec: Recorder) -> None:
        del rec
        good = XmppClient(client_config(certs, srv.port, certs.client2))
        await good.connect()
        rng = random.Random(4023)
        sem = asyncio.Semaphore(16)
        ctx = client_ctx(certs, certs.client)

        async def one() -> None:
            data = mutate(rng, b"".join(rng.choice(GOOD_STANZAS) for _ in range(3)))
            async with sem:
                raw = await RawClient.open(srv.port)
                try:
                    await raw.login(DOMAIN, ctx)
                    await raw.send(data + b"</stream:stream>")
                    got = await raw.closed()
                    assert got.endswith(b"</stream:stream>"), got[-200:]
                except (ConnectionError, EOFError):
                    pass  # taken over by the next session: fine
                finally:
                    raw.close()

        await asyncio.gather(*(one() for _ in range(150)))
        await wait_connections(srv, 1)
        assert await good.ping() >= 0
        await good.close()

    run(certs, body, duplicate="takeover")
    no_internal_errors(caplog)
