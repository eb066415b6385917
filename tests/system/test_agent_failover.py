"""Two route servers: exports go to both, routes come from one, failover replays the other."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from control.vrf import RemoteTarget
from esxmpp.config import ServerConfig
from esxmpp.dialect import Associate, EndOfRib, ItemsEvent, Publish, Subscribe
from esxmpp.server import XmppServer
from tests.system.test_agent_flow import FWD_SID, HOST_SID, INFRA, Lab, route, until
from tests.system.test_agent_support import EsxmppRouteSource


def test_exports_to_all_routes_from_primary_and_failover(tmp_path: Path) -> None:
    async def scenario() -> None:
        lab = Lab(tmp_path)
        second = EsxmppRouteSource()
        cert = lab.pki.server("rs.test")
        rs2 = XmppServer(
            ServerConfig(
                domain="rs.test",
                certfile=cert.certfile,
                keyfile=cert.keyfile,
                cafile=lab.pki.cafile,
                port=0,
                own_nodes_only=False,
            ),
            second,
        )
        second.server = rs2
        try:
            await lab.start_switch()
            await lab.start_rs()
            await rs2.start()
            cfg = lab.agent_config()
            cfg["route_servers"].append(dict(cfg["route_servers"][0], port=rs2.port))
            from control.agent import Agent
            from control.config import config_from_toml

            lab.agent = agent = Agent(config_from_toml(cfg))
            await agent.start()
            lab.xmpp_port = agent.xmpp.port  # type: ignore[union-attr]
            await until(lambda: all(rs.connected for rs in agent.rs.servers), what="both rs")
            await lab.start_host()
            assert await lab.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            assert await lab.host_cmd(op="publish", prefix="10.1.1.5/32", vpn="red") == {"ok": True}
            node = f"{HOST_SID}:10.1.1.5/32"
            exported = [
                (FWD_SID, Subscribe("red", None)),
                (FWD_SID, Publish(node, route("10.1.1.5/32", INFRA, 16))),
                (FWD_SID, Associate("red", node)),
            ]
            await until(lambda: len(lab.rs_handler.requests) == 3 and len(second.requests) == 3)
            assert lab.rs_handler.requests == exported
            assert second.requests == exported

            fwd = bytes.fromhex(FWD_SID)
            primary = agent.rs.primary
            assert primary is not None
            first_is_primary = primary is agent.rs.servers[0]
            p_src, b_src = (
                (lab.rs_handler, second) if first_is_primary else (second, lab.rs_handler)
            )
            p_srv = lab.rs if first_is_primary else rs2
            p_src.send(fwd, ItemsEvent("red", (("a", route("10.2.0.0/16", "192.0.2.2", 100)),)))
            p_src.send(fwd, EndOfRib("red"))
            b_src.send(fwd, ItemsEvent("red", (("b", route("10.3.0.0/16", "192.0.2.3", 200)),)))
            b_src.send(fwd, EndOfRib("red"))
            backup = agent.rs.servers[1] if first_is_primary else agent.rs.servers[0]
            await until(lambda: "b" in backup.rib.get("red", {}), what="backup rib")
            await until(lambda: "a" in agent.state.remote["red"], what="primary route")
            # only the primary's routes are applied
            assert set(agent.state.remote["red"]) == {"a"}

            assert p_srv is not None
            await p_srv.close()
            await until(lambda: agent.rs.primary is backup, what="failover")
            # the new primary's table replaces the old one at once (its EndOfRib was seen)
            assert set(agent.state.remote["red"]) == {"b"}
            assert agent.state.selected_routes("red") == {
                ipaddress.ip_network("10.3.0.0/16"): frozenset(
                    {RemoteTarget(ipaddress.IPv4Address("192.0.2.3"), 200)}
                )
            }
            await agent.driver.wait_synced(10)
            assert await agent.driver.diff() == []
        finally:
            await lab.close()
            await rs2.close()

    asyncio.run(scenario())
