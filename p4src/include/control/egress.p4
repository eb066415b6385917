/* The egress pipeline, independent of the architecture: the main copies
 * egress port and replica id into local_metadata_t, applies EgressPipe and
 * drops the packet when meta.drop is set. */
#ifndef ESVPN_EGRESS_P4
#define ESVPN_EGRESS_P4

#include "replica.p4"
#include "tunnel_encap.p4"

control EgressPipe(inout headers_t hdr, inout local_metadata_t meta) {

    /* Frames sent to each vif (unicast, replicas, ARP/ND answers). */
    ES_COUNTER(vif_tx, MAX_VIFS)
    /* Drops in the egress pipe, indexed by drop reason (define.p4). */
    ES_COUNTER(egress_drops, DROP_REASON_COUNT)

    Replica() replica;
    TunnelEncap() tunnel_encap;

    apply {
        if (meta.egress_port == CPU_PORT) {
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = meta.ingress_port;
            hdr.packet_in._pad = 0;
            hdr.packet_in.reason = meta.punt_reason;
            hdr.packet_in.vrf_id = meta.vrf_id;
            hdr.packet_in.vif_id = meta.src_vif;
            hdr.packet_in.out_vif = meta.out_vif;
        } else if (meta.from_cpu == 0) {
            if (meta.flooding == 1) {
                replica.apply(hdr, meta);
            }
            if (meta.drop == 0 && meta.encap == 1) {
                tunnel_encap.apply(hdr, meta);
            }
            if (meta.drop == 0) {
                if (meta.out_vif != 0) {
                    ES_COUNT(vif_tx, meta.out_vif);
                }
                /* Re-chain the EtherTypes after tags and headers changed. */
                bit<16> l3_type = ETHERTYPE_ARP;
                if (hdr.tun_ipv4.isValid() || hdr.ipv4.isValid()) {
                    l3_type = ETHERTYPE_IPV4;
                } else if (hdr.ipv6.isValid()) {
                    l3_type = ETHERTYPE_IPV6;
                }
                if (hdr.vlan.isValid()) {
                    hdr.ethernet.ether_type = ETHERTYPE_VLAN;
                    hdr.vlan.ether_type = l3_type;
                } else {
                    hdr.ethernet.ether_type = l3_type;
                }
                /* The frame ends with the IP packet: Ethernet padding of a
                 * short received frame is not sent on (the total length
                 * decides, as for the tunnel's outer length). */
                bit<32> ip_len = 0;
                if (hdr.ipv4.isValid()) {
                    ip_len = (bit<32>)hdr.ipv4.total_len;
                } else if (hdr.ipv6.isValid()) {
                    ip_len = (bit<32>)hdr.ipv6.payload_len + 40;
                }
                if (ip_len != 0) {
                    meta.truncate_len = ETH_HDR_LEN + ip_len;
                    if (hdr.vlan.isValid()) {
                        meta.truncate_len = meta.truncate_len + VLAN_TAG_LEN;
                    }
                    if (hdr.tun_ipv4.isValid()) {
                        meta.truncate_len = meta.truncate_len + (bit<32>)ENCAP_OVERHEAD;
                    }
                }
            }
        }
        if (meta.drop == 1 && meta.drop_reason != DROP_NONE) {
            ES_COUNT(egress_drops, meta.drop_reason);
        }
    }
}

#endif
