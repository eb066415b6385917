"""Operations that must never break a forwarder (issue 19): a dual-stack
end-system, route-server restarts, agent restarts with changed state, and
SIGTERM in every state. Real parts: the agent and the route server in
process or as their console scripts, the embedded target's switch, TLS XMPP."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path

from control import tables as T
from control.p4rt import Exact, Lpm, TableEntry
from tests.system.test_agent_flow import HOST_SID, INFRA, Lab, http_get, until

NET = ipaddress.ip_network


# ------------------------------------------------------------- bug 1: dual stack


def test_dual_stack_end_system_is_saved_installed_and_shown(tmp_path: Path) -> None:
    """An end-system with an IPv4 and an IPv6 address on one interface: the
    state file holds both (its save sorts both families), the switch holds
    both source entries, the operator views work and the agent closes."""

    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            await lab.start_switch()
            await lab.start_rs()
            agent = await lab.start_agent()
            await agent.driver.wait_synced(10)
            await lab.start_host()
            assert await lab.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            for prefix in ("10.1.1.2/32", "fd00:1::2/128"):
                assert await lab.host_cmd(op="publish", prefix=prefix, version=1) == {"ok": True}
            await agent.driver.wait_synced(10)
            state_file = tmp_path / "agent-state.json"

            def saved() -> list[list[object]]:
                try:
                    data = json.loads(state_file.read_text())
                except (OSError, ValueError):
                    return []
                itfs = data["vrf"]["interfaces"]
                return list(itfs[0]["addresses"]) if itfs else []

            await until(lambda: len(saved()) == 2, what="both addresses saved")
            assert saved() == [
                ["10.1.1.2/32", f"{HOST_SID}:10.1.1.2/32", 1],
                ["fd00:1::2/128", f"{HOST_SID}:fd00:1::2/128", 1],
            ]
            source_tables = {lab.info.full_name(t) for t in (T.IPV4_SOURCE, T.IPV6_SOURCE)}
            sources = {
                e
                for e in await lab.switch_entities()
                if isinstance(e, TableEntry) and e.table in source_tables
            }
            assert sources == lab.canon(
                {
                    TableEntry(
                        T.IPV4_SOURCE,
                        {"vif_id": Exact(1), "src_addr": Lpm(0x0A010102, 32)},
                        T.A_PERMIT,
                    ),
                    TableEntry(
                        T.IPV6_SOURCE,
                        {
                            "vif_id": Exact(1),
                            "src_addr": Lpm(int(ipaddress.IPv6Address("fd00:1::2")), 128),
                        },
                        T.A_PERMIT,
                    ),
                }
            )
            assert agent.driver.connected
            assert await http_get(agent, "/v1/routes") == [
                {
                    "vpn": "red",
                    "prefix": prefix,
                    "source": "exported",
                    "nexthops": [f"{INFRA} label 16 version 1"],
                }
                for prefix in ("10.1.1.2/32", "fd00:1::2/128")
            ]
            assert await http_get(agent, "/v1/diff") == {"updates": []}
            metrics = await http_get(agent, "/metrics")
            assert 'esvpn_loop_errors_total{loop="save"} 0\n' in metrics
            assert "esvpn_switch_driver_errors_total 0\n" in metrics
            assert "esvpn_switch_connects_total 1\n" in metrics
        # closed cleanly (Lab.close awaited agent.close) and saved a last time
        assert len(saved()) == 2

    asyncio.run(scenario())
