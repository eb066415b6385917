"""The agent end to end: an end-system over XMPP/TLS (esvpn host tool), a route
source over XMPP/TLS, and the softswitch's P4Runtime server over real gRPC.

The switch runs the program compiled by p4c (p4src/build) on the embedded
target's real engine (test_agent_support.ObservedSoftEngine: SoftEngine, which
also records the calls that change it); what the switch holds is read back
over P4Runtime and asserted exactly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from control import tables as T
from control.agent import Agent
from control.config import config_from_toml
from control.host import HostAgent, HostConfig, send_command
from control.p4rt import (
    INSERT,
    MODIFY,
    ActionProfileGroup,
    ActionProfileMember,
    Entity,
    Exact,
    Lpm,
    MulticastGroup,
    P4Info,
    P4RuntimeClient,
    Replica,
    TableEntry,
    Update,
)
from esxmpp.client import XmppClient
from esxmpp.config import ClientConfig, ServerConfig
from esxmpp.dialect import (
    Associate,
    DialectError,
    EndOfRib,
    ItemsEvent,
    Publish,
    Request,
    RetractEvent,
    RouteEntry,
    Subscribe,
    build_notification,
)
from esxmpp.server import XmppServer
from esxmpp.testing import Pki, make_pki
from softswitch.p4runtime import P4RuntimeServer
from tests.prometheus_text import families
from tests.system.test_agent_support import (
    COMPILED,
    EsxmppRouteSource,
    ObservedSoftEngine,
    write_sized_program,
)

HOST_SID = "0a0000000001"
FWD_SID = "02aa00000001"
HOST_MAC = 0x0A0000000001
INFRA = "192.0.2.1"
REMOTE = "192.0.2.2"


async def until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``pred`` until true, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


async def until_async(pred: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        if loop.time() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


class Lab:
    """One forwarder: its switch, agent and end-system (host tool), plus (unless
    an external one is given) a route source."""

    def __init__(
        self,
        tmp: Path,
        pki: Pki | None = None,
        fwd_sid: str = FWD_SID,
        host_sid: str = HOST_SID,
        infra: str = INFRA,
        program: tuple[Path, Path] | None = None,
        engine_factory: Callable[[], Any] = ObservedSoftEngine,
    ) -> None:
        self.tmp = tmp
        self.pki: Pki = pki or make_pki(tmp / "pki")
        self.fwd_sid, self.host_sid, self.infra = fwd_sid, host_sid, infra
        self.rs_address: tuple[str, int] | None = None  # external route server
        self.p4info_path, self.json_path = program or COMPILED
        self.info = P4Info.load(self.p4info_path)
        self.engine_factory = engine_factory
        self.engine = engine_factory()
        self.switch: P4RuntimeServer | None = None
        self.switch_port = 0
        self.rs_handler = EsxmppRouteSource()
        self.rs: XmppServer | None = None
        self.agent: Agent | None = None
        self.host: HostAgent | None = None
        self.xmpp_port = 0
        self.label_max: int | None = None  # [labels] max, when set

    async def start_switch(self, engine: Any = None, tls: Any = None) -> None:
        if engine is not None:
            self.engine = engine
        self.switch = P4RuntimeServer(self.engine, device_id=1, cpu_port=255)
        self.switch_port = await self.switch.start(f"127.0.0.1:{self.switch_port}", tls=tls)

    async def start_rs(self, port: int = 0) -> None:
        cert = self.pki.server("rs.test")
        cfg = ServerConfig(
            domain="rs.test",
            certfile=cert.certfile,
            keyfile=cert.keyfile,
            cafile=self.pki.cafile,
            port=port,
            own_nodes_only=False,
        )
        self.rs = XmppServer(cfg, self.rs_handler)
        self.rs_handler.server = self.rs
        await self.rs.start()

    def agent_config(self, stale: float = 30.0, retention: float = 30.0) -> dict[str, Any]:
        if self.rs_address is None:
            assert self.rs is not None
            self.rs_address = ("127.0.0.1", self.rs.port)
        srv = self.pki.server("tor.test")
        cli = self.pki.client(self.fwd_sid)
        return {
            "agent": {
                "system_id": self.fwd_sid,
                "state_file": str(self.tmp / "agent-state.json"),
                "control": "127.0.0.1:0",
            },
            "switch": {
                "address": f"127.0.0.1:{self.switch_port}",
                "device_id": 1,
                "election_id": 10,
                "p4info": str(self.p4info_path),
                "bmv2_json": str(self.json_path),
            },
            "fabric": {
                "infra_address": self.infra,
                "ports": [1],
                "underlay": [
                    {
                        "prefix": "192.0.2.0/24",
                        "port": 1,
                        "src_mac": "02:00:00:00:00:01",
                        "dst_mac": "02:00:00:00:00:fe",
                    }
                ],
            },
            "end_systems": {"ports": {self.host_sid: 3}},
            "xmpp": {
                "domain": "tor.test",
                "port": self.xmpp_port,
                "certfile": str(srv.certfile),
                "keyfile": str(srv.keyfile),
                "cafile": str(self.pki.cafile),
                "retention": retention,
            },
            "route_servers": [
                {
                    "jid": f"{self.fwd_sid}@rs.test",
                    "host": self.rs_address[0],
                    "port": self.rs_address[1],
                    "certfile": str(cli.certfile),
                    "keyfile": str(cli.keyfile),
                    "cafile": str(self.pki.cafile),
                }
            ],
            "timers": {"stale": stale, "coalesce": 0.002, "reconnect": 0.1},
            "vpns": {"red": {}, "blue": {}},
            **({"labels": {"max": self.label_max}} if self.label_max is not None else {}),
        }

    async def start_agent(self, clock: Callable[[], float] = time.monotonic, **kw: float) -> Agent:
        self.agent = Agent(config_from_toml(self.agent_config(**kw)), clock)
        await self.agent.start()
        assert self.agent.xmpp is not None
        self.xmpp_port = self.agent.xmpp.port  # a restarted agent listens there again
        return self.agent

    async def start_synced(self) -> Agent:
        """Switch, route server and agent, the agent in sync with the switch."""
        await self.start_switch()
        await self.start_rs()
        agent = await self.start_agent()
        await agent.driver.wait_synced(10)
        return agent

    async def start_host(self) -> HostAgent:
        assert self.agent is not None and self.agent.xmpp is not None
        cli = self.pki.client(self.host_sid)
        cfg = HostConfig(
            ClientConfig(
                jid=f"{self.host_sid}@tor.test",
                host="127.0.0.1",
                port=self.agent.xmpp.port,
                certfile=cli.certfile,
                keyfile=cli.keyfile,
                cafile=self.pki.cafile,
            ),
            socket=self.tmp / "host.sock",
            reconnect=0.1,
        )
        self.host = HostAgent(cfg)
        await self.host.start()
        await asyncio.wait_for(self.host.connected.wait(), 10)
        return self.host

    async def host_cmd(self, **req: Any) -> dict[str, Any]:
        assert self.host is not None
        return await send_command(self.host.cfg.socket, req)

    async def switch_entities(self) -> set[Entity]:
        """What the switch holds, read by a separate (backup) controller."""
        c = await P4RuntimeClient.connect(
            f"127.0.0.1:{self.switch_port}", self.info, device_id=1, election_id=1
        )
        try:
            ents = await c.read_all(self.info.names("table"))
            ents.add(await c.read_default_entry(T.FABRIC_CONFIG))
        finally:
            await c.close()
        return {self.info.canonical(e) for e in ents}

    def canon(self, ents: set[Entity]) -> set[Entity]:
        return {self.info.canonical(e) for e in ents}

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.host is not None:
            await self.host.close()
        if self.agent is not None:
            await self.agent.close()
        if self.rs is not None:
            await self.rs.close()
        if self.switch is not None:
            await self.switch.stop(0)


def fabric_entities() -> set[Entity]:
    return {
        TableEntry(
            T.FABRIC_CONFIG,
            action=T.A_SET_FABRIC_CONFIG,
            params={"my_ipv4": 0xC0000201, "mtu": 1500},
            is_default=True,
        ),
        TableEntry(T.FABRIC_PORT, {"ingress_port": Exact(1)}, T.A_SET_FABRIC_PORT),
        TableEntry(
            T.FABRIC_VLAN, {"ingress_port": Exact(1), "vlan_id": Exact(0)}, T.A_PERMIT_FABRIC_VLAN
        ),
        TableEntry(
            T.UNDERLAY,
            {"remote_ipv4": Lpm(0xC0000200, 24)},
            T.A_SET_UNDERLAY,
            {"port": 1, "src_mac": 0x020000000001, "dst_mac": 0x0200000000FE, "vlan_id": 0},
        ),
    }


def attached_entities() -> set[Entity]:
    """The end-system on port 3, vlan 10, vif 1, vrf 1, label 16, 10.1.1.5/32."""
    return fabric_entities() | {
        TableEntry(
            T.VIF,
            {"ingress_port": Exact(3), "src_mac": Exact(HOST_MAC), "vlan_id": Exact(10)},
            T.A_SET_VIF,
            {"vif_id": 1, "vrf_id": 1},
        ),
        TableEntry(
            T.MPLS_LABEL,
            {"label": Exact(16)},
            T.A_LABEL_TO_VIF,
            {"vif_id": 1, "port": 3, "vlan_id": 10, "dst_mac": HOST_MAC, "vrf_id": 1},
        ),
        TableEntry(
            T.IPV4_SOURCE, {"vif_id": Exact(1), "src_addr": Lpm(0x0A010105, 32)}, T.A_PERMIT
        ),
        # flooding in the VRF: group 1 (= vrf id), replica rid 1 (= vif id)
        MulticastGroup(1, frozenset({Replica(3, 1)})),
        TableEntry(
            T.FLOOD,
            {"vrf_id": Exact(1), "from_fabric": Exact(0)},
            T.A_SET_FLOOD_GROUP,
            {"group": 1},
        ),
        TableEntry(
            T.REPLICA, {"egress_rid": Exact(1)}, T.A_REPLICA_LOCAL, {"vif_id": 1, "vlan_id": 10}
        ),
    }


def remote_route_entities() -> set[Entity]:
    """10.2.0.0/16 via 192.0.2.2 label 100 (member 1, next hop 1)."""
    return {
        TableEntry(T.TUNNEL_PEER, {"remote_ipv4": Exact(0xC0000202)}, T.A_PERMIT_PEER),
        vrf_peer(0xC0000202),
        ActionProfileMember(
            T.NEXTHOP_SELECTOR, 1, T.A_ENCAP, {"label": 100, "remote_ipv4": 0xC0000202}
        ),
        ActionProfileGroup(T.NEXTHOP_SELECTOR, 1, frozenset({(1, 1)})),
        TableEntry(T.NEXTHOP, {"nexthop_id": Exact(1)}, group_id=1),
        TableEntry(
            T.IPV4_ROUTE,
            {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A020000, 16)},
            T.A_SET_NEXTHOP,
            {"nexthop_id": 1},
        ),
    }


def vrf_peer(remote: int, vrf_id: int = 1) -> TableEntry:
    return TableEntry(
        T.VRF_PEER, {"vrf_id": Exact(vrf_id), "remote_ipv4": Exact(remote)}, T.A_PERMIT_VRF_PEER
    )


def route(prefix: str, nh: str, label: int, version: int = 0) -> RouteEntry:
    return RouteEntry(ipaddress.ip_network(prefix), ipaddress.ip_address(nh), label, version)


async def http_get(agent: Agent, path: str) -> Any:
    """GET from the agent's control port (from a thread: the agent runs on this loop)."""

    def get() -> Any:
        url = f"http://127.0.0.1:{agent.control_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read()) if path.startswith("/v1") else r.read().decode()

    return await asyncio.to_thread(get)


def label_on_switch(lab: Lab, label: int) -> bool:
    """The engine holds the mpls_label entry for ``label``."""
    assert isinstance(lab.engine, ObservedSoftEngine)
    return label in lab.engine.labels


async def attach_and_learn(lab: Lab, **agent_kw: float) -> Agent:
    """Everything up; host in VPN red (vlan 10) with 10.1.1.5/32; remote route learned.

    Checks on the way that a route is advertised only once its label is on the switch.
    """
    await lab.start_switch()
    await lab.start_rs()

    def check(req: object) -> None:
        if isinstance(req, Publish):
            assert label_on_switch(lab, req.entry.label), "advertised before the label is set"

    if isinstance(lab.engine, ObservedSoftEngine):
        lab.rs_handler.on_request = check
    agent = await lab.start_agent(**agent_kw)
    await agent.driver.wait_synced(10)
    await lab.start_host()
    assert await lab.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
    assert await lab.host_cmd(op="publish", prefix="10.1.1.5/32", vpn="red", version=3) == {
        "ok": True
    }
    fwd = bytes.fromhex(FWD_SID)
    await until(lambda: lab.rs is not None and lab.rs.session(fwd) is not None, what="rs session")
    await until(lambda: len(lab.rs_handler.requests) == 3, what="exports")
    lab.rs_handler.send(
        fwd, ItemsEvent("red", (("10.2.0.0/16", route("10.2.0.0/16", REMOTE, 100)),))
    )
    lab.rs_handler.send(fwd, EndOfRib("red"))
    await until(lambda: len(agent.state.remote.get("red", {})) == 1, what="route learned")
    await agent.driver.wait_synced(10)
    return agent


def test_attach_publish_export_and_encapsulate(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)
            node = f"{HOST_SID}:10.1.1.5/32"
            # exported to the route server: exactly subscribe, publish, associate
            assert lab.rs_handler.requests == [
                (FWD_SID, Subscribe("red", None)),
                (FWD_SID, Publish(node, route("10.1.1.5/32", INFRA, 16, 3))),
                (FWD_SID, Associate("red", node)),
            ]
            assert await lab.switch_entities() == lab.canon(
                attached_entities() | remote_route_entities()
            )
            # §5: the local route comes back from the route server -> local delivery
            lab.rs_handler.send(
                bytes.fromhex(FWD_SID),
                ItemsEvent("red", (("10.1.1.5/32", route("10.1.1.5/32", INFRA, 16, 3)),)),
            )
            await until(lambda: len(agent.state.remote["red"]) == 2)
            await agent.driver.wait_synced(10)
            local = {
                ActionProfileMember(
                    T.NEXTHOP_SELECTOR,
                    2,
                    T.A_DELIVER_LOCAL,
                    {"vif_id": 1, "port": 3, "vlan_id": 10, "dst_mac": HOST_MAC},
                ),
                ActionProfileGroup(T.NEXTHOP_SELECTOR, 2, frozenset({(2, 1)})),
                TableEntry(T.NEXTHOP, {"nexthop_id": Exact(2)}, group_id=2),
                TableEntry(
                    T.IPV4_ROUTE,
                    {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A010105, 32)},
                    T.A_SET_NEXTHOP,
                    {"nexthop_id": 2},
                ),
            }
            assert await lab.switch_entities() == lab.canon(
                attached_entities() | remote_route_entities() | local
            )
            # withdrawal removes it again, exactly
            lab.rs_handler.send(bytes.fromhex(FWD_SID), RetractEvent("red", ("10.1.1.5/32",)))
            await until(lambda: len(agent.state.remote["red"]) == 1)
            await agent.driver.wait_synced(10)
            assert await lab.switch_entities() == lab.canon(
                attached_entities() | remote_route_entities()
            )
            # operator views
            assert await http_get(agent, "/v1/interfaces") == [
                {
                    "system_id": HOST_SID,
                    "vpn": "red",
                    "vlan": 10,
                    "port": 3,
                    "vif_id": 1,
                    "label": 16,
                    "addresses": ["10.1.1.5/32"],
                    "unconfirmed": False,
                }
            ]
            assert await http_get(agent, "/v1/routes") == [
                {
                    "vpn": "red",
                    "prefix": "10.2.0.0/16",
                    "source": "route-server",
                    "nexthops": ["192.0.2.2 label 100"],
                },
                {
                    "vpn": "red",
                    "prefix": "10.1.1.5/32",
                    "source": "exported",
                    "nexthops": ["192.0.2.1 label 16 version 3"],
                },
            ]
            assert await http_get(agent, "/v1/vrfs") == [
                {"vpn": "red", "vrf_id": 1, "interfaces": 1, "routes": 1, "received": 1}
            ]
            assert await http_get(agent, "/v1/diff") == {"updates": []}
            fams = families(await http_get(agent, "/metrics"))
            lag = {n for n in fams if n.startswith("esvpn_loop_lag_")}
            assert {n: fams[n][0] for n in lag} == {
                "esvpn_loop_lag_worst_seconds": "gauge",
                "esvpn_loop_lag_recent_max_seconds": "gauge",
                "esvpn_loop_lag_seconds": "histogram",
            }
            assert {n: (t, v) for n, (t, _, v) in fams.items() if n not in lag} == {
                "esvpn_end_system_sessions": ("gauge", {"esvpn_end_system_sessions": 1}),
                "esvpn_vrfs": ("gauge", {"esvpn_vrfs": 1}),
                "esvpn_interfaces": ("gauge", {"esvpn_interfaces": 1}),
                "esvpn_exported_routes": ("gauge", {"esvpn_exported_routes": 1}),
                "esvpn_received_routes": ("gauge", {"esvpn_received_routes": 1}),
                "esvpn_route_servers_connected": ("gauge", {"esvpn_route_servers_connected": 1}),
                "esvpn_switch_connected": ("gauge", {"esvpn_switch_connected": 1}),
                "esvpn_switch_installed_entities": (
                    "gauge",
                    {"esvpn_switch_installed_entities": len(agent.driver.installed)},
                ),
                "esvpn_switch_held_deletes": ("gauge", {"esvpn_switch_held_deletes": 0}),
                "esvpn_switch_connects_total": ("counter", {"esvpn_switch_connects_total": 1}),
                "esvpn_switch_pipeline_commits_total": (
                    "counter",
                    {"esvpn_switch_pipeline_commits_total": 1},
                ),
                "esvpn_switch_write_requests_total": (
                    "counter",
                    {"esvpn_switch_write_requests_total": agent.driver.stats.writes},
                ),
                "esvpn_switch_updates_total": (
                    "counter",
                    {"esvpn_switch_updates_total": agent.driver.stats.updates},
                ),
                "esvpn_switch_update_errors_total": (
                    "counter",
                    {"esvpn_switch_update_errors_total": 0},
                ),
                "esvpn_end_system_requests_accepted_total": (
                    "counter",
                    {"esvpn_end_system_requests_accepted_total": 3},
                ),
                "esvpn_end_system_requests_refused_total": (
                    "counter",
                    {"esvpn_end_system_requests_refused_total": 0},
                ),
                "esvpn_end_system_requests_failed_total": (
                    "counter",
                    {"esvpn_end_system_requests_failed_total": 0},
                ),
                "esvpn_end_system_switch_refusals_total": (
                    "counter",
                    {"esvpn_end_system_switch_refusals_total": 0},
                ),
                "esvpn_route_server_routes_refused_total": (
                    "counter",
                    {"esvpn_route_server_routes_refused_total": 0},
                ),
                "esvpn_switch_driver_errors_total": (
                    "counter",
                    {"esvpn_switch_driver_errors_total": 0},
                ),
                "esvpn_route_server_refusals_total": (
                    "counter",
                    {"esvpn_route_server_refusals_total": 0},
                ),
                "esvpn_route_server_already_withdrawn_total": (
                    "counter",
                    {"esvpn_route_server_already_withdrawn_total": 0},
                ),
                "esvpn_route_server_conflicts_total": (
                    "counter",
                    {"esvpn_route_server_conflicts_total": 0},
                ),
                "esvpn_loop_errors_total": (
                    "counter",
                    {
                        f'esvpn_loop_errors_total{{loop="{loop}"}}': 0
                        for loop in (
                            "control",
                            "routeserver_notification",
                            "routeserver_sync",
                            "save",
                            "timer",
                        )
                    },
                ),
            }

    asyncio.run(scenario())


def end_system_client(lab: Lab, sid: str, port: int | None = None, **cfg: Any) -> XmppClient:
    """A raw esxmpp client for end-system ``sid`` (requests the host tool would
    not send), to ``port`` (the lab's agent by default); ``cfg``: further
    ClientConfig fields."""
    if port is None:
        assert lab.agent is not None and lab.agent.xmpp is not None
        port = lab.agent.xmpp.port
    cli = lab.pki.client(sid)
    return XmppClient(
        ClientConfig(
            jid=f"{sid}@tor.test",
            host="127.0.0.1",
            port=port,
            certfile=cli.certfile,
            keyfile=cli.keyfile,
            cafile=lab.pki.cafile,
            **cfg,
        )
    )


async def refused(client: XmppClient, req: Request) -> str:
    try:
        await client.request(req)
    except DialectError as e:
        return str(e)
    raise AssertionError(f"{req} was accepted")


def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            lab.label_max = 16  # one label: red's
            agent = await attach_and_learn(lab)
            calls = len(lab.engine.calls)
            writes = agent.driver.stats.writes
            on_switch = await lab.switch_entities()
            before = agent.state.to_json(0.0)
            rs_requests = list(lab.rs_handler.requests)
            accepted = agent.requests_accepted
            # through the host tool: requests it passes on, refused by the agent
            host_cases = [
                (
                    {"op": "subscribe", "vpn": "blue", "vlan": 10},
                    "conflict: vlan 10 is already used by VPN 'red'",
                ),
                (
                    {"op": "subscribe", "vpn": "blue", "vlan": 20},
                    "resource-constraint: no free label in 16..16",
                ),
                (
                    {"op": "retract", "prefix": "10.9.9.9/32"},
                    f"item-not-found: node '{HOST_SID}:10.9.9.9/32' is not published",
                ),
            ]
            for req, err in host_cases:
                assert await lab.host_cmd(**req) == {"ok": False, "error": err}, req
            # raw esxmpp requests the host tool never sends
            assert lab.host is not None
            await lab.host.close()  # the session ends; its state is retained
            lab.host = None
            host = end_system_client(lab, HOST_SID)
            stranger = end_system_client(lab, "0a00000000ff")  # no port configured
            await host.connect(timeout=10)
            await stranger.connect(timeout=10)
            try:
                node = f"{HOST_SID}:10.1.1.5/32"
                raw_cases = [
                    (
                        host,
                        Subscribe("blue", None),
                        "bad-request: subscribe 'blue': option vpn#vlan_id is required "
                        "(this is an external forwarder)",
                    ),
                    (
                        host,
                        Associate("green", node),
                        "item-not-found: not subscribed to VPN 'green'",
                    ),
                    (
                        host,
                        Publish(f"{HOST_SID}:10.1.1.7/32", route("10.1.1.8/32", INFRA, 16)),
                        f"bad-request: publish: node '{HOST_SID}:10.1.1.7/32' does not match nlri "
                        "10.1.1.8/32",
                    ),
                    (
                        stranger,
                        Subscribe("red", 10),
                        "forbidden: system 0a00000000ff has no end-system port configured",
                    ),
                ]
                for client, req, err in raw_cases:
                    assert await refused(client, req) == err, req
            finally:
                await host.close()
                await stranger.close()
            # the agent's esxmpp sessions refuse the vlan conflict, the unknown
            # retract, the associate and the node mismatch; the VRF state the
            # label exhaustion, the missing vlan id and the unconfigured system
            assert agent.requests_refused == 3
            assert agent.requests_accepted == accepted
            await agent.driver.wait_synced(10)
            assert agent.state.to_json(0.0) == before
            assert lab.rs_handler.requests == rs_requests  # nothing exported or withdrawn
            assert lab.engine.calls[calls:] == []  # the switch was not touched
            assert agent.driver.stats.writes == writes
            assert await lab.switch_entities() == on_switch

    asyncio.run(scenario())


def test_bad_route_server_input_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)
            fwd = bytes.fromhex(FWD_SID)
            on_switch = await lab.switch_entities()
            remote_before = dict(agent.state.remote)
            assert lab.rs is not None
            session = lab.rs.session(fwd)
            assert session is not None
            rs_client = agent.rs.servers[0].client
            assert rs_client is not None and rs_client.bad_notifications == 0

            def broken(label_text: str) -> ET.Element:
                note = ItemsEvent("red", (("10.5.0.0/16", route("10.5.0.0/16", REMOTE, 100)),))
                el = build_notification(note, session.jid, "rs.test")
                (label,) = [e for e in el.iter() if e.tag.endswith("}label")]
                label.text = label_text
                return el

            session.send_element(broken("abc"))  # malformed: not a number
            session.send_element(broken("3"))  # a reserved label
            # well-formed but unknown: a VPN not subscribed, an item never sent
            lab.rs_handler.send(
                fwd, ItemsEvent("green", (("10.6.0.0/16", route("10.6.0.0/16", REMOTE, 100)),))
            )
            lab.rs_handler.send(fwd, RetractEvent("red", ("10.99.0.0/16",)))
            # a good route last: once it is in, everything before it was handled
            lab.rs_handler.send(
                fwd, ItemsEvent("red", (("10.7.0.0/16", route("10.7.0.0/16", REMOTE, 100)),))
            )
            await until(lambda: "10.7.0.0/16" in agent.state.remote["red"], what="marker route")
            await agent.driver.wait_synced(10)
            assert rs_client.bad_notifications == 2
            assert set(agent.state.remote) == set(remote_before) == {"red"}
            assert sorted(agent.state.remote["red"]) == ["10.2.0.0/16", "10.7.0.0/16"]
            marker = TableEntry(
                T.IPV4_ROUTE,
                {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A070000, 16)},
                T.A_SET_NEXTHOP,
                {"nexthop_id": 1},  # same next hop as 10.2.0.0/16
            )
            assert await lab.switch_entities() == on_switch | lab.canon({marker})

    asyncio.run(scenario())


def test_agent_restart_leaves_switch_alone_and_switch_restart_is_refilled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)
            expected = await lab.switch_entities()
            calls = len(lab.engine.calls)
            # agent restart: state file + same pipeline cookie -> empty diff, no engine call
            await agent.close()
            lab.agent = agent = await lab.start_agent()
            await agent.driver.wait_synced(10)
            assert agent.driver.stats.last_reconcile_diff == 0
            assert agent.driver.stats.pipeline_commits == 0
            assert lab.engine.calls[calls:] == []
            assert await agent.driver.diff() == []
            # the host's session comes back by itself and re-announces
            assert lab.host is not None
            await until(lambda: lab.host is not None and lab.host.connected.is_set())
            assert set(agent.state.interfaces) == {(bytes.fromhex(HOST_SID), "red")}
            await until(
                lambda: not any(i.unconfirmed for i in agent.state.interfaces.values()),
                what="re-announced",
            )
            assert set(agent.state.interfaces) == {(bytes.fromhex(HOST_SID), "red")}
            # switch restart: a blank device gets everything back
            assert lab.switch is not None
            await lab.switch.stop(0)
            await lab.start_switch(ObservedSoftEngine())
            await until(lambda: agent.driver.stats.connects == 2, what="reconnect")
            await agent.driver.wait_synced(10)
            assert agent.driver.stats.pipeline_commits == 1
            assert await lab.switch_entities() == expected

    asyncio.run(scenario())


def test_reconcile_fixes_exactly_what_diverged_on_the_switch(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)
            expected = await lab.switch_entities()
            await agent.close()
            # meanwhile another controller adds an entry and changes one
            extra = TableEntry(
                lab.info.full_name(T.IPV4_ROUTE),
                {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A630000, 16)},
                lab.info.full_name(T.A_SET_NEXTHOP),
                {"nexthop_id": 1},
            )
            vif_key = {"ingress_port": Exact(3), "src_mac": Exact(HOST_MAC), "vlan_id": Exact(10)}
            changed = TableEntry(
                lab.info.full_name(T.VIF),
                vif_key,
                lab.info.full_name(T.A_SET_VIF),
                {"vif_id": 9, "vrf_id": 1},
            )
            other = await P4RuntimeClient.connect(
                f"127.0.0.1:{lab.switch_port}", lab.info, device_id=1, election_id=20
            )
            try:
                await other.wait_primary(timeout=5)
                res = await other.write([Update(INSERT, extra), Update(MODIFY, changed)])
                res.raise_on_error()
            finally:
                await other.close()
            assert await lab.switch_entities() == (
                expected
                - lab.canon({TableEntry(T.VIF, vif_key, T.A_SET_VIF, {"vif_id": 1, "vrf_id": 1})})
            ) | {extra, changed}
            calls = len(lab.engine.calls)
            lab.agent = agent = await lab.start_agent()
            await agent.driver.wait_synced(10)
            # exactly those two are put right, nothing else is written
            assert agent.driver.stats.last_reconcile_diff == 2
            assert agent.driver.stats.pipeline_commits == 0
            ops = sorted((c[0], c[1]) for c in lab.engine.calls[calls:])
            assert ops == [
                ("table_delete", lab.info.full_name(T.IPV4_ROUTE)),
                ("table_modify", lab.info.full_name(T.VIF)),
            ]
            assert await lab.switch_entities() == expected
            assert await agent.driver.diff() == []

    asyncio.run(scenario())


def test_a_burst_of_routes_is_written_in_one_request(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)
            st = agent.driver.stats
            writes, updates = st.writes, st.updates
            items = tuple(
                (f"10.3.{i}.0/24", route(f"10.3.{i}.0/24", REMOTE, 100)) for i in range(250)
            )
            lab.rs_handler.send(bytes.fromhex(FWD_SID), ItemsEvent("red", items))
            await until(lambda: len(agent.state.remote["red"]) == 251, what="routes learned")
            await agent.driver.wait_synced(10)
            # 250 route entries (same next hop as 10.2.0.0/16): one WriteRequest
            assert (st.writes - writes, st.updates - updates) == (1, 250)
            metrics = await http_get(agent, "/metrics")
            assert f"esvpn_switch_write_requests_total {float(st.writes)}\n" in metrics
            assert f"esvpn_switch_updates_total {float(st.updates)}\n" in metrics

    asyncio.run(scenario())


def test_stale_timeouts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab, stale=0.5, retention=0.5)
            loop = asyncio.get_running_loop()
            # route server gone: routes keep forwarding for the stale time, then go
            assert lab.rs is not None
            t0 = loop.time()  # before: the agent may see the loss while close() runs
            await lab.rs.close()
            await until(lambda: not agent.rs.servers[0].connected, what="rs down")
            assert len(agent.state.remote["red"]) == 1
            await until(lambda: agent.state.remote["red"] == {}, what="stale routes removed")
            assert loop.time() - t0 >= 0.5
            await agent.driver.wait_synced(10)
            assert await lab.switch_entities() == lab.canon(attached_entities())
            # end-system gone: its interface stays for the retention time, then all of it goes
            assert lab.host is not None
            t1 = loop.time()
            await lab.host.close()
            lab.host = None
            await until(lambda: agent.state.interfaces == {}, what="retention expiry")
            assert loop.time() - t1 >= 0.5
            await agent.driver.wait_synced(10)
            assert await lab.switch_entities() == lab.canon(fabric_entities())

    asyncio.run(scenario())


def test_switch_refusals_are_reported_and_retried_when_room_is_made(tmp_path: Path) -> None:
    async def scenario() -> None:
        program = write_sized_program(tmp_path / "small", sizes={"ipv4_route": 2})
        async with Lab(tmp_path, program=program) as lab:
            agent = await attach_and_learn(lab)  # 10.2.0.0/16: one route installed
            fwd = bytes.fromhex(FWD_SID)
            lab.rs_handler.send(
                fwd,
                ItemsEvent(
                    "red",
                    (
                        ("10.3.0.0/16", route("10.3.0.0/16", REMOTE, 100)),
                        ("10.4.0.0/16", route("10.4.0.0/16", REMOTE, 100)),
                    ),
                ),
            )
            await until(lambda: len(agent.state.remote["red"]) == 3)
            await agent.driver.wait_synced(10)
            # the table holds 2: one of the three routes was refused, and said so
            assert agent.driver.stats.update_errors == 1
            (why,) = agent.driver.stats.failed.values()
            full = lab.info.full_name(T.IPV4_ROUTE)
            assert full == "SwitchIngress.pipe.routing.ipv4_route"
            assert why == f"INSERT: RESOURCE_EXHAUSTED: table {full} is full (2)"
            assert "esvpn_switch_update_errors_total 1.0\n" in await http_get(agent, "/metrics")
            routes = {
                e.match["dst_addr"]
                for e in await lab.switch_entities()
                if isinstance(e, TableEntry) and e.table == lab.info.full_name(T.IPV4_ROUTE)
            }
            assert len(routes) == 2
            # a withdrawal makes room: the refused route goes in
            refused = ({Lpm(0x0A030000, 16), Lpm(0x0A040000, 16)} - routes).pop()
            lab.rs_handler.send(fwd, RetractEvent("red", ("10.2.0.0/16",)))
            await until(lambda: len(agent.state.remote["red"]) == 2)
            await until(lambda: not agent.driver.stats.failed, what="retry")
            await agent.driver.wait_synced(10)
            routes = {
                e.match["dst_addr"]
                for e in await lab.switch_entities()
                if isinstance(e, TableEntry) and e.table == lab.info.full_name(T.IPV4_ROUTE)
            }
            assert routes == {Lpm(0x0A030000, 16), Lpm(0x0A040000, 16)}
            assert refused in routes
            assert await agent.driver.diff() == []

    asyncio.run(scenario())


def test_a_subscribe_the_switch_refuses_is_refused_and_undone(tmp_path: Path) -> None:
    """Issue 18: a write the switch refuses (a full label table) is never
    reported to the end-system as success: the subscribe is refused with the
    switch's reason, and neither the agent nor the switch keeps anything of it.
    (Routes are still exported only once the switch holds their label:
    attach_and_learn checks that on every publish.)"""

    async def scenario() -> None:
        program = write_sized_program(tmp_path / "small", sizes={"mpls_label": 1})
        async with Lab(tmp_path, program=program) as lab:
            agent = await attach_and_learn(lab)  # red: label 16 fills the label table
            sid = bytes.fromhex(HOST_SID)
            before = await lab.switch_entities()
            exports = set(agent.state.exports())
            full = lab.info.full_name(T.MPLS_LABEL)
            assert full == "SwitchIngress.pipe.decap.mpls_label"
            resp = await lab.host_cmd(op="subscribe", vpn="blue", vlan=20)
            assert resp == {
                "ok": False,
                "error": "resource-constraint: the switch refused it: "
                f"INSERT: RESOURCE_EXHAUSTED: table {full} is full (1)",
            }
            assert agent.state.interface(sid, "blue") is None
            assert "blue" not in agent.state.vrfs
            assert agent.state.exports() == exports
            assert agent.switch_refusals == 1
            await agent.driver.wait_synced(10)
            assert await lab.switch_entities() == before  # nothing of blue left behind
            assert await agent.driver.diff() == []
            assert lab.host is not None and "blue" not in lab.host.state.subs
            # red leaves: room for blue's label; now the same subscribe is accepted
            assert await lab.host_cmd(op="unsubscribe", vpn="red") == {"ok": True}
            assert await lab.host_cmd(op="subscribe", vpn="blue", vlan=20) == {"ok": True}
            blue = agent.state.interface(sid, "blue")
            assert blue is not None and label_on_switch(lab, blue.label)
            resp = await lab.host_cmd(op="publish", prefix="10.9.0.1/32", vpn="blue")
            assert resp == {"ok": True}
            blue_node = f"{HOST_SID}:10.9.0.1/32"
            await until(
                lambda: any(
                    isinstance(r, Publish) and r.node == blue_node
                    for _s, r in lab.rs_handler.requests
                ),
                what="blue export",
            )
            (pub,) = [
                r
                for _s, r in lab.rs_handler.requests
                if isinstance(r, Publish) and r.node == blue_node
            ]
            assert isinstance(pub, Publish)
            assert pub.entry == route("10.9.0.1/32", INFRA, blue.label)

    asyncio.run(scenario())


class StateFileWatchingEngine(ObservedSoftEngine):
    """The observed engine, noting for every mpls_label entry it is given
    which labels the agent's state file held at that moment (what an agent
    killed right after this switch write would restore)."""

    def __init__(self, state_file: Path) -> None:
        super().__init__()
        self.state_file = state_file
        self.labels_saved: list[tuple[int, set[int]]] = []

    def before_add(self, table: str, key: Any) -> None:
        if table.endswith(".mpls_label"):
            saved = json.loads(self.state_file.read_text())["vrf"]["interfaces"]
            self.labels_saved.append((key[0].value, {i["label"] for i in saved}))


def test_state_file_is_saved_before_the_switch_write(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(
            tmp_path, engine_factory=lambda: StateFileWatchingEngine(tmp_path / "agent-state.json")
        ) as lab:
            await attach_and_learn(lab)
            assert await lab.host_cmd(op="subscribe", vpn="blue", vlan=20) == {"ok": True}
            await until(lambda: label_on_switch(lab, 17), what="blue label")
            assert isinstance(lab.engine, StateFileWatchingEngine)
            assert lab.engine.labels_saved == [(16, {16}), (17, {16, 17})]

    asyncio.run(scenario())


class MovableClock:
    """time.monotonic, plus whatever a test moves it forward by."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def restart_without_state(lab: Lab, clock: MovableClock) -> Agent:
    """The end-system and the agent go away, the agent's state file is lost,
    and the agent starts again (stale 30 s) and syncs once with the switch."""
    assert lab.host is not None and lab.agent is not None
    await lab.host.close()
    lab.host = None
    await lab.agent.close()
    (lab.tmp / "agent-state.json").unlink()
    lab.agent = agent = await lab.start_agent(clock=clock, stale=30.0)
    await agent.driver.wait_synced(10)
    return agent


def test_agent_without_state_file_keeps_the_switch_forwarding_until_the_stale_deadline(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        clock = MovableClock()
        async with Lab(tmp_path) as lab:
            await attach_and_learn(lab)
            expected = await lab.switch_entities()
            forwarding = expected - lab.canon(fabric_entities())
            assert len(forwarding) == 12  # vrf_peer included
            calls = len(lab.engine.calls)
            t0 = clock()
            agent = await restart_without_state(lab, clock)
            deadline = agent.driver.hold_deadline
            assert deadline is not None and t0 <= deadline - 30.0 <= clock()
            # right after the first sync: nothing deleted, nothing written
            assert agent.state.interfaces == {}
            assert agent.driver.stats.last_reconcile_diff == 0
            assert agent.driver.stats.held_deletes == len(forwarding)
            assert lab.engine.calls[calls:] == []
            assert await lab.switch_entities() == expected
            assert "esvpn_switch_held_deletes 12.0\n" in await http_get(agent, "/metrics")
            # the ids the switch uses are not handed out meanwhile
            now = clock()
            assert agent.state.labels.held(now) == {16: deadline}
            assert agent.state.vif_ids.held(now) == {1: deadline}
            assert agent.state.vrf_ids.held(now) == {1: deadline}
            assert agent.ids.member_pool.held(now) == {1: deadline}
            assert agent.ids.nh_pool.held(now) == {1: deadline}
            # a second before the deadline: still held back
            clock.offset += deadline - clock() - 1.0
            agent.changed()
            await agent.driver.wait_synced(10)
            assert await lab.switch_entities() == expected
            # the deadline passes on the agent's clock: what nobody re-announced goes
            clock.offset += 1.0
            agent.changed()  # wakes the timer, which reads the moved clock
            await until(lambda: agent.driver.hold_deadline is None, what="hold over")
            await agent.driver.wait_synced(10)
            assert agent.driver.stats.held_deletes == 0
            assert await lab.switch_entities() == lab.canon(fabric_entities())

    asyncio.run(scenario())


def test_end_system_back_during_the_hold_gets_new_ids_while_the_old_label_forwards(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        clock = MovableClock()
        async with Lab(tmp_path) as lab:
            await attach_and_learn(lab)  # label 16, vif 1, vrf 1
            agent = await restart_without_state(lab, clock)
            deadline = agent.driver.hold_deadline
            assert deadline is not None
            # the end-system comes back and re-announces
            await lab.start_host()
            assert await lab.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            resp = await lab.host_cmd(op="publish", prefix="10.1.1.5/32", vpn="red", version=3)
            assert resp == {"ok": True}
            node = f"{HOST_SID}:10.1.1.5/32"
            await until(
                lambda: (
                    (FWD_SID, Publish(node, route("10.1.1.5/32", INFRA, 17, 3)))
                    in lab.rs_handler.requests
                ),
                what="re-export with the new label",
            )
            itf = agent.state.interface(bytes.fromhex(HOST_SID), "red")
            assert itf is not None
            assert (itf.label, itf.vif_id, agent.state.vrfs["red"].vrf_id) == (17, 2, 2)
            await agent.driver.wait_synced(10)
            # the old label still delivers (remote forwarders may not have the
            # new route yet); the vif entry of (port, mac, vlan) was adopted
            assert label_on_switch(lab, 16) and label_on_switch(lab, 17)
            vifs = {
                e
                for e in await lab.switch_entities()
                if isinstance(e, TableEntry) and e.table == lab.info.full_name(T.VIF)
            }
            assert vifs == lab.canon(
                {
                    TableEntry(
                        T.VIF,
                        {
                            "ingress_port": Exact(3),
                            "src_mac": Exact(HOST_MAC),
                            "vlan_id": Exact(10),
                        },
                        T.A_SET_VIF,
                        {"vif_id": 2, "vrf_id": 2},
                    )
                }
            )
            # the hold ends: what is left of the old state goes, the new stays
            clock.offset += deadline - clock()
            agent.changed()
            await until(lambda: agent.driver.hold_deadline is None, what="hold over")
            await agent.driver.wait_synced(10)
            assert lab.engine.labels == {17}
            assert await agent.driver.diff() == []
            assert agent.driver.stats.held_deletes == 0

    asyncio.run(scenario())


def test_broken_state_file_is_moved_aside(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)
            expected = await lab.switch_entities()
            assert lab.host is not None
            await lab.host.close()
            lab.host = None
            await agent.close()
            state = tmp_path / "agent-state.json"
            broken = '{"vrf": {"interfaces": [{"system_id": "zz"}]}, "nexthops": {}}'
            state.write_text(broken)
            lab.agent = agent = await lab.start_agent()
            await agent.driver.wait_synced(10)
            assert agent.state.interfaces == {}
            assert json.loads(state.read_text())["vrf"]["vrfs"] == {}  # saved empty
            assert (tmp_path / "agent-state.json.bad").read_text() == broken
            # started empty, but the switch keeps forwarding until the hold ends
            assert agent.driver.stats.held_deletes == len(expected - lab.canon(fabric_entities()))
            assert await lab.switch_entities() == expected

    asyncio.run(scenario())


def test_switch_over_mutual_tls(tmp_path: Path) -> None:
    async def scenario() -> None:
        from softswitch.p4runtime import TlsConfig

        async with Lab(tmp_path) as lab:
            srv = lab.pki.server("switch.test")
            await lab.start_switch(
                tls=TlsConfig(
                    srv.certfile.read_bytes(),
                    srv.keyfile.read_bytes(),
                    client_ca=lab.pki.cafile.read_bytes(),
                )
            )
            await lab.start_rs()
            cfg = lab.agent_config()
            cli = lab.pki.client("agent.test")
            cfg["switch"]["tls"] = {
                "root_cert": str(lab.pki.cafile),
                "cert": str(cli.certfile),
                "key": str(cli.keyfile),
                "server_name": "switch.test",
            }
            from control.config import config_from_toml

            lab.agent = agent = Agent(config_from_toml(cfg))
            await agent.start()
            await agent.driver.wait_synced(10)
            assert agent.driver.stats.pipeline_commits == 1
            assert agent.driver.stats.last_reconcile_diff == len(fabric_entities())
            # without a client certificate the switch refuses the connection
            from control.p4rt import P4RuntimeError, TlsOptions

            try:
                c = await P4RuntimeClient.connect(
                    f"127.0.0.1:{lab.switch_port}",
                    lab.info,
                    device_id=1,
                    election_id=2,
                    tls=TlsOptions(root_cert=lab.pki.cafile, server_name="switch.test"),
                    timeout=1.0,
                )
            except P4RuntimeError as e:
                assert str(e) == (
                    f"127.0.0.1:{lab.switch_port}: "
                    "no connection (unreachable, or TLS refused) within 1.0s"
                )
            else:
                await c.close()
                raise AssertionError("connected without a client certificate")

    asyncio.run(scenario())


def test_many_exports_reach_the_route_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)
            for i in range(6, 66):
                resp = await lab.host_cmd(op="publish", prefix=f"10.1.1.{i}/32", vpn="red")
                assert resp == {"ok": True}
            await until(lambda: len(lab.rs_handler.requests) == 3 + 2 * 60, what="exports")
            publishes = {
                r.node: r.entry for _s, r in lab.rs_handler.requests if isinstance(r, Publish)
            }
            assert publishes == {
                f"{HOST_SID}:10.1.1.{i}/32": route(f"10.1.1.{i}/32", INFRA, 16, 3 if i == 5 else 0)
                for i in range(5, 66)
            }
            # every node associated after (never before) its publish
            seen: set[str] = set()
            for _s, r in lab.rs_handler.requests:
                if isinstance(r, Publish):
                    seen.add(r.node)
                elif isinstance(r, Associate):
                    assert r.node in seen
            assert len(agent.state.exports()) == 61

    asyncio.run(scenario())


def test_ecmp_and_newer_version(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await attach_and_learn(lab)  # 10.2.0.0/16 via 192.0.2.2 label 100
            fwd = bytes.fromhex(FWD_SID)
            lab.rs_handler.send(
                fwd, ItemsEvent("red", (("b", route("10.2.0.0/16", "192.0.2.3", 200)),))
            )
            await until(lambda: len(agent.state.remote["red"]) == 2)
            await agent.driver.wait_synced(10)
            ecmp = {
                TableEntry(T.TUNNEL_PEER, {"remote_ipv4": Exact(0xC0000202)}, T.A_PERMIT_PEER),
                TableEntry(T.TUNNEL_PEER, {"remote_ipv4": Exact(0xC0000203)}, T.A_PERMIT_PEER),
                vrf_peer(0xC0000202),
                vrf_peer(0xC0000203),
                ActionProfileMember(
                    T.NEXTHOP_SELECTOR, 1, T.A_ENCAP, {"label": 100, "remote_ipv4": 0xC0000202}
                ),
                ActionProfileMember(
                    T.NEXTHOP_SELECTOR, 2, T.A_ENCAP, {"label": 200, "remote_ipv4": 0xC0000203}
                ),
                ActionProfileGroup(T.NEXTHOP_SELECTOR, 2, frozenset({(1, 1), (2, 1)})),
                TableEntry(T.NEXTHOP, {"nexthop_id": Exact(2)}, group_id=2),
                TableEntry(
                    T.IPV4_ROUTE,
                    {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A020000, 16)},
                    T.A_SET_NEXTHOP,
                    {"nexthop_id": 2},
                ),
            }
            assert await lab.switch_entities() == lab.canon(attached_entities() | ecmp)
            # a newer instantiation (version 1) wins alone
            lab.rs_handler.send(
                fwd, ItemsEvent("red", (("c", route("10.2.0.0/16", "192.0.2.4", 300, 1)),))
            )
            await until(lambda: len(agent.state.remote["red"]) == 3)
            await agent.driver.wait_synced(10)
            newest = {
                TableEntry(T.TUNNEL_PEER, {"remote_ipv4": Exact(0xC0000204)}, T.A_PERMIT_PEER),
                vrf_peer(0xC0000204),
                ActionProfileMember(
                    T.NEXTHOP_SELECTOR, 3, T.A_ENCAP, {"label": 300, "remote_ipv4": 0xC0000204}
                ),
                ActionProfileGroup(T.NEXTHOP_SELECTOR, 3, frozenset({(3, 1)})),
                TableEntry(T.NEXTHOP, {"nexthop_id": Exact(3)}, group_id=3),
                TableEntry(
                    T.IPV4_ROUTE,
                    {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A020000, 16)},
                    T.A_SET_NEXTHOP,
                    {"nexthop_id": 3},
                ),
            }
            assert await lab.switch_entities() == lab.canon(attached_entities() | newest)

    asyncio.run(scenario())


def test_end_system_publish_needs_no_next_hop_and_label(tmp_path: Path) -> None:
    """§5-§6, external forwarder: the forwarder supplies the next hop and label
    of an end-system's address. A publish without them is accepted; present
    ones are ignored: the export carries our infra address and the vif's label."""

    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            await lab.start_synced()
            es = end_system_client(lab, HOST_SID, request_timeout=5.0)
            await es.connect()
            try:
                await es.subscribe("red", 10)
                bare, other = f"{HOST_SID}:10.1.1.5/32", f"{HOST_SID}:10.1.1.6/32"
                prefix = ipaddress.ip_network("10.1.1.5/32")
                await es.publish(bare, RouteEntry.end_system(prefix, 3))
                await es.publish(other, route("10.1.1.6/32", "198.51.100.9", 999, 1))
                await es.associate("red", bare)
                await es.associate("red", other)
                await until(lambda: len(lab.rs_handler.requests) == 5, what="exports")
                assert sorted(
                    (r.node, r.entry) for _, r in lab.rs_handler.requests if isinstance(r, Publish)
                ) == [
                    (bare, route("10.1.1.5/32", INFRA, 16, 3)),
                    (other, route("10.1.1.6/32", INFRA, 16, 1)),
                ]
            finally:
                await es.close()

    asyncio.run(scenario())
