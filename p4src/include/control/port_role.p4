/* Port roles and the switch's fabric identity. */
#ifndef ESVPN_PORT_ROLE_P4
#define ESVPN_PORT_ROLE_P4

control PortRole(inout headers_t hdr, inout local_metadata_t meta) {

    action set_fabric_port() {
        meta.is_fabric = 1;
    }

    /* fabric_port: which ports face the IP fabric (MPLS-in-GRE). Every
     * port not listed is an end-system (edge) port carrying 802.1Q tags.
     * Written by the agent at start-up from its configuration. */
    table fabric_port {
        key = {
            meta.ingress_port : exact @name("ingress_port");
        }
        actions = {
            set_fabric_port;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = FABRIC_PORT_TABLE_SIZE;
    }

    action set_fabric_config(ipv4_addr_t my_ipv4, bit<16> mtu) {
        meta.my_ipv4 = my_ipv4;
        meta.fabric_mtu = mtu;
    }

    /* fabric_config: keyless; its default action carries the switch's
     * infrastructure IPv4 address (tunnel source, decap destination) and
     * the fabric IP MTU. Written by the agent at start-up (MODIFY of the
     * default entry). Until then nothing is decapsulated and every
     * encapsulated packet exceeds MTU 0. */
    table fabric_config {
        actions = {
            set_fabric_config;
        }
        default_action = set_fabric_config(0, 0);
        size = 1;
    }

    apply {
        fabric_config.apply();
        fabric_port.apply();
    }
}

#endif
