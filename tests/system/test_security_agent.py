"""Issue 18 at the agent, end to end (real TLS XMPP end-systems, the agent, the
softswitch over P4Runtime): a VPN the forwarder does not serve, an address
another end-system owns, a prefix the VPN does not allow and a request rate
beyond the quota are each refused precisely, and neither the agent nor the
switch changes."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

from control import tables as T
from control.desired import source_entry
from esxmpp.dialect import Associate, Publish, RouteEntry, Subscribe
from tests.system.test_agent_flow import HOST_SID, Lab, attach_and_learn, end_system_client, refused
from tests.system.test_agent_support import write_sized_program

OTHER = "0a0000000002"


class OwnLab(Lab):
    """The test lab with a second end-system (port 4) and, optionally, [limits]."""

    limits: dict[str, Any] = {}

    def agent_config(self, stale: float = 30.0, retention: float = 30.0) -> dict[str, Any]:
        cfg = super().agent_config(stale, retention)
        cfg["end_systems"]["ports"][OTHER] = 4
        cfg["vpns"]["red"] = {"prefixes": ["10.1.0.0/16"]}
        if self.limits:
            cfg["limits"] = self.limits
        return cfg


def test_attacks_on_other_tenants_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with OwnLab(tmp_path) as lab:
            agent = await attach_and_learn(lab)  # HOST_SID has 10.1.1.5/32 in red
            on_switch = await lab.switch_entities()
            victim = repr(agent.state.interface(bytes.fromhex(HOST_SID), "red"))
            rs_requests = list(lab.rs_handler.requests)
            for vpn in ("nonexistent", "RED", "../red"):
                resp = await lab.host_cmd(op="subscribe", vpn=vpn, vlan=30)
                assert resp == {
                    "ok": False,
                    "error": f"forbidden: VPN {vpn!r} is not served by this forwarder (vpns)",
                }
            for prefix, err in [
                ("0.0.0.0/0", "forbidden: 0.0.0.0/0: only host routes (/32) may be published "
                 "in VPN 'red' (vpns.red.host_routes_only)"),
                ("10.2.0.0/16", "forbidden: 10.2.0.0/16: only host routes (/32) may be published "
                 "in VPN 'red' (vpns.red.host_routes_only)"),
                ("10.200.0.1/32", "forbidden: 10.200.0.1/32 is outside the prefixes system "
                 f"{HOST_SID} may use in VPN 'red' (vpns.red.prefixes)"),
            ]:  # fmt: skip
                resp = await lab.host_cmd(op="publish", prefix=prefix, vpn="red")
                assert resp == {"ok": False, "error": err}
            await agent.driver.wait_synced(10)
            assert await lab.switch_entities() == on_switch
            # another end-system takes the victim's address at the highest version
            other = end_system_client(lab, OTHER)
            await other.connect()
            try:
                await other.request(Subscribe("red", 10))
                await agent.driver.wait_synced(10)
                on_switch = await lab.switch_entities()  # with the other's vif
                node = f"{OTHER}:10.1.1.5/32"
                top = RouteEntry.end_system(ipaddress.ip_network("10.1.1.5/32"), (1 << 32) - 1)
                await other.request(Publish(node, top))
                assert await refused(other, Associate("red", node)) == (
                    f"conflict: 10.1.1.5/32 in VPN 'red' belongs to end-system {HOST_SID}"
                )
            finally:
                await other.close()
            await agent.driver.wait_synced(10)
            # the victim's state and the switch's entries are exactly as they were
            assert repr(agent.state.interface(bytes.fromhex(HOST_SID), "red")) == victim
            assert set(agent.state.vrfs) == {"red"}
            assert {
                (e.system_id.hex(), str(e.prefix), e.version) for e in agent.state.exports()
            } == {(HOST_SID, "10.1.1.5/32", 3)}
            assert await lab.switch_entities() == on_switch
            assert [r for r in lab.rs_handler.requests if r not in rs_requests] == []

    asyncio.run(scenario())


def test_request_rate_quota(tmp_path: Path) -> None:
    async def scenario() -> None:
        lab = OwnLab(tmp_path)
        lab.limits = {"request_burst": 5, "requests_per_second": 0.001}
        async with lab:
            agent = await attach_and_learn(lab)  # 2 requests: subscribe, publish (+associate)
            for i in (6, 7):  # 2 + 2 more: 5 in a row is the burst ...
                resp = await lab.host_cmd(op="publish", prefix=f"10.1.1.{i}/32", vpn="red")
                if i == 6:
                    assert resp == {"ok": True}
            assert resp == {
                "ok": False,
                "error": "resource-constraint: more than 5 requests in a row or 0.001/s "
                "(limits.request_burst, limits.requests_per_second)",
            }
            assert {str(e.prefix) for e in agent.state.exports()} == {"10.1.1.5/32", "10.1.1.6/32"}
            # withdrawals always pass
            assert await lab.host_cmd(op="retract", prefix="10.1.1.6/32") == {"ok": True}
            assert {str(e.prefix) for e in agent.state.exports()} == {"10.1.1.5/32"}

    asyncio.run(scenario())


def test_an_address_the_switch_cannot_hold_is_refused(tmp_path: Path) -> None:
    """The anti-spoofing table is full: the end-system is told so (never OK
    while its traffic would be dropped), and nothing of the address stays."""

    async def scenario() -> None:
        program = write_sized_program(tmp_path / "small", sizes={"ipv4_source": 1})
        async with OwnLab(tmp_path, program=program) as lab:
            agent = await attach_and_learn(lab)  # 10.1.1.5/32 fills the table
            on_switch = await lab.switch_entities()
            exports = agent.state.exports()
            full = lab.info.full_name(T.IPV4_SOURCE)
            resp = await lab.host_cmd(op="publish", prefix="10.1.1.6/32", vpn="red")
            assert resp == {
                "ok": False,
                "error": "resource-constraint: the switch refused it: "
                f"INSERT: RESOURCE_EXHAUSTED: table {full} is full (1)",
            }
            itf = agent.state.interface(bytes.fromhex(HOST_SID), "red")
            assert itf is not None and set(map(str, itf.addresses)) == {"10.1.1.5/32"}
            assert agent.state.exports() == exports
            assert agent.switch_refusals == 1
            await agent.driver.wait_synced(10)
            assert await lab.switch_entities() == on_switch
            assert await agent.driver.diff() == []
            # room again: the same address is accepted once the switch holds it
            assert await lab.host_cmd(op="retract", prefix="10.1.1.5/32") == {"ok": True}
            resp = await lab.host_cmd(op="publish", prefix="10.1.1.6/32", vpn="red")
            assert resp == {"ok": True}
            assert agent.driver.holds(
                source_entry(agent.state.interface(bytes.fromhex(HOST_SID), "red"),  # type: ignore[arg-type]
                             ipaddress.ip_network("10.1.1.6/32"), agent.driver.full_name)
            )  # fmt: skip

    asyncio.run(scenario())
