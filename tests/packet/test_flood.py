"""Issue item 7: broadcast / multicast replication within a VRF."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.packet import Packet

from tests.packet import tables as t
from tests.packet.harness import Dataplane
from tests.packet.topo import (
    DROP_FABRIC_TO_FABRIC,
    DROP_NO_FLOOD_GROUP,
    DROP_NO_REPLICA,
    DROP_NOT_IP,
    ES1,
    ES2,
    ES3,
    NH4,
    REMOTE_A,
    SW_FABRIC_MAC,
    VRF_A,
    base,
    from_remote_a,
    from_vif,
    to_remote_a,
    to_vif,
)

BCAST = "ff:ff:ff:ff:ff:ff"
FLOOD_LABEL_A = 40001  # REMOTE_A's flood label for VRF A
MY_FLOOD_LABEL = 16300  # ours


def _flood_state(dp: Dataplane) -> None:
    """VRF A: vifs 1 (port 1), 3 (port 2), 4 (port 3); remote forwarder A."""
    t.flood(dp, VRF_A, False, 1)
    t.flood(dp, VRF_A, True, 2)
    t.multicast_group(dp, 1, [(1, 1), (2, 3), (3, 4), (4, 101)])
    t.multicast_group(dp, 2, [(1, 1), (2, 3), (3, 4)])
    t.replica_local(dp, 1, 1, 10)
    t.replica_local(dp, 3, 3, 10)
    t.replica_local(dp, 4, 4, 30)
    t.replica_remote(dp, 101, FLOOD_LABEL_A, REMOTE_A, SW_FABRIC_MAC, NH4)
    t.label_to_flood(dp, MY_FLOOD_LABEL, VRF_A)


def _bcast(src: str = "10.1.0.1", dst: str = "255.255.255.255") -> Packet:
    return IP(bytes(IP(src=src, dst=dst, ttl=64, id=3) / UDP(sport=68, dport=67) / (b"\x01" * 20)))


def test_broadcast_from_vif_to_other_local_vifs_and_each_remote(dp: Dataplane) -> None:
    base(dp)
    _flood_state(dp)
    pkt = _bcast()
    dp.send(1, from_vif(ES1, 10, pkt, dst_mac=BCAST))
    dp.expect(2, to_vif(BCAST, 10, pkt))
    dp.expect(3, to_vif(BCAST, 30, pkt))
    dp.expect(4, to_remote_a(pkt, FLOOD_LABEL_A))
    # never back to the source (port 1): checked by the fixture's final
    # expect_nothing, and here explicitly
    dp.expect_nothing()


def test_multicast_from_vif_replicated(dp: Dataplane) -> None:
    base(dp)
    _flood_state(dp)
    pkt = _bcast(src="10.1.0.3", dst="224.0.0.251")
    mc_mac = "01:00:5e:00:00:fb"
    dp.send(2, from_vif(ES2, 10, pkt, dst_mac=mc_mac))
    dp.expect(1, to_vif(mc_mac, 10, pkt))
    dp.expect(3, to_vif(mc_mac, 30, pkt))
    dp.expect(4, to_remote_a(pkt, FLOOD_LABEL_A))


def test_replicas_from_fabric_reach_local_members_only(dp: Dataplane) -> None:
    base(dp)
    _flood_state(dp)
    pkt = _bcast(src="10.2.0.5")
    dp.send(4, from_remote_a(pkt, MY_FLOOD_LABEL))
    for port, vlan, mac in ((1, 10, BCAST), (2, 10, BCAST), (3, 30, BCAST)):
        dp.expect(port, to_vif(mac, vlan, pkt))
    mc = _bcast(src="10.2.0.5", dst="239.1.2.3")
    dp.send(4, from_remote_a(mc, MY_FLOOD_LABEL))
    for port, vlan in ((1, 10), (2, 10), (3, 30)):
        dp.expect(port, to_vif("01:00:5e:01:02:03", vlan, mc))


def test_other_vrfs_get_no_replica(dp: Dataplane) -> None:
    base(dp)
    _flood_state(dp)
    # VRF B has no flood group: its broadcast stays put
    dp.send(1, from_vif(ES1, 20, _bcast(src="10.1.0.1"), dst_mac=BCAST))
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NO_FLOOD_GROUP, 1)
    dp.expect_nothing()


def test_non_ip_broadcast_dropped(dp: Dataplane) -> None:
    base(dp)
    _flood_state(dp)
    raw = bytes(from_vif(ES3, 30, _bcast(src="10.1.0.4"), dst_mac=BCAST))
    dp.send(3, raw[:16] + b"\x88\xb5" + raw[18:])  # local experimental EtherType
    dp.wait_counter(t.C_INGRESS_DROPS, DROP_NOT_IP, 1)
    dp.expect_nothing()


def test_fabric_replica_never_sent_back_to_the_fabric(dp: Dataplane) -> None:
    """Even if a from-fabric group wrongly holds a remote replica, only the
    local members get the frame; a replica without a replica entry is dropped."""
    base(dp)
    t.flood(dp, VRF_A, True, 2)
    t.multicast_group(dp, 2, [(2, 3), (4, 101), (3, 77)])
    t.replica_local(dp, 3, 3, 10)
    t.replica_remote(dp, 101, FLOOD_LABEL_A, REMOTE_A, SW_FABRIC_MAC, NH4)
    t.label_to_flood(dp, MY_FLOOD_LABEL, VRF_A)
    pkt = _bcast(src="10.2.0.5")
    dp.send(4, from_remote_a(pkt, MY_FLOOD_LABEL))
    dp.expect(2, to_vif(BCAST, 10, pkt))
    dp.wait_counter(t.C_EGRESS_DROPS, DROP_FABRIC_TO_FABRIC, 1)
    dp.wait_counter(t.C_EGRESS_DROPS, DROP_NO_REPLICA, 1)
    dp.expect_nothing()
