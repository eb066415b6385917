/* Test program for the embedded target's P4Runtime server: every kind of
 * P4Runtime entity the server handles (exact / lpm / ternary+range+optional
 * tables, direct and indirect counters, an action selector, a const table,
 * a register, a meter, multicast, packet-in / packet-out headers). */
#include <core.p4>
#include <v1model.p4>

#define CPU_PORT 255

@controller_header("packet_in")
header packet_in_t {
    bit<9> ingress_port;
    bit<7> _pad;
}

@controller_header("packet_out")
header packet_out_t {
    bit<9> egress_port;
    bit<7> _pad;
}

header ethernet_t {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  diffserv;
    bit<16> total_len;
    bit<16> identification;
    bit<3>  flags;
    bit<13> frag_offset;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdr_checksum;
    bit<32> src_addr;
    bit<32> dst_addr;
}

struct headers_t {
    packet_out_t packet_out;
    packet_in_t  packet_in;
    ethernet_t   ethernet;
    ipv4_t       ipv4;
}

struct metadata_t {
    bit<32> color;
    bit<32> scratch_value;
}

parser ParserImpl(packet_in packet, out headers_t hdr, inout metadata_t meta,
                  inout standard_metadata_t standard_metadata) {
    state start {
        transition select(standard_metadata.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }
    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition parse_ethernet;
    }
    state parse_ethernet {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            0x0800: parse_ipv4;
            default: accept;
        }
    }
    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        transition accept;
    }
}

control VerifyChecksumImpl(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control IngressImpl(inout headers_t hdr, inout metadata_t meta,
                    inout standard_metadata_t standard_metadata) {
    direct_counter(CounterType.packets_and_bytes) l2_counter;
    counter(512, CounterType.packets_and_bytes) port_counter;
    register<bit<32>>(16) scratch;
    meter(64, MeterType.bytes) port_meter;
    action_selector(HashAlgorithm.crc16, 32w64, 32w16) ecmp_selector;

    action drop() {
        mark_to_drop(standard_metadata);
    }
    action set_port(bit<9> port) {
        standard_metadata.egress_spec = port;
    }
    action send_to_cpu() {
        standard_metadata.egress_spec = CPU_PORT;
    }
    action set_mcast(bit<16> group) {
        standard_metadata.mcast_grp = group;
    }
    action set_port_and_mac(bit<9> port, bit<48> dst_mac) {
        standard_metadata.egress_spec = port;
        hdr.ethernet.dst_addr = dst_mac;
    }

    table l2 {
        key = {
            hdr.ethernet.dst_addr: exact @name("dst_addr");
            standard_metadata.ingress_port: exact @name("ingress_port");
        }
        actions = { set_port; send_to_cpu; set_mcast; drop; NoAction; }
        default_action = NoAction();
        counters = l2_counter;
        size = 65536;
    }

    table route {
        key = {
            hdr.ipv4.dst_addr: lpm @name("dst_addr");
        }
        actions = { set_port_and_mac; drop; }
        default_action = drop();
        size = 1024;
    }

    table acl {
        key = {
            hdr.ethernet.src_addr: ternary @name("src_addr");
            hdr.ethernet.ether_type: range @name("ether_type");
            hdr.ipv4.protocol: optional @name("protocol");
        }
        actions = { send_to_cpu; drop; NoAction; }
        const default_action = NoAction();
        size = 256;
    }

    table ecmp {
        key = {
            hdr.ipv4.dst_addr: exact @name("dst_addr");
            hdr.ipv4.src_addr: selector;
        }
        actions = { set_port; }
        implementation = ecmp_selector;
        size = 128;
    }

    table ether_filter {
        key = {
            hdr.ethernet.ether_type: exact @name("ether_type");
        }
        actions = { drop; NoAction; }
        const entries = {
            0x88cc: drop();
            0x0806: NoAction();
        }
        const default_action = NoAction();
    }

    apply {
        if (hdr.packet_out.isValid()) {
            standard_metadata.egress_spec = hdr.packet_out.egress_port;
            hdr.packet_out.setInvalid();
            exit;
        }
        port_counter.count((bit<32>)standard_metadata.ingress_port);
        port_meter.execute_meter((bit<32>)standard_metadata.ingress_port, meta.color);
        scratch.read(meta.scratch_value, 0);
        ether_filter.apply();
        l2.apply();
        if (hdr.ipv4.isValid()) {
            route.apply();
            ecmp.apply();
        }
        acl.apply();
    }
}

control EgressImpl(inout headers_t hdr, inout metadata_t meta,
                   inout standard_metadata_t standard_metadata) {
    apply {
        if (standard_metadata.egress_port == CPU_PORT) {
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = standard_metadata.ingress_port;
        }
    }
}

control ComputeChecksumImpl(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control DeparserImpl(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.packet_in);
        packet.emit(hdr.ethernet);
        packet.emit(hdr.ipv4);
    }
}

V1Switch(ParserImpl(), VerifyChecksumImpl(), IngressImpl(), EgressImpl(),
         ComputeChecksumImpl(), DeparserImpl()) main;
