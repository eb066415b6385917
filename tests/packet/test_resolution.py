"""Issue item 2: ARP / neighbor discovery answered with the VRRP MACs; only
frames to the VRRP MACs are routed."""

from __future__ import annotations

from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_ARP_IGNORED,
    DROP_ND_IGNORED,
    DROP_NOT_ROUTER_MAC,
    DROP_UNKNOWN_VIF,
    ES1,
    ES3,
    VRF_A,
    VRRP4,
    VRRP6,
    base,
    from_vif,
    to_remote_a,
    udp4,
    udp6,
    with_ttl,
)


def arp_request(src_mac: str, vlan: int, spa: str, tpa: str) -> Ether:
    return (
        Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff")
        / Dot1Q(vlan=vlan)
        / ARP(op=1, hwsrc=src_mac, psrc=spa, hwdst="00:00:00:00:00:00", pdst=tpa)
    )


def arp_reply(dst_mac: str, vlan: int, spa: str, tpa: str) -> Ether:
    """The answer to arp_request(dst_mac, vlan, spa=tpa, tpa=spa)."""
    return (
        Ether(src=VRRP4, dst=dst_mac)
        / Dot1Q(vlan=vlan)
        / ARP(op=2, hwsrc=VRRP4, psrc=spa, hwdst=dst_mac, pdst=tpa)
    )


def test_arp_request_for_any_address_answered_from_vrrp_mac(dp: Dataplane) -> None:
    base(dp)
    for target in ("10.1.0.254", "10.1.0.3", "8.8.8.8"):
        dp.send(1, arp_request(ES1, 10, "10.1.0.1", target))
        dp.expect(1, arp_reply(ES1, 10, target, "10.1.0.1"))
    dp.send(3, arp_request(ES3, 30, "10.1.0.4", "10.1.0.1"))
    dp.expect(3, arp_reply(ES3, 30, "10.1.0.1", "10.1.0.4"))


def test_arp_from_unknown_vif_probe_and_reply_not_answered(dp: Dataplane) -> None:
    base(dp)
    dp.send(1, arp_request(ES1, 99, "10.1.0.1", "10.1.0.254"))  # unknown VLAN
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_UNKNOWN_VIF, 1)
    dp.send(1, arp_request(ES1, 10, "0.0.0.0", "10.1.0.1"))  # probe (RFC 5227)
    dp.send(1, arp_request(ES1, 10, "10.1.0.1", "10.1.0.1"))  # gratuitous
    reply = arp_reply("02:00:00:00:09:09", 10, "10.1.0.1", "10.1.0.9")
    dp.send(1, Ether(src=ES1, dst=VRRP4) / Dot1Q(vlan=10) / reply[ARP])  # a reply
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_ARP_IGNORED, 3)
    dp.expect_nothing()


def neighbor_solicit(target: str, src: str = "2001:db8:1::1", option: bool = True) -> Ether:
    ns = (
        Ether(src=ES1, dst="33:33:ff:00:00:ff")
        / Dot1Q(vlan=10)
        / IPv6(src=src, dst="ff02::1:ff00:ff", hlim=255)
        / ICMPv6ND_NS(tgt=target)
    )
    if option:
        ns = ns / ICMPv6NDOptSrcLLAddr(lladdr=ES1)
    return ns


def neighbor_advert(target: str, dst: str = "2001:db8:1::1") -> Ether:
    return (
        Ether(src=VRRP6, dst=ES1)
        / Dot1Q(vlan=10)
        / IPv6(src=target, dst=dst, hlim=255)
        / ICMPv6ND_NA(R=1, S=1, O=1, tgt=target)
        / ICMPv6NDOptDstLLAddr(lladdr=VRRP6)
    )


def test_neighbor_solicitation_answered_with_target_lla_and_checksum(dp: Dataplane) -> None:
    base(dp)
    for target in ("2001:db8:1::ff", "2001:db8:99::7", "fe80::1"):
        dp.send(1, neighbor_solicit(target))
        # scapy computes the expected ICMPv6 checksum
        dp.expect(1, neighbor_advert(target))
    dp.send(1, neighbor_solicit("2001:db8:1::ff", option=False))
    dp.expect(1, neighbor_advert("2001:db8:1::ff"))
    # link-local sender (the usual case) and unicast NUD to the VRRP MAC
    ns = neighbor_solicit("fe80::1", src="fe80::aa")
    ns[Ether].dst = VRRP6
    dp.send(1, ns)
    dp.expect(1, neighbor_advert("fe80::1", dst="fe80::aa"))


def test_neighbor_solicitation_not_answered(dp: Dataplane) -> None:
    base(dp)
    dad = neighbor_solicit("2001:db8:1::1", src="::", option=False)
    dp.send(1, dad)  # duplicate address detection: the address is the host's
    low_hlim = neighbor_solicit("2001:db8:1::ff")
    low_hlim[IPv6].hlim = 254
    dp.send(1, low_hlim)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_ND_IGNORED, 2)
    unknown = neighbor_solicit("2001:db8:1::ff")
    unknown[Dot1Q].vlan = 99
    dp.send(1, unknown)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_UNKNOWN_VIF, 1)
    dp.expect_nothing()


def test_frames_to_either_vrrp_mac_are_routed(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, "198.51.100.11"))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    t.ipv6_route(dp, VRF_A, "2001:db8:2::/48", 1)
    dp.send(1, from_vif(ES1, 10, udp4()))
    dp.expect(4, to_remote_a(udp4(ttl=63), 30001))
    dp.send(1, from_vif(ES1, 10, udp6(), dst_mac=VRRP6))
    dp.expect(4, to_remote_a(with_ttl(udp6(), 63), 30001))


def test_unicast_to_another_mac_dropped(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, "198.51.100.11"))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    dp.send(1, from_vif(ES1, 10, udp4(), dst_mac="02:00:00:00:aa:aa"))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NOT_ROUTER_MAC, 1)
    dp.expect_nothing()
