"""Issue 13, "Wrong output today": the receive-path rules of a router
(RFC 1812, RFC 4861, RFC 2784, RFC 4023, RFC 4182, RFC 6040), each as an
exact frame or an exact drop-reason count. p4src/README.md lists the rules."""

from __future__ import annotations

import struct

from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from control.inet import checksum
from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.test_flood import MY_FLOOD_LABEL, _flood_state
from tests.packet.test_resolution import neighbor_solicit
from tests.packet.topo import (
    DROP_BAD_CHECKSUM,
    DROP_BAD_IP_HEADER,
    DROP_ECN_NOT_ECT,
    DROP_FABRIC_VLAN,
    DROP_FLOOD_UNICAST,
    DROP_GRE_UNSUPPORTED,
    DROP_IP_TRUNCATED,
    DROP_LABEL_PEER,
    DROP_MARTIAN,
    DROP_ND_IGNORED,
    DROP_OUTER_FRAGMENT,
    ES1,
    ES2,
    ES3,
    FABRIC_VLAN,
    NH4,
    VRF_A,
    VRF_B,
    VRRP6,
    base,
    from_remote_a,
    from_vif,
    routes_to_remote_a,
    to_remote_a,
    to_vif,
    udp4,
    udp6,
    with_ttl,
)

INNER = udp4(src="10.2.0.5", dst="10.1.0.1", ttl=63)
OUTER_IP = 14  # offset of the outer IPv4 header in an untagged fabric frame
VIF_IP = 18  # offset of the IP header in a frame from a vif


def _routes(dp: Dataplane) -> None:
    """base(), a default route of VRF A to REMOTE_A, vif 1's label 16001."""
    base(dp)
    routes_to_remote_a(dp, "0.0.0.0/0", "::/0")
    t.label_to_vif(dp, 16001, 1, 1, 10, ES1, VRF_A)


def _patch(frame: Packet, offset: int, data: bytes) -> bytes:
    b = bytearray(bytes(frame))
    b[offset : offset + len(data)] = data
    return bytes(b)


def _fix_csum(b: bytes, off: int) -> bytes:
    """``b`` with the IPv4 header checksum at ``off`` made right again."""
    ihl = (b[off] & 0xF) * 4
    hdr = bytearray(b[off : off + ihl])
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", checksum(bytes(hdr)))
    return b[:off] + bytes(hdr) + b[off + ihl :]


# --------------------------------------------------------------- checksums
def test_ipv4_header_checksum_verified_from_a_vif(dp: Dataplane) -> None:
    """RFC 1812 5.2.2: a corrupt header checksum is dropped, not forwarded
    with a freshly valid one."""
    _routes(dp)
    good = from_vif(ES1, 10, udp4())
    bad = _patch(good, VIF_IP + 10, b"\x12\x34")
    dp.send(1, bad)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_BAD_CHECKSUM, 1)
    dp.expect_nothing()
    dp.send(1, good)  # the same packet with its checksum is routed
    dp.expect(4, to_remote_a(with_ttl(udp4(), 63), 30001))


def test_outer_and_inner_ipv4_checksums_verified_on_decap(dp: Dataplane) -> None:
    _routes(dp)
    frame = bytes(from_remote_a(INNER, 16001))
    dp.send(4, _patch(Ether(frame), OUTER_IP + 10, b"\x00\x01"))  # outer
    inner_off = OUTER_IP + 20 + 4 + 4
    dp.send(4, _patch(Ether(frame), inner_off + 10, b"\x00\x01"))  # inner
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_BAD_CHECKSUM, 2)
    dp.expect_nothing()
    dp.send(4, frame)
    dp.expect(1, to_vif(ES1, 10, with_ttl(INNER, 62)))


# --------------------------------------------------------------- header sanity
def test_ethertype_ipv4_carrying_version_6_dropped(dp: Dataplane) -> None:
    _routes(dp)
    v6 = bytes(udp6())
    dp.send(1, Ether(src=ES1, dst="00:00:5e:00:01:01") / Dot1Q(vlan=10, type=0x0800) / Raw(v6))
    v4 = bytes(udp4())
    dp.send(1, Ether(src=ES1, dst=VRRP6) / Dot1Q(vlan=10, type=0x86DD) / Raw(v4))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_BAD_IP_HEADER, 2)
    dp.expect_nothing()


def test_ipv4_header_shorter_than_its_ihl_or_total_length_dropped(dp: Dataplane) -> None:
    _routes(dp)
    good = bytes(from_vif(ES1, 10, udp4()))
    ihl4 = _fix_csum(good[:VIF_IP] + b"\x44" + good[VIF_IP + 1 :], VIF_IP)
    short_total = _fix_csum(_patch(Ether(good), VIF_IP + 2, b"\x00\x10"), VIF_IP)  # 16 < 20
    dp.send(1, ihl4)
    dp.send(1, short_total)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_BAD_IP_HEADER, 2)
    dp.expect_nothing()


def test_ip_length_beyond_the_bytes_present_dropped(dp: Dataplane) -> None:
    """RFC 1812 5.2.2: a total length larger than the frame is not routed
    (it would make a malformed outer packet)."""
    _routes(dp)
    good = bytes(from_vif(ES1, 10, udp4()))  # total length 44
    dp.send(1, _fix_csum(_patch(Ether(good), VIF_IP + 2, b"\x00\x64"), VIF_IP))  # 100
    six = bytes(from_vif(ES1, 10, udp6(), dst_mac=VRRP6))
    dp.send(1, _patch(Ether(six), VIF_IP + 4, b"\x00\x40"))  # payload length 64 > 24
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_IP_TRUNCATED, 2)
    # the outer header of a tunnel packet, and the inner one
    tun = bytes(from_remote_a(INNER, 16001))
    dp.send(4, _fix_csum(_patch(Ether(tun), OUTER_IP + 2, b"\x05\xdc"), OUTER_IP))
    inner_off = OUTER_IP + 28
    dp.send(4, _fix_csum(_patch(Ether(tun), inner_off + 2, b"\x00\x64"), inner_off))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_IP_TRUNCATED, 4)
    dp.expect_nothing()


def test_ethernet_padding_is_not_carried_on(dp: Dataplane) -> None:
    """A short frame padded to 60 bytes: the IP total length decides what
    is encapsulated or delivered, not the frame length."""
    _routes(dp)
    t.nexthop(dp, 3, t.local(3, 2, 10, ES2))
    t.ipv4_route(dp, VRF_A, "10.1.0.3/32", 3)
    small = IP(bytes(IP(src="10.1.0.1", dst="10.2.0.5", ttl=64, id=7) / UDP(sport=1, dport=2)))
    padded = bytes(from_vif(ES1, 10, small)) + b"\x00" * 14  # 46 + 14 = 60 bytes
    assert len(padded) == 60
    dp.send(1, padded)
    dp.expect(4, to_remote_a(with_ttl(small, 63), 30001))
    local = IP(bytes(IP(src="10.1.0.1", dst="10.1.0.3", ttl=64, id=7) / UDP(sport=1, dport=2)))
    dp.send(1, bytes(from_vif(ES1, 10, local)) + b"\x00" * 14)
    dp.expect(2, to_vif(ES2, 10, with_ttl(local, 63)))
    # a tunnel packet with trailing bytes after its outer total length
    dp.send(4, bytes(from_remote_a(INNER, 16001)) + b"\xee" * 6)
    dp.expect(1, to_vif(ES1, 10, with_ttl(INNER, 62)))


# --------------------------------------------------------------- tunnel rules
def test_outer_fragments_not_decapsulated(dp: Dataplane) -> None:
    """RFC 4023 5.1: no reassembly here; a fragment is dropped and counted."""
    _routes(dp)
    big = udp4(src="10.2.0.5", dst="10.1.0.1", ttl=63, size=200)
    first = from_remote_a(big, 16001)
    first[IP].flags = "MF"
    dp.send(4, first)
    later = from_remote_a(big, 16001)
    later[IP].flags = 0
    later[IP].frag = 16
    dp.send(4, Ether(bytes(later)))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_OUTER_FRAGMENT, 2)
    dp.expect_nothing()


def test_gre_checksum_present_and_reserved_bits_accepted(dp: Dataplane) -> None:
    """RFC 2784: the checksum-present bit is taken (the checksum is not
    verified, p4src/README.md); reserved bits 6-12 are ignored on receipt;
    bits 1-5 (key, sequence, ...) and a version other than 0 are refused."""
    _routes(dp)
    out = to_vif(ES1, 10, with_ttl(INNER, 62))
    dp.send(4, from_remote_a(INNER, 16001, gre=GRE(proto=0x8847, chksum_present=1)))
    dp.expect(1, out)
    reserved = bytes(from_remote_a(INNER, 16001))
    for word in (0x0200, 0x0008, 0x03F8, 0x83F8):  # bits 6-12, also with C
        frame = _patch(Ether(reserved), OUTER_IP + 20, struct.pack("!H", word))
        if word & 0x8000:  # checksum word present: 4 more bytes
            b = bytearray(frame)
            b[OUTER_IP + 24 : OUTER_IP + 24] = b"\x00" * 4
            b[OUTER_IP + 2 : OUTER_IP + 4] = struct.pack("!H", len(b) - OUTER_IP)
            frame = _fix_csum(bytes(b), OUTER_IP)
        dp.send(4, frame)
        dp.expect(1, out)
    for word in (0x4000, 0x2000, 0x1000, 0x0800, 0x0400, 0x0001):  # bits 1-5, version 1
        dp.send(4, _patch(Ether(reserved), OUTER_IP + 20, struct.pack("!H", word)))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_GRE_UNSUPPORTED, 6)
    dp.expect_nothing()


def test_explicit_null_above_the_vpn_label_is_popped(dp: Dataplane) -> None:
    """RFC 4182: an explicit null (0 or 2) may sit anywhere in the stack."""
    _routes(dp)
    out = to_vif(ES1, 10, with_ttl(INNER, 62))
    for null in (0, 2):
        dp.send(4, from_remote_a(INNER, 16001, labels=[null]))
        dp.expect(1, out)


def test_outer_ce_marks_an_ect_inner_packet(dp: Dataplane) -> None:
    """RFC 6040 4.2 on decapsulation."""
    _routes(dp)
    for inner_ecn, outer_ecn, want in ((2, 3, 3), (1, 3, 3), (2, 1, 1), (1, 2, 1), (2, 0, 2)):
        inner = udp4(src="10.2.0.5", dst="10.1.0.1", ttl=63, tos=0x20 | inner_ecn)
        dp.send(4, from_remote_a(inner, 16001, tos=outer_ecn))
        expect = udp4(src="10.2.0.5", dst="10.1.0.1", ttl=62, tos=0x20 | want)
        dp.expect(1, to_vif(ES1, 10, expect))
    inner6 = IPv6(bytes(IPv6(src="2001:db8:2::5", dst="2001:db8:1::1", hlim=9, tc=0x22) / UDP()))
    dp.send(4, from_remote_a(inner6, 16001, tos=3))
    want6 = IPv6(bytes(IPv6(src="2001:db8:2::5", dst="2001:db8:1::1", hlim=8, tc=0x23) / UDP()))
    dp.expect(1, to_vif(ES1, 10, want6))
    # CE over Not-ECT: dropped (RFC 6040 4.2)
    dp.send(4, from_remote_a(INNER, 16001, tos=3))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_ECN_NOT_ECT, 1)
    dp.expect_nothing()


def test_flood_label_with_a_unicast_destination_dropped(dp: Dataplane) -> None:
    base(dp)
    _flood_state(dp)
    dp.send(4, from_remote_a(udp4(src="10.2.0.5", dst="10.1.0.3"), MY_FLOOD_LABEL))
    dp.send(4, from_remote_a(udp6(src="2001:db8:2::5", dst="2001:db8:1::1"), MY_FLOOD_LABEL))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_FLOOD_UNICAST, 2)
    dp.expect_nothing()
    mc = IP(bytes(IP(src="10.2.0.5", dst="224.0.0.251", ttl=1) / UDP() / b"m"))
    dp.send(4, from_remote_a(mc, MY_FLOOD_LABEL))
    dp.expect(1, to_vif("01:00:5e:00:00:fb", 10, mc))
    dp.expect(2, to_vif("01:00:5e:00:00:fb", 10, mc))
    dp.expect(3, to_vif("01:00:5e:00:00:fb", 30, mc))


def test_label_taken_only_from_the_forwarders_of_its_vrf(dp: Dataplane) -> None:
    """Requirements draft §12: REMOTE_C is a known tunnel peer, but only of
    VRF B: it may not use VRF A's labels."""
    remote_c = "198.51.100.13"
    _routes(dp)
    t.tunnel_peer(dp, remote_c)
    t.vrf_peer(dp, VRF_B, remote_c)
    t.label_to_vif(dp, 16002, 2, 1, 20, ES1, VRF_B)
    dp.send(4, from_remote_a(INNER, 16001, src=remote_c))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_LABEL_PEER, 1)
    dp.expect_nothing()
    dp.send(4, from_remote_a(INNER, 16002, src=remote_c))
    dp.expect(1, to_vif(ES1, 20, with_ttl(INNER, 62)))


def test_only_the_fabric_vlan_is_decapsulated(dp: Dataplane) -> None:
    _routes(dp)
    dp.send(5, from_remote_a(INNER, 16001, vlan=99))  # port 5 takes VLAN 7 only
    dp.send(5, from_remote_a(INNER, 16001))  # untagged
    dp.send(4, from_remote_a(INNER, 16001, vlan=FABRIC_VLAN))  # port 4: untagged only
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_FABRIC_VLAN, 3)
    dp.expect_nothing()
    dp.send(5, from_remote_a(INNER, 16001, vlan=FABRIC_VLAN))
    dp.expect(1, to_vif(ES1, 10, with_ttl(INNER, 62)))


# --------------------------------------------------------------- addresses
def test_addresses_never_forwarded_off_link(dp: Dataplane) -> None:
    """RFC 1812 5.3.7 / 5.3.5.1, RFC 3927 7, RFC 4291 2.5: not through the
    default route, whatever the anti-spoofing entries permit."""
    _routes(dp)
    t.ipv4_source(dp, 1, "0.0.0.0/0")
    t.ipv6_source(dp, 1, "::/0")
    pairs4 = [
        ("10.1.0.1", "255.255.255.255"),
        ("10.1.0.1", "127.0.0.1"),
        ("127.0.0.1", "10.2.0.5"),
        ("10.1.0.1", "0.1.2.3"),
        ("0.0.0.0", "10.2.0.5"),
        ("10.1.0.1", "169.254.1.1"),
        ("169.254.1.1", "10.2.0.5"),
        ("224.0.0.5", "10.2.0.5"),
        ("10.1.0.1", "240.0.0.1"),
    ]
    for src, dst in pairs4:
        dp.send(1, from_vif(ES1, 10, udp4(src=src, dst=dst)))
    pairs6 = [
        ("fe80::1", "2001:db8:2::5"),
        ("2001:db8:1::1", "fe80::5"),
        ("2001:db8:1::1", "::1"),
        ("::1", "2001:db8:2::5"),
        ("2001:db8:1::1", "ff02::1"),
    ]
    for src, dst in pairs6:
        dp.send(1, from_vif(ES1, 10, udp6(src=src, dst=dst), dst_mac=VRRP6))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_MARTIAN, len(pairs4) + len(pairs6))
    dp.expect_nothing()
    # from the fabric too (delivered to a vif by its label)
    dp.send(4, from_remote_a(udp4(src="10.2.0.5", dst="127.0.0.1", ttl=63), 16001))
    dp.send(4, from_remote_a(udp4(src="169.254.0.9", dst="10.1.0.1", ttl=63), 16001))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_MARTIAN, len(pairs4) + len(pairs6) + 2)
    dp.expect_nothing()
    # an ordinary address is still routed
    dp.send(1, from_vif(ES1, 10, udp4(src="10.1.0.1", dst="10.2.0.5")))
    dp.expect(4, to_remote_a(with_ttl(udp4(), 63), 30001))


# --------------------------------------------------------------- neighbor discovery
def test_neighbor_solicitation_validated_before_it_is_answered(dp: Dataplane) -> None:
    """RFC 4861 7.1.1: a multicast target or a bad ICMPv6 checksum is
    silently discarded (not answered from ff02::1)."""
    base(dp)
    dp.send(1, neighbor_solicit("ff02::1"))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_ND_IGNORED, 1)
    ns = bytes(neighbor_solicit("2001:db8:1::ff"))
    csum = VIF_IP + 40 + 2
    dp.send(1, _patch(Ether(ns), csum, bytes([ns[csum] ^ 0xFF, ns[csum + 1]])))
    ns24 = bytes(neighbor_solicit("2001:db8:1::ff", option=False))
    dp.send(1, _patch(Ether(ns24), csum, bytes([ns24[csum], ns24[csum + 1] ^ 1])))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_BAD_CHECKSUM, 2)
    dp.expect_nothing()


# --------------------------------------------------------------- options
def test_igmp_with_router_alert_is_flooded(dp: Dataplane) -> None:
    """RFC 1812 5.2.4 / RFC 2236: IGMP carries the router alert option."""
    base(dp)
    _flood_state(dp)
    igmp = IP(
        bytes(
            IP(src="10.1.0.1", dst="224.0.0.22", ttl=1, proto=2, options=[b"\x94\x04\x00\x00"])
            / Raw(bytes.fromhex("22000000"))
        )
    )
    mac = "01:00:5e:00:00:16"
    dp.send(1, from_vif(ES1, 10, igmp, dst_mac=mac))
    dp.expect(2, to_vif(mac, 10, igmp))
    dp.expect(3, to_vif(mac, 30, igmp))
    dp.expect(4, to_remote_a(igmp, 40001))


# --------------------------------------------------------------- packet-out
def test_packet_out_with_a_bad_checksum_left_unchanged(dp: Dataplane) -> None:
    base(dp)
    frame = _patch(from_vif("02:00:00:00:f0:01", 10, udp4(), dst_mac=ES3), VIF_IP + 10, b"\xde\xad")
    dp.packet_out(frame, 3)
    dp.expect(3, frame)
    fab = _patch(Ether(bytes(from_remote_a(INNER, 16001))), OUTER_IP + 10, b"\xbe\xef")
    fab = Ether(fab)
    fab[Ether].dst, fab[Ether].src = NH4, "02:00:00:00:f0:01"
    dp.packet_out(bytes(fab), 4)
    dp.expect(4, bytes(fab))
