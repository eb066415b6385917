"""Issue item 8: per-vif rx/tx packets and bytes, per-reason drops, read
over P4Runtime."""

from __future__ import annotations

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_NO_ROUTE,
    DROP_SPOOFED,
    ES1,
    ES2,
    VRF_A,
    base,
    from_remote_a,
    from_vif,
    routes_to_remote_a,
    to_remote_a,
    to_vif,
    udp4,
    with_ttl,
)


def test_vif_rx_and_tx_count_packets_and_bytes(dp: Dataplane) -> None:
    base(dp)
    routes_to_remote_a(dp, "10.2.0.0/16")
    t.nexthop(dp, 3, t.local(3, 2, 10, ES2))
    t.ipv4_route(dp, VRF_A, "10.1.0.3/32", 3)
    t.label_to_vif(dp, 16003, 3, 2, 10, ES2, VRF_A)
    a = from_vif(ES1, 10, udp4(size=100))
    b = from_vif(ES1, 10, udp4(dst="10.1.0.3", size=300))
    dp.send(1, a)
    dp.expect(4, to_remote_a(with_ttl(a[2], 63), 30001))
    dp.send(1, b)
    dp.expect(2, to_vif(ES2, 10, with_ttl(b[2], 63)))
    dp.wait_counter(t.C_VIF_RX, 1, 2, len(a) + len(b))
    # tx bytes: the frame's length as it entered the switch (bmv2's rule)
    dp.wait_counter(t.C_VIF_TX, 3, 1, len(b))
    inner = udp4(src="10.2.0.5", dst="10.1.0.3", ttl=63)
    c = from_remote_a(inner, 16003)
    dp.send(4, c)
    dp.expect(2, to_vif(ES2, 10, with_ttl(inner, 62)))
    dp.wait_counter(t.C_VIF_TX, 3, 2, len(b) + len(c))
    assert dp.counter(t.C_VIF_RX, 3).packets == 0
    assert dp.counter(t.C_VIF_TX, 1).packets == 0


def test_dropped_frames_counted_per_reason_not_as_tx(dp: Dataplane) -> None:
    base(dp)
    spoofed = from_vif(ES1, 10, udp4(src="10.9.9.9"))
    unrouted = from_vif(ES1, 10, udp4(dst="10.77.0.1"))
    dp.send(1, spoofed)
    dp.send(1, unrouted)
    dp.send(1, unrouted)
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_SPOOFED, 1, len(spoofed))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_ROUTE, 2, 2 * len(unrouted))
    # a classified frame counts as received even when it is then dropped
    dp.wait_counter(t.C_VIF_RX, 1, 3)
    assert dp.counter(t.C_VIF_TX, 1).packets == 0
    dp.expect_nothing()
