"""The P4Runtime server and the real engine on the p4c-compiled test program
(tests/unit/softswitch_p4rt/data/p4rt_test.p4): controller headers for
packet-in/packet-out, exact/lpm/ternary/range/optional tables, counters."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import pytest
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from softswitch.engine import SoftEngine
from tests.unit.softswitch_p4rt.harness import CPU_PORT, Client, ServerThread
from tests.unit.softswitch_p4rt.p4rt_data import Ids, load_config, load_p4info

ids = Ids(load_p4info())
INSERT = p4runtime_pb2.Update.INSERT
DELETE = p4runtime_pb2.Update.DELETE
MAC_A = bytes.fromhex("0a0000000001")
MAC_B = bytes.fromhex("0a0000000002")
NEW_DST = bytes.fromhex("020000000099")


def eth(dst: bytes, ether_type: int, payload: bytes = b"\x00" * 46) -> bytes:
    return dst + MAC_B + struct.pack("!H", ether_type) + payload


def ipv4(dst: bytes, proto: int = 17) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 1, 0, 64, proto, 0, bytes(4), dst)
    return eth(MAC_A, 0x0800, hdr + b"\x00" * 26)


class Switch:
    def __init__(self) -> None:
        self.engine = SoftEngine()
        self.emitted: list[tuple[int, bytes]] = []
        self.emitted_event = threading.Event()
        self.server = ServerThread(self.engine, emit=self._emit)
        self.client = Client(self.server.address, election_id=1)
        assert self.client.open_stream().arbitration.status.code == code_pb2.OK
        self.client.set_pipeline(load_config())

    def _emit(self, port: int, frame: bytes) -> None:
        self.emitted.append((port, frame))
        self.emitted_event.set()

    def receive(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """A frame arrives on a port: what the engine sends out (CPU -> PacketIn)."""

        def run() -> list[tuple[int, bytes]]:
            out = []
            for p, f in self.engine.process(port, frame):
                if p == CPU_PORT:
                    self.server.server.packet_in(f)
                else:
                    out.append((p, f))
            return out

        return self.server.call(run)

    def insert(self, **entity: object) -> None:
        self.client.write(p4runtime_pb2.Update(type=INSERT, entity=p4runtime_pb2.Entity(**entity)))

    def close(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = Switch()
    yield s
    s.close()


def l2(mac: bytes, in_port: int, action: str, *params: bytes) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
    te.match.add(field_id=ids.field("l2", "dst_addr")).exact.value = mac
    te.match.add(field_id=ids.field("l2", "ingress_port")).exact.value = bytes([in_port])
    te.action.action.action_id = ids.action(action)
    for i, p in enumerate(params, start=1):
        te.action.action.params.add(param_id=i, value=p)
    return te


def test_packet_in_and_packet_out_with_controller_headers(sw: Switch) -> None:
    sw.insert(table_entry=l2(MAC_A, 1, "send_to_cpu"))
    frame = eth(MAC_A, 0x9000)
    assert sw.receive(1, frame) == []
    pin = sw.client.next().packet
    assert pin.payload == frame
    assert [(m.metadata_id, m.value) for m in pin.metadata] == [
        (ids.packet_metadata("packet_in", "ingress_port"), b"\x01"),
        (ids.packet_metadata("packet_in", "_pad"), b"\x00"),
    ]
    po = p4runtime_pb2.StreamMessageRequest()
    po.packet.payload = frame
    po.packet.metadata.add(
        metadata_id=ids.packet_metadata("packet_out", "egress_port"), value=b"\x02"
    )
    sw.client.send(po)
    assert sw.emitted_event.wait(5)
    assert sw.emitted == [(2, frame)]


def test_l2_exact_and_direct_counter(sw: Switch) -> None:
    sw.insert(table_entry=l2(MAC_A, 1, "set_port", b"\x03"))
    frame = eth(MAC_A, 0x9000)
    assert sw.receive(1, frame) == [(3, frame)]
    assert sw.receive(2, frame) == [(0, frame)]  # other ingress port: NoAction, port 0
    req = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
    req.counter_data.SetInParent()
    (got,) = sw.client.read(p4runtime_pb2.Entity(table_entry=req))
    assert got.table_entry.counter_data == p4runtime_pb2.CounterData(
        byte_count=len(frame), packet_count=1
    )
    ce = p4runtime_pb2.CounterEntry(counter_id=ids.counter("port_counter"))
    ce.index.index = 1
    (port1,) = sw.client.read(p4runtime_pb2.Entity(counter_entry=ce))
    assert port1.counter_entry.data == p4runtime_pb2.CounterData(
        byte_count=len(frame), packet_count=1
    )


def test_lpm_route_and_const_table(sw: Switch) -> None:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("route"))
    fm = te.match.add(field_id=ids.field("route", "dst_addr"))
    fm.lpm.value = bytes([10, 1, 0, 0])
    fm.lpm.prefix_len = 16
    te.action.action.action_id = ids.action("set_port_and_mac")
    te.action.action.params.add(param_id=1, value=b"\x04")
    te.action.action.params.add(param_id=2, value=NEW_DST)
    sw.insert(table_entry=te)
    frame = ipv4(bytes([10, 1, 2, 3]))
    assert sw.receive(1, frame) == [(4, NEW_DST + frame[6:])]
    assert sw.receive(1, ipv4(bytes([10, 2, 0, 1]))) == []  # default: drop
    assert sw.receive(1, eth(MAC_A, 0x88CC)) == []  # const entry: drop
    arp = eth(MAC_A, 0x0806)
    assert sw.receive(1, arp) == [(0, arp)]  # const entry: NoAction


def test_acl_ternary_range_optional(sw: Switch) -> None:
    sw.insert(table_entry=l2(MAC_A, 1, "set_port", b"\x03"))
    acl = p4runtime_pb2.TableEntry(table_id=ids.table("acl"), priority=10)
    fm = acl.match.add(field_id=ids.field("acl", "src_addr"))
    fm.ternary.value, fm.ternary.mask = MAC_B[:5] + b"\x00", b"\xff" * 5 + b"\x00"
    fm = acl.match.add(field_id=ids.field("acl", "ether_type"))
    fm.range.low, fm.range.high = b"\x08\x00", b"\x08\x06"
    acl.match.add(field_id=ids.field("acl", "protocol")).optional.value = b"\x11"
    acl.action.action.action_id = ids.action("drop")
    sw.insert(table_entry=acl)
    route = p4runtime_pb2.TableEntry(table_id=ids.table("route"))
    fm = route.match.add(field_id=1)
    fm.lpm.value, fm.lpm.prefix_len = bytes([10, 0, 0, 0]), 8
    route.action.action.action_id = ids.action("set_port_and_mac")
    route.action.action.params.add(param_id=1, value=b"\x05")
    route.action.action.params.add(param_id=2, value=MAC_A)
    sw.insert(table_entry=route)
    assert sw.receive(1, ipv4(bytes([10, 0, 0, 1]), proto=17)) == []  # UDP: acl drop
    tcp = ipv4(bytes([10, 0, 0, 1]), proto=6)
    assert sw.receive(1, tcp) == [(5, tcp)]
    sw.client.write(p4runtime_pb2.Update(type=DELETE, entity=p4runtime_pb2.Entity(table_entry=acl)))
    udp = ipv4(bytes([10, 0, 0, 1]), proto=17)
    assert sw.receive(1, udp) == [(5, udp)]
