/* esvpn data plane: headers and the metadata every control shares. */
#ifndef ESVPN_HEADER_P4
#define ESVPN_HEADER_P4

#include "define.p4"
#include "size.p4"

/* Sent by the switch to the controller, in front of the frame. */
@controller_header("packet_in")
header packet_in_t {
    port_t         ingress_port;
    bit<7>         _pad;
    punt_reason_t  reason;
    vrf_id_t       vrf_id;     /* VRF of the packet (0: none known) */
    vif_id_t       vif_id;     /* source vif (0: from the fabric / not a vif) */
    vif_id_t       out_vif;    /* vif it was to be delivered to (0: none) */
}

/* Sent by the controller, in front of the frame. vrf_id 0: transmit the
 * frame out of egress_port as is. vrf_id != 0: the frame is Ethernet + an
 * IPv4/IPv6 packet the agent originates (ICMP errors, echo replies): routed
 * in that VRF like a received one, TTL not decremented, never punted. */
@controller_header("packet_out")
header packet_out_t {
    port_t    egress_port;
    bit<7>    _pad;
    vrf_id_t  vrf_id;
}

header ethernet_t {
    mac_t    dst_addr;
    mac_t    src_addr;
    bit<16>  ether_type;
}

header vlan_t {
    bit<3>     pcp;
    bit<1>     dei;
    vlan_id_t  vid;
    bit<16>    ether_type;
}

/* Ethernet/IPv4 ARP only. */
header arp_t {
    bit<16>      htype;
    bit<16>      ptype;
    bit<8>       hlen;
    bit<8>       plen;
    bit<16>      oper;
    mac_t        sha;
    ipv4_addr_t  spa;
    mac_t        tha;
    ipv4_addr_t  tpa;
}

header ipv4_t {
    bit<4>       version;
    bit<4>       ihl;
    bit<8>       diffserv;
    bit<16>      total_len;
    bit<16>      identification;
    bit<3>       flags;
    bit<13>      frag_offset;
    bit<8>       ttl;
    bit<8>       protocol;
    bit<16>      hdr_checksum;
    ipv4_addr_t  src_addr;
    ipv4_addr_t  dst_addr;
}

/* One 32-bit word of IPv4 options (RFC 791 3.1); up to IPV4_OPT_WORDS of
 * them follow the header, carried unchanged (RFC 1812 5.2.4 forwarding). */
header ipv4_opt_t {
    bit<32>  word;
}

header ipv6_t {
    bit<4>       version;
    bit<8>       traffic_class;
    bit<20>      flow_label;
    bit<16>      payload_len;
    bit<8>       next_hdr;
    bit<8>       hop_limit;
    ipv6_addr_t  src_addr;
    ipv6_addr_t  dst_addr;
}

/* The first four bytes of TCP and UDP: enough for the ECMP hash. */
header l4_ports_t {
    bit<16> src_port;
    bit<16> dst_port;
}

header icmpv6_t {
    bit<8>   type;
    bit<8>   code;
    bit<16>  checksum;
}

/* Neighbor solicitation / advertisement body (RFC 4861 4.3, 4.4). */
header ndp_t {
    bit<32>      flags;
    ipv6_addr_t  target;
}

/* Source / target link-layer address option for Ethernet. */
header ndp_lla_opt_t {
    bit<8>  type;
    bit<8>  len;
    mac_t   addr;
}

/* GRE (RFC 2784 2.1): checksum-present bit C; bits 1-5 (RFC 1701 routing,
 * key, sequence, strict route, recursion: must be 0 here); bits 6-12
 * reserved, ignored on receipt (RFC 2784 2.3); version (0). */
header gre_t {
    bit<1>   checksum_present;
    bit<5>   flags_1701;
    bit<7>   reserved0;
    bit<3>   version;
    bit<16>  protocol;
}

/* Present when gre.checksum_present is 1 (RFC 2784 2.5). */
header gre_checksum_t {
    bit<16>  checksum;
    bit<16>  reserved1;
}

header mpls_t {
    label_t  label;
    bit<3>   tc;
    bit<1>   bos;
    bit<8>   ttl;
}

struct headers_t {
    packet_in_t    packet_in;
    packet_out_t   packet_out;
    ethernet_t     ethernet;
    vlan_t         vlan;
    vlan_t         vlan2;       /* a second tag: only parsed to be refused */
    arp_t          arp;
    ipv4_t         tun_ipv4;    /* MPLS-in-GRE pushed by this switch */
    gre_t          tun_gre;
    mpls_t         tun_mpls;
    ipv4_t         ipv4;        /* the packet routed (after decap: the inner one) */
    ipv4_opt_t[IPV4_OPT_WORDS] ipv4_opt;  /* options of ipv4, or of inner_ipv4
                                           * on a tunnel (outer: IHL 5 only) */
    ipv6_t         ipv6;
    icmpv6_t       icmpv6;
    ndp_t          ndp;
    ndp_lla_opt_t  ndp_opt;
    gre_t          gre;         /* received MPLS-in-GRE */
    gre_checksum_t gre_checksum;
    mpls_t         mpls_null;   /* an explicit null above the label (RFC 4182) */
    mpls_t         mpls;
    ipv4_t         inner_ipv4;
    ipv6_t         inner_ipv6;
    l4_ports_t     l4;
}

/* Architecture-neutral metadata. The architecture's main copies its
 * intrinsic metadata into the first block and acts on the decisions
 * (egress_spec, mcast_grp, drop) after the pipeline. */
struct local_metadata_t {
    /* intrinsic, in */
    port_t          ingress_port;
    bit<32>         packet_length;    /* bytes received (ingress) */
    bit<1>          checksum_error;   /* a verified checksum was wrong */
    port_t          egress_port;      /* egress pipe */
    replica_id_t    egress_rid;       /* egress pipe */
    /* decisions, out */
    port_t          egress_spec;
    bit<1>          egress_set;
    mcast_group_t   mcast_grp;
    bit<32>         truncate_len;     /* egress: frame length to send, 0 = all */
    bit<1>          drop;
    drop_reason_t   drop_reason;
    punt_reason_t   punt_reason;

    /* fabric configuration */
    ipv4_addr_t     my_ipv4;
    bit<16>         fabric_mtu;
    bit<1>          is_fabric;
    bit<1>          from_cpu;
    bit<1>          cpu_routed;       /* packet-out routed in a VRF: no punt, TTL kept */

    /* receive checks */
    bit<4>          ipv4_opt_left;    /* parser: option words still to extract */
    bit<32>         l3_len;           /* bytes present from the IP header on */
    vlan_id_t       rx_vlan;          /* fabric: 802.1Q VLAN received, 0 = untagged */
    ipv4_addr_t     outer_src;        /* fabric: tunnel source */
    bit<2>          outer_ecn;        /* fabric: ECN of the outer header */
    label_t         rx_label;         /* fabric: the VPN label */

    /* classification and routing */
    vif_id_t        src_vif;
    vrf_id_t        vrf_id;
    bit<1>          route;            /* look the destination up in vrf_id */
    bit<1>          flood;            /* replicate in vrf_id */
    bit<1>          responded;        /* ARP / ND answered */
    bit<1>          nd_reply;
    nexthop_id_t    nexthop_id;
    bit<1>          has_nexthop;

    /* ECMP hash input: the 5-tuple of the (inner) packet */
    ipv6_addr_t     flow_src;
    ipv6_addr_t     flow_dst;
    bit<8>          flow_proto;
    bit<16>         flow_sport;
    bit<16>         flow_dport;

    /* local delivery */
    bit<1>          local;
    vif_id_t        out_vif;
    vlan_id_t       out_vlan;
    mac_t           out_dst_mac;

    /* MPLS-in-GRE encapsulation (done in the egress pipe) */
    bit<1>          encap;
    label_t         tun_label;
    ipv4_addr_t     tun_dst;
    mac_t           l2_src;
    mac_t           l2_dst;
    vlan_id_t       l2_vlan;          /* 0 = untagged */

    /* flooding */
    bit<1>          flooding;
    bit<1>          replica_local;
}

#endif
