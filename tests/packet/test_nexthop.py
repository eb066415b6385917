"""Issue item 5: remote (MPLS-in-GRE, underlay, MTU, ECMP), local, drop."""

from __future__ import annotations

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_MTU_EXCEEDED,
    DROP_NO_NEXTHOP,
    DROP_NO_ROUTE,
    DROP_NO_UNDERLAY,
    ES1,
    ES2,
    ES3,
    MY_IP,
    NH4,
    REMOTE_A,
    REMOTE_B,
    SW_FABRIC_MAC,
    VRF_A,
    base,
    from_vif,
    mpls_gre,
    routes_to_remote_a,
    to_remote_a,
    to_remote_b,
    to_vif,
    udp4,
    udp6,
    with_ttl,
)


def test_encap_mpls_in_gre_exact_bytes(dp: Dataplane) -> None:
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16")
    pkt = udp4(ttl=17, tos=0xB8)
    dp.send(1, from_vif(ES1, 10, pkt))
    # outer: switch -> REMOTE_A, proto 47, DF, TTL 64, TOS copied; GRE 0x8847;
    # one label, bottom of stack, TTL from the inner packet (after decrement)
    want = mpls_gre(with_ttl(pkt, 16), 30001, 16, MY_IP, REMOTE_A, SW_FABRIC_MAC, NH4, tos=0xB8)
    assert bytes(want)[12:14] == b"\x08\x00"
    dp.expect(4, want)


def test_encap_underlay_with_fabric_vlan(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, REMOTE_B))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    dp.send(1, from_vif(ES1, 10, udp4()))
    dp.expect(5, to_remote_b(udp4(ttl=63), 30001))


def test_no_underlay_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, "203.0.113.9"))  # not in the underlay table
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    dp.send(1, from_vif(ES1, 10, udp4()))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_UNDERLAY, 1)
    dp.expect_nothing()


def test_fabric_mtu_after_encap(dp: Dataplane) -> None:
    base(dp)  # MTU 1500
    routes_to_remote_a(dp, "10.2.0.0/16", "2001:db8:2::/48")
    fits = udp4(size=1472)  # 1472 + 28 = 1500
    dp.send(1, from_vif(ES1, 10, fits))
    dp.expect(4, to_remote_a(with_ttl(fits, 63), 30001))
    dp.send(1, from_vif(ES1, 10, udp4(size=1473)))  # DF clear: dropped, not punted
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_MTU_EXCEEDED, 1)
    dp.expect_nothing()
    dp.no_packet_in()
    t.fabric_config(dp, MY_IP, 1400)
    dp.send(1, from_vif(ES1, 10, fits))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_MTU_EXCEEDED, 2)
    dp.expect_nothing()


def test_ecmp_spreads_flows_over_next_hops(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, REMOTE_A), t.encap(30002, REMOTE_B))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    chosen: dict[int, int] = {}
    for sport in range(1000, 1032):
        pkt = udp4(sport=sport)
        out = with_ttl(pkt, 63)
        dp.send(1, from_vif(ES1, 10, pkt))
        chosen[sport] = dp.expect_one_of(
            [(4, to_remote_a(out, 30001)), (5, to_remote_b(out, 30002))]
        )
    assert set(chosen.values()) == {0, 1}, "32 flows all hashed onto one next hop"
    # a flow sticks to its next hop
    for sport in (1000, 1007, 1031):
        out = with_ttl(udp4(sport=sport), 63)
        dp.send(1, from_vif(ES1, 10, udp4(sport=sport)))
        cands = [(4, to_remote_a(out, 30001)), (5, to_remote_b(out, 30002))]
        assert dp.expect_one_of(cands) == chosen[sport]


def test_ecmp_group_ipv6(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 1, t.encap(30001, REMOTE_A), t.encap(30001, REMOTE_A))
    t.ipv6_route(dp, VRF_A, "2001:db8:2::/48", 1)
    for sport in (1, 2, 3):
        dp.send(1, from_vif(ES1, 10, udp6(sport=sport)))
        dp.expect(4, to_remote_a(udp6(sport=sport, hlim=63), 30001))


def test_local_delivery_when_installed(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 3, t.local(3, 2, 10, ES2))
    t.nexthop(dp, 4, t.local(4, 3, 30, ES3))
    t.ipv4_route(dp, VRF_A, "10.1.0.3/32", 3)
    t.ipv4_route(dp, VRF_A, "10.1.0.4/32", 4)
    pkt = udp4(dst="10.1.0.3")
    dp.send(1, from_vif(ES1, 10, pkt))
    dp.expect(2, to_vif(ES2, 10, with_ttl(pkt, 63)))
    pkt = udp4(src="10.1.0.3", dst="10.1.0.4")
    dp.send(2, from_vif(ES2, 10, pkt))
    dp.expect(3, to_vif(ES3, 30, with_ttl(pkt, 63)))


def test_no_local_delivery_without_a_route(dp: Dataplane) -> None:
    """Draft §5: vifs of one VRF don't reach each other through locally
    originated state; vif 3 exists, but no route to it was installed."""
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16")
    dp.send(1, from_vif(ES1, 10, udp4(dst="10.1.0.3")))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_ROUTE, 1)
    dp.expect_nothing()


def test_route_to_a_missing_nexthop_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 9)  # nexthop 9 was never written
    dp.send(1, from_vif(ES1, 10, udp4()))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_NEXTHOP, 1)
    dp.expect_nothing()


def test_local_delivery_ipv6_from_the_ipv6_vrrp_mac(dp: Dataplane) -> None:
    base(dp)
    t.nexthop(dp, 3, t.local(3, 2, 10, ES2))
    t.ipv6_route(dp, VRF_A, "2001:db8:1::3/128", 3)
    pkt = udp6(dst="2001:db8:1::3")
    dp.send(1, from_vif(ES1, 10, pkt, dst_mac="00:00:5e:00:02:01"))
    dp.expect(2, to_vif(ES2, 10, with_ttl(pkt, 63)))  # src MAC 00:00:5e:00:02:01
