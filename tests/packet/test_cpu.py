"""Issue item 9: the CPU port with packet-in / packet-out headers."""

from __future__ import annotations

from scapy.layers.l2 import ARP, Ether

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_UNKNOWN_VIF,
    ES1,
    MY_IP,
    NH4,
    PUNT_FABRIC_ARP,
    PUNT_ROUTE,
    REMOTE_A,
    VRF_A,
    base,
    from_vif,
    udp4,
)


def test_packet_out_leaves_on_the_named_port_untouched(dp: Dataplane) -> None:
    base(dp)
    frame = bytes(Ether(src="02:00:00:00:f0:01", dst=NH4) / ARP(op=2, psrc=MY_IP, pdst=REMOTE_A))
    dp.packet_out(frame, 4)
    dp.expect(4, frame)
    tagged = bytes(from_vif("02:00:00:00:f0:01", 10, udp4(), dst_mac=ES1))
    dp.packet_out(tagged, 1)
    dp.expect(1, tagged)


def test_fabric_arp_and_to_cpu_routes_come_in_with_port_and_reason(dp: Dataplane) -> None:
    base(dp)
    arp = bytes(
        Ether(src=NH4, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=NH4, psrc="192.0.2.254", pdst=MY_IP)
    )
    dp.send(4, arp)
    pin = dp.packet_in()
    assert pin.payload == arp
    assert pin.metadata["ingress_port"] == 4
    assert pin.metadata["reason"] == PUNT_FABRIC_ARP
    t.ipv4_route(dp, VRF_A, "10.1.0.254/32", "to_cpu")
    frame = bytes(from_vif(ES1, 10, udp4(dst="10.1.0.254")))
    dp.send(1, frame)
    pin = dp.packet_in()
    assert pin.payload == frame
    assert pin.metadata["ingress_port"] == 1
    assert pin.metadata["reason"] == PUNT_ROUTE


def test_dropped_frames_are_not_punted(dp: Dataplane) -> None:
    base(dp)
    dp.send(1, from_vif(ES1, 99, udp4(dst="10.1.0.254")))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_UNKNOWN_VIF, 1)
    dp.no_packet_in()
    dp.expect_nothing()
