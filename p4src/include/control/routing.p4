/* Per-VRF longest-prefix-match routing (draft §5). */
#ifndef ESVPN_ROUTING_P4
#define ESVPN_ROUTING_P4

control Routing(inout headers_t hdr, inout local_metadata_t meta) {

    action set_nexthop(nexthop_id_t nexthop_id) {
        meta.nexthop_id = nexthop_id;
        meta.has_nexthop = 1;
    }

    /* Send to the controller (packet-in reason PUNT_ROUTE): the agent
     * installs it for each VRF's gateway addresses (it answers echo
     * requests to them). */
    action to_cpu() {
        meta.egress_spec = CPU_PORT;
        meta.egress_set = 1;
        meta.punt_reason = PUNT_ROUTE;
    }

    /* Counted as NO_ROUTE, then punted (the agent answers with an ICMP
     * destination unreachable). */
    action no_route() {
        meta.drop = 1;
        meta.drop_reason = DROP_NO_ROUTE;
        meta.punt_reason = PUNT_NO_ROUTE;
    }

    /* ipv4_route: VRF routing table. Written by the agent from the routes
     * the route server sends (remote next hops), and for local delivery
     * only when a route comes back with this forwarder as next hop and the
     * right label (draft §5): locally originated routes are never
     * installed directly. */
    table ipv4_route {
        key = {
            meta.vrf_id       : exact @name("vrf_id");
            hdr.ipv4.dst_addr : lpm @name("dst_addr");
        }
        actions = {
            set_nexthop;
            to_cpu;
            @defaultonly no_route;
        }
        const default_action = no_route();
        size = IPV4_ROUTE_TABLE_SIZE;
    }

    /* ipv6_route: as ipv4_route, for IPv6. */
    table ipv6_route {
        key = {
            meta.vrf_id       : exact @name("vrf_id");
            hdr.ipv6.dst_addr : lpm @name("dst_addr");
        }
        actions = {
            set_nexthop;
            to_cpu;
            @defaultonly no_route;
        }
        const default_action = no_route();
        size = IPV6_ROUTE_TABLE_SIZE;
    }

    apply {
        if (hdr.ipv4.isValid()) {
            ipv4_route.apply();
        } else if (hdr.ipv6.isValid()) {
            ipv6_route.apply();
        }
    }
}

#endif
