"""Issue item 3: a vif may only source the addresses installed for it."""

from __future__ import annotations

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_SPOOFED,
    ES1,
    ES2,
    VRF_A,
    base,
    from_vif,
    to_remote_a,
    udp4,
    udp6,
    with_ttl,
)


def _route(dp: Dataplane) -> None:
    t.nexthop(dp, 1, t.encap(30001, "198.51.100.11"))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    t.ipv6_route(dp, VRF_A, "2001:db8:2::/48", 1)


def test_installed_sources_forwarded(dp: Dataplane) -> None:
    base(dp)
    _route(dp)
    t.ipv4_source(dp, 3, "10.3.0.0/24")  # a prefix behind the end-system
    dp.send(1, from_vif(ES1, 10, udp4(src="10.1.0.1")))
    dp.expect(4, to_remote_a(udp4(src="10.1.0.1", ttl=63), 30001))
    dp.send(2, from_vif(ES2, 10, udp4(src="10.3.0.77")))
    dp.expect(4, to_remote_a(udp4(src="10.3.0.77", ttl=63), 30001))
    dp.send(1, from_vif(ES1, 10, udp6()))
    dp.expect(4, to_remote_a(with_ttl(udp6(), 63), 30001))


def test_other_sources_dropped_and_counted(dp: Dataplane) -> None:
    base(dp)
    _route(dp)
    dp.send(1, from_vif(ES1, 10, udp4(src="10.1.0.2")))  # not installed
    dp.send(1, from_vif(ES1, 10, udp4(src="10.1.0.3")))  # vif 3's address
    dp.send(2, from_vif(ES2, 10, udp4(src="10.1.0.1")))  # vif 1's address
    dp.send(1, from_vif(ES1, 10, udp6(src="2001:db8:1::2")))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_SPOOFED, 4)
    dp.expect_nothing()
