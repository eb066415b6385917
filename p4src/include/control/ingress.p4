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

control IngressPipe(inout headers_t hdr, inout local_metadata_t meta) {

    /* Drops in the ingress pipe, indexed by drop reason (define.p4). */
    ES_COUNTER(ingress_drops, DROP_REASON_COUNT)

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
            /* From the controller: out of the port it names, untouched. */
            meta.egress_spec = hdr.packet_out.egress_port;
            meta.egress_set = 1;
            meta.from_cpu = 1;
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
            /* Unicast forwarding is one IP hop. */
            if (hdr.ipv4.isValid()) {
                if (hdr.ipv4.ttl <= 1) {
                    meta.drop = 1;
                    meta.drop_reason = DROP_TTL_EXPIRED;
                } else {
                    hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
                }
            } else {
                if (hdr.ipv6.hop_limit <= 1) {
                    meta.drop = 1;
                    meta.drop_reason = DROP_TTL_EXPIRED;
                } else {
                    hdr.ipv6.hop_limit = hdr.ipv6.hop_limit - 1;
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
        }
    }
}

#endif
