"""Issue item 4: per-VRF LPM for IPv4 and IPv6, TTL / hop limit, checksum;
and VRF isolation with the same address space in two VRFs."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_NO_ROUTE,
    DROP_TTL_EXPIRED,
    ES1,
    ES2,
    REMOTE_A,
    REMOTE_B,
    VRF_A,
    VRF_B,
    VRRP6,
    base,
    from_remote_a,
    from_vif,
    routes_to_remote_a,
    to_remote_a,
    to_remote_b,
    to_vif,
    udp4,
    udp6,
    with_ttl,
)


def test_longest_prefix_wins_ipv4(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, REMOTE_A))
    t.nexthop(dp, 2, t.encap(30002, REMOTE_B))
    t.ipv4_route(dp, VRF_A, "0.0.0.0/0", 1)
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 2)
    t.ipv4_route(dp, VRF_A, "10.2.3.0/24", 1)
    dp.send(1, from_vif(ES1, 10, udp4(dst="10.2.0.5")))
    dp.expect(5, to_remote_b(udp4(dst="10.2.0.5", ttl=63), 30002))
    dp.send(1, from_vif(ES1, 10, udp4(dst="10.2.3.5")))
    dp.expect(4, to_remote_a(udp4(dst="10.2.3.5", ttl=63), 30001))
    dp.send(1, from_vif(ES1, 10, udp4(dst="172.16.0.1")))
    dp.expect(4, to_remote_a(udp4(dst="172.16.0.1", ttl=63), 30001))


def test_longest_prefix_wins_ipv6(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, REMOTE_A))
    t.nexthop(dp, 2, t.encap(30002, REMOTE_B))
    t.ipv6_route(dp, VRF_A, "2001:db8::/32", 1)
    t.ipv6_route(dp, VRF_A, "2001:db8:2::/48", 2)
    dp.send(1, from_vif(ES1, 10, udp6(dst="2001:db8:2::5"), dst_mac=VRRP6))
    dp.expect(5, to_remote_b(with_ttl(udp6(dst="2001:db8:2::5"), 63), 30002))
    dp.send(1, from_vif(ES1, 10, udp6(dst="2001:db8:3::5"), dst_mac=VRRP6))
    dp.expect(4, to_remote_a(with_ttl(udp6(dst="2001:db8:3::5"), 63), 30001))


def test_no_route_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16")
    dp.send(1, from_vif(ES1, 10, udp4(dst="10.3.0.5")))
    dp.send(1, from_vif(ES1, 10, udp6(dst="2001:db8:2::5"), dst_mac=VRRP6))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_ROUTE, 2)
    dp.expect_nothing()


def test_ttl_decremented_and_checksum_updated(dp: Dataplane) -> None:
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16", "2001:db8:2::/48")
    for ttl in (2, 64, 255):
        pkt = udp4(ttl=ttl)
        dp.send(1, from_vif(ES1, 10, pkt))
        out = with_ttl(pkt, ttl - 1)
        assert out[IP].chksum != pkt[IP].chksum
        dp.expect(4, to_remote_a(out, 30001))
    dp.send(1, from_vif(ES1, 10, udp6(hlim=2)))
    dp.expect(4, to_remote_a(udp6(hlim=1), 30001))


def test_expired_ttl_and_hop_limit_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16", "2001:db8:2::/48")
    dp.send(1, from_vif(ES1, 10, udp4(ttl=1)))
    dp.send(1, from_vif(ES1, 10, udp4(ttl=0)))
    dp.send(1, from_vif(ES1, 10, udp6(hlim=1)))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_TTL_EXPIRED, 3)
    dp.expect_nothing()


def test_ipv4_options_forwarded_unchanged(dp: Dataplane) -> None:
    """RFC 1812 5.2.4: a packet with options is forwarded, options as they
    came, TTL decremented and the checksum (over the options) redone."""
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16")
    t.nexthop(dp, 3, t.local(3, 2, 10, ES2))
    t.ipv4_route(dp, VRF_A, "10.1.0.3/32", 3)
    for options in (
        [b"\x94\x04\x00\x00"],  # router alert: one word
        [b"\x01" * 3 + b"\x00"],  # NOPs and end of list
        [bytes([7, 39, 4]) + b"\x00" * 36 + b"\x00"],  # record route: 40 bytes (IHL 15)
    ):
        opt = IP(bytes(IP(src="10.1.0.1", dst="10.2.0.5", ttl=9, options=options) / UDP()))
        dp.send(1, from_vif(ES1, 10, opt))
        dp.expect(4, to_remote_a(with_ttl(opt, 8), 30001))
        hdr = IP(src="10.1.0.1", dst="10.1.0.3", ttl=9, options=options)
        local = IP(bytes(hdr / Raw(b"x" * 8)))
        dp.send(1, from_vif(ES1, 10, local))
        dp.expect(2, to_vif(ES2, 10, with_ttl(local, 8)))


def test_vrf_isolation_same_addresses_in_two_vrfs(dp: Dataplane) -> None:
    """VRF A and VRF B both hold 10.1.0.1 (vif 1 and vif 2, both on ES1)."""
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, REMOTE_A))
    t.nexthop(dp, 2, t.encap(30002, REMOTE_B))
    t.nexthop(dp, 3, t.local(1, 1, 10, ES1))
    t.nexthop(dp, 4, t.local(2, 1, 20, ES1))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    t.ipv4_route(dp, VRF_B, "10.2.0.0/16", 2)
    t.ipv4_route(dp, VRF_A, "10.9.0.0/16", 1)  # only in VRF A
    t.ipv4_route(dp, VRF_A, "10.1.0.1/32", 3)
    t.ipv4_route(dp, VRF_B, "10.1.0.1/32", 4)
    t.label_to_vif(dp, 16100, 1, 1, 10, ES1, VRF_A)
    t.label_to_vif(dp, 16200, 2, 1, 20, ES1, VRF_B)
    # outbound: same source, same destination, different VRF, different tunnel
    dp.send(1, from_vif(ES1, 10, udp4()))
    dp.expect(4, to_remote_a(udp4(ttl=63), 30001))
    dp.send(1, from_vif(ES1, 20, udp4()))
    dp.expect(5, to_remote_b(udp4(ttl=63), 30002))
    # VRF B has no route to 10.9/16
    dp.send(1, from_vif(ES1, 20, udp4(dst="10.9.0.1")))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_ROUTE, 1)
    dp.expect_nothing()
    # inbound: the vif label picks which 10.1.0.1 gets the packet
    inner = udp4(src="10.2.0.5", dst="10.1.0.1", ttl=63)
    dp.send(4, from_remote_a(inner, 16100))
    dp.expect(1, to_vif(ES1, 10, with_ttl(inner, 62)))
    dp.send(4, from_remote_a(inner, 16200))
    dp.expect(1, to_vif(ES1, 20, with_ttl(inner, 62)))
