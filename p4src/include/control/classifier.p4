/* Virtual-interface classification: (port, end-system MAC, VLAN) -> vif, VRF. */
#ifndef ESVPN_CLASSIFIER_P4
#define ESVPN_CLASSIFIER_P4

control Classifier(inout headers_t hdr, inout local_metadata_t meta) {

    ES_COUNTER(vif_rx, MAX_VIFS)

    action set_vif(vif_id_t vif_id, vrf_id_t vrf_id) {
        meta.src_vif = vif_id;
        meta.vrf_id = vrf_id;
    }

    action unknown_vif() {
        meta.drop = 1;
        meta.drop_reason = DROP_UNKNOWN_VIF;
    }

    /* vif: an end-system's virtual interface is its physical MAC plus an
     * 802.1Q VLAN on the port it is attached to (draft §4, §5). Written by
     * the agent when an end-system subscribes a VLAN to a VRF; removed when
     * it unsubscribes. vif_id indexes vif_rx / vif_tx. */
    table vif {
        key = {
            meta.ingress_port     : exact @name("ingress_port");
            hdr.ethernet.src_addr : exact @name("src_mac");
            hdr.vlan.vid          : exact @name("vlan_id");
        }
        actions = {
            set_vif;
            @defaultonly unknown_vif;
        }
        const default_action = unknown_vif();
        size = VIF_TABLE_SIZE;
    }

    apply {
        if (!hdr.vlan.isValid()) {
            meta.drop = 1;
            meta.drop_reason = DROP_UNTAGGED;
        } else if (hdr.vlan2.isValid() || hdr.ethernet.ether_type != ETHERTYPE_VLAN) {
            meta.drop = 1;
            meta.drop_reason = DROP_DOUBLE_TAGGED;
        } else if (vif.apply().hit) {
            ES_COUNT(vif_rx, meta.src_vif);
        }
    }
}

#endif
