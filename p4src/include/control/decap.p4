/* MPLS-in-GRE termination (RFC 4023) on fabric ports. */
#ifndef ESVPN_DECAP_P4
#define ESVPN_DECAP_P4

control Decap(inout headers_t hdr, inout local_metadata_t meta) {

    action permit_peer() { }

    action unknown_peer() {
        meta.drop = 1;
        meta.drop_reason = DROP_UNKNOWN_PEER;
    }

    /* tunnel_peer: outer IPv4 sources (other forwarders) this switch takes
     * MPLS-in-GRE from. Written by the agent when it learns a route whose
     * next hop is that forwarder; removed with its last route. */
    table tunnel_peer {
        key = {
            hdr.ipv4.src_addr : exact @name("remote_ipv4");
        }
        actions = {
            permit_peer;
            @defaultonly unknown_peer;
        }
        const default_action = unknown_peer();
        size = TUNNEL_PEER_TABLE_SIZE;
    }

    /* Per-interface label: deliver to that vif without an IP lookup. */
    action label_to_vif(vif_id_t vif_id, port_t port, vlan_id_t vlan_id, mac_t dst_mac) {
        meta.local = 1;
        meta.out_vif = vif_id;
        meta.egress_spec = port;
        meta.egress_set = 1;
        meta.out_vlan = vlan_id;
        meta.out_dst_mac = dst_mac;
    }

    /* Flood label: a broadcast/multicast replica for the local vifs of the VRF. */
    action label_to_flood(vrf_id_t vrf_id) {
        meta.vrf_id = vrf_id;
        meta.flood = 1;
    }

    action unknown_label() {
        meta.drop = 1;
        meta.drop_reason = DROP_UNKNOWN_LABEL;
    }

    /* mpls_label: labels this forwarder allocated (16 .. 2^20-1). Written
     * by the agent when it allocates a label for a vif (and, once flood
     * labels are signalled, a VRF's flooding), before it advertises it. */
    table mpls_label {
        key = {
            hdr.mpls.label : exact @name("label");
        }
        actions = {
            label_to_vif;
            label_to_flood;
            @defaultonly unknown_label;
        }
        const default_action = unknown_label();
        size = MPLS_LABEL_TABLE_SIZE;
    }

    apply {
        if (!hdr.ipv4.isValid() || meta.my_ipv4 == 0
                || hdr.ipv4.dst_addr != meta.my_ipv4 || !hdr.gre.isValid()) {
            meta.drop = 1;
            meta.drop_reason = DROP_NOT_TUNNEL;
        } else if (!hdr.mpls.isValid()) {
            /* GRE checksum/routing/key/sequence present, a version other
             * than 0, or a payload other than MPLS unicast. */
            meta.drop = 1;
            meta.drop_reason = DROP_GRE_UNSUPPORTED;
        } else if (hdr.mpls.bos == 0) {
            meta.drop = 1;
            meta.drop_reason = DROP_MPLS_STACK;
        } else if (!hdr.inner_ipv4.isValid() && !hdr.inner_ipv6.isValid()) {
            meta.drop = 1;
            meta.drop_reason = DROP_INNER_NOT_IP;
        } else if (tunnel_peer.apply().hit) {
            if (mpls_label.apply().hit) {
                if (hdr.inner_ipv4.isValid()) {
                    hdr.ipv4 = hdr.inner_ipv4;
                    hdr.inner_ipv4.setInvalid();
                } else {
                    hdr.ipv6 = hdr.inner_ipv6;
                    hdr.inner_ipv6.setInvalid();
                    hdr.ipv4.setInvalid();
                }
                hdr.gre.setInvalid();
                hdr.mpls.setInvalid();
            }
        }
    }
}

#endif
