"""Issue 13, punt path: packet-ins with reason and context, routed packet-outs,
the per-reason punt meter (p4src/README.md "Controller headers")."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from control.p4rt import MeterRate
from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_MTU_EXCEEDED,
    DROP_NO_ROUTE,
    DROP_SPOOFED,
    DROP_TTL_EXPIRED,
    ES1,
    ES2,
    PUNT_DHCP,
    PUNT_NO_ROUTE,
    PUNT_ROUTE,
    PUNT_TOO_BIG,
    PUNT_TTL_EXPIRED,
    VRF_A,
    VRRP4,
    VRRP6,
    base,
    from_remote_a,
    from_vif,
    routes_to_remote_a,
    to_remote_a,
    to_vif,
    udp4,
    udp6,
)

BCAST = "ff:ff:ff:ff:ff:ff"


def _pin(dp: Dataplane, frame: bytes, reason: int, port: int, vrf: int, vif: int, out: int) -> None:
    pin = dp.packet_in()
    assert pin.payload == frame
    assert dict(pin.metadata) == {
        "ingress_port": port,
        "_pad": 0,
        "reason": reason,
        "vrf_id": vrf,
        "vif_id": vif,
        "out_vif": out,
    }


def test_expired_ttl_is_counted_and_punted_as_received(dp: Dataplane) -> None:
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16", "2001:db8:2::/48")
    for l3 in (udp4(ttl=1), udp6(hlim=1)):
        frame = bytes(from_vif(ES1, 10, l3, dst_mac=VRRP6 if IPv6 in l3 else VRRP4))
        dp.send(1, frame)
        _pin(dp, frame, PUNT_TTL_EXPIRED, 1, VRF_A, 1, 0)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_TTL_EXPIRED, 2)
    dp.expect_nothing()
    # from the fabric, to a vif: the label names its VRF, the vif is out_vif
    t.label_to_vif(dp, 16001, 3, 2, 10, ES2, VRF_A)
    inner = udp4(src="10.2.0.5", dst="10.1.0.3", ttl=1)
    dp.send(4, from_remote_a(inner, 16001))
    received = bytes(from_remote_a(inner, 16001))[:14] + bytes(inner)
    _pin(dp, received, PUNT_TTL_EXPIRED, 4, VRF_A, 0, 3)
    dp.expect_nothing()


def test_no_route_is_counted_and_punted(dp: Dataplane) -> None:
    base(dp)
    frame = bytes(from_vif(ES1, 10, udp4(dst="10.77.0.1")))
    dp.send(1, frame)
    _pin(dp, frame, PUNT_NO_ROUTE, 1, VRF_A, 1, 0)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_ROUTE, 1)
    dp.expect_nothing()


def test_too_big_for_the_tunnel_with_df_or_ipv6_is_punted(dp: Dataplane) -> None:
    base(dp)  # fabric MTU 1500: inner packets up to 1472 fit
    routes_to_remote_a(dp, "10.2.0.0/16", "2001:db8:2::/48")
    df = IP(bytes(IP(src="10.1.0.1", dst="10.2.0.5", flags="DF", id=9) / UDP() / Raw(b"x" * 1445)))
    assert len(df) == 1473
    frame = bytes(from_vif(ES1, 10, df))
    dp.send(1, frame)
    _pin(dp, frame, PUNT_TOO_BIG, 1, VRF_A, 1, 0)
    big6 = IPv6(bytes(IPv6(src="2001:db8:1::1", dst="2001:db8:2::5") / UDP() / Raw(b"y" * 1425)))
    assert len(big6) == 1473
    frame6 = bytes(from_vif(ES1, 10, big6, dst_mac=VRRP6))
    dp.send(1, frame6)
    _pin(dp, frame6, PUNT_TOO_BIG, 1, VRF_A, 1, 0)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_MTU_EXCEEDED, 2)
    dp.expect_nothing()
    # 1472 fits: forwarded (TTL decremented after the checks)
    fits = IP(
        bytes(IP(src="10.1.0.1", dst="10.2.0.5", flags="DF", id=9) / UDP() / Raw(b"x" * 1444))
    )
    dp.send(1, from_vif(ES1, 10, fits))
    out = fits.copy()
    out.ttl = 63
    del out.chksum
    dp.expect(4, to_remote_a(IP(bytes(out)), 30001))


def test_dhcp_is_trapped_only_in_a_dhcp_vrf(dp: Dataplane) -> None:
    base(dp)
    t.dhcp_trap(dp, VRF_A)
    discover = IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / Raw(b"d" * 240)
    frame = bytes(from_vif(ES1, 10, IP(bytes(discover)), dst_mac=BCAST))
    dp.send(1, frame)
    _pin(dp, frame, PUNT_DHCP, 1, VRF_A, 1, 0)
    dp.expect_nothing()
    # VRF B has no DHCP: a DISCOVER from 0.0.0.0 is spoofed there
    dp.send(1, from_vif(ES1, 20, IP(bytes(discover)), dst_mac=BCAST))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_SPOOFED, 1)
    dp.no_packet_in()
    dp.expect_nothing()


def test_routed_packet_out_keeps_its_ttl_and_is_never_punted(dp: Dataplane) -> None:
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16", "2001:db8:2::/48")
    t.nexthop(dp, 3, t.local(1, 1, 10, ES1))
    t.ipv4_route(dp, VRF_A, "10.1.0.1/32", 3)
    t.ipv4_route(dp, VRF_A, "10.1.0.254/32", "to_cpu")
    icmp = IP(bytes(IP(src="10.1.0.254", dst="10.2.0.5", ttl=64) / Raw(b"\x0b\x00" + b"z" * 30)))
    dp.packet_out_routed(Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") / icmp, VRF_A)
    dp.expect(4, to_remote_a(icmp, 30001))
    local = IP(bytes(IP(src="10.1.0.254", dst="10.1.0.1", ttl=64) / Raw(b"q" * 20)))
    dp.packet_out_routed(Ether() / local, VRF_A)
    dp.expect(1, to_vif(ES1, 10, local))
    # TTL 1 leaves as is; no route / to the CPU again: dropped, no packet-in
    one = IP(bytes(IP(src="10.1.0.254", dst="10.1.0.1", ttl=1) / Raw(b"q" * 20)))
    dp.packet_out_routed(Ether() / one, VRF_A)
    dp.expect(1, to_vif(ES1, 10, one))
    dp.packet_out_routed(Ether() / IP(src="10.1.0.254", dst="10.77.0.1"), VRF_A)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_ROUTE, 1)
    dp.packet_out_routed(Ether() / IP(src="10.1.0.1", dst="10.1.0.254"), VRF_A)
    dp.wait_counter(t.C_PUNT_DROPS, PUNT_ROUTE, 1)
    dp.no_packet_in()
    dp.expect_nothing()
    # the same to_cpu route punts what a vif sends
    frame = bytes(from_vif(ES1, 10, udp4(dst="10.1.0.254")))
    dp.send(1, frame)
    _pin(dp, frame, PUNT_ROUTE, 1, VRF_A, 1, 0)


def test_punt_meter_limits_each_reason_alone(dp: Dataplane) -> None:
    base(dp)
    # no route: burst of 2 packets, no refill; TTL expiry unlimited
    dp.loop.run(dp.p4.write_meters(t.M_PUNT_METER, {PUNT_NO_ROUTE: MeterRate(0, 2, 0, 2)}))
    frames = [bytes(from_vif(ES1, 10, udp4(dst="10.77.0.1", sport=s))) for s in range(5)]
    for f in frames:
        dp.send(1, f)
    for f in frames[:2]:
        _pin(dp, f, PUNT_NO_ROUTE, 1, VRF_A, 1, 0)
    dp.wait_counter(t.C_PUNT_DROPS, PUNT_NO_ROUTE, 3)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_ROUTE, 5)
    dp.no_packet_in()
    routes_to_remote_a(dp, "10.2.0.0/16", "2001:db8:2::/48")
    expired = bytes(from_vif(ES1, 10, udp4(ttl=1)))
    for _ in range(3):
        dp.send(1, expired)
        _pin(dp, expired, PUNT_TTL_EXPIRED, 1, VRF_A, 1, 0)
    assert dp.counter(t.C_PUNT_DROPS, PUNT_TTL_EXPIRED).packets == 0
