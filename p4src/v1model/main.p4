/* esvpn data plane, v1model main: maps v1model's intrinsic metadata and
 * externs onto the architecture-neutral pipelines in p4src/include. */
#include <core.p4>
#include <v1model.p4>

#define CPU_PORT 255

/* Externs the controls use, in v1model terms. */
#define ES_COUNTER(name, size) counter(size, CounterType.packets_and_bytes) name;
#define ES_COUNT(name, index) name.count((bit<32>)(index))
#define ES_SELECTOR(name, size, width) action_selector(HashAlgorithm.crc16, size, width) name;
#define ES_METER(name, size) meter(size, MeterType.packets) name;
#define ES_METER_EXECUTE(name, index, color) name.execute_meter((bit<32>)(index), color)

#include "define.p4"
#include "size.p4"
#include "header.p4"
#include "control/ingress.p4"
#include "control/egress.p4"
#include "parser.p4"
#include "deparser.p4"

control SwitchIngress(inout headers_t hdr, inout local_metadata_t meta,
                      inout standard_metadata_t sm) {
    IngressPipe() pipe;
    apply {
        meta.ingress_port = sm.ingress_port;
        meta.packet_length = sm.packet_length;
        meta.checksum_error = sm.checksum_error;
        pipe.apply(hdr, meta);
        if (meta.drop == 1 || (meta.mcast_grp == 0 && meta.egress_set == 0)) {
            mark_to_drop(sm);
        } else if (meta.mcast_grp != 0) {
            sm.mcast_grp = meta.mcast_grp;
        } else {
            sm.egress_spec = meta.egress_spec;
        }
    }
}

control SwitchEgress(inout headers_t hdr, inout local_metadata_t meta,
                     inout standard_metadata_t sm) {
    EgressPipe() pipe;
    apply {
        meta.egress_port = sm.egress_port;
        meta.egress_rid = sm.egress_rid;
        pipe.apply(hdr, meta);
        if (meta.drop == 1) {
            mark_to_drop(sm);
        } else if (meta.truncate_len != 0) {
            /* Ethernet padding of a short frame stays behind. */
            truncate(meta.truncate_len);
        }
    }
}

V1Switch(EsParser(), EsVerifyChecksum(), SwitchIngress(), SwitchEgress(),
         EsComputeChecksum(), EsDeparser()) main;
