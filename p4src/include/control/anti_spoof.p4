/* Anti-spoofing: a vif may only source the addresses installed for it. */
#ifndef ESVPN_ANTI_SPOOF_P4
#define ESVPN_ANTI_SPOOF_P4

control AntiSpoof(inout headers_t hdr, inout local_metadata_t meta) {

    action permit() { }

    action spoofed() {
        meta.drop = 1;
        meta.drop_reason = DROP_SPOOFED;
    }

    /* ipv4_source: (vif, source prefix) the end-system may use. Written by
     * the agent when the end-system publishes an address (XMPP route entry
     * for the vif); removed with it. */
    table ipv4_source {
        key = {
            meta.src_vif      : exact @name("vif_id");
            hdr.ipv4.src_addr : lpm @name("src_addr");
        }
        actions = {
            permit;
            @defaultonly spoofed;
        }
        const default_action = spoofed();
        size = IPV4_SOURCE_TABLE_SIZE;
    }

    /* ipv6_source: as ipv4_source, for IPv6 source prefixes. */
    table ipv6_source {
        key = {
            meta.src_vif      : exact @name("vif_id");
            hdr.ipv6.src_addr : lpm @name("src_addr");
        }
        actions = {
            permit;
            @defaultonly spoofed;
        }
        const default_action = spoofed();
        size = IPV6_SOURCE_TABLE_SIZE;
    }

    apply {
        if (hdr.ipv4.isValid()) {
            ipv4_source.apply();
        } else if (hdr.ipv6.isValid()) {
            ipv6_source.apply();
        }
    }
}

#endif
