/* esvpn data plane: types and constants shared by every architecture. */
#ifndef ESVPN_DEFINE_P4
#define ESVPN_DEFINE_P4

typedef bit<48>  mac_t;
typedef bit<32>  ipv4_addr_t;
typedef bit<128> ipv6_addr_t;
typedef bit<9>   port_t;
typedef bit<16>  vif_id_t;       /* 0 = no virtual interface */
typedef bit<16>  vrf_id_t;
typedef bit<16>  nexthop_id_t;
typedef bit<20>  label_t;
typedef bit<12>  vlan_id_t;
typedef bit<16>  mcast_group_t;
typedef bit<16>  replica_id_t;  /* egress_rid of a multicast replica */
typedef bit<8>   drop_reason_t;
typedef bit<8>   punt_reason_t;

/* The port the packet-in/packet-out headers travel on. An architecture's
 * main may define CPU_PORT before including this file. */
#ifndef CPU_PORT
#define CPU_PORT 255
#endif

/* RFC 5798 7.3: VRRP virtual router MACs for VRID 1. */
const mac_t VRRP_MAC_V4 = 0x00005e000101;
const mac_t VRRP_MAC_V6 = 0x00005e000201;

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<16> ETHERTYPE_ARP  = 0x0806;
const bit<16> ETHERTYPE_VLAN = 0x8100;
const bit<16> ETHERTYPE_QINQ = 0x88a8;
const bit<16> ETHERTYPE_IPV6 = 0x86dd;

const bit<8> IP_PROTO_TCP    = 6;
const bit<8> IP_PROTO_UDP    = 17;
const bit<8> IP_PROTO_GRE    = 47;
const bit<8> IP_PROTO_ICMPV6 = 58;

const bit<16> GRE_PROTO_MPLS = 0x8847;   /* RFC 4023 */

/* RFC 3168 ECN codepoints (low two bits of TOS / traffic class). */
const bit<2> ECN_NOT_ECT = 0;
const bit<2> ECN_ECT1    = 1;
const bit<2> ECN_ECT0    = 2;
const bit<2> ECN_CE      = 3;

/* Ethernet header, 802.1Q tag. */
const bit<32> ETH_HDR_LEN  = 14;
const bit<32> VLAN_TAG_LEN = 4;

const bit<16> ARP_OPER_REQUEST = 1;
const bit<16> ARP_OPER_REPLY   = 2;

const bit<8> ICMPV6_NEIGHBOR_SOLICIT = 135;
const bit<8> ICMPV6_NEIGHBOR_ADVERT  = 136;
const bit<8> NDP_OPT_SOURCE_LL_ADDR  = 1;
const bit<8> NDP_OPT_TARGET_LL_ADDR  = 2;
/* NA flags word: Router | Solicited | Override. */
const bit<32> NDP_NA_FLAGS_RSO = 0xe0000000;

/* Outer IPv4 header of MPLS-in-GRE: 20 (IPv4) + 4 (GRE) + 4 (MPLS) bytes. */
const bit<16> ENCAP_OVERHEAD = 28;
const bit<8>  ENCAP_OUTER_TTL = 64;

/* Drop reasons: index of the drop counters (p4src/README.md explains each).
 * 0 means "not a drop to count" (a flood replica pruned at its source). */
const drop_reason_t DROP_NONE             = 0;
const drop_reason_t DROP_UNTAGGED         = 1;
const drop_reason_t DROP_DOUBLE_TAGGED    = 2;
const drop_reason_t DROP_UNKNOWN_VIF      = 3;
const drop_reason_t DROP_NOT_ROUTER_MAC   = 4;
const drop_reason_t DROP_NOT_IP           = 5;
const drop_reason_t DROP_ARP_IGNORED      = 6;
const drop_reason_t DROP_ND_IGNORED       = 7;
const drop_reason_t DROP_SPOOFED          = 8;
/* 9 was IPV4_OPTIONS: options are forwarded now (RFC 1812 5.2.4). */
const drop_reason_t DROP_NO_ROUTE         = 10;
/* 11: unused (was BLACKHOLE: blackhole routes, which nothing installed) */
const drop_reason_t DROP_NO_NEXTHOP       = 12;
const drop_reason_t DROP_TTL_EXPIRED      = 13;
const drop_reason_t DROP_NO_UNDERLAY      = 14;
const drop_reason_t DROP_MTU_EXCEEDED     = 15;
const drop_reason_t DROP_NOT_TUNNEL       = 16;
const drop_reason_t DROP_UNKNOWN_PEER     = 17;
const drop_reason_t DROP_GRE_UNSUPPORTED  = 18;
const drop_reason_t DROP_MPLS_STACK       = 19;
const drop_reason_t DROP_UNKNOWN_LABEL    = 20;
const drop_reason_t DROP_INNER_NOT_IP     = 21;
const drop_reason_t DROP_FABRIC_TO_FABRIC = 22;
const drop_reason_t DROP_NO_FLOOD_GROUP   = 23;
const drop_reason_t DROP_NO_REPLICA       = 24;
const drop_reason_t DROP_BAD_CHECKSUM     = 25;
const drop_reason_t DROP_BAD_IP_HEADER    = 26;
const drop_reason_t DROP_IP_TRUNCATED     = 27;
const drop_reason_t DROP_OUTER_FRAGMENT   = 28;
const drop_reason_t DROP_MARTIAN          = 29;
const drop_reason_t DROP_LABEL_PEER       = 30;
const drop_reason_t DROP_FABRIC_VLAN      = 31;
const drop_reason_t DROP_FLOOD_UNICAST    = 32;
const drop_reason_t DROP_ECN_NOT_ECT      = 33;

/* Packet-in reasons (index of punt_meter and punt_drops). */
const punt_reason_t PUNT_FABRIC_ARP   = 1;  /* ARP received on a fabric port */
const punt_reason_t PUNT_ROUTE        = 2;  /* route with action to_cpu (a VRF's gateway address) */
const punt_reason_t PUNT_TTL_EXPIRED  = 3;  /* TTL / hop limit expired (counted as TTL_EXPIRED) */
const punt_reason_t PUNT_NO_ROUTE     = 4;  /* no route in the VRF (counted as NO_ROUTE) */
const punt_reason_t PUNT_TOO_BIG      = 5;  /* DF / IPv6 packet + encapsulation > fabric MTU
                                               (counted as MTU_EXCEEDED) */
const punt_reason_t PUNT_DHCP         = 6;  /* DHCPv4 client -> server from a vif of a DHCP VRF */

/* Meter colors (v1model / PSA): only green punts reach the CPU. */
const bit<2> METER_GREEN = 0;

const bit<16> UDP_PORT_DHCP_SERVER = 67;
const bit<16> UDP_PORT_DHCP_CLIENT = 68;

#endif
