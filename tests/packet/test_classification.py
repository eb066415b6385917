"""Issue item 1: (ingress port, source MAC, VLAN) -> virtual interface -> VRF."""

from __future__ import annotations

from scapy.layers.l2 import Dot1Q, Ether

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_DOUBLE_TAGGED,
    DROP_UNKNOWN_VIF,
    DROP_UNTAGGED,
    ES1,
    ES2,
    ES3,
    ES4,
    VRF_A,
    VRF_B,
    VRRP4,
    base,
    from_vif,
    to_remote_a,
    udp4,
    with_ttl,
)


def _routes(dp: Dataplane) -> None:
    """10.2.0.0/16 leaves VRF A with label 30001 and VRF B with label 30002:
    the label out tells which VRF a frame was classified into."""
    t.nexthop(dp, 1, t.encap(30001, "198.51.100.11"))
    t.nexthop(dp, 2, t.encap(30002, "198.51.100.11"))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    t.ipv4_route(dp, VRF_B, "10.2.0.0/16", 2)


def test_vlan_on_one_port_selects_the_vrf(dp: Dataplane) -> None:
    base(dp)
    _routes(dp)
    pkt = udp4()
    dp.send(1, from_vif(ES1, 10, pkt))
    dp.expect(4, to_remote_a(with_ttl(pkt, 63), 30001))
    dp.send(1, from_vif(ES1, 20, pkt))
    dp.expect(4, to_remote_a(with_ttl(pkt, 63), 30002))


def test_same_vlan_on_two_ports_maps_independently(dp: Dataplane) -> None:
    base(dp)
    _routes(dp)
    t.vif(dp, 2, ES2, 20, 7, VRF_A)  # VLAN 20: VRF B on port 1, VRF A on port 2
    t.ipv4_source(dp, 7, "10.1.0.7/32")
    dp.send(2, from_vif(ES2, 20, udp4(src="10.1.0.7")))
    dp.expect(4, to_remote_a(udp4(src="10.1.0.7", ttl=63), 30001))
    dp.send(1, from_vif(ES1, 20, udp4()))
    dp.expect(4, to_remote_a(udp4(ttl=63), 30002))


def test_two_macs_on_one_port_map_independently(dp: Dataplane) -> None:
    base(dp)
    _routes(dp)
    t.vif(dp, 3, ES4, 30, 8, VRF_B)  # same port and VLAN as ES3 (vif 4, VRF A)
    t.ipv4_source(dp, 8, "10.1.0.8/32")
    dp.send(3, from_vif(ES3, 30, udp4(src="10.1.0.4")))
    dp.expect(4, to_remote_a(udp4(src="10.1.0.4", ttl=63), 30001))
    dp.send(3, from_vif(ES4, 30, udp4(src="10.1.0.8")))
    dp.expect(4, to_remote_a(udp4(src="10.1.0.8", ttl=63), 30002))


def test_untagged_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    _routes(dp)
    dp.send(1, Ether(src=ES1, dst=VRRP4) / udp4())
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_UNTAGGED, 1)
    dp.expect_nothing()


def test_double_tagged_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    _routes(dp)
    dp.send(1, Ether(src=ES1, dst=VRRP4) / Dot1Q(vlan=10) / Dot1Q(vlan=10) / udp4())
    dp.send(1, Ether(src=ES1, dst=VRRP4, type=0x88A8) / Dot1Q(vlan=10) / Dot1Q(vlan=10) / udp4())
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_DOUBLE_TAGGED, 2)
    dp.expect_nothing()


def test_unknown_port_mac_or_vlan_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    _routes(dp)
    dp.send(2, from_vif(ES1, 10, udp4()))  # known MAC + VLAN, wrong port
    dp.send(1, from_vif(ES2, 10, udp4()))  # wrong MAC
    dp.send(1, from_vif(ES1, 11, udp4()))  # wrong VLAN
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_UNKNOWN_VIF, 3)
    dp.expect_nothing()
