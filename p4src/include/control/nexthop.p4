/* Next hops: remote forwarders (MPLS-in-GRE, ECMP) or a local vif. */
#ifndef ESVPN_NEXTHOP_P4
#define ESVPN_NEXTHOP_P4

control Nexthop(inout headers_t hdr, inout local_metadata_t meta) {

    /* ECMP: members picked by a crc16 of the selector fields of nexthop. */
    @max_group_size(NEXTHOP_MAX_GROUP_SIZE)
    ES_SELECTOR(nexthop_selector, NEXTHOP_SELECTOR_SIZE, 16)

    /* Remote: push one label (bottom of stack), GRE 0x8847, outer IPv4
     * from the infrastructure address to remote_ipv4. */
    action encap_mpls_gre(label_t label, ipv4_addr_t remote_ipv4) {
        meta.encap = 1;
        meta.tun_label = label;
        meta.tun_dst = remote_ipv4;
    }

    /* Local: to a vif on this switch. */
    action deliver_local(vif_id_t vif_id, port_t port, vlan_id_t vlan_id, mac_t dst_mac) {
        meta.local = 1;
        meta.out_vif = vif_id;
        meta.egress_spec = port;
        meta.egress_set = 1;
        meta.out_vlan = vlan_id;
        meta.out_dst_mac = dst_mac;
    }

    /* nexthop: what a route's nexthop_id means. Each entry points at a
     * nexthop_selector member (one next hop) or group (ECMP: members
     * chosen by a hash of the inner 5-tuple). Written by the agent before
     * the routes that use it. */
    table nexthop {
        key = {
            meta.nexthop_id : exact @name("nexthop_id");
            meta.flow_src   : selector;
            meta.flow_dst   : selector;
            meta.flow_proto : selector;
            meta.flow_sport : selector;
            meta.flow_dport : selector;
        }
        actions = {
            encap_mpls_gre;
            deliver_local;
        }
        implementation = nexthop_selector;
        size = NEXTHOP_TABLE_SIZE;
    }

    action set_underlay(port_t port, mac_t src_mac, mac_t dst_mac, vlan_id_t vlan_id) {
        meta.egress_spec = port;
        meta.egress_set = 1;
        meta.l2_src = src_mac;
        meta.l2_dst = dst_mac;
        meta.l2_vlan = vlan_id;
    }

    action no_underlay() {
        meta.drop = 1;
        meta.drop_reason = DROP_NO_UNDERLAY;
    }

    /* underlay: how to reach a remote forwarder over the fabric: port,
     * Ethernet addresses, fabric VLAN (0 = untagged). Written by the agent
     * from its fabric configuration / the fabric next hop it resolved. */
    table underlay {
        key = {
            meta.tun_dst : lpm @name("remote_ipv4");
        }
        actions = {
            set_underlay;
            @defaultonly no_underlay;
        }
        const default_action = no_underlay();
        size = UNDERLAY_TABLE_SIZE;
    }

    apply {
        if (hdr.ipv4.isValid()) {
            meta.flow_src = (ipv6_addr_t)hdr.ipv4.src_addr;
            meta.flow_dst = (ipv6_addr_t)hdr.ipv4.dst_addr;
            meta.flow_proto = hdr.ipv4.protocol;
        } else {
            meta.flow_src = hdr.ipv6.src_addr;
            meta.flow_dst = hdr.ipv6.dst_addr;
            meta.flow_proto = hdr.ipv6.next_hdr;
        }
        if (hdr.l4.isValid()) {
            meta.flow_sport = hdr.l4.src_port;
            meta.flow_dport = hdr.l4.dst_port;
        }
        if (!nexthop.apply().hit) {
            meta.drop = 1;
            meta.drop_reason = DROP_NO_NEXTHOP;
        } else if (meta.encap == 1) {
            if (meta.is_fabric == 1) {
                /* Never send a packet received from the fabric back to it. */
                meta.drop = 1;
                meta.drop_reason = DROP_FABRIC_TO_FABRIC;
            } else {
                underlay.apply();
            }
        }
    }
}

#endif
