"""Issue 18 at the route server: only configured forwarders may connect, next
hops no forwarder can tunnel to are refused (from forwarders and from BGP),
and each forwarder has quotas. Real TLS XMPP sessions with certificates from
one CA (forwarders' and an end-system's)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from esxmpp import dialect as d
from esxmpp.client import XmppClient
from esxmpp.config import ClientConfig
from esxmpp.testing import Pki, make_pki
from routeserver.config import load_dict
from routeserver.rib import BgpPeerUp, BgpRouteAdd, FwdRoute
from routeserver.server import RouteServer
from tests.system.test_agent_flow import until

FWD, ES = "02aa00000001", "0a0000000001"  # a forwarder, an end-system
DOMAIN = "rs.test"
PE = "192.0.2.100"


def config(pki: Pki, **limits: Any) -> Any:
    cert = pki.server(DOMAIN)
    return load_dict(
        {
            "server": {"router_id": "127.0.6.1", "asn": 64512},
            "xmpp": {
                "domain": DOMAIN,
                "certfile": str(cert.certfile),
                "keyfile": str(cert.keyfile),
                "cafile": str(pki.cafile),
                "port": 0,
                "own_nodes_only": False,
                "forwarders": ["02aa*"],
            },
            "control": {"port": 0},
            "bgp": {"neighbor": [{"address": PE, "asn": 64512, "families": ["vpnv4"]}]},
            "vrf": [
                {"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:100"]},
                {"vpn": "blue", "import_targets": ["64512:200"], "export_targets": ["64512:200"]},
            ],
            "limits": limits,
        }
    )


def client(pki: Pki, sid: str, port: int) -> XmppClient:
    pair = pki.client(sid)
    return XmppClient(
        ClientConfig(
            jid=f"{sid}@{DOMAIN}",
            host="127.0.0.1",
            port=port,
            certfile=pair.certfile,
            keyfile=pair.keyfile,
            cafile=pki.cafile,
        ),
        lambda _note: None,
    )


def route(prefix: str, nh: str, label: int = 100, version: int = 1) -> d.RouteEntry:
    return d.RouteEntry(ipaddress.ip_network(prefix), ipaddress.ip_address(nh), label, version)


def node(owner: str, prefix: str) -> str:
    return d.item_node_name(bytes.fromhex(owner), ipaddress.ip_network(prefix))


async def refused(coro: Any) -> tuple[str, str]:
    with pytest.raises(d.DialectError) as e:
        await coro
    return e.value.condition, e.value.text


def test_an_end_system_certificate_cannot_act_as_a_forwarder(tmp_path: Path) -> None:
    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        rs = RouteServer(config(pki))
        await rs.start()
        assert rs.xmpp is not None
        es = client(pki, ES, rs.xmpp.port)
        fwd = client(pki, FWD, rs.xmpp.port)
        try:
            await fwd.connect()
            await fwd.subscribe("red")
            await fwd.publish(node(ES, "10.1.1.1/32"), route("10.1.1.1/32", "192.0.2.1"))
            await fwd.associate("red", node(ES, "10.1.1.1/32"))
            before = rs.rib.table("red")
            assert before == (FwdRoute(ipaddress.ip_network("10.1.1.1/32"),
                                       ipaddress.ip_address("192.0.2.1"), 100, 1),)  # fmt: skip
            # the end-system's certificate is from the same CA: its session is
            # ended with a precise stream error before it can send anything
            with contextlib.suppress(ConnectionError):
                await es.connect()
            await asyncio.wait_for(es.wait_disconnected(), 10)
            assert es.stream_error == "not-authorized"
            assert rs.counters["xmpp_sessions_refused"] == 1
            assert [s.system_id.hex() for s in rs.xmpp.sessions()] == [FWD]
            assert rs.rib.table("red") == before
        finally:
            await es.close()
            await fwd.close()
            await rs.stop()

    asyncio.run(scenario())


def test_martian_next_hops_are_refused_from_forwarders(tmp_path: Path) -> None:
    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        rs = RouteServer(config(pki))
        await rs.start()
        assert rs.xmpp is not None
        fwd = client(pki, FWD, rs.xmpp.port)
        try:
            await fwd.connect()
            await fwd.subscribe("red")
            v4, v6 = "10.1.1.1/32", "2001:db8::1/128"
            for prefix, nh, why in [
                (v4, "0.0.0.0", "'this network' (RFC 1122)"),
                (v4, "127.0.0.1", "loopback"),
                (v4, "255.255.255.255", "reserved (RFC 1112), or broadcast"),
                (v4, "224.0.0.5", "multicast"),
                (v4, "169.254.1.1", "link-local"),
                (v6, "::1", "loopback"),
                (v6, "::ffff:7f00:1", "loopback"),  # IPv4-mapped 127.0.0.1
                (v6, "ff02::1", "multicast"),
            ]:
                n = node(ES, prefix)
                assert await refused(fwd.publish(n, route(prefix, nh))) == (
                    "not-acceptable",
                    f"node {n!r}: next hop {nh} is {why}, not a forwarder's address",
                )
            n = node(ES, v4)
            assert rs.rib.sizes()["xmpp_paths"] == 0
            assert rs.xmpp.session(bytes.fromhex(FWD)).state.published == {}  # type: ignore[union-attr]
            await fwd.publish(n, route("10.1.1.1/32", "192.0.2.1"))  # a real one passes
        finally:
            await fwd.close()
            await rs.stop()

    asyncio.run(scenario())


def test_martian_next_hops_from_bgp_are_treated_as_withdraw(tmp_path: Path) -> None:
    rs = RouteServer(config(make_pki(tmp_path / "pki")))
    rs._bgp_inputs([BgpPeerUp(PE, 0)])
    good = BgpRouteAdd(PE, "64512:7", ipaddress.ip_network("10.9.9.9/32"), 100,
                       ipaddress.ip_address("198.51.100.7"), frozenset({"64512:100"}))  # fmt: skip
    rs._bgp_inputs([good])
    assert rs.rib.show_peers()[0]["routes_in"] == 1
    for nh in ("127.0.0.1", "0.0.0.0", "255.255.255.255"):
        bad = BgpRouteAdd(PE, "64512:7", ipaddress.ip_network("10.9.9.9/32"), 100,
                          ipaddress.ip_address(nh), frozenset({"64512:100"}))  # fmt: skip
        rs._bgp_inputs([bad])
        assert rs.rib.show_peers()[0]["routes_in"] == 0  # the earlier path is withdrawn
        assert rs.rib.table("red") == ()
        rs._bgp_inputs([good])
    assert rs.bgp_refused["bad-nexthop"] == 3


def test_forwarder_quotas(tmp_path: Path) -> None:
    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        rs = RouteServer(
            config(
                pki,
                routes_per_forwarder=2,
                vpns_per_forwarder=1,
                request_burst=8,
                requests_per_second=0.001,
            )
        )
        await rs.start()
        assert rs.xmpp is not None
        fwd = client(pki, FWD, rs.xmpp.port)
        try:
            await fwd.connect()
            await fwd.subscribe("red")  # 1
            assert await refused(fwd.subscribe("blue")) == (  # 2
                "resource-constraint",
                f"forwarder {FWD} is already subscribed to 1 VPNs (limits.vpns_per_forwarder = 1)",
            )
            for i in (1, 2):  # 3..6
                await fwd.publish(node(ES, f"10.1.1.{i}/32"), route(f"10.1.1.{i}/32", "192.0.2.1"))
                await fwd.associate("red", node(ES, f"10.1.1.{i}/32"))
            n3 = node(ES, "10.1.1.3/32")
            assert await refused(fwd.publish(n3, route("10.1.1.3/32", "192.0.2.1"))) == (  # 7
                "resource-constraint",
                f"forwarder {FWD} already publishes 2 routes (limits.routes_per_forwarder = 2)",
            )
            await fwd.retract(node(ES, "10.1.1.2/32"))  # 8: withdrawals always pass
            assert await refused(fwd.publish(n3, route("10.1.1.3/32", "192.0.2.1"))) == (  # 9
                "resource-constraint",
                f"forwarder {FWD}: more than 8 requests in a row or 0.001/s "
                "(limits.request_burst, limits.requests_per_second)",
            )
            await fwd.retract(node(ES, "10.1.1.1/32"))  # still passes
            await until(lambda: rs.rib.table("red") == (), what="withdrawals applied")
            assert sorted(rs.rib.show_vrfs()[0]) and rs.rib.sizes()["xmpp_paths"] == 0
        finally:
            await fwd.close()
            await rs.stop()

    asyncio.run(scenario())
