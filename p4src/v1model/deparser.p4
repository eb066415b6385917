/* v1model checksums and deparser. */
#ifndef ESVPN_V1MODEL_DEPARSER_P4
#define ESVPN_V1MODEL_DEPARSER_P4

/* Checksums verified on receipt; any mismatch sets checksum_error, which
 * the ingress drops as BAD_CHECKSUM (packet-outs are not parsed). Fields of
 * invalid headers (option words not present) count for nothing, as in the
 * bmv2 calculation. */
control EsVerifyChecksum(inout headers_t hdr, inout local_metadata_t meta) {
    apply {
        /* RFC 1812 5.2.2: the IPv4 header of a packet from a vif, or the
         * outer header of a tunnel packet; its options when it has any. */
        verify_checksum(hdr.ipv4.isValid() && !hdr.inner_ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv,
              hdr.ipv4.total_len, hdr.ipv4.identification,
              hdr.ipv4.flags, hdr.ipv4.frag_offset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr,
              hdr.ipv4_opt[0].word, hdr.ipv4_opt[1].word, hdr.ipv4_opt[2].word,
              hdr.ipv4_opt[3].word, hdr.ipv4_opt[4].word, hdr.ipv4_opt[5].word,
              hdr.ipv4_opt[6].word, hdr.ipv4_opt[7].word, hdr.ipv4_opt[8].word,
              hdr.ipv4_opt[9].word },
            hdr.ipv4.hdr_checksum, HashAlgorithm.csum16);
        /* outer header over an inner IPv4 packet (the options are the inner's) */
        verify_checksum(hdr.ipv4.isValid() && hdr.inner_ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv,
              hdr.ipv4.total_len, hdr.ipv4.identification,
              hdr.ipv4.flags, hdr.ipv4.frag_offset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum, HashAlgorithm.csum16);
        /* the inner IPv4 header of a tunnel packet, before it is routed */
        verify_checksum(hdr.inner_ipv4.isValid(),
            { hdr.inner_ipv4.version, hdr.inner_ipv4.ihl, hdr.inner_ipv4.diffserv,
              hdr.inner_ipv4.total_len, hdr.inner_ipv4.identification,
              hdr.inner_ipv4.flags, hdr.inner_ipv4.frag_offset, hdr.inner_ipv4.ttl,
              hdr.inner_ipv4.protocol, hdr.inner_ipv4.src_addr, hdr.inner_ipv4.dst_addr,
              hdr.ipv4_opt[0].word, hdr.ipv4_opt[1].word, hdr.ipv4_opt[2].word,
              hdr.ipv4_opt[3].word, hdr.ipv4_opt[4].word, hdr.ipv4_opt[5].word,
              hdr.ipv4_opt[6].word, hdr.ipv4_opt[7].word, hdr.ipv4_opt[8].word,
              hdr.ipv4_opt[9].word },
            hdr.inner_ipv4.hdr_checksum, HashAlgorithm.csum16);
        /* RFC 4861 7.1.1: a neighbor solicitation the Resolver may answer
         * (no option, or one option: all of it is in headers). */
        verify_checksum(hdr.ndp.isValid()
                && (hdr.ipv6.payload_len == 24
                    || (hdr.ipv6.payload_len == 32 && hdr.ndp_opt.isValid())),
            { hdr.ipv6.src_addr, hdr.ipv6.dst_addr, 16w0, hdr.ipv6.payload_len,
              24w0, IP_PROTO_ICMPV6, hdr.icmpv6.type, hdr.icmpv6.code,
              hdr.ndp.flags, hdr.ndp.target, hdr.ndp_opt.type, hdr.ndp_opt.len,
              hdr.ndp_opt.addr },
            hdr.icmpv6.checksum, HashAlgorithm.csum16);
    }
}

control EsComputeChecksum(inout headers_t hdr, inout local_metadata_t meta) {
    apply {
        update_checksum(hdr.tun_ipv4.isValid(),
            { hdr.tun_ipv4.version, hdr.tun_ipv4.ihl, hdr.tun_ipv4.diffserv,
              hdr.tun_ipv4.total_len, hdr.tun_ipv4.identification,
              hdr.tun_ipv4.flags, hdr.tun_ipv4.frag_offset, hdr.tun_ipv4.ttl,
              hdr.tun_ipv4.protocol, hdr.tun_ipv4.src_addr, hdr.tun_ipv4.dst_addr },
            hdr.tun_ipv4.hdr_checksum, HashAlgorithm.csum16);
        /* the routed packet, options included (forwarded unchanged) */
        update_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv,
              hdr.ipv4.total_len, hdr.ipv4.identification,
              hdr.ipv4.flags, hdr.ipv4.frag_offset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr,
              hdr.ipv4_opt[0].word, hdr.ipv4_opt[1].word, hdr.ipv4_opt[2].word,
              hdr.ipv4_opt[3].word, hdr.ipv4_opt[4].word, hdr.ipv4_opt[5].word,
              hdr.ipv4_opt[6].word, hdr.ipv4_opt[7].word, hdr.ipv4_opt[8].word,
              hdr.ipv4_opt[9].word },
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
        pkt.emit(hdr.ipv4_opt);
        pkt.emit(hdr.ipv6);
        pkt.emit(hdr.icmpv6);
        pkt.emit(hdr.ndp);
        pkt.emit(hdr.ndp_opt);
        pkt.emit(hdr.gre);
        pkt.emit(hdr.gre_checksum);
        pkt.emit(hdr.mpls_null);
        pkt.emit(hdr.mpls);
        pkt.emit(hdr.inner_ipv4);
        pkt.emit(hdr.inner_ipv6);
        pkt.emit(hdr.l4);
    }
}

#endif
