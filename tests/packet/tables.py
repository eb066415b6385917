"""One helper per P4 table (and per PRE object): install entries over
P4Runtime with the names p4src/README.md lists."""

from __future__ import annotations

import ipaddress

from control.p4rt import (
    ActionProfileGroup,
    ActionProfileMember,
    Exact,
    Lpm,
    MulticastGroup,
    Replica,
    TableEntry,
)
from tests.packet.harness import Dataplane

IG = "SwitchIngress.pipe."
EG = "SwitchEgress.pipe."

T_FABRIC_PORT = IG + "port_role.fabric_port"
T_FABRIC_CONFIG = IG + "port_role.fabric_config"
T_VIF = IG + "classifier.vif"
T_IPV4_SOURCE = IG + "anti_spoof.ipv4_source"
T_IPV6_SOURCE = IG + "anti_spoof.ipv6_source"
T_TUNNEL_PEER = IG + "decap.tunnel_peer"
T_FABRIC_VLAN = IG + "decap.fabric_vlan"
T_VRF_PEER = IG + "decap.vrf_peer"
T_MPLS_LABEL = IG + "decap.mpls_label"
T_IPV4_ROUTE = IG + "routing.ipv4_route"
T_IPV6_ROUTE = IG + "routing.ipv6_route"
T_NEXTHOP = IG + "nexthop.nexthop"
P_NEXTHOP_SELECTOR = IG + "nexthop.nexthop_selector"
T_UNDERLAY = IG + "nexthop.underlay"
T_FLOOD = IG + "flood.flood"
T_REPLICA = EG + "replica.replica"
T_DHCP_TRAP = IG + "dhcp_trap.dhcp_trap"
M_PUNT_METER = IG + "punt_meter"
C_PUNT_DROPS = IG + "punt_drops"

C_VIF_RX = IG + "classifier.vif_rx"
C_VIF_TX = EG + "vif_tx"
C_INGRESS_DROPS = IG + "ingress_drops"
C_EGRESS_DROPS = EG + "egress_drops"


def mac(s: str) -> int:
    return int(s.replace(":", ""), 16)


def ip(s: str) -> int:
    return int(ipaddress.ip_address(s))


def prefix(s: str) -> Lpm:
    net = ipaddress.ip_network(s)
    return Lpm(int(net.network_address), net.prefixlen)


def fabric_port(dp: Dataplane, port: int) -> None:
    dp.insert(TableEntry(T_FABRIC_PORT, {"ingress_port": Exact(port)}, "set_fabric_port"))


def fabric_config(dp: Dataplane, my_ipv4: str, mtu: int) -> None:
    dp.modify(
        TableEntry(
            T_FABRIC_CONFIG,
            action=IG + "port_role.set_fabric_config",
            params={"my_ipv4": ip(my_ipv4), "mtu": mtu},
            is_default=True,
        )
    )


def vif(dp: Dataplane, port: int, src_mac: str, vlan: int, vif_id: int, vrf_id: int) -> None:
    dp.insert(
        TableEntry(
            T_VIF,
            {"ingress_port": Exact(port), "src_mac": Exact(mac(src_mac)), "vlan_id": Exact(vlan)},
            IG + "classifier.set_vif",
            {"vif_id": vif_id, "vrf_id": vrf_id},
        )
    )


def ipv4_source(dp: Dataplane, vif_id: int, src: str) -> None:
    dp.insert(
        TableEntry(
            T_IPV4_SOURCE,
            {"vif_id": Exact(vif_id), "src_addr": prefix(src)},
            IG + "anti_spoof.permit",
        )
    )


def ipv6_source(dp: Dataplane, vif_id: int, src: str) -> None:
    dp.insert(
        TableEntry(
            T_IPV6_SOURCE,
            {"vif_id": Exact(vif_id), "src_addr": prefix(src)},
            IG + "anti_spoof.permit",
        )
    )


def _route(dp: Dataplane, table: str, vrf_id: int, dst: str, nexthop: int | str) -> None:
    if isinstance(nexthop, int):
        action, params = IG + "routing.set_nexthop", {"nexthop_id": nexthop}
    else:  # "to_cpu"
        action, params = IG + "routing." + nexthop, {}
    dp.insert(TableEntry(table, {"vrf_id": Exact(vrf_id), "dst_addr": prefix(dst)}, action, params))


def ipv4_route(dp: Dataplane, vrf_id: int, dst: str, nexthop: int | str) -> None:
    """nexthop: a nexthop_id, or "to_cpu"."""
    _route(dp, T_IPV4_ROUTE, vrf_id, dst, nexthop)


def ipv6_route(dp: Dataplane, vrf_id: int, dst: str, nexthop: int | str) -> None:
    _route(dp, T_IPV6_ROUTE, vrf_id, dst, nexthop)


def encap(label: int, remote: str) -> tuple[str, dict[str, int]]:
    """A nexthop action: MPLS-in-GRE to a remote forwarder."""
    return IG + "nexthop.encap_mpls_gre", {"label": label, "remote_ipv4": ip(remote)}


def local(vif_id: int, port: int, vlan: int, dst_mac: str) -> tuple[str, dict[str, int]]:
    """A nexthop action: deliver to a local vif."""
    return IG + "nexthop.deliver_local", {
        "vif_id": vif_id,
        "port": port,
        "vlan_id": vlan,
        "dst_mac": mac(dst_mac),
    }


def nexthop(dp: Dataplane, nexthop_id: int, *actions: tuple[str, dict[str, int]]) -> None:
    """One action: a selector member. Several: an ECMP group of members.
    Member ids are nexthop_id * 100 + i; the group id is nexthop_id."""
    members = [
        ActionProfileMember(P_NEXTHOP_SELECTOR, nexthop_id * 100 + i, a, p)
        for i, (a, p) in enumerate(actions)
    ]
    dp.insert(*members)
    key = {"nexthop_id": Exact(nexthop_id)}
    if len(members) == 1:
        dp.insert(TableEntry(T_NEXTHOP, key, member_id=members[0].member_id))
    else:
        group = ActionProfileGroup(
            P_NEXTHOP_SELECTOR,
            nexthop_id,
            frozenset((m.member_id, 1) for m in members),
            max_size=len(members),
        )
        dp.insert(group)
        dp.insert(TableEntry(T_NEXTHOP, key, group_id=nexthop_id))


def underlay(
    dp: Dataplane, remote: str, port: int, src_mac: str, dst_mac: str, vlan: int = 0
) -> None:
    dp.insert(
        TableEntry(
            T_UNDERLAY,
            {"remote_ipv4": prefix(remote)},
            IG + "nexthop.set_underlay",
            {"port": port, "src_mac": mac(src_mac), "dst_mac": mac(dst_mac), "vlan_id": vlan},
        )
    )


def tunnel_peer(dp: Dataplane, remote: str) -> None:
    dp.insert(
        TableEntry(T_TUNNEL_PEER, {"remote_ipv4": Exact(ip(remote))}, IG + "decap.permit_peer")
    )


def fabric_vlan(dp: Dataplane, port: int, vlan: int) -> None:
    """Tunnel packets are taken on ``port`` with 802.1Q VLAN ``vlan`` (0 = untagged)."""
    dp.insert(
        TableEntry(
            T_FABRIC_VLAN,
            {"ingress_port": Exact(port), "vlan_id": Exact(vlan)},
            IG + "decap.permit_fabric_vlan",
        )
    )


def vrf_peer(dp: Dataplane, vrf_id: int, remote: str) -> None:
    """``remote`` may use the labels of VRF ``vrf_id``."""
    dp.insert(
        TableEntry(
            T_VRF_PEER,
            {"vrf_id": Exact(vrf_id), "remote_ipv4": Exact(ip(remote))},
            IG + "decap.permit_vrf_peer",
        )
    )


def label_to_vif(
    dp: Dataplane, label: int, vif_id: int, port: int, vlan: int, dst_mac: str, vrf_id: int
) -> None:
    dp.insert(
        TableEntry(
            T_MPLS_LABEL,
            {"label": Exact(label)},
            IG + "decap.label_to_vif",
            {
                "vif_id": vif_id,
                "port": port,
                "vlan_id": vlan,
                "dst_mac": mac(dst_mac),
                "vrf_id": vrf_id,
            },
        )
    )


def dhcp_trap(dp: Dataplane, vrf_id: int) -> None:
    dp.insert(TableEntry(T_DHCP_TRAP, {"vrf_id": Exact(vrf_id)}, IG + "dhcp_trap.trap_dhcp"))


def label_to_flood(dp: Dataplane, label: int, vrf_id: int) -> None:
    dp.insert(
        TableEntry(
            T_MPLS_LABEL, {"label": Exact(label)}, IG + "decap.label_to_flood", {"vrf_id": vrf_id}
        )
    )


def flood(dp: Dataplane, vrf_id: int, from_fabric: bool, group: int) -> None:
    dp.insert(
        TableEntry(
            T_FLOOD,
            {"vrf_id": Exact(vrf_id), "from_fabric": Exact(int(from_fabric))},
            IG + "flood.set_flood_group",
            {"group": group},
        )
    )


def replica_local(dp: Dataplane, rid: int, vif_id: int, vlan: int) -> None:
    dp.insert(
        TableEntry(
            T_REPLICA,
            {"egress_rid": Exact(rid)},
            EG + "replica.replica_local",
            {"vif_id": vif_id, "vlan_id": vlan},
        )
    )


def replica_remote(
    dp: Dataplane,
    rid: int,
    label: int,
    remote: str,
    src_mac: str,
    dst_mac: str,
    vlan: int = 0,
) -> None:
    dp.insert(
        TableEntry(
            T_REPLICA,
            {"egress_rid": Exact(rid)},
            EG + "replica.replica_remote",
            {
                "label": label,
                "remote_ipv4": ip(remote),
                "src_mac": mac(src_mac),
                "dst_mac": mac(dst_mac),
                "vlan_id": vlan,
            },
        )
    )


def multicast_group(dp: Dataplane, group: int, replicas: list[tuple[int, int]]) -> None:
    """replicas: (egress port, instance = egress_rid) pairs."""
    dp.insert(MulticastGroup(group, frozenset(Replica(p, rid) for p, rid in replicas)))
