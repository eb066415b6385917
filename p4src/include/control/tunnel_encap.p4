/* Egress: push outer Ethernet / IPv4 / GRE / MPLS (RFC 4023). */
#ifndef ESVPN_TUNNEL_ENCAP_P4
#define ESVPN_TUNNEL_ENCAP_P4

control TunnelEncap(inout headers_t hdr, inout local_metadata_t meta) {

    apply {
        bit<16> inner_len;
        bit<8> inner_ttl;
        bit<8> inner_tos;
        if (hdr.ipv4.isValid()) {
            inner_len = hdr.ipv4.total_len;
            inner_ttl = hdr.ipv4.ttl;
            inner_tos = hdr.ipv4.diffserv;
        } else {
            inner_len = hdr.ipv6.payload_len + 40;
            inner_ttl = hdr.ipv6.hop_limit;
            inner_tos = hdr.ipv6.traffic_class;
        }
        if (inner_len + ENCAP_OVERHEAD > meta.fabric_mtu) {
            meta.drop = 1;
            meta.drop_reason = DROP_MTU_EXCEEDED;
        } else {
            hdr.tun_ipv4.setValid();
            hdr.tun_ipv4.version = 4;
            hdr.tun_ipv4.ihl = 5;
            hdr.tun_ipv4.diffserv = inner_tos;
            hdr.tun_ipv4.total_len = inner_len + ENCAP_OVERHEAD;
            hdr.tun_ipv4.identification = 0;
            hdr.tun_ipv4.flags = 2;          /* don't fragment */
            hdr.tun_ipv4.frag_offset = 0;
            hdr.tun_ipv4.ttl = ENCAP_OUTER_TTL;
            hdr.tun_ipv4.protocol = IP_PROTO_GRE;
            hdr.tun_ipv4.hdr_checksum = 0;   /* computed by the deparser side */
            hdr.tun_ipv4.src_addr = meta.my_ipv4;
            hdr.tun_ipv4.dst_addr = meta.tun_dst;
            hdr.tun_gre.setValid();
            hdr.tun_gre.checksum_present = 0;
            hdr.tun_gre.flags_1701 = 0;
            hdr.tun_gre.reserved0 = 0;
            hdr.tun_gre.version = 0;
            hdr.tun_gre.protocol = GRE_PROTO_MPLS;
            hdr.tun_mpls.setValid();
            hdr.tun_mpls.label = meta.tun_label;
            hdr.tun_mpls.tc = 0;
            hdr.tun_mpls.bos = 1;
            hdr.tun_mpls.ttl = inner_ttl;
            hdr.ethernet.src_addr = meta.l2_src;
            hdr.ethernet.dst_addr = meta.l2_dst;
            if (meta.l2_vlan != 0) {
                hdr.vlan.setValid();
                hdr.vlan.pcp = 0;
                hdr.vlan.dei = 0;
                hdr.vlan.vid = meta.l2_vlan;
            } else {
                hdr.vlan.setInvalid();
            }
        }
    }
}

#endif
