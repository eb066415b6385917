"""p4rt_wire: the fast WriteRequest decoder agrees with protobuf on everything."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from p4.v1 import p4runtime_pb2

from softswitch import p4rt_wire
from softswitch.p4rt_wire import (
    RawTableEntry,
    batch_from_proto,
    decode_write_request,
    raw_from_proto,
    raw_to_proto,
)


def entries() -> list[p4runtime_pb2.TableEntry]:
    out = []
    te = p4runtime_pb2.TableEntry(table_id=7, priority=0, controller_metadata=9, metadata=b"md")
    te.match.add(field_id=1).exact.value = b"\x0a\x00\x00\x00\x00\x01"
    te.match.add(field_id=2).lpm.value = b"\x0a\x01\x00\x00"
    te.match[1].lpm.prefix_len = 16
    fm = te.match.add(field_id=3)
    fm.ternary.value, fm.ternary.mask = b"\x01", b"\x0f"
    fm = te.match.add(field_id=4)
    fm.range.low, fm.range.high = b"\x01", b"\x08\x00"
    te.match.add(field_id=5).optional.value = b"\x11"
    te.action.action.action_id = 99
    te.action.action.params.add(param_id=1, value=b"\x01\x02")
    te.action.action.params.add(param_id=2, value=b"\x03")
    out.append(te)
    out.append(p4runtime_pb2.TableEntry(table_id=7, priority=-5))  # negative int32
    m = p4runtime_pb2.TableEntry(table_id=8, idle_timeout_ns=-1)
    m.action.action_profile_member_id = 3
    out.append(m)
    g = p4runtime_pb2.TableEntry(table_id=8, is_default_action=True, is_const=True)
    g.action.action_profile_group_id = 2**32 - 1
    out.append(g)
    c = p4runtime_pb2.TableEntry(table_id=9)  # counter data: protobuf path
    c.counter_data.byte_count = 5
    c.counter_data.packet_count = 1
    out.append(c)
    mc = p4runtime_pb2.TableEntry(table_id=9)
    mc.meter_config.cir = 5
    out.append(mc)
    return out


def request(*entities: p4runtime_pb2.Entity) -> p4runtime_pb2.WriteRequest:
    req = p4runtime_pb2.WriteRequest(device_id=3, role="r", atomicity=1)
    req.election_id.high = 1
    req.election_id.low = 2
    for i, e in enumerate(entities):
        req.updates.add(type=1 + i % 3, entity=e)
    return req


def test_fast_decoder_matches_protobuf() -> None:
    ents = [p4runtime_pb2.Entity(table_entry=te) for te in entries()]
    ents.append(
        p4runtime_pb2.Entity(
            counter_entry=p4runtime_pb2.CounterEntry(
                counter_id=4, index=p4runtime_pb2.Index(index=2)
            )
        )
    )
    ents.append(p4runtime_pb2.Entity())
    req = request(*ents)
    blob = req.SerializeToString()
    fast = p4rt_wire._decode_fast(blob)  # no fallback for this request as a whole
    assert fast == batch_from_proto(req)
    assert fast.election_id == (1 << 64) | 2
    assert fast.role == "r" and fast.device_id == 3 and fast.atomicity == 1
    assert fast.updates[1][1].priority == -5
    assert fast.updates[2][1].idle_timeout_ns == -1
    assert fast.updates[4][1].counter_data == (5, 1)
    assert fast.updates[5][1].unsupported == "meter_config"
    assert fast.updates[6][1] == ents[6]


def test_roundtrip_through_raw() -> None:
    for te in entries()[:4]:
        expected = p4runtime_pb2.TableEntry()
        expected.CopyFrom(te)
        expected.ClearField("idle_timeout_ns")  # not kept: refused by the store
        assert raw_to_proto(raw_from_proto(te)) == expected


def test_unusual_encodings_fall_back_to_protobuf() -> None:
    req = request(p4runtime_pb2.Entity(table_entry=entries()[0]))
    blob = req.SerializeToString()
    # an unknown field (number 15, varint) at the top level: protobuf skips it
    odd = blob + bytes([15 << 3, 1])
    with pytest.raises(p4rt_wire._Fallback):
        p4rt_wire._decode_fast(odd)
    assert decode_write_request(odd) == batch_from_proto(req)
    # election_id given twice: protobuf merges the two
    twice = blob + bytes([0x1A, 2, 0x10, 7])
    merged = decode_write_request(twice)
    assert merged.election_id == (1 << 64) | 7
    with pytest.raises(DecodeError):
        decode_write_request(blob[:-3] + b"\xff")


def test_empty_entity_and_no_updates() -> None:
    assert decode_write_request(b"").updates == []
    b = decode_write_request(request(p4runtime_pb2.Entity()).SerializeToString())
    assert b.updates == [(1, p4runtime_pb2.Entity())]
    assert RawTableEntry().has_match() is False


def test_encoder_writes_what_protobuf_serializes() -> None:
    """encode_table_entry gives protobuf's bytes for every stored form, with
    and without counter data; the forms it leaves to protobuf are None."""
    covered = 0
    for te in entries():
        raw = raw_from_proto(te)
        raw.counter_data = None  # the store keeps counters in the engine
        want = raw_to_proto(raw)
        got = p4rt_wire.encode_table_entry(raw)
        if raw.priority < 0 or raw.idle_timeout_ns:
            assert got is None
            continue
        covered += 1
        assert got == want.SerializeToString()
        for counter in (
            p4runtime_pb2.CounterData(),
            p4runtime_pb2.CounterData(byte_count=300),
            p4runtime_pb2.CounterData(byte_count=2**40, packet_count=7),
        ):
            with_counter = p4runtime_pb2.TableEntry()
            with_counter.CopyFrom(want)
            with_counter.counter_data.CopyFrom(counter)
            assert p4rt_wire.encode_table_entry(raw, counter.SerializeToString()) == (
                with_counter.SerializeToString()
            )
        entity = p4rt_wire.table_entry_entity(got)
        assert entity == p4runtime_pb2.Entity(table_entry=want).SerializeToString()
    assert covered == 4
    aset = p4runtime_pb2.TableEntry(table_id=3)
    aset.action.action_profile_action_set.action_profile_actions.add(weight=1)
    assert p4rt_wire.encode_table_entry(raw_from_proto(aset)) is None
    long = p4runtime_pb2.TableEntry(table_id=3, metadata=bytes(300))  # two-byte lengths
    long.match.add(field_id=1).exact.value = bytes(range(200))
    assert p4rt_wire.encode_table_entry(raw_from_proto(long)) == long.SerializeToString()
    many = [p4runtime_pb2.Entity(table_entry=te) for te in entries()[:3]]
    blobs = [e.SerializeToString() for e in many]
    assert p4rt_wire.read_response(blobs) == (
        p4runtime_pb2.ReadResponse(entities=many).SerializeToString()
    )
    assert p4rt_wire.read_response([]) == b""
