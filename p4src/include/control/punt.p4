/* The punt path to the agent: DHCP trap and the per-reason punt meter. */
#ifndef ESVPN_PUNT_P4
#define ESVPN_PUNT_P4

control DhcpTrap(inout headers_t hdr, inout local_metadata_t meta) {

    action trap_dhcp() {
        meta.egress_spec = CPU_PORT;
        meta.egress_set = 1;
        meta.punt_reason = PUNT_DHCP;
    }

    /* dhcp_trap: VRFs whose DHCPv4 the agent answers (proxy, [vpns.<name>]
     * dhcp = true). A DHCPv4 client message (UDP 68 -> 67) from a vif of
     * such a VRF goes to the agent before anti-spoofing (a DISCOVER comes
     * from 0.0.0.0); in other VRFs it is handled like any packet. */
    table dhcp_trap {
        key = {
            meta.vrf_id : exact @name("vrf_id");
        }
        actions = {
            trap_dhcp;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = DHCP_TRAP_TABLE_SIZE;
    }

    apply {
        if (hdr.ipv4.isValid() && hdr.l4.isValid() && hdr.ipv4.protocol == IP_PROTO_UDP
                && hdr.l4.src_port == UDP_PORT_DHCP_CLIENT
                && hdr.l4.dst_port == UDP_PORT_DHCP_SERVER) {
            dhcp_trap.apply();
        }
    }
}

#endif
