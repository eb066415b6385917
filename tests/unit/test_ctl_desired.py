"""control.desired + control.reconcile: VRF state -> exact entries -> ordered updates."""

from __future__ import annotations

import ipaddress

from control import tables as T
from control.config import FabricConfig, Underlay
from control.desired import NexthopIds, desired_entities, fabric_vlans
from control.p4rt import (
    DELETE,
    INSERT,
    MODIFY,
    ActionProfileGroup,
    ActionProfileMember,
    Exact,
    Lpm,
    MulticastGroup,
    Replica,
    TableEntry,
    Update,
)
from control.reconcile import plan
from control.vrf import VrfState
from esxmpp.dialect import Associate, Publish, RouteEntry, Subscribe

INFRA = ipaddress.IPv4Address("192.0.2.1")
SYS_A = bytes.fromhex("0a0000000001")
MAC_A = 0x0A0000000001
FABRIC = FabricConfig(
    infra_address=INFRA,
    ports=(1,),
    underlay=(Underlay(ipaddress.IPv4Network("192.0.2.0/24"), 1, 0x020000000001, 0x0200000000FE),),
    mtu=1500,
)


def entry(prefix: str, nh: str, label: int, version: int = 0) -> RouteEntry:
    return RouteEntry(ipaddress.ip_network(prefix), ipaddress.ip_address(nh), label, version)


def fabric_only() -> set[object]:
    return {
        TableEntry(
            T.FABRIC_CONFIG,
            action=T.A_SET_FABRIC_CONFIG,
            params={"my_ipv4": 0xC0000201, "mtu": 1500},
            is_default=True,
        ),
        TableEntry(T.FABRIC_PORT, {"ingress_port": Exact(1)}, T.A_SET_FABRIC_PORT),
        TableEntry(
            T.FABRIC_VLAN, {"ingress_port": Exact(1), "vlan_id": Exact(0)}, T.A_PERMIT_FABRIC_VLAN
        ),
        TableEntry(
            T.UNDERLAY,
            {"remote_ipv4": Lpm(0xC0000200, 24)},
            T.A_SET_UNDERLAY,
            {"port": 1, "src_mac": 0x020000000001, "dst_mac": 0x0200000000FE, "vlan_id": 0},
        ),
    }


def test_empty_state_is_fabric_only() -> None:
    st = VrfState(INFRA, {SYS_A: 3})
    assert desired_entities(st, FABRIC, NexthopIds(), 0.0) == fabric_only()


def test_attached_end_system_with_remote_and_echoed_local_route() -> None:
    st = VrfState(INFRA, {SYS_A: 3})
    st.end_system(SYS_A, [Subscribe("red", 10)], 0.0)
    node = "0a0000000001:10.1.1.5/32"
    st.end_system(SYS_A, [Publish(node, entry("10.1.1.5/32", "0.0.0.0", 16))], 0.0)
    st.end_system(SYS_A, [Associate("red", node)], 0.0)
    st.routes_update(
        "red",
        [
            ("10.2.0.0/16", entry("10.2.0.0/16", "192.0.2.2", 100)),
            ("10.1.1.5/32", entry("10.1.1.5/32", "192.0.2.1", 16)),
        ],
        0.0,
    )
    ids = NexthopIds()
    got = desired_entities(st, FABRIC, ids, 0.0)
    assert ids.members == {
        next(iter(st.selected_routes("red")[ipaddress.ip_network("10.2.0.0/16")])): 1,
        next(iter(st.selected_routes("red")[ipaddress.ip_network("10.1.1.5/32")])): 2,
    }
    expected = fabric_only() | {
        TableEntry(
            T.VIF,
            {"ingress_port": Exact(3), "src_mac": Exact(MAC_A), "vlan_id": Exact(10)},
            T.A_SET_VIF,
            {"vif_id": 1, "vrf_id": 1},
        ),
        TableEntry(
            T.MPLS_LABEL,
            {"label": Exact(16)},
            T.A_LABEL_TO_VIF,
            {"vif_id": 1, "port": 3, "vlan_id": 10, "dst_mac": MAC_A, "vrf_id": 1},
        ),
        TableEntry(
            T.IPV4_SOURCE, {"vif_id": Exact(1), "src_addr": Lpm(0x0A010105, 32)}, T.A_PERMIT
        ),
        # flooding in the VRF: group 1 (= vrf id), replica rid 1 (= vif id)
        MulticastGroup(1, frozenset({Replica(3, 1)})),
        TableEntry(
            T.FLOOD,
            {"vrf_id": Exact(1), "from_fabric": Exact(0)},
            T.A_SET_FLOOD_GROUP,
            {"group": 1},
        ),
        TableEntry(
            T.REPLICA, {"egress_rid": Exact(1)}, T.A_REPLICA_LOCAL, {"vif_id": 1, "vlan_id": 10}
        ),
        TableEntry(T.TUNNEL_PEER, {"remote_ipv4": Exact(0xC0000202)}, T.A_PERMIT_PEER),
        TableEntry(
            T.VRF_PEER, {"vrf_id": Exact(1), "remote_ipv4": Exact(0xC0000202)}, T.A_PERMIT_VRF_PEER
        ),
        ActionProfileMember(
            T.NEXTHOP_SELECTOR, 1, T.A_ENCAP, {"label": 100, "remote_ipv4": 0xC0000202}
        ),
        ActionProfileMember(
            T.NEXTHOP_SELECTOR,
            2,
            T.A_DELIVER_LOCAL,
            {"vif_id": 1, "port": 3, "vlan_id": 10, "dst_mac": MAC_A},
        ),
        ActionProfileGroup(T.NEXTHOP_SELECTOR, 1, frozenset({(1, 1)})),
        ActionProfileGroup(T.NEXTHOP_SELECTOR, 2, frozenset({(2, 1)})),
        TableEntry(T.NEXTHOP, {"nexthop_id": Exact(1)}, group_id=1),
        TableEntry(T.NEXTHOP, {"nexthop_id": Exact(2)}, group_id=2),
        TableEntry(
            T.IPV4_ROUTE,
            {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A020000, 16)},
            T.A_SET_NEXTHOP,
            {"nexthop_id": 1},
        ),
        TableEntry(
            T.IPV4_ROUTE,
            {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A010105, 32)},
            T.A_SET_NEXTHOP,
            {"nexthop_id": 2},
        ),
    }
    assert got == expected


def test_ecmp_group_and_stable_ids() -> None:
    st = VrfState(INFRA, {SYS_A: 3})
    st.end_system(SYS_A, [Subscribe("red", 10)], 0.0)
    st.routes_update(
        "red",
        [
            ("a", entry("10.2.0.0/16", "192.0.2.2", 100)),
            ("b", entry("10.2.0.0/16", "192.0.2.3", 200)),
        ],
        0.0,
    )
    ids = NexthopIds()
    first = desired_entities(st, FABRIC, ids, 0.0)
    assert ActionProfileGroup(T.NEXTHOP_SELECTOR, 1, frozenset({(1, 1), (2, 1)})) in first
    # unchanged state: identical entities (no writes)
    assert desired_entities(st, FABRIC, ids, 1.0) == first
    # ids survive a save/restore
    ids2 = NexthopIds()
    ids2.restore(ids.to_json(1.0), 1.0)
    assert desired_entities(st, FABRIC, ids2, 2.0) == first


def test_plan_orders_make_before_break() -> None:
    m1 = ActionProfileMember(T.NEXTHOP_SELECTOR, 1, T.A_ENCAP, {"label": 100, "remote_ipv4": 2})
    m2 = ActionProfileMember(T.NEXTHOP_SELECTOR, 2, T.A_ENCAP, {"label": 200, "remote_ipv4": 3})
    g1 = ActionProfileGroup(T.NEXTHOP_SELECTOR, 1, frozenset({(1, 1)}))
    g2 = ActionProfileGroup(T.NEXTHOP_SELECTOR, 2, frozenset({(2, 1)}))
    nh1 = TableEntry(T.NEXTHOP, {"nexthop_id": Exact(1)}, group_id=1)
    nh2 = TableEntry(T.NEXTHOP, {"nexthop_id": Exact(2)}, group_id=2)
    key = {"vrf_id": Exact(1), "dst_addr": Lpm(0x0A020000, 16)}
    r1 = TableEntry(T.IPV4_ROUTE, key, T.A_SET_NEXTHOP, {"nexthop_id": 1})
    r2 = TableEntry(T.IPV4_ROUTE, key, T.A_SET_NEXTHOP, {"nexthop_id": 2})
    dflt = TableEntry(
        T.FABRIC_CONFIG,
        action=T.A_SET_FABRIC_CONFIG,
        params={"my_ipv4": 1, "mtu": 1500},
        is_default=True,
    )
    batches = plan({m2, g2, nh2, r2, dflt}, {m1, g1, nh1, r1})
    assert [set(b) for b in batches] == [
        {Update(INSERT, m2)},
        {Update(INSERT, g2)},
        {Update(MODIFY, dflt), Update(INSERT, nh2), Update(MODIFY, r2)},
        {Update(DELETE, nh1)},
        {Update(DELETE, g1)},
        {Update(DELETE, m1)},
    ]
    assert [len(b) for b in batches] == [1, 1, 3, 1, 1, 1]
    assert plan({m1, g1, nh1, r1}, {m1, g1, nh1, r1}) == []


def test_ipv6_source_and_route() -> None:
    st = VrfState(INFRA, {SYS_A: 3})
    st.end_system(SYS_A, [Subscribe("red", 10)], 0.0)
    node = "0a0000000001:2001:db8::5/128"
    st.end_system(SYS_A, [Publish(node, entry("2001:db8::5/128", "::", 16))], 0.0)
    st.end_system(SYS_A, [Associate("red", node)], 0.0)
    st.routes_update("red", [("r", entry("2001:db8:1::/48", "192.0.2.2", 100))], 0.0)
    got = desired_entities(st, FABRIC, NexthopIds(), 0.0)
    assert (
        TableEntry(
            T.IPV6_SOURCE,
            {"vif_id": Exact(1), "src_addr": Lpm(0x20010DB8 << 96 | 5, 128)},
            T.A_PERMIT,
        )
        in got
    )
    assert (
        TableEntry(
            T.IPV6_ROUTE,
            {"vrf_id": Exact(1), "dst_addr": Lpm(0x20010DB80001 << 80, 48)},
            T.A_SET_NEXTHOP,
            {"nexthop_id": 1},
        )
        in got
    )
    # an IPv6 next hop cannot be reached over the IPv4 fabric: no route
    st.routes_update("red", [("r", entry("2001:db8:1::/48", "2001:db8::99", 100))], 0.0)
    assert st.selected_routes("red") == {}


def test_fabric_vlans_from_the_underlay_untagged_elsewhere() -> None:
    """Tunnel packets are taken on the VLAN of each port's underlay next
    hops; a fabric port without any takes them untagged."""
    net = ipaddress.IPv4Network
    fabric = FabricConfig(
        infra_address=ipaddress.IPv4Address("192.0.2.1"),
        ports=(1, 2, 4),
        underlay=(
            Underlay(net("192.0.2.0/25"), 1, 0x020000000001, 0x0200000000FE, 7),
            Underlay(net("192.0.2.128/25"), 1, 0x020000000001, 0x0200000000FD, 8),
            Underlay(net("198.51.100.0/24"), 2, 0x020000000001, 0x0200000000FC),
        ),
    )
    assert fabric_vlans(fabric) == {(1, 7), (1, 8), (2, 0), (4, 0)}
