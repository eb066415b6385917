"""The ExaBGP adapter's command/acknowledgement path against a real ExaBGP child.

ExaBGP is configured with one neighbor (127.0.6.9:17909, where nothing
listens, so it keeps trying to connect); commands are answered by ExaBGP
itself whether or not the session is up.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

from routeserver.config import load_dict
from routeserver.exabgp_adapter import ChannelLost, CommandError, ExaBgp

PEER = "127.0.6.9"
CFG = load_dict(
    {
        "server": {"router_id": "127.0.6.8", "asn": 64512},
        "bgp": {"neighbor": [{"address": PEER, "asn": 64512, "port": 17909}]},
        "vrf": [{"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:100"]}],
    }
)
ANNOUNCE = (
    f"neighbor {PEER} announce route 10.1.1.1/32 rd 127.0.6.8:1 label 16 "
    "next-hop 192.0.2.11 origin igp extended-community [ target:64512:100 ]"
)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 50))


async def outcome(fut: asyncio.Future[None]) -> str:
    try:
        await fut
    except ChannelLost:
        return "lost"
    except CommandError:
        return "error"
    return "done"


def test_answers_in_order_done_and_error_from_exabgp() -> None:
    async def body() -> None:
        bgp = ExaBgp(CFG, lambda inputs: None)
        await bgp.start()
        try:
            futs = [
                bgp.submit(ANNOUNCE),
                bgp.submit(ANNOUNCE.replace(PEER, "203.0.113.9")),  # no such neighbor
                bgp.submit(f"neighbor {PEER} announce rtc 64512 64512:100 next-hop 127.0.6.8"),
                bgp.submit(f"neighbor {PEER} announce rtc 64512 64512:100"),  # bad usage
                bgp.submit(ANNOUNCE.replace("announce", "withdraw").split(" origin")[0]),
            ]
            await bgp.drain()
            results = [await outcome(f) for f in futs]
            assert results == ["done", "error", "done", "error", "done"]
            assert (bgp.commands_sent, bgp.commands_failed, bgp.pending) == (5, 2, 0)
            # the channel still works after refusals
            await bgp.command(ANNOUNCE)
        finally:
            await bgp.stop()

    run(body)


def test_commands_unanswered_when_exabgp_dies_fail_as_lost() -> None:
    async def body() -> None:
        bgp = ExaBgp(CFG, lambda inputs: None)
        await bgp.start()
        try:
            await bgp.command(ANNOUNCE)
            pid = bgp.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)  # written, never answered
            futs = [bgp.submit(ANNOUNCE) for _ in range(3)]
            await bgp.drain()
            assert bgp.pending == 3
            os.kill(pid, signal.SIGKILL)
            assert [await outcome(f) for f in futs] == ["lost", "lost", "lost"]
            await asyncio.wait_for(bgp.exited.wait(), 10)
            assert await outcome(bgp.submit(ANNOUNCE)) == "lost"
            assert (bgp.commands_failed, bgp.commands_lost) == (0, 4)
        finally:
            await bgp.stop()

    run(body)
