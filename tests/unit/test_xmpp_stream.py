"""The hardened stream parser: exact events, exact stream-error conditions."""

from __future__ import annotations

import pytest

from esxmpp.stream import Stanza, StreamClose, StreamError, StreamOpen, StreamParser

HDR = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='fwd1' version='1.0' xml:lang='en'>"
)


def test_events_byte_by_byte() -> None:
    p = StreamParser()
    data = HDR + b" \n <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq> </stream:stream>"
    events = []
    for i in range(len(data)):
        events.extend(p.feed(data[i : i + 1]))
    assert events[0] == StreamOpen(
        {"to": "fwd1", "version": "1.0", "xml:lang": "en"}, "jabber:client"
    )
    assert isinstance(events[1], Stanza)
    iq = events[1].element
    assert iq.tag == "{jabber:client}iq" and iq.attrib == {"type": "get", "id": "1"}
    assert [c.tag for c in iq] == ["{urn:xmpp:ping}ping"]
    assert events[2:] == [StreamClose()]


def test_whitespace_keepalives_do_not_count_toward_stanza_size() -> None:
    p = StreamParser(max_stanza_bytes=1000, max_whitespace_bytes=50000)
    p.feed(HDR)
    for _ in range(100):
        assert p.feed(b" " * 500) == []
    assert len(p.feed(b"<presence/>")) == 1


def test_whitespace_between_stanzas_is_bounded_per_gap() -> None:
    p = StreamParser(max_whitespace_bytes=100)
    p.feed(HDR)
    # up to the bound in each gap, byte by byte and in one piece; a stanza resets it
    for _ in range(100):
        assert p.feed(b"\n") == []
    assert len(p.feed(b"<presence/>")) == 1
    assert p.feed(b" \t\r\n" * 25) == []
    assert len(p.feed(b"<presence/>")) == 1
    with pytest.raises(StreamError) as info:
        p.feed(b" " * 101)
    assert (info.value.condition, info.value.text) == (
        "policy-violation",
        "more than 100 bytes of whitespace between stanzas",
    )


def test_whitespace_before_the_first_stanza_counts_too() -> None:
    p = StreamParser(max_whitespace_bytes=4096)
    assert len(p.feed(HDR)) == 1
    fed = 0
    with pytest.raises(StreamError) as info:
        for _ in range(1000):
            p.feed(b" " * 10)
            fed += 10
    assert info.value.condition == "policy-violation"
    assert fed == 4090  # refused with the piece that crossed 4096


BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    b"<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&lol2;"
)


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (BILLION_LAUGHS, "restricted-xml"),
        (b"<!DOCTYPE x SYSTEM 'file:///etc/passwd'><x/>", "restricted-xml"),
        (HDR + b"<!-- hello -->", "restricted-xml"),
        (HDR + b"<?php echo 1; ?>", "restricted-xml"),
        (HDR + b"<message>&xxe;</message>", "restricted-xml"),
        (HDR + b"<a>" * 16, "policy-violation"),
        (HDR + b"<message><body>" + b"x" * 70000, "policy-violation"),
        (HDR + b"<message a='" + b"x" * 70000, "policy-violation"),
        (HDR + b"<a>\xc3\x28</a>", "not-well-formed"),
        (HDR + b"<a></b>", "not-well-formed"),
        (HDR + b"text", "bad-format"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?><x/>", "unsupported-encoding"),
        (b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>", "bad-format"),
        (b"<stream:stream xmlns:stream='urn:wrong'>", "invalid-namespace"),
        (b"<html><body/></html>", "bad-format"),
    ],
)
def test_hostile_input_gives_exact_condition(data: bytes, condition: str) -> None:
    p = StreamParser()
    with pytest.raises(StreamError) as info:
        p.feed(data)
    assert info.value.condition == condition
    with pytest.raises(StreamError):  # a failed parser stays failed
        p.feed(b"<x/>")


def test_data_after_stream_end() -> None:
    p = StreamParser()
    p.feed(HDR + b"</stream:stream>")
    assert p.closed
    assert p.feed(b"  ") == []
    with pytest.raises(StreamError, match="data after end of stream"):
        p.feed(b"<iq/>")


def test_many_distinct_names_do_not_grow_the_parser() -> None:
    p = StreamParser()
    p.feed(HDR)
    for i in range(2000):
        assert len(p.feed(f"<iq><n{i} a{i}='x'/></iq>".encode())) == 1
    assert len(p._intern) <= 300


def test_identity_from_certificate_names() -> None:
    from esxmpp.server import identity_from_cert

    sid = bytes.fromhex("01020304abcd")
    assert identity_from_cert({"subject": ((("commonName", "01:02:03:04:ab:cd"),),)}) == sid
    assert (
        identity_from_cert(
            {
                "subject": ((("commonName", "host1.example"),),),
                "subjectAltName": (("DNS", "host1.example"), ("DNS", "01020304abcd@fwd1")),
            }
        )
        == sid
    )
    assert identity_from_cert({"subject": ((("commonName", "host1.example"),),)}) is None


@pytest.mark.parametrize("chunk", [1, 100, 4096, 30000])
def test_oversize_text_is_caught_whatever_the_chunking(chunk: int) -> None:
    p = StreamParser(max_stanza_bytes=16384)
    p.feed(HDR)
    data = b"<message><body>" + b"x" * 20000
    with pytest.raises(StreamError) as info:
        for i in range(0, len(data), chunk):
            p.feed(data[i : i + chunk])
    assert info.value.condition == "policy-violation"


def test_close_with_buffered_text_is_quiet() -> None:
    p = StreamParser()
    p.feed(HDR + b"<message><body>half")
    p.close()
    p2 = StreamParser()
    p2.feed(HDR)
    with pytest.raises(StreamError):
        p2.feed(b"garbage text")
    p2.close()
    p3 = StreamParser()
    p3.feed(HDR + b"   ")
    p3.close()
