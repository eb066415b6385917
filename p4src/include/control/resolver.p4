/* Address resolution: answer every ARP request and IPv6 neighbor
 * solicitation from a virtual interface with the VRRP MAC (draft §4). */
#ifndef ESVPN_RESOLVER_P4
#define ESVPN_RESOLVER_P4

control Resolver(inout headers_t hdr, inout local_metadata_t meta) {

    apply {
        if (hdr.arp.isValid()) {
            /* Reply for any target, except probes (sender 0.0.0.0) and
             * gratuitous ARP (sender == target): answering those would
             * make the end-system see an address conflict. */
            if (hdr.arp.oper == ARP_OPER_REQUEST && hdr.arp.htype == 1
                    && hdr.arp.ptype == ETHERTYPE_IPV4 && hdr.arp.hlen == 6
                    && hdr.arp.plen == 4 && hdr.arp.spa != 0
                    && hdr.arp.spa != hdr.arp.tpa) {
                ipv4_addr_t target = hdr.arp.tpa;
                hdr.ethernet.dst_addr = hdr.ethernet.src_addr;
                hdr.ethernet.src_addr = VRRP_MAC_V4;
                hdr.arp.oper = ARP_OPER_REPLY;
                hdr.arp.tha = hdr.arp.sha;
                hdr.arp.tpa = hdr.arp.spa;
                hdr.arp.sha = VRRP_MAC_V4;
                hdr.arp.spa = target;
                meta.egress_spec = meta.ingress_port;
                meta.egress_set = 1;
                meta.out_vif = meta.src_vif;
                meta.responded = 1;
            } else {
                meta.drop = 1;
                meta.drop_reason = DROP_ARP_IGNORED;
            }
        } else if (hdr.ndp.isValid()) {
            /* Solicitations without options or with exactly one source
             * link-layer address option; not DAD (source ::). */
            /* RFC 4861 7.1.1 (the checksum is verified before): hop
             * limit 255, code 0, target not multicast. */
            if (hdr.icmpv6.code == 0 && hdr.ipv6.hop_limit == 255
                    && hdr.ndp.target[127:120] != 0xff
                    && hdr.ipv6.src_addr != 0
                    && (hdr.ipv6.payload_len == 24
                        || (hdr.ndp_opt.isValid()
                            && hdr.ndp_opt.type == NDP_OPT_SOURCE_LL_ADDR
                            && hdr.ndp_opt.len == 1))) {
                hdr.ethernet.dst_addr = hdr.ethernet.src_addr;
                hdr.ethernet.src_addr = VRRP_MAC_V6;
                hdr.ipv6.dst_addr = hdr.ipv6.src_addr;
                hdr.ipv6.src_addr = hdr.ndp.target;
                hdr.ipv6.hop_limit = 255;
                hdr.ipv6.payload_len = 32;
                hdr.icmpv6.type = ICMPV6_NEIGHBOR_ADVERT;
                hdr.ndp.flags = NDP_NA_FLAGS_RSO;
                hdr.ndp_opt.setValid();
                hdr.ndp_opt.type = NDP_OPT_TARGET_LL_ADDR;
                hdr.ndp_opt.len = 1;
                hdr.ndp_opt.addr = VRRP_MAC_V6;
                meta.nd_reply = 1;
                meta.egress_spec = meta.ingress_port;
                meta.egress_set = 1;
                meta.out_vif = meta.src_vif;
                meta.responded = 1;
            } else {
                meta.drop = 1;
                meta.drop_reason = DROP_ND_IGNORED;
            }
        }
    }
}

#endif
