"""The ExaBGP process-API channel against a FAKE API peer (a socket pair end we script).

The fake stands in for ExaBGP only for faults the real one does not produce:
malformed or unexpected lines, an answer that never comes, the order of
answers under our control. Real ExaBGP answers are tested in
tests/system/test_routeserver_exabgp.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from ipaddress import ip_address, ip_network

import pytest

from routeserver.config import load_dict
from routeserver.exabgp_adapter import BgpInputError, ChannelLost, CommandError, ExaBgp
from routeserver.rib import BgpPeerUp, BgpRtcAdd, Input, XmppRouteAdd, XmppSubscribe
from routeserver.server import RouteServer

PE = "192.0.2.1"
CFG = load_dict(
    {
        "server": {"router_id": "10.255.0.1", "asn": 64512},
        "bgp": {"neighbor": [{"address": PE, "asn": 64512}]},
        "vrf": [{"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:100"]}],
    }
)
STATE_UP = (
    '{"exabgp": "5.0.0", "type": "state", "neighbor": {"address": {"local": "10.255.0.1", '
    '"peer": "192.0.2.1"}, "asn": {"local": 64512, "peer": 64512}, "state": "up"}}'
)
RTC_ADD = (
    '{"exabgp": "5.0.0", "type": "update", "neighbor": {"address": {"local": "10.255.0.1", '
    '"peer": "192.0.2.1"}, "message": {"update": {"attribute": {"origin": "igp"}, '
    '"announce": {"ipv4 rtc": {"192.0.2.1": [{"origin": 64512, '
    '"route-target": "target:64512:100"}]}}}}}}'
)


class FakeApiPeer:
    """FAKE ExaBGP: the far end of the API channel; reads commands, writes what we script."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def command(self, timeout: float = 5.0) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        assert raw, "channel closed"
        return raw.decode().rstrip("\n")

    def say(self, *lines: str) -> None:
        self.writer.write(b"".join(line.encode() + b"\n" for line in lines))


async def attach(bgp: ExaBgp) -> tuple[FakeApiPeer, asyncio.Task[None]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r1, w1 = await asyncio.open_unix_connection(sock=ours)
    r2, w2 = await asyncio.open_unix_connection(sock=theirs)
    task = asyncio.create_task(bgp.serve_channel(r1, w1))
    while not bgp.connected:
        await asyncio.sleep(0)
    return FakeApiPeer(r2, w2), task


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 20))


async def until(pred: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.01)


def test_answers_complete_commands_in_order_and_loss_fails_the_rest() -> None:
    async def body() -> None:
        bgp = ExaBgp(CFG, lambda inputs: None)
        peer, task = await attach(bgp)
        futs = [bgp.submit(f"c{i}") for i in range(4)]
        await bgp.drain()
        assert [await peer.command() for _ in range(4)] == ["c0", "c1", "c2", "c3"]
        assert bgp.pending == 4
        peer.say("done", "error")
        await until(futs[1].done, "two answers")
        assert futs[0].result() is None
        assert type(futs[1].exception()) is CommandError
        assert not futs[2].done() and not futs[3].done()
        # the peer goes away without answering c2, c3: their fate is unknown
        peer.writer.close()
        await task
        assert [type(f.exception()) for f in futs[2:]] == [ChannelLost, ChannelLost]
        assert (bgp.commands_sent, bgp.commands_failed, bgp.commands_lost) == (4, 1, 2)
        # nothing is written to a closed channel: the future fails at once
        late = bgp.submit("c4")
        assert type(late.exception()) is ChannelLost
        assert not bgp.connected

    run(body)


def test_bad_lines_are_logged_and_counted_never_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        got: list[list[Input]] = []
        bad: list[BgpInputError] = []
        bgp = ExaBgp(CFG, got.append, bad.append)
        peer, task = await attach(bgp)
        fut = bgp.submit("neighbor 192.0.2.1 announce rtc 64512 64512:100 next-hop 10.255.0.1")
        peer.say(
            "{not json",
            "[1, 2]",
            '{"type": "state", "neighbor": {"address": {"peer": "nope"}}}',
            '{"type": "notification", "neighbor": {"address": {"peer": "192.0.2.1"}}}',
            "done",
            "done",  # answers nothing: logged, counted
            "x" * (2 << 20),  # one line beyond the read limit
            STATE_UP,
            RTC_ADD,
        )
        await until(lambda: len(got) == 2, "the good messages after the bad ones")
        assert fut.result() is None
        assert got == [[BgpPeerUp(PE, 0)], [BgpRtcAdd(PE, "64512:100")]]
        assert [str(e).split(":")[0] for e in bad] == [
            "not JSON",
            "JSON message is not an object",
            "message without a valid neighbor.address.peer",
            "line longer than the API read limit",
        ]
        assert (bgp.bad_messages, bgp.unexpected_acks, bgp.messages_in) == (4, 1, 6)
        assert "exabgp: unexpected acknowledgement 'done'" in caplog.messages
        assert bgp.connected and not task.done()
        peer.writer.close()
        await task

    with caplog.at_level(logging.WARNING, "routeserver.bgp"):
        run(body)


def test_handler_bug_does_not_cut_the_channel(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        calls: list[list[Input]] = []

        def handler(inputs: list[Input]) -> None:
            calls.append(inputs)
            if len(calls) == 1:
                raise RuntimeError("bug")

        bgp = ExaBgp(CFG, handler)
        peer, task = await attach(bgp)
        peer.say(STATE_UP, RTC_ADD)
        await until(lambda: len(calls) == 2, "second message handled")
        assert calls[1] == [BgpRtcAdd(PE, "64512:100")]
        peer.writer.close()
        await task

    with caplog.at_level(logging.ERROR, "routeserver.bgp"):
        run(body)
    assert caplog.records[0].getMessage().startswith("handling BGP inputs [BgpPeerUp(")


def test_route_server_resends_a_refused_announcement() -> None:
    """ExaBGP (FAKE) answers 'error' to an announcement: forgotten, counted, re-sent."""

    async def body() -> None:
        rs = RouteServer(CFG)
        peer, task = await attach(rs.bgp)
        rs.start_tasks(supervise=False)
        try:
            peer.say(STATE_UP)  # routes go to established peers only
            await until(lambda: rs.rib.up_peers() == [PE], "peer up")
            rs.feed([XmppSubscribe("0102030405a1", "red")])
            assert await peer.command() == (
                "neighbor 192.0.2.1 announce rtc 64512 64512:100 next-hop 10.255.0.1"
            )
            peer.say("done")
            rs.feed(
                [
                    XmppRouteAdd(
                        "0102030405a1", "red", ip_network("10.1.1.1/32"),
                        ip_address("192.0.2.11"), 16,
                    )
                ]
            )  # fmt: skip
            ann = (
                "neighbor 192.0.2.1 announce route 10.1.1.1/32 rd 192.0.2.11:1 label 16 "
                "next-hop 192.0.2.11 origin igp local-preference 100 "
                "extended-community [ target:64512:100 ]"
            )
            # RTC filtering: the peer asked for nothing yet, so nothing is announced;
            # the peer's RTC route arrives and the announcement follows
            peer.say(RTC_ADD)
            assert await peer.command() == ann
            peer.say("error")
            await until(lambda: rs.counters["bgp_commands_refused"] == 1, "refusal counted")
            assert rs.rib.show_rtc()["peers"][PE]["routes_out"] == 0  # type: ignore[index]
            # the resync (1 s backoff, on the RIB's deadline) sends it again
            assert await peer.command() == ann
            peer.say("done")
            await rs.flush()
            assert rs.rib.show_rtc()["peers"][PE]["routes_out"] == 1  # type: ignore[index]
            metrics = rs.metrics().splitlines()
            assert "esvpn_rs_bgp_commands_refused_total 1.0" in metrics
            assert "esvpn_rs_bgp_commands_pending 0.0" in metrics
            assert 'esvpn_rs_rib_inputs_total{type="BgpCommandFailed"} 1.0' in metrics
        finally:
            await rs.stop()
            peer.writer.close()
            await task

    run(body)


def _nei(body: str, kind: str, direction: str = "") -> str:
    way = f'"direction": "{direction}", ' if direction else ""
    return (
        f'{{"exabgp": "5.0.0", "type": "{kind}", "neighbor": {{"address": {{"local": '
        f'"10.255.0.1", "peer": "{PE}"}}, "asn": {{"local": 64512, "peer": 64512}}, {way}{body}}}}}'
    )


def test_session_events_logged_and_every_refusal_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 19 bug 8: up/down and NOTIFICATIONs at info/warning with the peer and the
    reason; a path with a reserved label (< 16) and a malformed route are counted."""

    def vpn(label: object) -> str:
        routes = [
            {"nlri": "10.2.2.2/32", "label": [[label]], "rd": "64512:7"},
            {"nlri": "10.2.2.3/32", "label": [[3]], "rd": "64512:7"},
        ]
        ann = {"ipv4 mpls-vpn": {"192.0.2.22": routes}}
        upd = {"attribute": {"origin": "igp", "extended-community": [{"value": 0x0002FC000000064}]},
               "announce": ann}  # fmt: skip

        return _nei(f'"message": {{"update": {json.dumps(upd)}}}', "update", "receive")

    async def body() -> None:
        rs = RouteServer(CFG)
        peer, task = await attach(rs.bgp)
        try:
            peer.say(
                STATE_UP,
                vpn(2),  # label 2 and 3: both reserved, neither usable
                vpn("x"),  # a malformed label: that route treated as withdrawn
                _nei(
                    '"notification": {"code": 6, "subcode": 2, "data": "", '
                    '"message": "maintenance"}',
                    "notification",
                    "receive",
                ),
                _nei('"state": "down", "reason": "peer reset the session"', "state"),
            )
            await until(lambda: rs.rib.counters.get("BgpPeerDown") == 1, "session down")
            assert rs.bgp_refused == {
                "bad-label": 1,
                "malformed": 0,
                "rejected": 0,
                "reserved-label": 3,
            }
            metrics = rs.metrics().splitlines()
            assert 'esvpn_rs_bgp_refused_total{reason="reserved-label"} 3.0' in metrics
            assert 'esvpn_rs_bgp_refused_total{reason="bad-label"} 1.0' in metrics
        finally:
            peer.writer.close()
            await task

    with caplog.at_level(logging.INFO, "routeserver"):
        run(body)
    records = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.INFO and "command" not in r.getMessage()
    ]
    assert records == [
        ("INFO", f"BGP session with {PE} (AS 64512) up (graceful restart 0 s)"),
        ("WARNING", f"BGP peer {PE}: 2 path(s) with a reserved label (< 16) unused, e.g. "
                    "64512:7:10.2.2.2/32 label 2"),
        ("WARNING", "bad BGP message ignored (bad-label): vpnv4: bad label [['x']]; "
                    "64512:7:10.2.2.2/32 treated as withdrawn (RFC 7606)"),
        ("WARNING", f"BGP peer {PE}: 1 path(s) with a reserved label (< 16) unused, e.g. "
                    "64512:7:10.2.2.3/32 label 3"),
        ("WARNING", f"BGP NOTIFICATION from {PE} (AS 64512): code 6 subcode 2 "
                    "(Cease, Administrative Shutdown): maintenance"),
        ("WARNING", f"BGP session with {PE} (AS 64512) down: peer reset the session"),
    ]  # fmt: skip


def test_text_answers_are_the_reply_of_their_command_not_messages() -> None:
    """ExaBGP answers ``reload`` with 'reload in progress' and ``show neighbor json``
    with a JSON list, then 'done': that text is the command's reply; a message
    (a JSON object) between them is still a message."""

    async def body() -> None:
        got: list[list[Input]] = []
        bad: list[BgpInputError] = []
        bgp = ExaBgp(CFG, got.append, bad.append)
        peer, task = await attach(bgp)
        reload = asyncio.create_task(bgp.query("reload"))
        show = asyncio.create_task(bgp.query("show neighbor json"))
        await until(lambda: bgp.pending == 2, "two queries written")
        assert [await peer.command(), await peer.command()] == ["reload", "show neighbor json"]
        peer.say("reload in progress", STATE_UP, "done", '[{"peer": {"address": "192.0.2.1"}}]')
        peer.say("done")
        assert await reload == ["reload in progress"]
        assert await show == ['[{"peer": {"address": "192.0.2.1"}}]']
        assert got == [[BgpPeerUp(PE, 0)]]
        assert (bad, bgp.bad_messages) == ([], 0)
        # the same text for a command that has no reply is a bad message
        fut = bgp.submit("neighbor 192.0.2.1 teardown 4")
        await peer.command()
        peer.say("reload in progress", "done")
        await until(fut.done, "answer")
        assert bgp.bad_messages == 1
        peer.writer.close()
        await task

    run(body)
