"""The engine on data/features.p4 as p4c-bm2-ss compiles it (data/features.json).

Expected frames are built with scapy (lengths and IPv4/UDP checksums computed
by scapy) and the probe header the program fills in; hash values come from
softswitch.engine_hash, whose algorithms test_engine_hash_ports.py pins to
their check values.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from softswitch import engine_hash
from softswitch.api import (
    ActionCall,
    CounterValue,
    Exact,
    GroupRef,
    Lpm,
    MemberRef,
    Range,
    Replica,
    Ternary,
)
from softswitch.engine import SoftEngine

DATA = Path(__file__).parent / "data"
SRC, DST = "192.168.1.7", "10.1.2.3"
MAC_IN = "02:00:00:00:00:01"
TAIL = b"tail-bytes"


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def probe(
    *,
    crc32: int = 0,
    crc16: int = 0,
    csum16: int = 0,
    xor16: int = 0,
    ident: int = 0,
    reg: int = 0,
    color: int = 0,
    pss: int = 0,
    rid: int = 0,
    sv: int = 0,
    inst: int = 0,
    plen: int = 0,
    perr: int = 0,
) -> bytes:
    return struct.pack(
        ">IHHHIIBBHbBIB",
        crc32,
        crc16,
        csum16,
        xor16,
        ident,
        reg,
        color,
        pss,
        rid,
        sv,
        inst,
        plen,
        perr,
    )


def udp_frame(
    *,
    pss: int = 0,
    sv: int = 5,
    sport: int = 4000,
    dport: int = 0x1234,
    ttl: int = 64,
    dst: str = DST,
) -> Packet:
    return (
        Ether(dst="02:00:00:00:00:fe", src=MAC_IN)
        / IP(src=SRC, dst=dst, ttl=ttl, id=7)
        / UDP(sport=sport, dport=dport)
        / Raw(probe(pss=pss, sv=sv) + TAIL)
    )


def computed(
    frame: Packet,
    *,
    reg: int = 0,
    pss: int = 0,
    rid: int = 0,
    inst: int = 0,
    plen: int | None = None,
) -> bytes:
    """The probe the program writes for ``frame`` (as it was received)."""
    ip, udp = frame[IP], frame[UDP]
    src, dst = ip4(ip.src), ip4(ip.dst)
    sp, dp = udp.sport.to_bytes(2, "big"), udp.dport.to_bytes(2, "big")
    flags_frag = (int(ip.flags) << 13 | ip.frag).to_bytes(2, "big")
    sv = struct.unpack(">b", bytes(udp.payload)[22:23])[0]
    return probe(
        crc32=engine_hash.crc32(src + dst + sp),
        crc16=engine_hash.crc16(bytes([ip.ttl]) + flags_frag),
        csum16=engine_hash.csum16(src + dst),
        xor16=engine_hash.xor16(src + dst + dp),
        ident=engine_hash.identity(sp + dp) % 1000 + 100,
        reg=reg,
        pss=pss,
        rid=rid,
        sv=(sv - 100 + 128) % 256 - 128,
        inst=inst,
        plen=len(bytes(frame)) if plen is None else plen,
    )


def routed(frame: Packet, dmac: str, new_probe: bytes, vlan: bool = False) -> bytes:
    ip, udp = frame[IP], frame[UDP]
    eth = Ether(dst=dmac, src=MAC_IN)
    l3 = IP(src=ip.src, dst=ip.dst, ttl=ip.ttl - 1, id=ip.id) / UDP(
        sport=udp.sport, dport=udp.dport
    )
    if vlan:
        return bytes(eth / Dot1Q(vlan=42) / l3 / Raw(new_probe + TAIL))
    return bytes(eth / l3 / Raw(new_probe + TAIL))


@pytest.fixture
def sw() -> SoftEngine:
    e = SoftEngine()
    e.load(json.loads((DATA / "features.json").read_text()))
    e.table_add("Ing.route", (Lpm(0x0A000000, 8),), ActionCall("Ing.set_nh", (1,)))
    e.table_add("Ing.route", (Lpm(0x0A630000, 16),), ActionCall("Ing.set_nh", (2,)))
    e.member_set("Ing.ecmp_sel", 1, ActionCall("Ing.send", (2, 0xA2)))
    e.member_set("Ing.ecmp_sel", 2, ActionCall("Ing.send", (3, 0xA3)))
    e.member_set("Ing.ecmp_sel", 3, ActionCall("Ing.flood", (7,)))
    e.group_set("Ing.ecmp_sel", 1, [1, 2])
    e.table_add("Ing.nexthop", (Exact(1),), GroupRef(1))
    e.table_add("Ing.nexthop", (Exact(2),), MemberRef(3))
    return e


def ecmp_port(frame: Packet) -> tuple[int, str]:
    ip, udp = frame[IP], frame[UDP]
    key = ip4(ip.src) + ip4(ip.dst) + bytes([17]) + struct.pack(">HH", udp.sport, udp.dport)
    return [(2, "00:00:00:00:00:a2"), (3, "00:00:00:00:00:a3")][engine_hash.crc16(key) % 2]


def test_routed_probe_hashes_register_and_checksums(sw: SoftEngine) -> None:
    dst = 0x0A010203
    for i, sport in enumerate((4000, 4001, 4002, 4003, 4000)):
        f = udp_frame(sport=sport)
        port, dmac = ecmp_port(f)
        # regs[0] accumulates the destination address: each frame reads the sum so far
        expect = computed(f, reg=dst * i & 0xFFFFFFFF)
        assert sw.process(1, bytes(f)) == [(port, routed(f, dmac, expect))]
    assert sw.register_read("Ing.regs", 0) == dst * 5 & 0xFFFFFFFF
    assert sw.counter_read("Ing.ctr", 0) == CounterValue(5, 5 * len(bytes(f)))


def test_both_ecmp_members_are_used(sw: SoftEngine) -> None:
    ports = {sw.process(1, bytes(udp_frame(sport=s)))[0][0] for s in range(4000, 4032)}
    assert ports == {2, 3}


def test_route_miss_blackholes_and_direct_counter(sw: SoftEngine) -> None:
    f = udp_frame(dst="11.0.0.1")
    assert sw.process(1, bytes(f)) == []
    hdl = sw.table_add("Ing.route", (Lpm(0x0B000000, 8),), ActionCall("Ing.blackhole"))
    assert sw.process(1, bytes(f)) == []
    assert sw.direct_counter_read("Ing.route", hdl) == CounterValue(1, len(bytes(f)))


def test_acl_ternary_range_optional(sw: SoftEngine) -> None:
    sw.table_add(
        "Ing.acl",
        (Ternary(0xC0A80100, 0xFFFFFF00), Range(5000, 6000), None),
        ActionCall("Ing.drop"),
        priority=10,
    )
    # p4c-bm2-ss emits an optional key as "ternary" in the bmv2 JSON (bmv2 has
    # no optional match kind): at the engine it takes a full-mask Ternary
    sw.table_add(
        "Ing.acl", (None, None, Ternary(0x1235, 0xFFFF)), ActionCall("Ing.drop"), priority=5
    )
    assert sw.process(1, bytes(udp_frame(sport=5500))) == []
    assert sw.process(1, bytes(udp_frame(sport=4000, dport=0x1235))) == []
    f = udp_frame(sport=6001)
    port, dmac = ecmp_port(f)
    # mark_to_drop does not end ingress: the two dropped probes still added
    # their destination to register 0, as on bmv2
    reg = 2 * int.from_bytes(ip4(DST), "big")
    assert sw.process(1, bytes(f)) == [(port, routed(f, dmac, computed(f, reg=reg)))]


def test_const_entry_and_exit(sw: SoftEngine) -> None:
    frame = bytes(Ether(dst="02:00:00:00:00:fe", src=MAC_IN, type=0x88B5) / Raw(b"x" * 50))
    out = bytes(Ether(dst="00:00:00:00:00:bb", src=MAC_IN, type=0x88B5) / Raw(b"x" * 50))
    assert sw.process(1, frame) == [(7, out)]
    other = bytes(Ether(dst="02:00:00:00:00:fe", src=MAC_IN, type=0x88B6) / Raw(b"y" * 50))
    assert sw.process(1, other) == [(0, other)]


def test_vlan_push_on_port_9_and_mpls_pop(sw: SoftEngine) -> None:
    f = udp_frame()
    port, dmac = ecmp_port(f)
    # setValid (add_header) grows standard_metadata.packet_length by 4
    expect = computed(f, plen=len(bytes(f)) + 4)
    assert sw.process(9, bytes(f)) == [(port, routed(f, dmac, expect, vlan=True))]
    labelled = Ether(dst="02:00:00:00:00:fe", src=MAC_IN) / MPLS(label=100, s=1, ttl=9) / f[IP]
    # pop_front does not change packet_length (bmv2 counts add/remove_header only)
    expect = computed(f, reg=0x0A010203, plen=len(bytes(labelled)))
    assert sw.process(1, bytes(labelled)) == [(port, routed(f, dmac, expect))]


def test_bad_ihl_is_a_parser_error_not_a_drop(sw: SoftEngine) -> None:
    f = (
        Ether(dst="02:00:00:00:00:fe", src=MAC_IN)
        / IP(src=SRC, dst=DST, ihl=6, options=[])
        / Raw(b"\x00" * 4 + b"rest")
    )
    raw = bytearray(bytes(f))
    out = sw.process(1, bytes(raw))
    assert len(out) == 1
    # routed (TTL decremented) without the UDP header being parsed
    assert out[0][1][22] == raw[22] - 1


def test_resubmit_preserves_field_list_and_counts_twice(sw: SoftEngine) -> None:
    f = udp_frame(pss=1)
    port, dmac = ecmp_port(f)
    # pass 2 (resubmitted) sees the register written by pass 1; meta.pass = 1
    expect = computed(f, reg=0x0A010203, pss=1 + 16)
    assert sw.process(1, bytes(f)) == [(port, routed(f, dmac, expect))]
    assert sw.counter_read("Ing.ctr", 1) == CounterValue(2, 2 * len(bytes(f)))


def test_clone_i2e_and_multicast_rids(sw: SoftEngine) -> None:
    sw.clone_session_set(5, [Replica(4, 77)])
    f = udp_frame(pss=2)
    port, dmac = ecmp_port(f)
    # the I2E clone is the received frame parsed again: ingress changes are
    # lost, egress runs on it (TTL, rid 77, instance_type 1, packet_length)
    ip, udp = f[IP], f[UDP]
    clone = bytes(
        Ether(dst="02:00:00:00:00:fe", src=MAC_IN)
        / IP(src=ip.src, dst=ip.dst, ttl=ip.ttl - 1, id=ip.id)
        / UDP(sport=udp.sport, dport=udp.dport)
        / Raw(probe(pss=2, rid=77, sv=5, inst=1, plen=len(bytes(f))) + TAIL)
    )
    assert sw.process(1, bytes(f)) == [(4, clone), (port, routed(f, dmac, computed(f, pss=2)))]
    sw.mc_group_set(7, [Replica(5, 1), Replica(6, 2)])
    g = udp_frame(dst="10.99.0.1")
    assert sorted(sw.process(1, bytes(g))) == [
        (5, routed(g, "02:00:00:00:00:fe", computed(g, rid=1, inst=5))),
        (6, routed(g, "02:00:00:00:00:fe", computed(g, rid=2, inst=5))),
    ]


def test_recirculate_preserves_field_list(sw: SoftEngine) -> None:
    f = udp_frame(pss=3)
    port, dmac = ecmp_port(f)
    # pass 1: egress recirculates with meta.pass = 2 after writing
    #   pass = 3 + 2*16 = 35, ttl 63, probe rid/inst/plen
    # pass 2 (instance_type 4, ingress_port 0): ingress recomputes the probe
    #   from the recirculated packet (ttl 63; regs[35 & 7] holds pass 1's
    #   write), egress adds 2*16 again: 67, ttl 62
    first = Ether(routed(f, dmac, computed(f, pss=35)))
    expect = computed(first, reg=0x0A010203, pss=67)
    assert sw.process(1, bytes(f)) == [(port, routed(first, dmac, expect))]


def test_egress_port_8_is_dropped_in_egress(sw: SoftEngine) -> None:
    sw.member_set("Ing.ecmp_sel", 1, ActionCall("Ing.send", (8, 0xA2)))
    sw.member_set("Ing.ecmp_sel", 2, ActionCall("Ing.send", (8, 0xA3)))
    assert sw.process(1, bytes(udp_frame())) == []
