/* v1model parser. */
#ifndef ESVPN_V1MODEL_PARSER_P4
#define ESVPN_V1MODEL_PARSER_P4

parser EsParser(packet_in pkt, out headers_t hdr, inout local_metadata_t meta,
                inout standard_metadata_t sm) {

    state start {
        transition select(sm.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    state parse_packet_out {
        pkt.extract(hdr.packet_out);
        transition parse_ethernet;
    }

    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_VLAN: parse_vlan;
            ETHERTYPE_QINQ: parse_vlan;
            ETHERTYPE_ARP: parse_arp;
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            default: accept;
        }
    }

    state parse_vlan {
        pkt.extract(hdr.vlan);
        transition select(hdr.vlan.ether_type) {
            ETHERTYPE_VLAN: parse_vlan2;
            ETHERTYPE_QINQ: parse_vlan2;
            ETHERTYPE_ARP: parse_arp;
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            default: accept;
        }
    }

    state parse_vlan2 {
        pkt.extract(hdr.vlan2);
        transition accept;
    }

    state parse_arp {
        pkt.extract(hdr.arp);
        transition accept;
    }

    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        transition select(hdr.ipv4.ihl, hdr.ipv4.frag_offset, hdr.ipv4.protocol) {
            (5, 0, IP_PROTO_TCP): parse_l4;
            (5, 0, IP_PROTO_UDP): parse_l4;
            (5, 0, IP_PROTO_GRE): parse_gre;
            default: accept;
        }
    }

    state parse_ipv6 {
        pkt.extract(hdr.ipv6);
        transition select(hdr.ipv6.next_hdr) {
            IP_PROTO_TCP: parse_l4;
            IP_PROTO_UDP: parse_l4;
            IP_PROTO_ICMPV6: parse_icmpv6;
            default: accept;
        }
    }

    state parse_icmpv6 {
        pkt.extract(hdr.icmpv6);
        transition select(hdr.icmpv6.type) {
            ICMPV6_NEIGHBOR_SOLICIT: parse_ndp;
            default: accept;
        }
    }

    state parse_ndp {
        pkt.extract(hdr.ndp);
        transition select(hdr.ipv6.payload_len) {
            32: parse_ndp_opt;
            default: accept;
        }
    }

    state parse_ndp_opt {
        pkt.extract(hdr.ndp_opt);
        transition accept;
    }

    state parse_gre {
        pkt.extract(hdr.gre);
        transition select(hdr.gre.flags_version, hdr.gre.protocol) {
            (0, GRE_PROTO_MPLS): parse_mpls;
            default: accept;
        }
    }

    state parse_mpls {
        pkt.extract(hdr.mpls);
        transition select(hdr.mpls.bos) {
            1: parse_inner;
            default: accept;
        }
    }

    state parse_inner {
        transition select(pkt.lookahead<bit<4>>()) {
            4: parse_inner_ipv4;
            6: parse_inner_ipv6;
            default: accept;
        }
    }

    state parse_inner_ipv4 {
        pkt.extract(hdr.inner_ipv4);
        transition select(hdr.inner_ipv4.ihl, hdr.inner_ipv4.frag_offset,
                          hdr.inner_ipv4.protocol) {
            (5, 0, IP_PROTO_TCP): parse_l4;
            (5, 0, IP_PROTO_UDP): parse_l4;
            default: accept;
        }
    }

    state parse_inner_ipv6 {
        pkt.extract(hdr.inner_ipv6);
        transition select(hdr.inner_ipv6.next_hdr) {
            IP_PROTO_TCP: parse_l4;
            IP_PROTO_UDP: parse_l4;
            default: accept;
        }
    }

    state parse_l4 {
        pkt.extract(hdr.l4);
        transition accept;
    }
}

#endif
