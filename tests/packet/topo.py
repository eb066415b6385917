"""The test topology and frame builders shared by the packet tests.

Ports 1-3 face end-systems (802.1Q), ports 4-5 face the IP fabric.

    port 1: ES1 (02:00:00:00:01:01) VLAN 10 -> vif 1 (VRF 100)
                                    VLAN 20 -> vif 2 (VRF 200)
    port 2: ES2 (02:00:00:00:02:02) VLAN 10 -> vif 3 (VRF 100)
    port 3: ES3 (02:00:00:00:03:03) VLAN 30 -> vif 4 (VRF 100)
    port 4: fabric, next hop NH4 towards REMOTE_A (untagged)
    port 5: fabric, next hop NH5 towards REMOTE_B (fabric VLAN 7)
"""

from __future__ import annotations

from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from tests.packet import tables as t
from tests.packet.harness import Dataplane

VRRP4 = "00:00:5e:00:01:01"
VRRP6 = "00:00:5e:00:02:01"

ES1 = "02:00:00:00:01:01"
ES2 = "02:00:00:00:02:02"
ES3 = "02:00:00:00:03:03"
ES4 = "02:00:00:00:04:04"

MY_IP = "192.0.2.1"
MTU = 1500
SW_FABRIC_MAC = "02:00:00:00:f0:01"
NH4 = "02:00:00:00:f0:04"
NH5 = "02:00:00:00:f0:05"
FABRIC_VLAN = 7
REMOTE_A = "198.51.100.11"
REMOTE_B = "198.51.100.12"

VRF_A = 100
VRF_B = 200

# drop reasons (p4src/include/define.p4)
DROP_UNTAGGED = 1
DROP_DOUBLE_TAGGED = 2
DROP_UNKNOWN_VIF = 3
DROP_NOT_ROUTER_MAC = 4
DROP_NOT_IP = 5
DROP_ARP_IGNORED = 6
DROP_ND_IGNORED = 7
DROP_SPOOFED = 8
DROP_NO_ROUTE = 10
DROP_NO_NEXTHOP = 12
DROP_TTL_EXPIRED = 13
DROP_NO_UNDERLAY = 14
DROP_MTU_EXCEEDED = 15
DROP_NOT_TUNNEL = 16
DROP_UNKNOWN_PEER = 17
DROP_GRE_UNSUPPORTED = 18
DROP_MPLS_STACK = 19
DROP_UNKNOWN_LABEL = 20
DROP_INNER_NOT_IP = 21
DROP_FABRIC_TO_FABRIC = 22
DROP_NO_FLOOD_GROUP = 23
DROP_NO_REPLICA = 24
DROP_BAD_CHECKSUM = 25
DROP_BAD_IP_HEADER = 26
DROP_IP_TRUNCATED = 27
DROP_OUTER_FRAGMENT = 28
DROP_MARTIAN = 29
DROP_LABEL_PEER = 30
DROP_FABRIC_VLAN = 31
DROP_FLOOD_UNICAST = 32
DROP_ECN_NOT_ECT = 33

# punt reasons (packet_in reason, index of punt_meter / punt_drops)
PUNT_FABRIC_ARP = 1
PUNT_ROUTE = 2
PUNT_TTL_EXPIRED = 3
PUNT_NO_ROUTE = 4
PUNT_TOO_BIG = 5
PUNT_DHCP = 6


def base(dp: Dataplane) -> None:
    """Fabric ports and identity, the vifs, their source addresses, the
    underlay and the tunnel peers: what the agent installs at start-up and
    when the end-systems subscribe."""
    t.fabric_port(dp, 4)
    t.fabric_port(dp, 5)
    t.fabric_config(dp, MY_IP, MTU)
    t.vif(dp, 1, ES1, 10, 1, VRF_A)
    t.vif(dp, 1, ES1, 20, 2, VRF_B)
    t.vif(dp, 2, ES2, 10, 3, VRF_A)
    t.vif(dp, 3, ES3, 30, 4, VRF_A)
    t.ipv4_source(dp, 1, "10.1.0.1/32")
    t.ipv4_source(dp, 2, "10.1.0.1/32")
    t.ipv4_source(dp, 3, "10.1.0.3/32")
    t.ipv4_source(dp, 4, "10.1.0.4/32")
    t.ipv6_source(dp, 1, "2001:db8:1::1/128")
    t.underlay(dp, REMOTE_A + "/32", 4, SW_FABRIC_MAC, NH4)
    t.underlay(dp, REMOTE_B + "/32", 5, SW_FABRIC_MAC, NH5, FABRIC_VLAN)
    t.tunnel_peer(dp, REMOTE_A)
    t.tunnel_peer(dp, REMOTE_B)
    t.fabric_vlan(dp, 4, 0)
    t.fabric_vlan(dp, 5, FABRIC_VLAN)
    for vrf in (VRF_A, VRF_B):
        t.vrf_peer(dp, vrf, REMOTE_A)
        t.vrf_peer(dp, vrf, REMOTE_B)


def udp4(
    src: str = "10.1.0.1",
    dst: str = "10.2.0.5",
    ttl: int = 64,
    sport: int = 1234,
    dport: int = 80,
    size: int = 0,
    tos: int = 0,
) -> Packet:
    """IPv4/UDP; ``size`` pads the payload so the IPv4 total length is that."""
    pkt = IP(src=src, dst=dst, ttl=ttl, id=7, tos=tos) / UDP(sport=sport, dport=dport)
    pad = max(0, size - 28) if size else 16
    return IP(bytes(pkt / Raw(b"\xab" * pad)))


def udp6(
    src: str = "2001:db8:1::1", dst: str = "2001:db8:2::5", hlim: int = 64, sport: int = 1234
) -> Packet:
    return IPv6(
        bytes(IPv6(src=src, dst=dst, hlim=hlim) / UDP(sport=sport, dport=80) / (b"\xcd" * 16))
    )


def with_ttl(pkt: Packet, ttl: int) -> Packet:
    """A copy of an IPv4/IPv6 packet with another TTL/hop limit (checksum redone)."""
    p = pkt.copy()
    if IP in p:
        p[IP].ttl = ttl
        del p[IP].chksum
    else:
        p[IPv6].hlim = ttl
    return p.__class__(bytes(p))


def from_vif(src_mac: str, vlan: int, l3: Packet, dst_mac: str = VRRP4) -> Packet:
    return Ether(src=src_mac, dst=dst_mac) / Dot1Q(vlan=vlan) / l3


def to_vif(dst_mac: str, vlan: int, l3: Packet, src_mac: str | None = None) -> Packet:
    if src_mac is None:
        src_mac = VRRP6 if IPv6 in l3 else VRRP4
    return Ether(src=src_mac, dst=dst_mac) / Dot1Q(vlan=vlan) / l3


def mpls_gre(
    inner: Packet,
    label: int,
    mpls_ttl: int,
    src: str,
    dst: str,
    eth_src: str,
    eth_dst: str,
    vlan: int = 0,
    tos: int = 0,
    gre: Packet | None = None,
    labels: list[int] | None = None,
) -> Packet:
    """Ethernet [/802.1Q] / IPv4 / GRE / MPLS / inner, as this switch builds it
    (outer IPv4: id 0, DF, TTL 64, TOS copied from the inner packet)."""
    eth: Packet = Ether(src=eth_src, dst=eth_dst)
    if vlan:
        eth = eth / Dot1Q(vlan=vlan)
    stack: Packet = MPLS(label=label, cos=0, s=1, ttl=mpls_ttl)
    for extra in reversed(labels or []):
        stack = MPLS(label=extra, cos=0, s=0, ttl=mpls_ttl) / stack
    outer = IP(src=src, dst=dst, id=0, flags="DF", ttl=64, tos=tos, proto=47)
    return eth / outer / (gre if gre is not None else GRE(proto=0x8847)) / stack / inner


def to_remote_a(inner: Packet, label: int, tos: int = 0) -> Packet:
    ttl = inner[IP].ttl if IP in inner else inner[IPv6].hlim
    return mpls_gre(inner, label, ttl, MY_IP, REMOTE_A, SW_FABRIC_MAC, NH4, tos=tos)


def to_remote_b(inner: Packet, label: int) -> Packet:
    ttl = inner[IP].ttl if IP in inner else inner[IPv6].hlim
    return mpls_gre(inner, label, ttl, MY_IP, REMOTE_B, SW_FABRIC_MAC, NH5, vlan=FABRIC_VLAN)


def from_remote_a(inner: Packet, label: int, **kw: object) -> Packet:
    """What REMOTE_A sends this switch (received on port 4)."""
    args: dict[str, object] = {
        "mpls_ttl": 63,
        "src": REMOTE_A,
        "dst": MY_IP,
        "eth_src": NH4,
        "eth_dst": SW_FABRIC_MAC,
    }
    args.update(kw)
    return mpls_gre(inner, label, **args)  # type: ignore[arg-type]


def routes_to_remote_a(dp: Dataplane, *prefixes: str) -> None:
    """Next hop 1: MPLS-in-GRE to REMOTE_A with label 30001, and VRF A's
    routes to ``prefixes`` (IPv4 or IPv6) through it."""
    t.nexthop(dp, 1, t.encap(30001, REMOTE_A))
    for prefix in prefixes:
        (t.ipv6_route if ":" in prefix else t.ipv4_route)(dp, VRF_A, prefix, 1)


BenchCase = tuple[int, list[bytes], int, list[bytes]]


def bench_program(dp: Dataplane) -> None:
    """The entries the benchmarks run (bench/engine_pps.py in-process,
    bench/dataplane_pps.py over veths): base(), one route to REMOTE_A over
    MPLS-in-GRE, one per-interface label delivering to vif 1."""
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16")
    t.label_to_vif(dp, 40001, 1, 1, 10, ES1, VRF_A)


def bench_cases() -> dict[str, BenchCase]:
    """name -> (in port, frames, out port, expected frames) on bench_program."""
    enc_in, enc_out, dec_in, dec_out = [], [], [], []
    for i in range(64):
        pkt = udp4(dst=f"10.2.{i}.5", sport=1000 + i)
        enc_in.append(bytes(from_vif(ES1, 10, pkt)))
        enc_out.append(bytes(to_remote_a(with_ttl(pkt, 63), 30001)))
        inner = udp4(src=f"10.2.{i}.5", dst="10.1.0.1", sport=2000 + i)
        dec_in.append(bytes(from_remote_a(inner, 40001)))
        dec_out.append(bytes(to_vif(ES1, 10, with_ttl(inner, 63))))
    return {"encap": (1, enc_in, 4, enc_out), "decap": (4, dec_in, 1, dec_out)}
