"""P4 names the agent programs: the ONE place that knows table, action, field
and parameter names of p4src/ (see p4src/README.md and
p4src/build/esvpn.p4info.txtpb). Names may be P4Info full names or aliases;
control.p4rt resolves both.
"""

from __future__ import annotations

# --- tables ------------------------------------------------------------------
FABRIC_PORT = "fabric_port"  # ingress_port exact -> set_fabric_port()
FABRIC_CONFIG = "fabric_config"  # keyless; default action set_fabric_config
VIF = "vif"  # ingress_port, src_mac, vlan_id exact -> set_vif(vif_id, vrf_id)
IPV4_SOURCE = "ipv4_source"  # vif_id exact, src_addr lpm -> permit()
IPV6_SOURCE = "ipv6_source"
IPV4_ROUTE = "ipv4_route"  # vrf_id exact, dst_addr lpm -> set_nexthop(nexthop_id)
IPV6_ROUTE = "ipv6_route"
NEXTHOP = "nexthop"  # nexthop_id exact, action selector
NEXTHOP_SELECTOR = "nexthop_selector"  # the selector (action profile) of NEXTHOP
UNDERLAY = "underlay"  # remote ipv4 lpm -> set_underlay(port, src_mac, dst_mac, vlan_id)
TUNNEL_PEER = "tunnel_peer"  # remote_ipv4 (outer source) exact -> permit_peer()
FABRIC_VLAN = "fabric_vlan"  # ingress_port, vlan_id exact -> permit_fabric_vlan()
VRF_PEER = "vrf_peer"  # vrf_id, remote_ipv4 exact -> permit_vrf_peer()
MPLS_LABEL = "mpls_label"  # label exact -> label_to_vif(..., vrf_id) | label_to_flood(vrf_id)
FLOOD = "flood"  # vrf_id, from_fabric exact -> set_flood_group(group)
REPLICA = "replica"  # egress_rid exact -> replica_local(vif_id, vlan_id) | replica_remote
DHCP_TRAP = "dhcp_trap"  # vrf_id exact -> trap_dhcp(): DHCPv4 of the VRF to the agent

# --- match fields --------------------------------------------------------------
F_INGRESS_PORT = "ingress_port"
F_SRC_MAC = "src_mac"
F_VLAN_ID = "vlan_id"
F_VIF_ID = "vif_id"
F_SRC = "src_addr"
F_VRF_ID = "vrf_id"
F_DST = "dst_addr"
F_NEXTHOP_ID = "nexthop_id"
F_REMOTE = "remote_ipv4"
F_OUTER_SRC = "remote_ipv4"  # outer source
F_LABEL = "label"
F_FROM_FABRIC = "from_fabric"
F_EGRESS_RID = "egress_rid"

# --- actions and their params --------------------------------------------------
A_SET_FABRIC_PORT = "set_fabric_port"
A_SET_FABRIC_CONFIG = "set_fabric_config"  # my_ipv4, mtu
A_SET_VIF = "set_vif"  # vif_id, vrf_id
A_PERMIT = "permit"
A_SET_NEXTHOP = "set_nexthop"  # nexthop_id
A_ENCAP = "encap_mpls_gre"  # label, remote_ipv4
A_DELIVER_LOCAL = "deliver_local"  # vif_id, port, vlan_id, dst_mac
A_SET_UNDERLAY = "set_underlay"  # port, src_mac, dst_mac, vlan_id
A_PERMIT_PEER = "permit_peer"
A_PERMIT_FABRIC_VLAN = "permit_fabric_vlan"
A_PERMIT_VRF_PEER = "permit_vrf_peer"
A_LABEL_TO_VIF = "label_to_vif"  # vif_id, port, vlan_id, dst_mac, vrf_id
A_SET_FLOOD_GROUP = "set_flood_group"  # group
A_REPLICA_LOCAL = "replica_local"  # vif_id, vlan_id
A_TO_CPU = "to_cpu"  # a route to the agent (VRF gateway addresses)
A_TRAP_DHCP = "trap_dhcp"

P_MY_IPV4 = "my_ipv4"
P_MTU = "mtu"
P_VIF_ID = "vif_id"
P_VRF_ID = "vrf_id"
P_NEXTHOP_ID = "nexthop_id"
P_LABEL = "label"
P_REMOTE = "remote_ipv4"
P_PORT = "port"
P_VLAN_ID = "vlan_id"
P_DST_MAC = "dst_mac"
P_SRC_MAC = "src_mac"
P_GROUP = "group"

# --- counters (indexed by vif_id / drop reason) ----------------------------------
C_VIF_RX = "vif_rx"
C_VIF_TX = "vif_tx"
C_INGRESS_DROPS = "ingress_drops"
C_EGRESS_DROPS = "egress_drops"
C_PUNT_DROPS = "punt_drops"  # indexed by punt reason

# --- meters ------------------------------------------------------------------------
M_PUNT = "punt_meter"  # packets, indexed by punt reason (control.punt programs it)

#: Every table the agent owns (reconciliation reads exactly these).
ALL_TABLES = (
    FABRIC_PORT,
    VIF,
    IPV4_SOURCE,
    IPV6_SOURCE,
    IPV4_ROUTE,
    IPV6_ROUTE,
    NEXTHOP,
    UNDERLAY,
    TUNNEL_PEER,
    FABRIC_VLAN,
    VRF_PEER,
    MPLS_LABEL,
    FLOOD,
    REPLICA,
    DHCP_TRAP,
)
#: Tables whose default action the agent sets.
DEFAULT_TABLES = (FABRIC_CONFIG,)
