"""Route server against a SCRIPTED BGP peer (tests/system/bgp_script.py): the bytes
of what no real peer here sends on demand (RTC prefixes of any length) and of what
we send (the OPEN's graceful-restart flags, each UPDATE's attributes).

The scripted peer listens on 127.0.6.7:17915; the route server (127.0.6.1,
ExaBGP) connects to it. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from esxmpp.testing import Pki, make_pki
from routeserver.config import load_dict
from routeserver.server import RouteServer
from tests.system.bgp_script import (
    MP_REACH,
    NEXT_HOP,
    ScriptedPeer,
    route_target,
    rtc_nlri,
    rtc_update,
)
from tests.system.test_routeserver_gobgp import ASN, DOMAIN, F1, RS1, Forwarder, entry, poll, run

PEER, PEER_PORT = "127.0.6.7", 17915


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("rs-script-pki"))


def config(pki: Pki) -> Any:
    server = pki.server(DOMAIN)
    return load_dict(
        {
            "server": {"router_id": RS1, "asn": ASN},
            "xmpp": {
                "domain": DOMAIN,
                "certfile": str(server.certfile),
                "keyfile": str(server.keyfile),
                "cafile": str(pki.cafile),
                "port": 0,
                "forwarders": [F1],
            },
            "control": {"port": 0},
            "bgp": {
                "graceful_restart": 120,
                "neighbor": [
                    {"address": PEER, "asn": ASN, "port": PEER_PORT, "families": ["vpnv4", "rtc"]}
                ],
            },
            "vrf": [
                {"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:100"]},
                # 70000 = 0x00011170: outside the 80-bit RTC prefix 64512:0..65535
                {
                    "vpn": "far",
                    "import_targets": ["64512:70000"],
                    "export_targets": ["64512:70000"],
                },
            ],
        }
    )


def announced(peer: ScriptedPeer) -> set[str]:
    """Prefixes the peer holds from us: announcements minus later withdrawals."""
    held: set[str] = set()
    for u in peer.updates:
        held -= {p for _, p in u.withdrawn}
        held |= {p for _, p in u.vpn}
    return held


def test_rtc_prefixes_of_every_legal_length(pki: Pki) -> None:
    """RFC 4684 §4: RTC NLRI of 80 and 32 bits are accepted (no NOTIFICATION 3/10) and
    match route targets by prefix; a 0-length one is the default RTC route."""

    async def body() -> None:
        peer = ScriptedPeer(PEER, PEER_PORT, ASN)
        await peer.start()
        rs = RouteServer(config(pki))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(peer.established.wait(), 20)
            await f1.client.connect()
            await f1.client.subscribe("red")
            await f1.client.subscribe("far")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000))
            await f1.publish("far", entry("10.9.9.9/32", "192.0.2.11", 10009))
            await poll(lambda: rs.rib.show_peers()[0]["up"], "session up at the RIB")
            # origin AS + type + AS 64512 + the high 16 bits of the number (= 0)
            peer.send(rtc_update([rtc_nlri(80, ASN, route_target(ASN, 100))], PEER))
            await poll(lambda: announced(peer) == {"10.1.1.1/32"}, "red route, by prefix")
            # the origin AS alone (32 bits): every route target
            peer.send(rtc_update([rtc_nlri(32, ASN)], PEER))
            await poll(lambda: announced(peer) == {"10.1.1.1/32", "10.9.9.9/32"}, "far too")
            assert rs.rib.show_rtc()["peers"][PEER]["received"] == [  # type: ignore[index]
                "64512:0x0000000000000000/32",
                "64512:0x0002fc0000000000/80",
            ]
            peer.send(rtc_update([rtc_nlri(32, ASN)], PEER, withdraw=True))
            await poll(lambda: announced(peer) == {"10.1.1.1/32"}, "far withdrawn")
            # the default RTC route (length 0) asks for everything
            peer.send(rtc_update([rtc_nlri(0)], PEER))
            await poll(lambda: announced(peer) == {"10.1.1.1/32", "10.9.9.9/32"}, "default")
            assert peer.notifications == [] and peer.established.is_set()
            assert len(peer.opens) == 1  # one session all along
        finally:
            await f1.client.close()
            await rs.stop()
            await peer.stop()

    run(body)


def test_restart_flag_only_after_a_restart_and_no_next_hop_beside_mp_reach(pki: Pki) -> None:
    """RFC 4724: the first OPEN of a fresh daemon has the Restart State bit clear; the
    OPEN of an ExaBGP the daemon restarted (RIB kept and replayed) has it set.
    RFC 4760: our VPN UPDATEs carry MP_REACH_NLRI and no NEXT_HOP attribute."""

    async def body() -> None:
        peer = ScriptedPeer(PEER, PEER_PORT, ASN)
        await peer.start()
        rs = RouteServer(config(pki))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(peer.established.wait(), 20)
            assert peer.restart_flag() == 0
            peer.send(rtc_update([rtc_nlri(0)], PEER))
            await f1.client.connect()
            await f1.client.subscribe("red")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000))
            await poll(lambda: announced(peer) == {"10.1.1.1/32"}, "our route")
            (ours,) = [u for u in peer.updates if u.vpn]
            assert ours.vpn == [("192.0.2.11:1", "10.1.1.1/32")]
            assert MP_REACH in ours.codes and NEXT_HOP not in ours.codes, ours.codes
            # ExaBGP dies; the daemon restarts it and replays its RIB: a restart
            pid = rs.bgp.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await poll(lambda: len(peer.opens) == 2 and peer.established.is_set(), "new session")
            assert peer.restart_flag() == 1
        finally:
            await f1.client.close()
            await rs.stop()
            await peer.stop()

    run(body)
