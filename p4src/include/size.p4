/* esvpn data plane: every table, selector and counter size in one place. */
#ifndef ESVPN_SIZE_P4
#define ESVPN_SIZE_P4

#define FABRIC_PORT_TABLE_SIZE   64
#define VIF_TABLE_SIZE           4096
/* vif ids index the per-vif counters: 1 .. MAX_VIFS-1. */
#define MAX_VIFS                 4096
#define IPV4_SOURCE_TABLE_SIZE   8192
#define IPV6_SOURCE_TABLE_SIZE   8192
#define IPV4_ROUTE_TABLE_SIZE    16384
#define IPV6_ROUTE_TABLE_SIZE    16384
#define NEXTHOP_TABLE_SIZE       4096
#define NEXTHOP_SELECTOR_SIZE    8192
#define NEXTHOP_MAX_GROUP_SIZE   16
#define UNDERLAY_TABLE_SIZE      1024
#define TUNNEL_PEER_TABLE_SIZE   1024
#define VRF_PEER_TABLE_SIZE      16384
#define FABRIC_VLAN_TABLE_SIZE   256
#define MPLS_LABEL_TABLE_SIZE    8192
#define FLOOD_TABLE_SIZE         4096
#define REPLICA_TABLE_SIZE       16384
#define DROP_REASON_COUNT        64
/* IPv4 options: at most 40 bytes (IHL 15). */
#define IPV4_OPT_WORDS           10
#define PUNT_REASON_COUNT        16
#define DHCP_TRAP_TABLE_SIZE     4096

#endif
