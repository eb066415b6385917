"""Two forwarders (agents) and the project's route server (routeserver/, no BGP
peers): each end-system's route reaches the other forwarder as an
encapsulation route, and comes back to its own forwarder as local delivery."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from control.vrf import LocalTarget, RemoteTarget
from esxmpp.testing import make_pki
from routeserver.config import load_dict
from routeserver.server import RouteServer
from tests.system.test_agent_flow import Lab, until

NET = ipaddress.ip_network


def test_two_forwarders_through_the_route_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        cert = pki.server("rs.test")
        rs = RouteServer(
            load_dict(
                {
                    "server": {"router_id": "127.0.6.1", "asn": 64512},
                    "xmpp": {
                        "domain": "rs.test",
                        "certfile": str(cert.certfile),
                        "keyfile": str(cert.keyfile),
                        "cafile": str(pki.cafile),
                        "port": 0,
                        # external forwarders relay their end-systems' nodes
                        "own_nodes_only": False,
                    },
                    "control": {"port": 0},
                    "vrf": [
                        {
                            "vpn": "red",
                            "import_targets": ["64512:100"],
                            "export_targets": ["64512:100"],
                        }
                    ],
                }
            )
        )
        a = Lab(tmp_path / "a", pki, "02aa00000001", "0a0000000001", "192.0.2.1")
        b = Lab(tmp_path / "b", pki, "02aa00000002", "0a0000000002", "192.0.2.2")
        await rs.start()
        try:
            assert rs.xmpp is not None
            for lab in (a, b):
                lab.rs_address = ("127.0.0.1", rs.xmpp.port)
                await lab.start_switch()
                await lab.start_agent()
                await lab.start_host()
            assert await a.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            assert await b.host_cmd(op="subscribe", vpn="red", vlan=20) == {"ok": True}
            assert await a.host_cmd(op="publish", prefix="10.1.1.5/32", version=1) == {"ok": True}
            assert await b.host_cmd(op="publish", prefix="10.1.2.7/32", version=1) == {"ok": True}
            assert a.agent is not None and b.agent is not None
            sa, sb = a.agent.state, b.agent.state
            want_a = {
                NET("10.1.1.5/32"): frozenset({LocalTarget(1, 3, 10, 0x0A0000000001)}),
                NET("10.1.2.7/32"): frozenset(
                    {RemoteTarget(ipaddress.IPv4Address("192.0.2.2"), 16)}
                ),
            }
            want_b = {
                NET("10.1.2.7/32"): frozenset({LocalTarget(1, 3, 20, 0x0A0000000002)}),
                NET("10.1.1.5/32"): frozenset(
                    {RemoteTarget(ipaddress.IPv4Address("192.0.2.1"), 16)}
                ),
            }
            await until(lambda: sa.selected_routes("red") == want_a, what="routes at A")
            await until(lambda: sb.selected_routes("red") == want_b, what="routes at B")
            for lab in (a, b):
                assert lab.agent is not None
                await lab.agent.driver.wait_synced(10)
                assert await lab.agent.driver.diff() == []
            # B's end-system leaves: A loses the route to it
            assert await b.host_cmd(op="retract", prefix="10.1.2.7/32") == {"ok": True}
            await until(
                lambda: NET("10.1.2.7/32") not in sa.selected_routes("red"), what="withdrawal"
            )
            assert sa.selected_routes("red") == {NET("10.1.1.5/32"): want_a[NET("10.1.1.5/32")]}
        finally:
            await a.close()
            await b.close()
            await rs.stop()

    asyncio.run(scenario())
