/* Broadcast / multicast within a VRF: pick the multicast group. */
#ifndef ESVPN_FLOOD_P4
#define ESVPN_FLOOD_P4

control Flood(inout headers_t hdr, inout local_metadata_t meta) {

    action set_flood_group(mcast_group_t group) {
        meta.mcast_grp = group;
        meta.flooding = 1;
    }

    action no_flood_group() {
        meta.drop = 1;
        meta.drop_reason = DROP_NO_FLOOD_GROUP;
    }

    /* flood: the multicast group of a VRF. from_fabric=0: frames from a
     * local vif; the group holds every local vif of the VRF (the source is
     * pruned in the egress pipe) and one replica per remote forwarder of
     * the VRF. from_fabric=1: replicas received from the fabric; the group
     * holds the local vifs only. Written by the agent with the groups
     * whenever the VRF's local vifs or remote forwarders change. */
    table flood {
        key = {
            meta.vrf_id    : exact @name("vrf_id");
            meta.is_fabric : exact @name("from_fabric");
        }
        actions = {
            set_flood_group;
            @defaultonly no_flood_group;
        }
        const default_action = no_flood_group();
        size = FLOOD_TABLE_SIZE;
    }

    apply {
        if (meta.is_fabric == 1) {
            /* The frame lost its Ethernet header to the tunnel: rebuild the
             * group address from the inner destination. */
            if (hdr.ipv4.isValid()) {
                if (hdr.ipv4.dst_addr[31:28] == 0xe) {
                    hdr.ethernet.dst_addr = 25w0x0200bc ++ hdr.ipv4.dst_addr[22:0];
                } else {
                    hdr.ethernet.dst_addr = 0xffffffffffff;
                }
            } else {
                hdr.ethernet.dst_addr = 16w0x3333 ++ hdr.ipv6.dst_addr[31:0];
            }
        }
        flood.apply();
    }
}

#endif
