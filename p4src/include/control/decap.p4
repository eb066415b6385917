/* MPLS-in-GRE termination (RFC 4023) on fabric ports. */
#ifndef ESVPN_DECAP_P4
#define ESVPN_DECAP_P4

#include "ip_check.p4"

control Decap(inout headers_t hdr, inout local_metadata_t meta) {

    IpCheck() outer_check;
    IpCheck() inner_check;

    action permit_fabric_vlan() { }

    action wrong_fabric_vlan() {
        meta.drop = 1;
        meta.drop_reason = DROP_FABRIC_VLAN;
    }

    /* fabric_vlan: the 802.1Q VLAN (0 = untagged) tunnel packets arrive on,
     * per fabric port; other VLANs are not decapsulated. Written by the
     * agent at start-up from its fabric configuration (the VLANs of the
     * underlay next hops on that port; untagged for a port without any). */
    table fabric_vlan {
        key = {
            meta.ingress_port : exact @name("ingress_port");
            meta.rx_vlan      : exact @name("vlan_id");
        }
        actions = {
            permit_fabric_vlan;
            @defaultonly wrong_fabric_vlan;
        }
        const default_action = wrong_fabric_vlan();
        size = FABRIC_VLAN_TABLE_SIZE;
    }

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
            meta.outer_src : exact @name("remote_ipv4");
        }
        actions = {
            permit_peer;
            @defaultonly unknown_peer;
        }
        const default_action = unknown_peer();
        size = TUNNEL_PEER_TABLE_SIZE;
    }

    /* Per-interface label: deliver to that vif without an IP lookup. */
    action label_to_vif(vif_id_t vif_id, port_t port, vlan_id_t vlan_id, mac_t dst_mac,
                        vrf_id_t vrf_id) {
        meta.local = 1;
        meta.out_vif = vif_id;
        meta.egress_spec = port;
        meta.egress_set = 1;
        meta.out_vlan = vlan_id;
        meta.out_dst_mac = dst_mac;
        meta.vrf_id = vrf_id;
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
     * labels are signalled, a VRF's flooding), before it advertises it.
     * Every action names the label's VRF, which vrf_peer checks the tunnel
     * source against. */
    table mpls_label {
        key = {
            meta.rx_label : exact @name("label");
        }
        actions = {
            label_to_vif;
            label_to_flood;
            @defaultonly unknown_label;
        }
        const default_action = unknown_label();
        size = MPLS_LABEL_TABLE_SIZE;
    }

    action permit_vrf_peer() { }

    action label_peer() {
        meta.drop = 1;
        meta.drop_reason = DROP_LABEL_PEER;
    }

    /* vrf_peer: the forwarders that may use the labels of a VRF
     * (requirements draft §12): those the agent has routes of that VRF
     * from (the next hops of received routes), and the statically
     * configured peers. Written by the agent with its routes. */
    table vrf_peer {
        key = {
            meta.vrf_id    : exact @name("vrf_id");
            meta.outer_src : exact @name("remote_ipv4");
        }
        actions = {
            permit_vrf_peer;
            @defaultonly label_peer;
        }
        const default_action = label_peer();
        size = VRF_PEER_TABLE_SIZE;
    }

    apply {
        if (hdr.vlan.isValid()) {
            meta.rx_vlan = hdr.vlan.vid;
        }
        if (hdr.vlan2.isValid()) {
            meta.drop = 1;
            meta.drop_reason = DROP_FABRIC_VLAN;
        } else {
            fabric_vlan.apply();
        }
        if (meta.drop == 0 && !hdr.ipv4.isValid()) {
            meta.drop = 1;
            meta.drop_reason = DROP_NOT_TUNNEL;
        }
        if (meta.drop == 0) {
            outer_check.apply(hdr, meta);
        }
        if (meta.drop == 1) {
            /* counted */
        } else if (meta.my_ipv4 == 0 || hdr.ipv4.dst_addr != meta.my_ipv4
                   || hdr.ipv4.protocol != IP_PROTO_GRE) {
            meta.drop = 1;
            meta.drop_reason = DROP_NOT_TUNNEL;
        } else if (hdr.ipv4.flags[0:0] == 1 || hdr.ipv4.frag_offset != 0) {
            /* RFC 4023 5.1: no reassembly here, so no fragment is
             * decapsulated (a truncated inner packet must not be delivered). */
            meta.drop = 1;
            meta.drop_reason = DROP_OUTER_FRAGMENT;
        } else if (!hdr.gre.isValid()) {
            /* outer header with options */
            meta.drop = 1;
            meta.drop_reason = DROP_NOT_TUNNEL;
        } else if (!hdr.mpls.isValid()) {
            /* GRE routing/key/sequence present, a version other than 0,
             * or a payload other than MPLS unicast. */
            meta.drop = 1;
            meta.drop_reason = DROP_GRE_UNSUPPORTED;
        } else if (hdr.mpls.bos == 0) {
            meta.drop = 1;
            meta.drop_reason = DROP_MPLS_STACK;
        } else if (!hdr.inner_ipv4.isValid() && !hdr.inner_ipv6.isValid()) {
            meta.drop = 1;
            meta.drop_reason = DROP_INNER_NOT_IP;
        } else {
            /* Remember what the lookups need of the tunnel, then make the
             * inner packet the one routed. */
            meta.outer_src = hdr.ipv4.src_addr;
            meta.outer_ecn = hdr.ipv4.diffserv[1:0];
            meta.rx_label = hdr.mpls.label;
            bit<32> overhead = 28;
            if (hdr.gre_checksum.isValid()) {
                overhead = overhead + 4;
            }
            if (hdr.mpls_null.isValid()) {
                overhead = overhead + 4;
            }
            if ((bit<32>)hdr.ipv4.total_len > overhead) {
                meta.l3_len = (bit<32>)hdr.ipv4.total_len - overhead;
            } else {
                meta.l3_len = 0;
            }
            if (hdr.inner_ipv4.isValid()) {
                hdr.ipv4 = hdr.inner_ipv4;
                hdr.inner_ipv4.setInvalid();
            } else {
                hdr.ipv6 = hdr.inner_ipv6;
                hdr.inner_ipv6.setInvalid();
                hdr.ipv4.setInvalid();
            }
            hdr.gre.setInvalid();
            hdr.gre_checksum.setInvalid();
            hdr.mpls_null.setInvalid();
            hdr.mpls.setInvalid();
            inner_check.apply(hdr, meta);
            if (meta.drop == 0 && meta.checksum_error == 1) {
                /* outer or inner IPv4 header checksum (RFC 1812 5.2.2) */
                meta.drop = 1;
                meta.drop_reason = DROP_BAD_CHECKSUM;
            }
            if (meta.drop == 0) {
                tunnel_peer.apply();
            }
            if (meta.drop == 0) {
                mpls_label.apply();
            }
            if (meta.drop == 0) {
                vrf_peer.apply();
            }
            if (meta.drop == 0 && meta.flood == 1) {
                /* A flood label carries limited broadcast and multicast only. */
                if ((hdr.ipv4.isValid() && hdr.ipv4.dst_addr[31:28] != 0xe
                        && hdr.ipv4.dst_addr != 0xffffffff)
                    || (hdr.ipv6.isValid() && hdr.ipv6.dst_addr[127:120] != 0xff)) {
                    meta.drop = 1;
                    meta.drop_reason = DROP_FLOOD_UNICAST;
                }
            }
            if (meta.drop == 0 && meta.outer_ecn == ECN_CE) {
                /* RFC 6040 4.2: CE on the outer header marks an ECN-capable
                 * inner packet CE; a Not-ECT inner packet is dropped. */
                bit<2> inner_ecn;
                if (hdr.ipv4.isValid()) {
                    inner_ecn = hdr.ipv4.diffserv[1:0];
                } else {
                    inner_ecn = hdr.ipv6.traffic_class[1:0];
                }
                if (inner_ecn == ECN_NOT_ECT) {
                    meta.drop = 1;
                    meta.drop_reason = DROP_ECN_NOT_ECT;
                } else if (hdr.ipv4.isValid()) {
                    hdr.ipv4.diffserv[1:0] = ECN_CE;
                } else {
                    hdr.ipv6.traffic_class[1:0] = ECN_CE;
                }
            } else if (meta.drop == 0 && meta.outer_ecn == ECN_ECT1) {
                /* RFC 6040 4.2: outer ECT(1) over inner ECT(0) gives ECT(1). */
                if (hdr.ipv4.isValid() && hdr.ipv4.diffserv[1:0] == ECN_ECT0) {
                    hdr.ipv4.diffserv[1:0] = ECN_ECT1;
                } else if (hdr.ipv6.isValid() && hdr.ipv6.traffic_class[1:0] == ECN_ECT0) {
                    hdr.ipv6.traffic_class[1:0] = ECN_ECT1;
                }
            }
        }
    }
}

#endif
