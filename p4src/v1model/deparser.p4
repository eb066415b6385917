/* v1model checksums and deparser. */
#ifndef ESVPN_V1MODEL_DEPARSER_P4
#define ESVPN_V1MODEL_DEPARSER_P4

control EsVerifyChecksum(inout headers_t hdr, inout local_metadata_t meta) {
    apply { }
}

control EsComputeChecksum(inout headers_t hdr, inout local_metadata_t meta) {
    apply {
        update_checksum(hdr.tun_ipv4.isValid(),
            { hdr.tun_ipv4.version, hdr.tun_ipv4.ihl, hdr.tun_ipv4.diffserv,
              hdr.tun_ipv4.total_len, hdr.tun_ipv4.identification,
              hdr.tun_ipv4.flags, hdr.tun_ipv4.frag_offset, hdr.tun_ipv4.ttl,
              hdr.tun_ipv4.protocol, hdr.tun_ipv4.src_addr, hdr.tun_ipv4.dst_addr },
            hdr.tun_ipv4.hdr_checksum, HashAlgorithm.csum16);
        update_checksum(hdr.ipv4.isValid() && hdr.ipv4.ihl == 5,
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv,
              hdr.ipv4.total_len, hdr.ipv4.identification,
              hdr.ipv4.flags, hdr.ipv4.frag_offset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum, HashAlgorithm.csum16);
        /* Neighbor advertisement built by the Resolver: pseudo-header
         * (RFC 8200 8.1) + ICMPv6 message, which is all in headers. */
        update_checksum(hdr.ndp_opt.isValid() && meta.nd_reply == 1,
            { hdr.ipv6.src_addr, hdr.ipv6.dst_addr, 16w0, hdr.ipv6.payload_len,
              24w0, IP_PROTO_ICMPV6, hdr.icmpv6.type, hdr.icmpv6.code,
              hdr.ndp.flags, hdr.ndp.target, hdr.ndp_opt.type, hdr.ndp_opt.len,
              hdr.ndp_opt.addr },
            hdr.icmpv6.checksum, HashAlgorithm.csum16);
    }
}

control EsDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.vlan);
        pkt.emit(hdr.vlan2);
        pkt.emit(hdr.arp);
        pkt.emit(hdr.tun_ipv4);
        pkt.emit(hdr.tun_gre);
        pkt.emit(hdr.tun_mpls);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.ipv6);
        pkt.emit(hdr.icmpv6);
        pkt.emit(hdr.ndp);
        pkt.emit(hdr.ndp_opt);
        pkt.emit(hdr.gre);
        pkt.emit(hdr.mpls);
        pkt.emit(hdr.inner_ipv4);
        pkt.emit(hdr.inner_ipv6);
        pkt.emit(hdr.l4);
    }
}

#endif
