"""Issue item 6: MPLS-in-GRE termination."""

from __future__ import annotations

from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_GRE_UNSUPPORTED,
    DROP_INNER_NOT_IP,
    DROP_MPLS_STACK,
    DROP_NOT_TUNNEL,
    DROP_UNKNOWN_LABEL,
    DROP_UNKNOWN_PEER,
    ES1,
    FABRIC_VLAN,
    MY_IP,
    NH4,
    REMOTE_A,
    SW_FABRIC_MAC,
    VRF_A,
    base,
    from_remote_a,
    to_vif,
    udp4,
    udp6,
    with_ttl,
)

INNER = udp4(src="10.2.0.5", dst="10.1.0.1", ttl=63)


def test_interface_label_delivers_to_its_vif(dp: Dataplane) -> None:
    base(dp)
    t.label_to_vif(dp, 16001, 1, 1, 10, ES1, VRF_A)
    dp.send(4, from_remote_a(INNER, 16001))
    dp.expect(1, to_vif(ES1, 10, with_ttl(INNER, 62)))
    inner6 = udp6(src="2001:db8:2::5", dst="2001:db8:1::1", hlim=9)
    dp.send(4, from_remote_a(inner6, 16001))
    dp.expect(1, to_vif(ES1, 10, with_ttl(inner6, 8)))
    # from the other fabric port, behind a fabric VLAN
    dp.send(5, from_remote_a(INNER, 16001, vlan=FABRIC_VLAN))
    dp.expect(1, to_vif(ES1, 10, with_ttl(INNER, 62)))


def test_unknown_outer_source_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    t.label_to_vif(dp, 16001, 1, 1, 10, ES1, VRF_A)
    dp.send(4, from_remote_a(INNER, 16001, src="198.51.100.99"))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_UNKNOWN_PEER, 1)
    dp.expect_nothing()


def test_unallocated_label_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    t.label_to_vif(dp, 16001, 1, 1, 10, ES1, VRF_A)
    dp.send(4, from_remote_a(INNER, 16002))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_UNKNOWN_LABEL, 1)
    dp.expect_nothing()


def test_label_stack_deeper_than_one_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    t.label_to_vif(dp, 16001, 1, 1, 10, ES1, VRF_A)
    dp.send(4, from_remote_a(INNER, 16001, labels=[16001]))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_MPLS_STACK, 1)
    dp.expect_nothing()


def test_gre_key_sequence_dropped_and_counted(dp: Dataplane) -> None:
    """(GRE with the checksum bit: test_receive.py.)"""
    base(dp)
    t.label_to_vif(dp, 16001, 1, 1, 10, ES1, VRF_A)
    for gre in (
        GRE(proto=0x8847, key_present=1, key=5),
        GRE(proto=0x8847, seqnum_present=1, sequence_number=9),
        GRE(proto=0x0800),  # not MPLS
    ):
        dp.send(4, from_remote_a(INNER, 16001, gre=gre))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_GRE_UNSUPPORTED, 3)
    dp.expect_nothing()


def test_not_a_tunnel_to_this_switch_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    t.label_to_vif(dp, 16001, 1, 1, 10, ES1, VRF_A)
    dp.send(4, from_remote_a(INNER, 16001, dst="192.0.2.2"))  # another address
    plain = Ether(src=NH4, dst=SW_FABRIC_MAC) / IP(src=REMOTE_A, dst=MY_IP) / UDP() / b"x"
    dp.send(4, plain)  # plain IPv4 to the switch
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NOT_TUNNEL, 2)
    non_ip = from_remote_a(Raw(b"\x00" * 20), 16001)
    dp.send(4, non_ip)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_INNER_NOT_IP, 1)
    dp.expect_nothing()
