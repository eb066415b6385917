/* Egress: what each multicast replica of a flooded frame becomes. */
#ifndef ESVPN_REPLICA_P4
#define ESVPN_REPLICA_P4

control Replica(inout headers_t hdr, inout local_metadata_t meta) {

    action replica_local(vif_id_t vif_id, vlan_id_t vlan_id) {
        meta.replica_local = 1;
        meta.out_vif = vif_id;
        meta.out_vlan = vlan_id;
    }

    /* Ingress replication to a remote forwarder of the VRF: MPLS-in-GRE
     * with that forwarder's flood label; the replica's egress port comes
     * from the multicast group, the Ethernet addresses and fabric VLAN
     * (0 = untagged) from here. */
    action replica_remote(label_t label, ipv4_addr_t remote_ipv4, mac_t src_mac,
                          mac_t dst_mac, vlan_id_t vlan_id) {
        meta.encap = 1;
        meta.tun_label = label;
        meta.tun_dst = remote_ipv4;
        meta.l2_src = src_mac;
        meta.l2_dst = dst_mac;
        meta.l2_vlan = vlan_id;
    }

    action no_replica() {
        meta.drop = 1;
        meta.drop_reason = DROP_NO_REPLICA;
    }

    /* replica: egress_rid (the replica's instance in its multicast group)
     * -> local vif or remote forwarder. Written by the agent with the
     * multicast groups. */
    table replica {
        key = {
            meta.egress_rid : exact @name("egress_rid");
        }
        actions = {
            replica_local;
            replica_remote;
            @defaultonly no_replica;
        }
        const default_action = no_replica();
        size = REPLICA_TABLE_SIZE;
    }

    apply {
        replica.apply();
        if (meta.replica_local == 1) {
            if (meta.out_vif == meta.src_vif) {
                /* Never back to the source: pruned, not counted. */
                meta.drop = 1;
                meta.drop_reason = DROP_NONE;
            } else {
                hdr.vlan.setValid();
                hdr.vlan.pcp = 0;
                hdr.vlan.dei = 0;
                hdr.vlan.vid = meta.out_vlan;
                if (hdr.ipv6.isValid()) {
                    hdr.ethernet.src_addr = VRRP_MAC_V6;
                } else {
                    hdr.ethernet.src_addr = VRRP_MAC_V4;
                }
            }
        } else if (meta.encap == 1 && meta.is_fabric == 1) {
            meta.drop = 1;
            meta.drop_reason = DROP_FABRIC_TO_FABRIC;
        }
    }
}

#endif
