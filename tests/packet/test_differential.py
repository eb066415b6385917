"""The embedded target against bmv2, byte for byte (issue 4: "proven faithful").

Runs in the bmv2 pass of the suite (``--target=bmv2``; `make test` runs it
when simple_switch_grpc is installed): the same entries go to bmv2 and to an
in-process softswitch, the same frames — well-formed ones through every
feature, and seeded mutants of them (truncated, bit-flipped) — go into both,
and every frame out of every port, and every counter cell, must be equal.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP

from tests.packet import tables as t
from tests.packet.harness import PORTS, Dataplane
from tests.packet.test_flood import _flood_state
from tests.packet.topo import (
    ES1,
    ES2,
    ES3,
    REMOTE_A,
    REMOTE_B,
    VRF_A,
    VRF_B,
    base,
    from_remote_a,
    from_vif,
    udp4,
    udp6,
)

pytestmark = pytest.mark.needs_bmv2

CHUNK = 16
BCAST = "ff:ff:ff:ff:ff:ff"
MUTANTS_PER_FRAME = 6
COUNTERS = ((t.C_INGRESS_DROPS, range(1, 34)), (t.C_EGRESS_DROPS, range(1, 34)))
VIF_COUNTERS = ((t.C_VIF_RX, range(1, 5)), (t.C_VIF_TX, range(1, 5)))


@pytest.fixture(scope="module")
def soft() -> Iterator[Dataplane]:
    sw = Dataplane("soft")
    sw.start()
    try:
        yield sw
    finally:
        sw.stop()


def _program(dp: Dataplane) -> None:
    """Every table of the program holds something."""
    base(dp)
    _flood_state(dp)
    t.nexthop(dp, 1, t.encap(30001, REMOTE_A), t.encap(30002, REMOTE_B))  # ECMP
    t.nexthop(dp, 2, t.encap(30003, REMOTE_B))
    t.nexthop(dp, 3, t.local(4, 3, 30, ES3))
    t.ipv4_route(dp, VRF_A, "10.2.0.0/16", 1)
    t.ipv4_route(dp, VRF_A, "10.1.0.4/32", 3)
    t.ipv4_route(dp, VRF_A, "10.9.0.0/16", "to_cpu")
    t.ipv4_route(dp, VRF_B, "10.2.0.0/16", 2)
    t.ipv6_route(dp, VRF_A, "2001:db8:2::/48", 1)
    t.label_to_vif(dp, 16001, 3, 2, 10, ES2, VRF_A)
    t.label_to_vif(dp, 16002, 4, 3, 30, ES3, VRF_A)
    t.dhcp_trap(dp, VRF_A)


def _corpus() -> list[tuple[int, bytes]]:
    good: list[tuple[int, bytes]] = []
    for sport in range(1000, 1008):  # ECMP spread
        good.append((1, bytes(from_vif(ES1, 10, udp4(sport=sport)))))
    good += [
        (1, bytes(from_vif(ES1, 20, udp4()))),  # VRF B
        (1, bytes(from_vif(ES1, 10, udp4(dst="10.1.0.4")))),  # local delivery
        (1, bytes(from_vif(ES1, 10, udp4(dst="10.9.1.1")))),  # to the CPU
        (1, bytes(from_vif(ES1, 10, udp4(dst="10.77.0.1")))),  # no route
        (1, bytes(from_vif(ES1, 10, udp4(src="10.1.0.99")))),  # spoofed
        (1, bytes(from_vif(ES1, 10, udp4(ttl=1)))),  # expires
        (1, bytes(from_vif(ES1, 10, udp4(size=1490)))),  # over the fabric MTU
        (1, bytes(from_vif(ES1, 10, udp6(), dst_mac="00:00:5e:00:02:01"))),
        (2, bytes(from_vif(ES2, 10, udp4(src="10.1.0.3"), dst_mac=BCAST))),
        (1, bytes(from_vif(ES1, 10, ARP(op=1, psrc="10.1.0.1", pdst="10.1.0.254"), BCAST))),
        (3, bytes(from_vif(ES1, 10, udp4()))),  # unknown vif (wrong port)
        (4, bytes(from_remote_a(udp4(src="10.2.0.5", dst="10.1.0.3"), 16001))),
        (4, bytes(from_remote_a(udp4(src="10.2.0.5", dst="10.1.0.4"), 16002))),
        (4, bytes(from_remote_a(udp4(src="10.2.0.5", dst="10.1.0.3"), 999))),
        (4, bytes(from_remote_a(IP(src="10.2.0.5", dst="255.255.255.255") / UDP(), 16300))),
        (4, bytes(from_remote_a(IPv6(src="2001:db8:2::5", dst="2001:db8:1::1") / UDP(), 16002))),
        # issue 13 receive path: options, padding, explicit null, GRE C bit, ECN
        (
            1,
            bytes(
                from_vif(
                    ES1, 10, IP(src="10.1.0.1", dst="10.2.0.5", options=[b"\x94\x04\0\0"]) / UDP()
                )
            ),
        ),
        (1, bytes(from_vif(ES1, 10, IP(src="10.1.0.1", dst="10.2.0.5") / UDP())) + b"\0" * 14),
        (4, bytes(from_remote_a(udp4(src="10.2.0.5", dst="10.1.0.3"), 16001, labels=[0]))),
        (4, bytes(from_remote_a(udp4(src="10.2.0.5", dst="10.1.0.3", tos=2), 16001, tos=3))),
        (
            4,
            bytes(
                from_remote_a(
                    udp4(src="10.2.0.5", dst="10.1.0.3"),
                    16001,
                    gre=GRE(proto=0x8847, chksum_present=1),
                )
            ),
        ),
    ]
    rng = random.Random(20261122)
    frames = list(good)
    for port, frame in good:
        for _ in range(MUTANTS_PER_FRAME):
            b = bytearray(frame)
            if rng.random() < 0.3:
                b = b[: rng.randrange(14, len(b))]
            else:
                for _ in range(rng.randrange(1, 4)):
                    i = rng.randrange(12, len(b))
                    b[i] ^= 1 << rng.randrange(8)
            if _carried_by_veth(bytes(b)):
                frames.append((port, bytes(b)))
    return frames


def _carried_by_veth(frame: bytes) -> bool:
    """Linux drops, before any AF_PACKET socket or bmv2 sees it, a received
    frame whose ethertype says 802.1Q but which is too short for the tag
    (skb_vlan_untag): such a frame cannot reach bmv2 on a veth at all."""
    return not (frame[12:14] in (b"\x81\x00", b"\x88\xa8") and len(frame) < 18)


def counter_differences(a: Dataplane, b: Dataplane) -> list[str]:
    """Every drop and vif counter cell that differs between two switches."""
    return [
        f"{name}[{i}]: {a.target} {ca} {b.target} {cb}"
        for name, cells in COUNTERS + VIF_COUNTERS
        for i in cells
        if (ca := a.counter(name, i)) != (cb := b.counter(name, i))
    ]


def _outputs(dp: Dataplane, expected_counts: dict[int, int] | None) -> dict[int, list[bytes]]:
    """Frames out of every port: drained on the synchronous target; on bmv2,
    as many per port as the soft target emitted (each awaited with a deadline)."""
    out: dict[int, list[bytes]] = {p: [] for p in PORTS}
    for p in PORTS:
        if expected_counts is None:
            while (f := dp.backend.recv(p, 0.0)) is not None:
                out[p].append(f)
        else:
            for _ in range(expected_counts[p]):
                f = dp.backend.recv(p, dp.timeout)
                if f is None:
                    break
                out[p].append(f)
    return out


def test_soft_and_bmv2_emit_the_same_bytes(dp: Dataplane, soft: Dataplane) -> None:
    assert dp.target == "bmv2"
    soft.reset()
    for sw in (dp, soft):
        _program(sw)
    frames = _corpus()
    for start in range(0, len(frames), CHUNK):
        chunk = frames[start : start + CHUNK]
        for sw in (soft, dp):
            for port, frame in chunk:
                sw.send(port, frame)
        want = _outputs(soft, None)
        got = _outputs(dp, {p: len(v) for p, v in want.items()})
        for p in PORTS:
            # bmv2 may interleave frames of different ingress ports: compare
            # each egress port's frames as a sorted list, byte for byte
            assert sorted(got[p]) == sorted(want[p]), (
                f"frames {start}..{start + len(chunk) - 1}, port {p}:\n"
                f"  soft {[f.hex() for f in want[p]]}\n  bmv2 {[f.hex() for f in got[p]]}"
            )
    dp.expect_nothing()
    differ = counter_differences(dp, soft)
    assert not differ, "\n".join(differ)
