/* The ingress pipeline, independent of the architecture: the main of an
 * architecture copies its intrinsic metadata into local_metadata_t, applies
 * IngressPipe and acts on meta.drop / meta.mcast_grp / meta.egress_spec. */
#ifndef ESVPN_INGRESS_P4
#define ESVPN_INGRESS_P4

#include "port_role.p4"
#include "classifier.p4"
#include "resolver.p4"
#include "anti_spoof.p4"
#include "ip_check.p4"
#include "decap.p4"
#include "routing.p4"
#include "nexthop.p4"
#include "flood.p4"
#include "punt.p4"

control IngressPipe(inout headers_t hdr, inout local_metadata_t meta) {

    /* Drops in the ingress pipe, indexed by drop reason (define.p4). */
    ES_COUNTER(ingress_drops, DROP_REASON_COUNT)
    /* Packets to the CPU, per punt reason: rate limit (programmed by the
     * agent; unprogrammed = unlimited) and what it dropped. */
    ES_METER(punt_meter, PUNT_REASON_COUNT)
    ES_COUNTER(punt_drops, PUNT_REASON_COUNT)

    PortRole() port_role;
    Classifier() classifier;
    Resolver() resolver;
    AntiSpoof() anti_spoof;
    IpCheck() ip_check;
    Martian() martian;
    Decap() decap;
    Routing() routing;
    Nexthop() nexthop;
    Flood() flood;
    DhcpTrap() dhcp_trap;

    apply {
        port_role.apply(hdr, meta);
        /* Bytes from the IP header on (tags counted; padding included). */
        bit<32> l2_len = ETH_HDR_LEN;
        if (hdr.vlan.isValid()) {
            l2_len = l2_len + VLAN_TAG_LEN;
        }
        if (hdr.vlan2.isValid()) {
            l2_len = l2_len + VLAN_TAG_LEN;
        }
        if (meta.packet_length > l2_len) {
            meta.l3_len = meta.packet_length - l2_len;
        }
        if (hdr.packet_out.isValid()) {
            if (hdr.packet_out.vrf_id != 0) {
                /* Originated by the agent: routed in that VRF. */
                meta.vrf_id = hdr.packet_out.vrf_id;
                meta.route = 1;
                meta.cpu_routed = 1;
            } else {
                /* From the controller: out of the port it names, untouched. */
                meta.egress_spec = hdr.packet_out.egress_port;
                meta.egress_set = 1;
                meta.from_cpu = 1;
            }
            hdr.packet_out.setInvalid();
        } else if (meta.is_fabric == 1) {
            if (hdr.arp.isValid()) {
                meta.egress_spec = CPU_PORT;
                meta.egress_set = 1;
                meta.punt_reason = PUNT_FABRIC_ARP;
            } else {
                decap.apply(hdr, meta);
            }
        } else {
            classifier.apply(hdr, meta);
            if (meta.drop == 0) {
                ip_check.apply(hdr, meta);
                if (meta.drop == 0 && meta.checksum_error == 1) {
                    /* IPv4 header (RFC 1812 5.2.2) or neighbor
                     * solicitation (RFC 4861 7.1.1) checksum */
                    meta.drop = 1;
                    meta.drop_reason = DROP_BAD_CHECKSUM;
                }
            }
            if (meta.drop == 0) {
                dhcp_trap.apply(hdr, meta);
            }
            if (meta.drop == 0 && meta.punt_reason == 0) {
                if (hdr.arp.isValid() || hdr.ndp.isValid()) {
                    resolver.apply(hdr, meta);
                } else if (!hdr.ipv4.isValid() && !hdr.ipv6.isValid()) {
                    meta.drop = 1;
                    meta.drop_reason = DROP_NOT_IP;
                } else if (hdr.ethernet.dst_addr[40:40] == 1) {
                    meta.flood = 1;
                } else if (hdr.ethernet.dst_addr == VRRP_MAC_V4
                           || hdr.ethernet.dst_addr == VRRP_MAC_V6) {
                    meta.route = 1;
                } else {
                    meta.drop = 1;
                    meta.drop_reason = DROP_NOT_ROUTER_MAC;
                }
                if (meta.drop == 0 && (meta.route == 1 || meta.flood == 1)) {
                    anti_spoof.apply(hdr, meta);
                }
            }
        }

        if (meta.drop == 0 && (meta.route == 1 || meta.local == 1)) {
            martian.apply(hdr, meta);
        }
        if (meta.drop == 0 && meta.route == 1) {
            routing.apply(hdr, meta);
            if (meta.drop == 0 && meta.has_nexthop == 1) {
                nexthop.apply(hdr, meta);
            }
        }
        if (meta.drop == 0 && (meta.local == 1 || meta.encap == 1)) {
            /* Unicast forwarding is one IP hop: TTL check (RFC 1812 5.3.1),
             * fabric MTU check (RFC 1191, RFC 8201), then decrement. */
            bit<8> ttl;
            bit<16> len;
            bit<1> df = 1;
            if (hdr.ipv4.isValid()) {
                ttl = hdr.ipv4.ttl;
                len = hdr.ipv4.total_len;
                df = hdr.ipv4.flags[1:1];
            } else {
                ttl = hdr.ipv6.hop_limit;
                len = hdr.ipv6.payload_len + 40;
            }
            if (meta.cpu_routed == 0 && ttl <= 1) {
                meta.drop = 1;
                meta.drop_reason = DROP_TTL_EXPIRED;
                meta.punt_reason = PUNT_TTL_EXPIRED;
            } else if (meta.encap == 1 && len + ENCAP_OVERHEAD > meta.fabric_mtu) {
                /* Too big for the tunnel: frag-needed / packet too big from
                 * the agent when the sender can act on it (DF, IPv6); an
                 * IPv4 packet without DF is not fragmented here (dropped). */
                meta.drop = 1;
                meta.drop_reason = DROP_MTU_EXCEEDED;
                if (df == 1) {
                    meta.punt_reason = PUNT_TOO_BIG;
                }
            } else if (meta.cpu_routed == 0) {
                if (hdr.ipv4.isValid()) {
                    hdr.ipv4.ttl = ttl - 1;
                } else {
                    hdr.ipv6.hop_limit = ttl - 1;
                }
            }
        }
        if (meta.drop == 0 && meta.local == 1) {
            /* To a vif: its VLAN, the end-system's MAC, from the VRRP MAC. */
            hdr.vlan.setValid();
            hdr.vlan.pcp = 0;
            hdr.vlan.dei = 0;
            hdr.vlan.vid = meta.out_vlan;
            hdr.ethernet.dst_addr = meta.out_dst_mac;
            if (hdr.ipv6.isValid()) {
                hdr.ethernet.src_addr = VRRP_MAC_V6;
            } else {
                hdr.ethernet.src_addr = VRRP_MAC_V4;
            }
        }
        if (meta.drop == 0 && meta.flood == 1) {
            flood.apply(hdr, meta);
        }
        if (meta.drop == 1) {
            ES_COUNT(ingress_drops, meta.drop_reason);
            if (meta.punt_reason != 0 && meta.cpu_routed == 0) {
                /* A counted drop the agent answers (ICMP error): to the CPU
                 * as received (after decapsulation). */
                meta.drop = 0;
                meta.mcast_grp = 0;
                meta.egress_spec = CPU_PORT;
                meta.egress_set = 1;
            }
        }
        if (meta.drop == 0 && meta.mcast_grp == 0 && meta.egress_set == 1
                && meta.egress_spec == CPU_PORT && meta.from_cpu == 0) {
            bit<2> color;
            ES_METER_EXECUTE(punt_meter, meta.punt_reason, color);
            if (color != METER_GREEN || meta.cpu_routed == 1) {
                /* over its rate; or the agent's own packet routed back to
                 * it (a gateway address as destination): never a loop */
                meta.drop = 1;
                ES_COUNT(punt_drops, meta.punt_reason);
            }
        }
    }
}

#endif
