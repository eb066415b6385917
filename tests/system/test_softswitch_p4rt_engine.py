"""The P4Runtime server driving the real packet engine (SoftEngine) with p4c
output that simple_switch_grpc's own tests use: programs written over gRPC,
then exact frames through the engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import text_format
from google.rpc import code_pb2
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2

from softswitch.engine import SoftEngine
from tests.unit.softswitch_p4rt.harness import CPU_PORT, Client, ServerThread

DATA = Path(__file__).resolve().parent.parent / "unit" / "softswitch_p4rt" / "data" / "bmv2"
INSERT = p4runtime_pb2.Update.INSERT
MODIFY = p4runtime_pb2.Update.MODIFY
DELETE = p4runtime_pb2.Update.DELETE


def config(name: str) -> p4runtime_pb2.ForwardingPipelineConfig:
    cfg = p4runtime_pb2.ForwardingPipelineConfig(
        p4_device_config=(DATA / f"{name}.json").read_bytes()
    )
    cfg.p4info.CopyFrom(
        text_format.Parse((DATA / f"{name}.proto.txt").read_text(), p4info_pb2.P4Info())
    )
    return cfg


class Rig:
    def __init__(self, program: str) -> None:
        self.emitted: list[tuple[int, bytes]] = []
        self.engine = SoftEngine()
        self.server = ServerThread(self.engine, emit=lambda p, f: self.emitted.append((p, f)))
        self.client = Client(self.server.address, election_id=1)
        assert self.client.open_stream().arbitration.status.code == code_pb2.OK
        self.client.set_pipeline(config(program))

    def process(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return self.server.call(lambda: self.engine.process(port, frame))

    def write(self, utype: int, **entity: object) -> None:
        self.client.write(p4runtime_pb2.Update(type=utype, entity=p4runtime_pb2.Entity(**entity)))

    def close(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(request.param)
    yield r
    r.close()


def member(mid: int, port: int) -> p4runtime_pb2.ActionProfileMember:
    m = p4runtime_pb2.ActionProfileMember(action_profile_id=285237193, member_id=mid)
    m.action.action_id = 16811746  # send
    m.action.params.add(param_id=1, value=bytes([port]))
    return m


def group(gid: int, *mids: int) -> p4runtime_pb2.ActionProfileGroup:
    g = p4runtime_pb2.ActionProfileGroup(action_profile_id=285237193, group_id=gid, max_size=4)
    for mid in mids:
        g.members.add(member_id=mid, weight=1)
    return g


def indirect(in_: int, **target: int) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=33586946)
    te.match.add(field_id=1).exact.value = bytes([in_])
    for k, v in target.items():
        setattr(te.action, k, v)
    return te


@pytest.mark.parametrize("rig", ["action_profile"], indirect=True)
def test_action_selector_programs_the_engine(rig: Rig) -> None:
    rig.write(INSERT, action_profile_member=member(1, 1))
    rig.write(INSERT, action_profile_member=member(2, 2))
    rig.write(INSERT, action_profile_group=group(10, 1))
    rig.write(INSERT, table_entry=indirect(5, action_profile_group_id=10))
    rig.write(INSERT, table_entry=indirect(6, action_profile_member_id=2))
    frame = bytes([5]) + (0x12345678).to_bytes(4, "big")
    assert rig.process(0, frame) == [(1, frame)]
    other = bytes([6]) + bytes(4)
    assert rig.process(0, other) == [(2, other)]
    rig.write(MODIFY, action_profile_group=group(10, 2))
    assert rig.process(0, frame) == [(2, frame)]
    # one-shot programming of the same selector
    oneshot = indirect(7)
    a = oneshot.action.action_profile_action_set.action_profile_actions.add(weight=1)
    a.action.action_id = 16811746
    a.action.params.add(param_id=1, value=b"\x03")
    rig.write(INSERT, table_entry=oneshot)
    seven = bytes([7]) + bytes(4)
    assert rig.process(0, seven) == [(3, seven)]
    (got,) = rig.client.read(
        p4runtime_pb2.Entity(table_entry=indirect(7)),
    )
    assert got.table_entry == oneshot
    rig.write(DELETE, table_entry=indirect(5))
    assert rig.process(0, frame) == [(0, frame)]  # miss: NoAction, egress_spec 0


def opt_entry(priority: int, f1: bytes | None, action: int) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=33607135, priority=priority)  # ingress.opt
    if f1 is not None:
        te.match.add(field_id=1).optional.value = f1
    te.action.action.action_id = action
    return te


@pytest.mark.parametrize("rig", ["optional"], indirect=True)
def test_optional_match_and_priorities(rig: Rig) -> None:
    info = config("optional").p4info
    assert info.tables[0].preamble.id == 33607135
    send = {a.preamble.name: a.preamble.id for a in info.actions}
    rig.write(INSERT, table_entry=opt_entry(10, b"\x00\x01", send["ingress.send_1"]))
    rig.write(INSERT, table_entry=opt_entry(5, None, send["ingress.send_2"]))
    assert rig.process(9, b"\x00\x01") == [(1, b"\x00\x01")]
    assert rig.process(9, b"\x00\x02") == [(2, b"\x00\x02")]
    rig.write(DELETE, table_entry=opt_entry(5, None, send["ingress.send_2"]))
    assert rig.process(9, b"\x00\x02") == [(0, b"\x00\x02")]


@pytest.mark.parametrize("rig", ["multicast"], indirect=True)
def test_multicast_packet_out_and_packet_in(rig: Rig) -> None:
    pre = p4runtime_pb2.PacketReplicationEngineEntry()
    pre.multicast_group_entry.multicast_group_id = 3
    pre.multicast_group_entry.replicas.add(egress_port=1, instance=7)
    pre.multicast_group_entry.replicas.add(egress_port=CPU_PORT, instance=8)
    rig.write(INSERT, packet_replication_engine_entry=pre)
    # no controller_packet_metadata in this P4Info: the payload is the frame
    po = p4runtime_pb2.StreamMessageRequest()
    po.packet.payload = b"\x00\x03"
    rig.client.send(po)
    pin = rig.client.next().packet
    assert pin == p4runtime_pb2.PacketIn(payload=b"\x00\x08")
    assert rig.emitted == [(1, b"\x00\x07")]
