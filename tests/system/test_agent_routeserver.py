"""Two forwarders (agents) and the project's route server (routeserver/, no BGP
peers): each end-system's route reaches the other forwarder as an
encapsulation route, and comes back to its own forwarder as local delivery;
an end-system's packet crosses both switches (the compiled program on the
embedded target's engine): MPLS-in-GRE out of A, delivered on B's vif."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from control.vrf import LocalTarget, RemoteTarget
from esxmpp.testing import make_pki
from tests.system.forwarder_pair import A_FWD, B_FWD, route_server, start_labs, two_labs
from tests.system.test_agent_flow import Lab, until

NET = ipaddress.ip_network
VRRP_MAC = "00:00:5e:00:01:01"
FABRIC_SRC, FABRIC_DST = "02:00:00:00:00:01", "02:00:00:00:00:fe"  # Lab's underlay


def host_packet(src: str, dst: str, ttl: int) -> IP:
    return IP(bytes(IP(src=src, dst=dst, ttl=ttl, id=5) / UDP(sport=4000, dport=80) / b"hi"))


def tunnelled(inner: IP, src: str, dst: str, label: int) -> bytes:
    """What the Lab's switch sends its fabric port (agent config: underlay)."""
    return bytes(
        Ether(src=FABRIC_SRC, dst=FABRIC_DST)
        / IP(src=src, dst=dst, ttl=64, id=0, flags="DF", proto=47)
        / GRE(proto=0x8847)
        / MPLS(label=label, cos=0, s=1, ttl=inner.ttl)
        / inner
    )


A_HOST, B_HOST = "0a:00:00:00:00:01", "0a:00:00:00:00:02"
#: (infrastructure address, end-system MAC, VLAN) of each forwarder's end
A_END, B_END = ("192.0.2.1", A_HOST, 10), ("192.0.2.2", B_HOST, 20)


def end_system_frame(mac: str, vlan: int, pkt: IP) -> bytes:
    return bytes(Ether(src=mac, dst=VRRP_MAC) / Dot1Q(vlan=vlan) / pkt)


def across(
    src: Lab,
    dst: Lab,
    frame: bytes,
    src_end: tuple[str, str, int],
    dst_end: tuple[str, str, int],
    label: int,
) -> None:
    """``frame`` from src's end-system port (3) leaves src's fabric port (1)
    MPLS-in-GRE toward dst with ``label``, and dst delivers it on its vif,
    TTL decremented once by each switch."""
    inner = IP(bytes(Ether(frame)[IP]))
    sent = tunnelled(
        host_packet(inner.src, inner.dst, inner.ttl - 1), src_end[0], dst_end[0], label
    )
    assert src.engine.process(3, frame) == [(1, sent)]
    delivered = Ether(src=VRRP_MAC, dst=dst_end[1]) / Dot1Q(vlan=dst_end[2])
    delivered = delivered / host_packet(inner.src, inner.dst, inner.ttl - 2)
    assert dst.engine.process(1, as_received(sent)) == [(3, bytes(delivered))]


def as_received(frame: bytes) -> bytes:
    """The fabric frame as the other switch receives it (MACs swapped by the
    underlay in between; our Lab switches share one underlay MAC pair)."""
    eth = Ether(frame)
    eth.src, eth.dst = FABRIC_DST, FABRIC_SRC
    return bytes(eth)


def test_two_forwarders_through_the_route_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        rs = route_server(pki, forwarders=[A_FWD, B_FWD])
        a, b = two_labs(tmp_path, pki)
        await rs.start()
        try:
            assert rs.xmpp is not None
            await start_labs(rs.xmpp.port, a, b)
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
            # traffic: A's end-system -> 10.1.2.7 behind B, and back
            from_a = end_system_frame(A_HOST, 10, host_packet("10.1.1.5", "10.1.2.7", 64))
            across(a, b, from_a, A_END, B_END, 16)
            across(
                b,
                a,
                end_system_frame(B_HOST, 20, host_packet("10.1.2.7", "10.1.1.5", 30)),
                B_END,
                A_END,
                16,
            )
            # B's end-system leaves: A loses the route to it
            assert await b.host_cmd(op="retract", prefix="10.1.2.7/32") == {"ok": True}
            await until(
                lambda: NET("10.1.2.7/32") not in sa.selected_routes("red"), what="withdrawal"
            )
            assert sa.selected_routes("red") == {NET("10.1.1.5/32"): want_a[NET("10.1.1.5/32")]}
            await a.agent.driver.wait_synced(10)
            # no route any more: not forwarded, punted to the agent (ICMP unreachable)
            assert [port for port, _ in a.engine.process(3, from_a)] == [255]
        finally:
            await a.close()
            await b.close()
            await rs.stop()

    asyncio.run(scenario())


def test_a_label_is_taken_only_from_the_forwarders_of_its_vpn(tmp_path: Path) -> None:
    """Requirements draft §12: A is in red and blue, B only in blue. B is a
    tunnel peer of A (blue routes), but A takes only its blue labels from B:
    a packet from B with A's red label is dropped and counted (LABEL_PEER),
    the agent having written the per-VRF peer set from the routes received."""

    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        rs = route_server(pki, {"red": "64512:100", "blue": "64512:200"}, forwarders=[A_FWD, B_FWD])
        a, b = two_labs(tmp_path, pki)
        await rs.start()
        try:
            assert rs.xmpp is not None
            await start_labs(rs.xmpp.port, a, b)
            assert await a.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            assert await a.host_cmd(op="subscribe", vpn="blue", vlan=30) == {"ok": True}
            assert await b.host_cmd(op="subscribe", vpn="blue", vlan=20) == {"ok": True}
            for vpn, prefix in (("red", "10.1.1.5/32"), ("blue", "10.3.1.5/32")):
                req = {"op": "publish", "prefix": prefix, "vpn": vpn, "version": 1}
                assert await a.host_cmd(**req) == {"ok": True}
            req = {"op": "publish", "prefix": "10.3.2.7/32", "vpn": "blue", "version": 1}
            assert await b.host_cmd(**req) == {"ok": True}
            assert a.agent is not None and b.agent is not None
            sa = a.agent.state
            await until(lambda: NET("10.3.2.7/32") in sa.selected_routes("blue"), what="blue")
            await a.agent.driver.wait_synced(10)
            labels = {itf.vpn: itf.label for itf in sa.interfaces.values()}
            drops = "SwitchIngress.pipe.ingress_drops"
            # B -> A's blue vif: delivered
            inner = host_packet("10.3.2.7", "10.3.1.5", 30)
            blue = tunnelled(inner, "192.0.2.2", "192.0.2.1", labels["blue"])
            delivered = Ether(src=VRRP_MAC, dst=A_HOST) / Dot1Q(vlan=30)
            delivered = delivered / host_packet("10.3.2.7", "10.3.1.5", 29)
            assert a.engine.process(1, as_received(blue)) == [(3, bytes(delivered))]
            # B -> A's red vif: B has no route of red at A
            inner = host_packet("10.3.2.7", "10.1.1.5", 30)
            red = tunnelled(inner, "192.0.2.2", "192.0.2.1", labels["red"])
            assert a.engine.process(1, as_received(red)) == []
            assert a.engine.counter_read(drops, 30).packets == 1  # LABEL_PEER
        finally:
            await a.close()
            await b.close()
            await rs.stop()

    asyncio.run(scenario())
