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

    /* A packet-out is sent as the controller built it: nothing after the
     * packet_out header is parsed, so no checksum or field is rewritten. */
    /* A packet-out with vrf_id 0 leaves unchanged out of the port it names:
     * nothing after its header is parsed, so nothing can be rewritten (a
     * deliberately bad checksum stays bad). With a vrf_id the agent
     * originates an IP packet (an ICMP error, a DHCP answer) that is
     * routed in that VRF: parsed like any frame. */
    state parse_packet_out {
        pkt.extract(hdr.packet_out);
        transition select(hdr.packet_out.vrf_id) {
            0: accept;
            default: parse_ethernet;
        }
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

    /* IPv4 options (IHL > 5) go to ipv4_opt, one word at a time. IHL < 5
     * extracts nothing more (dropped as BAD_IP_HEADER in the checks). */
    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        meta.ipv4_opt_left = hdr.ipv4.ihl - 5;
        transition select(hdr.ipv4.ihl) {
            5: parse_ipv4_proto;
            0 &&& 0xc: accept;       /* 0..3 */
            4: accept;
            default: parse_ipv4_opt;
        }
    }

    state parse_ipv4_opt {
        pkt.extract(hdr.ipv4_opt.next);
        meta.ipv4_opt_left = meta.ipv4_opt_left - 1;
        transition select(meta.ipv4_opt_left) {
            0: parse_ipv4_proto;
            default: parse_ipv4_opt;
        }
    }

    /* GRE only under an outer header without options; an outer first
     * fragment (MF=1, offset 0) is parsed to be counted as a fragment. */
    state parse_ipv4_proto {
        transition select(hdr.ipv4.ihl, hdr.ipv4.frag_offset, hdr.ipv4.protocol) {
            (5, 0, IP_PROTO_GRE): parse_gre;
            (_, 0, IP_PROTO_TCP): parse_l4;
            (_, 0, IP_PROTO_UDP): parse_l4;
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

    /* RFC 2784: C may be set (the checksum word is skipped, not verified:
     * p4src/README.md), bits 6-12 are ignored; bits 1-5 and the version
     * must be 0 and the payload MPLS unicast, else GRE_UNSUPPORTED. */
    state parse_gre {
        pkt.extract(hdr.gre);
        transition select(hdr.gre.checksum_present, hdr.gre.flags_1701,
                          hdr.gre.version, hdr.gre.protocol) {
            (0, 0, 0, GRE_PROTO_MPLS): parse_mpls_top;
            (1, 0, 0, GRE_PROTO_MPLS): parse_gre_checksum;
            default: accept;
        }
    }

    state parse_gre_checksum {
        pkt.extract(hdr.gre_checksum);
        transition parse_mpls_top;
    }

    /* An IPv4 or IPv6 explicit null that is not the bottom of the stack
     * is popped (RFC 4182 3); the label under it is the VPN label. */
    state parse_mpls_top {
        transition select(pkt.lookahead<bit<24>>()) {
            24w0x000000 &&& 24w0xfffff1: parse_mpls_null;  /* label 0, S=0 */
            24w0x000020 &&& 24w0xfffff1: parse_mpls_null;  /* label 2, S=0 */
            default: parse_mpls;
        }
    }

    state parse_mpls_null {
        pkt.extract(hdr.mpls_null);
        transition parse_mpls;
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
        meta.ipv4_opt_left = hdr.inner_ipv4.ihl - 5;
        transition select(hdr.inner_ipv4.ihl) {
            5: parse_inner_ipv4_proto;
            0 &&& 0xc: accept;
            4: accept;
            default: parse_inner_ipv4_opt;
        }
    }

    state parse_inner_ipv4_opt {
        pkt.extract(hdr.ipv4_opt.next);
        meta.ipv4_opt_left = meta.ipv4_opt_left - 1;
        transition select(meta.ipv4_opt_left) {
            0: parse_inner_ipv4_proto;
            default: parse_inner_ipv4_opt;
        }
    }

    state parse_inner_ipv4_proto {
        transition select(hdr.inner_ipv4.frag_offset, hdr.inner_ipv4.protocol) {
            (0, IP_PROTO_TCP): parse_l4;
            (0, IP_PROTO_UDP): parse_l4;
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
