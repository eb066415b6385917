/* Receive checks of an IP header (RFC 1812 5.2.2, RFC 8200 3) and the
 * addresses a router never forwards off-link (RFC 1812 5.3.7, RFC 3927 7,
 * RFC 4291 2.5, 2.7). p4src/README.md lists each rule with its section. */
#ifndef ESVPN_IP_CHECK_P4
#define ESVPN_IP_CHECK_P4

/* IpCheck: hdr.ipv4 / hdr.ipv6 is whole and consistent. meta.l3_len holds
 * the bytes present from the IP header on (Ethernet padding included); the
 * checksum is checked by the caller (meta.checksum_error). */
control IpCheck(inout headers_t hdr, inout local_metadata_t meta) {
    apply {
        if (hdr.ipv4.isValid()) {
            /* EtherType 0x0800 with another version, IHL < 5, or a total
             * length shorter than the header (RFC 1812 5.2.2). */
            if (hdr.ipv4.version != 4 || hdr.ipv4.ihl < 5
                    || hdr.ipv4.total_len < ((bit<16>)hdr.ipv4.ihl) * 4) {
                meta.drop = 1;
                meta.drop_reason = DROP_BAD_IP_HEADER;
            } else if ((bit<32>)hdr.ipv4.total_len > meta.l3_len) {
                /* RFC 1812 5.2.2: the frame holds fewer bytes than the
                 * total length says. */
                meta.drop = 1;
                meta.drop_reason = DROP_IP_TRUNCATED;
            }
        } else if (hdr.ipv6.isValid()) {
            if (hdr.ipv6.version != 6) {
                meta.drop = 1;
                meta.drop_reason = DROP_BAD_IP_HEADER;
            } else if ((bit<32>)hdr.ipv6.payload_len + 40 > meta.l3_len) {
                meta.drop = 1;
                meta.drop_reason = DROP_IP_TRUNCATED;
            }
        }
    }
}

/* Martian: source or destination addresses that are never forwarded from
 * one link to another (applied to unicast forwarding only: flooding stays
 * within the VRF's broadcast domain). */
control Martian(inout headers_t hdr, inout local_metadata_t meta) {
    apply {
        bool bad = false;
        if (hdr.ipv4.isValid()) {
            bit<8> s = hdr.ipv4.src_addr[31:24];
            bit<8> d = hdr.ipv4.dst_addr[31:24];
            /* 0/8 "this network", 127/8 loopback (RFC 1812 5.3.7);
             * 169.254/16 link-local (RFC 3927 7). */
            if (s == 0 || s == 127 || d == 0 || d == 127
                    || hdr.ipv4.src_addr[31:16] == 0xa9fe
                    || hdr.ipv4.dst_addr[31:16] == 0xa9fe) {
                bad = true;
            }
            /* Source multicast or class E (RFC 1812 5.3.7); destination
             * class E, limited broadcast 255.255.255.255 included
             * (RFC 1812 5.3.5.1, 5.3.7). */
            if (s[7:5] == 7 || d[7:4] == 0xf) {
                bad = true;
            }
        } else if (hdr.ipv6.isValid()) {
            bit<128> s6 = hdr.ipv6.src_addr;
            bit<128> d6 = hdr.ipv6.dst_addr;
            /* fe80::/10 link-local (RFC 4291 2.5.6), ::1 loopback (2.5.3),
             * :: unspecified (2.5.2), multicast source (2.7), interface-
             * or link-local multicast destination (2.7). */
            if (s6[127:118] == 0x3fa || d6[127:118] == 0x3fa
                    || s6 == 1 || d6 == 1 || s6 == 0 || d6 == 0
                    || s6[127:120] == 0xff
                    || (d6[127:120] == 0xff && d6[115:112] <= 2)) {
                bad = true;
            }
        }
        if (bad) {
            meta.drop = 1;
            meta.drop_reason = DROP_MARTIAN;
        }
    }
}

#endif
