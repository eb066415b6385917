/* Test program for the embedded target's engine: one of each v1model
 * construct the esvpn data plane and its tests rely on, compiled by
 * p4c-bm2-ss into features.json (see compile.sh next to it). */
#include <core.p4>
#include <v1model.p4>

const bit<32> SESSION_I2E = 5;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> etype; }
header vlan_t { bit<3> pcp; bit<1> dei; bit<12> vid; bit<16> etype; }
header mpls_t { bit<20> label; bit<3> tc; bit<1> bos; bit<8> ttl; }
header ipv4_t {
    bit<4> version; bit<4> ihl; bit<8> dscp; bit<16> len; bit<16> id;
    bit<3> flags; bit<13> frag; bit<8> ttl; bit<8> proto; bit<16> csum;
    bit<32> src; bit<32> dst;
}
header udp_t { bit<16> sport; bit<16> dport; bit<16> len; bit<16> csum; }
/* What the program computed, written into the packet for the tests. */
header probe_t {
    bit<32> crc32; bit<16> crc16; bit<16> csum16; bit<16> xor16; bit<32> ident;
    bit<32> reg; bit<8> color; bit<8> pass; bit<16> rid; int<8> sv; bit<8> inst;
    bit<32> plen; bit<8> perr;
}

struct headers_t {
    ethernet_t eth; vlan_t vlan; mpls_t[3] mpls; ipv4_t ipv4; udp_t udp; probe_t probe;
}
struct meta_t {
    @field_list(1) bit<8> pass;
    bit<16> nh;
    bit<8> color;
}

error { BadIhl }

parser Prs(packet_in pkt, out headers_t hdr, inout meta_t meta,
           inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.eth);
        transition select(hdr.eth.etype) {
            0x8100: parse_vlan;
            0x8847: parse_mpls;
            0x0800: parse_ipv4;
            default: accept;
        }
    }
    state parse_vlan {
        pkt.extract(hdr.vlan);
        transition select(hdr.vlan.etype) {
            0x8847: parse_mpls;
            0x0800: parse_ipv4;
            default: accept;
        }
    }
    state parse_mpls {
        pkt.extract(hdr.mpls.next);
        transition select(hdr.mpls.last.bos) {
            0: parse_mpls;
            1: after_mpls;
        }
    }
    state after_mpls {
        transition select(pkt.lookahead<bit<4>>()) {
            4: parse_ipv4;
            default: accept;
        }
    }
    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        verify(hdr.ipv4.ihl == 5, error.BadIhl);
        transition select(hdr.ipv4.proto, hdr.ipv4.frag) {
            (17, 0): parse_udp;
            default: accept;
        }
    }
    state parse_udp {
        pkt.extract(hdr.udp);
        transition select(hdr.udp.dport) {
            0x1234 &&& 0xfff0: parse_probe;
            default: accept;
        }
    }
    state parse_probe {
        pkt.extract(hdr.probe);
        transition accept;
    }
}

control Vrfy(inout headers_t hdr, inout meta_t meta) {
    apply {
        verify_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp, hdr.ipv4.len,
              hdr.ipv4.id, hdr.ipv4.flags, hdr.ipv4.frag, hdr.ipv4.ttl,
              hdr.ipv4.proto, hdr.ipv4.src, hdr.ipv4.dst },
            hdr.ipv4.csum, HashAlgorithm.csum16);
    }
}

control Ing(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    register<bit<32>>(8) regs;
    counter(8, CounterType.packets_and_bytes) ctr;
    meter(4, MeterType.packets) mtr;
    direct_counter(CounterType.packets_and_bytes) route_ctr;
    action_selector(HashAlgorithm.crc16, 32w64, 32w16) ecmp_sel;

    action drop() { mark_to_drop(sm); }
    action set_nh(bit<16> nh) { meta.nh = nh; route_ctr.count(); }
    action blackhole() { mark_to_drop(sm); route_ctr.count(); }
    action send(bit<9> port, bit<48> dmac) {
        sm.egress_spec = port;
        hdr.eth.dst = dmac;
    }
    action flood(bit<16> grp) { sm.mcast_grp = grp; }

    table route {
        key = { hdr.ipv4.dst: lpm @name("dst"); }
        actions = { set_nh; blackhole; }
        default_action = blackhole();
        counters = route_ctr;
    }
    table nexthop {
        key = {
            meta.nh: exact;
            hdr.ipv4.src: selector;
            hdr.ipv4.dst: selector;
            hdr.ipv4.proto: selector;
            hdr.udp.sport: selector;
            hdr.udp.dport: selector;
        }
        actions = { send; flood; drop; }
        implementation = ecmp_sel;
        default_action = drop();
    }
    table acl {
        key = {
            hdr.ipv4.src: ternary;
            hdr.udp.sport: range;
            hdr.udp.dport: optional;
        }
        actions = { drop; NoAction; }
        default_action = NoAction();
    }
    table fixed {
        key = { hdr.eth.etype: exact; }
        actions = { send; NoAction; }
        const entries = {
            0x88b5: send(7, 0x0000000000bb);
        }
        default_action = NoAction();
    }

    apply {
        if (hdr.ipv4.isValid()) {
            if (route.apply().hit) {
                nexthop.apply();
            }
            if (hdr.udp.isValid()) {
                acl.apply();
            }
        } else {
            switch (fixed.apply().action_run) {
                send: { exit; }
                default: { sm.egress_spec = 0; }
            }
        }
        if (hdr.probe.isValid()) {
            hash(hdr.probe.crc32, HashAlgorithm.crc32, 32w0,
                 { hdr.ipv4.src, hdr.ipv4.dst, hdr.udp.sport }, 33w0x100000000);
            hash(hdr.probe.crc16, HashAlgorithm.crc16, 16w0,
                 { hdr.ipv4.ttl, hdr.ipv4.flags, hdr.ipv4.frag }, 32w65536);
            hash(hdr.probe.csum16, HashAlgorithm.csum16, 16w0,
                 { hdr.ipv4.src, hdr.ipv4.dst }, 32w65536);
            hash(hdr.probe.xor16, HashAlgorithm.xor16, 16w0,
                 { hdr.ipv4.src, hdr.ipv4.dst, hdr.udp.dport }, 32w65536);
            hash(hdr.probe.ident, HashAlgorithm.identity, 32w100,
                 { hdr.udp.sport, hdr.udp.dport }, 32w1000);
            bit<32> idx = (bit<32>)(hdr.probe.pass & 7);
            bit<32> old;
            regs.read(old, idx);
            regs.write(idx, old + hdr.ipv4.dst);
            hdr.probe.reg = old;
            ctr.count(idx);
            mtr.execute_meter(idx & 3, meta.color);
            hdr.probe.color = meta.color;
            hdr.probe.sv = hdr.probe.sv - 8s100;
            hdr.probe.perr = (bit<8>)(sm.parser_error == error.BadIhl ? 8w1 : 8w0);
            if (hdr.probe.pass == 1 && meta.pass == 0) {
                meta.pass = 1;
                resubmit_preserving_field_list(1);
            }
            if (hdr.probe.pass == 2) {
                clone(CloneType.I2E, SESSION_I2E);
            }
        }
        if (hdr.mpls[0].isValid()) {
            hdr.mpls.pop_front(1);
            if (!hdr.mpls[0].isValid()) {
                hdr.eth.etype = 0x0800;
            }
        }
        if (sm.ingress_port == 9 && !hdr.vlan.isValid()) {
            hdr.vlan.setValid();
            hdr.vlan.vid = 42;
            hdr.vlan.etype = hdr.eth.etype;
            hdr.eth.etype = 0x8100;
        }
    }
}

control Egr(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        if (hdr.ipv4.isValid()) {
            hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
        }
        if (hdr.probe.isValid()) {
            hdr.probe.rid = sm.egress_rid;
            hdr.probe.inst = (bit<8>)sm.instance_type;
            hdr.probe.plen = sm.packet_length;
            if (hdr.probe.pass == 3 && meta.pass == 0) {
                meta.pass = 2;
                recirculate_preserving_field_list(1);
            }
            hdr.probe.pass = hdr.probe.pass + meta.pass * 16;
        }
        if (sm.egress_port == 8) {
            mark_to_drop(sm);
        }
    }
}

control Upd(inout headers_t hdr, inout meta_t meta) {
    apply {
        update_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp, hdr.ipv4.len,
              hdr.ipv4.id, hdr.ipv4.flags, hdr.ipv4.frag, hdr.ipv4.ttl,
              hdr.ipv4.proto, hdr.ipv4.src, hdr.ipv4.dst },
            hdr.ipv4.csum, HashAlgorithm.csum16);
        update_checksum_with_payload(hdr.udp.isValid() && hdr.probe.isValid(),
            { hdr.ipv4.src, hdr.ipv4.dst, 8w0, hdr.ipv4.proto, hdr.udp.len,
              hdr.udp.sport, hdr.udp.dport, hdr.udp.len, 16w0, hdr.probe },
            hdr.udp.csum, HashAlgorithm.csum16);
    }
}

control Dep(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.eth);
        pkt.emit(hdr.vlan);
        pkt.emit(hdr.mpls);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.udp);
        pkt.emit(hdr.probe);
    }
}

V1Switch(Prs(), Vrfy(), Ing(), Egr(), Upd(), Dep()) main;
