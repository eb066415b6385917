"""DeviceState: validation, canonical store and engine calls, without gRPC."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from softswitch import api
from softswitch.p4rt_store import DeviceState, P4RTError, decode_bytes, encode_bytes

from .fake_engine import RecordingFakeEngine
from .p4rt_data import Ids, load_config, load_p4info

INSERT = p4runtime_pb2.Update.INSERT
MODIFY = p4runtime_pb2.Update.MODIFY
DELETE = p4runtime_pb2.Update.DELETE
CFG = p4runtime_pb2.SetForwardingPipelineConfigRequest

ids = Ids(load_p4info())


@pytest.fixture
def engine() -> RecordingFakeEngine:
    return RecordingFakeEngine()


@pytest.fixture
def dev(engine: RecordingFakeEngine) -> DeviceState:
    d = DeviceState(engine, device_id=1)
    d.set_pipeline(CFG.VERIFY_AND_COMMIT, load_config(cookie=7))
    return d


def l2_entry(mac: bytes, port: bytes, out_port: bytes = b"\x02") -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
    te.match.add(field_id=ids.field("l2", "dst_addr")).exact.value = mac
    te.match.add(field_id=ids.field("l2", "ingress_port")).exact.value = port
    te.action.action.action_id = ids.action("set_port")
    te.action.action.params.add(param_id=ids.param("set_port", "port"), value=out_port)
    return te


def upd(t: int, **entity: object) -> p4runtime_pb2.Update:
    return p4runtime_pb2.Update(type=t, entity=p4runtime_pb2.Entity(**entity))


def write1(dev: DeviceState, t: int, **entity: object) -> None:
    (res,) = dev.write([upd(t, **entity)])
    if res is not None:
        raise res


def code_of(dev: DeviceState, t: int, **entity: object) -> tuple[int, str]:
    (res,) = dev.write([upd(t, **entity)])
    assert res is not None, "expected an error"
    return res.code, res.message


def read(dev: DeviceState, **entity: object) -> list[p4runtime_pb2.Entity]:
    return dev.read([p4runtime_pb2.Entity(**entity)])


MAC = bytes.fromhex("0a0000000001")


def test_bytestrings() -> None:
    assert encode_bytes(0) == b"\x00"
    assert encode_bytes(0x1FF) == b"\x01\xff"
    assert decode_bytes(b"\x00\x05", 9, "f") == 5
    assert decode_bytes(b"\x05", 9, "f") == 5
    with pytest.raises(P4RTError) as e:
        decode_bytes(b"\x02\x00", 9, "f")
    assert e.value.code == code_pb2.INVALID_ARGUMENT
    assert e.value.message == "f: value 0x200 does not fit in 9 bits"
    with pytest.raises(P4RTError) as e:
        decode_bytes(b"\x00\x00\x01", 9, "f")
    assert e.value.message == "f: bytestring of 3 bytes does not fit in 9 bits"
    with pytest.raises(P4RTError) as e:
        decode_bytes(b"", 9, "f")
    assert e.value.message == "f: empty bytestring"


def test_no_pipeline_is_failed_precondition(engine: RecordingFakeEngine) -> None:
    d = DeviceState(engine, 1)
    for call in (lambda: d.write([]), lambda: d.read([]), lambda: d.get_pipeline(0)):
        with pytest.raises(P4RTError) as e:
            call()
        assert e.value.code == code_pb2.FAILED_PRECONDITION


def test_pipeline_actions(engine: RecordingFakeEngine) -> None:
    d = DeviceState(engine, 1)
    d.set_pipeline(CFG.VERIFY, load_config())
    assert not d.has_pipeline and engine.loaded is None
    with pytest.raises(P4RTError) as e:
        d.set_pipeline(CFG.COMMIT, p4runtime_pb2.ForwardingPipelineConfig())
    assert e.value.code == code_pb2.FAILED_PRECONDITION
    d.set_pipeline(CFG.VERIFY_AND_SAVE, load_config(cookie=3))
    d.set_pipeline(CFG.COMMIT, p4runtime_pb2.ForwardingPipelineConfig())
    assert d.get_pipeline(CFG.ALL if False else 3).cookie.cookie == 3  # COOKIE_ONLY
    assert engine.loaded is not None and engine.loaded["program"] == "p4rt_test.p4"
    bad = load_config()
    bad.p4_device_config = b"not json"
    with pytest.raises(P4RTError) as e:
        d.set_pipeline(CFG.VERIFY_AND_COMMIT, bad)
    assert e.value.code == code_pb2.INVALID_ARGUMENT
    assert e.value.message.startswith("p4_device_config is not bmv2 JSON text")


def test_get_pipeline_response_types(dev: DeviceState) -> None:
    g = p4runtime_pb2.GetForwardingPipelineConfigRequest
    full = dev.get_pipeline(g.ALL)
    assert full.p4info == load_p4info() and full.p4_device_config == load_config().p4_device_config
    assert full.cookie.cookie == 7
    c = dev.get_pipeline(g.COOKIE_ONLY)
    assert not c.HasField("p4info") and c.p4_device_config == b"" and c.cookie.cookie == 7
    p = dev.get_pipeline(g.P4INFO_AND_COOKIE)
    assert p.HasField("p4info") and p.p4_device_config == b""
    d = dev.get_pipeline(g.DEVICE_CONFIG_AND_COOKIE)
    assert not d.HasField("p4info") and d.p4_device_config == load_config().p4_device_config


def test_reconcile_same_pipeline_keeps_entries(
    dev: DeviceState, engine: RecordingFakeEngine
) -> None:
    write1(dev, INSERT, table_entry=l2_entry(MAC, b"\x01"))
    dev.set_pipeline(CFG.RECONCILE_AND_COMMIT, load_config(cookie=8))
    assert len(read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2")))) == 1
    assert dev.get_pipeline(0).cookie.cookie == 8
    dev.set_pipeline(CFG.VERIFY_AND_COMMIT, load_config())
    assert read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2"))) == []


def test_exact_insert_read_duplicate_modify_delete(
    dev: DeviceState, engine: RecordingFakeEngine
) -> None:
    # padded bytestrings are accepted, reads return canonical ones
    write1(dev, INSERT, table_entry=l2_entry(MAC, b"\x00\x01", b"\x00\x02"))
    assert engine.calls[-1] == (
        "table_add",
        "IngressImpl.l2",
        (api.Exact(0x0A0000000001), api.Exact(1)),
        api.ActionCall("IngressImpl.set_port", (2,)),
        0,
    )
    (got,) = read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2")))
    assert got.table_entry == l2_entry(MAC, b"\x01", b"\x02")
    assert code_of(dev, INSERT, table_entry=l2_entry(MAC, b"\x01")) == (
        code_pb2.ALREADY_EXISTS,
        "table IngressImpl.l2: entry already exists",
    )
    write1(dev, MODIFY, table_entry=l2_entry(MAC, b"\x01", b"\x03"))
    assert engine.calls[-1] == (
        "table_modify",
        "IngressImpl.l2",
        1,
        api.ActionCall("IngressImpl.set_port", (3,)),
    )
    assert code_of(dev, MODIFY, table_entry=l2_entry(MAC, b"\x05"))[0] == code_pb2.NOT_FOUND
    write1(dev, DELETE, table_entry=l2_entry(MAC, b"\x01"))
    assert engine.calls[-1] == ("table_delete", "IngressImpl.l2", 1)
    assert code_of(dev, DELETE, table_entry=l2_entry(MAC, b"\x01")) == (
        code_pb2.NOT_FOUND,
        "table IngressImpl.l2: no such entry",
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda te: setattr(te, "table_id", 99), "unknown table id 99"),
        (
            lambda te: te.match[0].exact.__setattr__("value", b"\x01" * 7),
            "table IngressImpl.l2 field dst_addr: bytestring of 7 bytes does not fit in 48 bits",
        ),
        (
            lambda te: te.match[1].exact.__setattr__("value", b"\x02\x00"),
            "table IngressImpl.l2 field ingress_port: value 0x200 does not fit in 9 bits",
        ),
        (
            lambda te: te.match.pop(),
            "table IngressImpl.l2 field ingress_port: exact match field is missing",
        ),
        (
            lambda te: setattr(te.match[1], "field_id", 9),
            "table IngressImpl.l2: unknown match field id 9",
        ),
        (
            lambda te: setattr(te, "priority", 5),
            "table IngressImpl.l2: priority must be 0 (no ternary/range/optional field)",
        ),
        (
            lambda te: te.action.action.params.pop(),
            "table IngressImpl.l2: action IngressImpl.set_port takes 1 params, got 0",
        ),
        (
            lambda te: setattr(te.action.action, "action_id", 5),
            "table IngressImpl.l2: unknown action id 5",
        ),
        (
            lambda te: te.action.action.__setattr__("action_id", ids.action("set_port_and_mac")),
            "table IngressImpl.l2: action IngressImpl.set_port_and_mac is not an action of it",
        ),
        (
            lambda te: te.action.action.params[0].__setattr__("value", b"\xff\xff"),
            "table IngressImpl.l2: action IngressImpl.set_port param port: "
            "value 0xffff does not fit in 9 bits",
        ),
        (lambda te: te.ClearField("action"), "table IngressImpl.l2: entry has no action"),
        (
            lambda te: te.match[0].lpm.__setattr__("prefix_len", 8),
            "table IngressImpl.l2 field dst_addr: is a exact field, got lpm",
        ),
    ],
)
def test_malformed_entries_are_invalid_argument(dev: DeviceState, mutate, message) -> None:
    te = l2_entry(MAC, b"\x01")
    mutate(te)
    assert code_of(dev, INSERT, table_entry=te) == (code_pb2.INVALID_ARGUMENT, message)
    assert read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2"))) == []


def route(value: bytes, plen: int) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("route"))
    fm = te.match.add(field_id=ids.field("route", "dst_addr"))
    fm.lpm.value = value
    fm.lpm.prefix_len = plen
    te.action.action.action_id = ids.action("drop")
    return te


def test_lpm(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    write1(dev, INSERT, table_entry=route(bytes([10, 1, 0, 0]), 16))
    assert engine.calls[-1][2] == (api.Lpm(0x0A010000, 16),)
    write1(dev, INSERT, table_entry=route(bytes([10, 1, 0, 0]), 24))  # other prefix: other key
    assert code_of(dev, INSERT, table_entry=route(bytes([10, 1, 0, 1]), 24)) == (
        code_pb2.INVALID_ARGUMENT,
        "table IngressImpl.route field dst_addr: lpm value 0xa010001 has bits set beyond /24",
    )
    assert code_of(dev, INSERT, table_entry=route(bytes([0]), 0))[1] == (
        "table IngressImpl.route field dst_addr: prefix length 0 is a don't-care; omit the field"
    )
    assert code_of(dev, INSERT, table_entry=route(bytes([10]), 33))[1] == (
        "table IngressImpl.route field dst_addr: prefix length 33 exceeds 32 bits"
    )


def acl(
    priority: int,
    src: tuple[bytes, bytes] | None = None,
    rng: tuple[bytes, bytes] | None = None,
    proto: bytes | None = None,
) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("acl"), priority=priority)
    if src is not None:
        fm = te.match.add(field_id=ids.field("acl", "src_addr"))
        fm.ternary.value, fm.ternary.mask = src
    if rng is not None:
        fm = te.match.add(field_id=ids.field("acl", "ether_type"))
        fm.range.low, fm.range.high = rng
    if proto is not None:
        te.match.add(field_id=ids.field("acl", "protocol")).optional.value = proto
    te.action.action.action_id = ids.action("send_to_cpu")
    return te


def test_ternary_range_optional(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    write1(
        dev,
        INSERT,
        table_entry=acl(
            10, src=(b"\x0a\x00", b"\xff\x00"), rng=(b"\x08\x00", b"\x08\x06"), proto=b"\x11"
        ),
    )
    assert engine.calls[-1] == (
        "table_add",
        "IngressImpl.acl",
        # p4c compiles optional as ternary for bmv2: the engine gets a full mask
        (api.Ternary(0x0A00, 0xFF00), api.Range(0x800, 0x806), api.Ternary(0x11, 0xFF)),
        api.ActionCall("IngressImpl.send_to_cpu", ()),
        10,
    )
    write1(dev, INSERT, table_entry=acl(20, proto=b"\x06"))  # wildcards
    assert engine.calls[-1][2] == (None, None, api.Ternary(6, 0xFF))
    # same match, other priority: another entry
    write1(dev, INSERT, table_entry=acl(21, proto=b"\x06"))
    assert code_of(dev, INSERT, table_entry=acl(21, proto=b"\x06"))[0] == code_pb2.ALREADY_EXISTS
    assert code_of(dev, INSERT, table_entry=acl(0, proto=b"\x06")) == (
        code_pb2.INVALID_ARGUMENT,
        "table IngressImpl.acl: entries need a priority > 0 (ternary/range/optional)",
    )
    assert code_of(dev, INSERT, table_entry=acl(1, src=(b"\x0a\x01", b"\xff\x00")))[1] == (
        "table IngressImpl.acl field src_addr: ternary value 0xa01 has bits outside mask 0xff00"
    )
    assert code_of(dev, INSERT, table_entry=acl(1, src=(b"\x00", b"\x00")))[1] == (
        "table IngressImpl.acl field src_addr: all-zero mask is a don't-care; omit it"
    )
    assert code_of(dev, INSERT, table_entry=acl(1, rng=(b"\x09", b"\x08")))[1] == (
        "table IngressImpl.acl field ether_type: range low 9 > high 8"
    )
    assert code_of(dev, INSERT, table_entry=acl(1, rng=(b"\x00", b"\xff\xff")))[1] == (
        "table IngressImpl.acl field ether_type: full range is a don't-care; omit it"
    )
    got = read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("acl")))
    assert [e.table_entry.priority for e in got] == [10, 20, 21]
    assert got[0].table_entry == acl(
        10, src=(b"\x0a\x00", b"\xff\x00"), rng=(b"\x08\x00", b"\x08\x06"), proto=b"\x11"
    )


def test_default_entries(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    d = p4runtime_pb2.TableEntry(table_id=ids.table("route"), is_default_action=True)
    (got,) = read(dev, table_entry=d)
    assert got.table_entry.action.action.action_id == ids.action("drop")  # from the JSON
    new = p4runtime_pb2.TableEntry()
    new.CopyFrom(d)
    new.action.action.action_id = ids.action("set_port_and_mac")
    new.action.action.params.add(param_id=1, value=b"\x03")
    new.action.action.params.add(param_id=2, value=b"\x00\x00\x00\x00\x00\x01")
    write1(dev, MODIFY, table_entry=new)
    assert engine.calls[-1] == (
        "table_set_default",
        "IngressImpl.route",
        api.ActionCall("IngressImpl.set_port_and_mac", (3, 1)),
    )
    (got,) = read(dev, table_entry=d)
    assert got.table_entry.action.action.params[1].value == b"\x01"
    assert code_of(dev, INSERT, table_entry=new) == (
        code_pb2.INVALID_ARGUMENT,
        "table IngressImpl.route default entry: only MODIFY is allowed",
    )
    write1(dev, MODIFY, table_entry=d)  # no action: back to the program's default
    assert engine.calls[-1] == ("table_reset_default", "IngressImpl.route")
    (got,) = read(dev, table_entry=d)
    assert got.table_entry.action.action.action_id == ids.action("drop")
    const = p4runtime_pb2.TableEntry(table_id=ids.table("acl"), is_default_action=True)
    const.action.action.action_id = ids.action("drop")
    assert code_of(dev, MODIFY, table_entry=const) == (
        code_pb2.PERMISSION_DENIED,
        "table IngressImpl.acl default entry: the default action is const",
    )
    # all default entries with table id 0
    alld = read(dev, table_entry=p4runtime_pb2.TableEntry(is_default_action=True))
    assert len(alld) == 5


def test_const_table(dev: DeviceState) -> None:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("ether_filter"))
    te.match.add(field_id=1).exact.value = b"\x08\x00"
    te.action.action.action_id = ids.action("drop")
    assert code_of(dev, INSERT, table_entry=te) == (
        code_pb2.PERMISSION_DENIED,
        "table IngressImpl.ether_filter is const",
    )
    got = read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("ether_filter")))
    assert [
        (
            e.table_entry.match[0].exact.value,
            e.table_entry.action.action.action_id,
            e.table_entry.is_const,
        )
        for e in got
    ] == [
        (b"\x88\xcc", ids.action("drop"), True),
        (b"\x08\x06", ids.action("NoAction"), True),
    ]
    one = p4runtime_pb2.TableEntry(table_id=ids.table("ether_filter"))
    one.match.add(field_id=1).exact.value = b"\x00\x08\x06"[1:]
    (got,) = read(dev, table_entry=one)
    assert got.table_entry.action.action.action_id == ids.action("NoAction")
    one.match[0].exact.value = b"\x08\x00"
    assert read(dev, table_entry=one) == []


def test_batch_continue_on_error(dev: DeviceState) -> None:
    res = dev.write(
        [
            upd(INSERT, table_entry=l2_entry(MAC, b"\x01")),
            upd(INSERT, table_entry=l2_entry(MAC, b"\x01")),
            upd(INSERT, table_entry=l2_entry(MAC, b"\x02")),
        ]
    )
    assert res[0] is None and res[2] is None
    assert res[1] is not None and res[1].code == code_pb2.ALREADY_EXISTS
    assert len(read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2")))) == 2


def test_engine_fault_is_internal_and_loses_nothing(
    dev: DeviceState, engine: RecordingFakeEngine
) -> None:
    engine.fail_next = "out of memory"
    assert code_of(dev, INSERT, table_entry=l2_entry(MAC, b"\x01")) == (
        code_pb2.INTERNAL,
        "engine: out of memory",
    )
    assert read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2"))) == []
    write1(dev, INSERT, table_entry=l2_entry(MAC, b"\x01"))


def test_direct_counters(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    write1(dev, INSERT, table_entry=l2_entry(MAC, b"\x01"))
    engine.direct_counters[("IngressImpl.l2", 1)] = api.CounterValue(packets=3, bytes=300)
    req = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
    req.counter_data.SetInParent()
    (got,) = read(dev, table_entry=req)
    assert got.table_entry.counter_data == p4runtime_pb2.CounterData(byte_count=300, packet_count=3)
    (plain,) = read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2")))
    assert not plain.table_entry.HasField("counter_data")
    (dc,) = read(
        dev,
        direct_counter_entry=p4runtime_pb2.DirectCounterEntry(
            table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
        ),
    )
    assert dc.direct_counter_entry.data.packet_count == 3
    assert dc.direct_counter_entry.table_entry == l2_entry(MAC, b"\x01")
    write1(
        dev,
        MODIFY,
        direct_counter_entry=p4runtime_pb2.DirectCounterEntry(table_entry=l2_entry(MAC, b"\x01")),
    )
    assert engine.direct_counters[("IngressImpl.l2", 1)] == api.CounterValue(0, 0)
    assert (
        code_of(
            dev,
            MODIFY,
            direct_counter_entry=p4runtime_pb2.DirectCounterEntry(
                table_entry=l2_entry(MAC, b"\x07")
            ),
        )[0]
        == code_pb2.NOT_FOUND
    )


def test_indirect_counters(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    cid = ids.counter("port_counter")
    engine.counters[("IngressImpl.port_counter", 4)] = api.CounterValue(2, 128)
    one = p4runtime_pb2.CounterEntry(counter_id=cid)
    one.index.index = 4
    (got,) = read(dev, counter_entry=one)
    assert got.counter_entry.data == p4runtime_pb2.CounterData(byte_count=128, packet_count=2)
    every = read(dev, counter_entry=p4runtime_pb2.CounterEntry(counter_id=cid))
    assert len(every) == 512 and every[4] == got
    write1(dev, MODIFY, counter_entry=one)
    assert engine.calls[-1] == (
        "counter_write",
        "IngressImpl.port_counter",
        4,
        api.CounterValue(0, 0),
    )
    one.index.index = 512
    assert code_of(dev, MODIFY, counter_entry=one) == (
        code_pb2.OUT_OF_RANGE,
        "counter IngressImpl.port_counter: index 512 not in [0, 512)",
    )
    assert (
        code_of(dev, INSERT, counter_entry=p4runtime_pb2.CounterEntry(counter_id=cid))[0]
        == code_pb2.INVALID_ARGUMENT
    )


def member(mid: int, port: int) -> p4runtime_pb2.ActionProfileMember:
    m = p4runtime_pb2.ActionProfileMember(
        action_profile_id=ids.profile("ecmp_selector"), member_id=mid
    )
    m.action.action_id = ids.action("set_port")
    m.action.params.add(param_id=1, value=bytes([port]))
    return m


def group(gid: int, *mids: int) -> p4runtime_pb2.ActionProfileGroup:
    g = p4runtime_pb2.ActionProfileGroup(
        action_profile_id=ids.profile("ecmp_selector"), group_id=gid, max_size=8
    )
    for m in mids:
        g.members.add(member_id=m, weight=1)
    return g


def ecmp_entry(dst: bytes, gid: int) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("ecmp"))
    te.match.add(field_id=1).exact.value = dst
    te.action.action_profile_group_id = gid
    return te


def test_action_selector(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    write1(dev, INSERT, action_profile_member=member(1, 1))
    write1(dev, INSERT, action_profile_member=member(2, 2))
    assert code_of(dev, INSERT, action_profile_member=member(2, 3))[0] == code_pb2.ALREADY_EXISTS
    assert code_of(dev, INSERT, action_profile_group=group(10, 1, 3)) == (
        code_pb2.NOT_FOUND,
        "action profile IngressImpl.ecmp_selector group 10: member 3 does not exist",
    )
    write1(dev, INSERT, action_profile_group=group(10, 1, 2))
    assert engine.groups[("IngressImpl.ecmp_selector", 10)] == (1, 2)
    assert (
        code_of(dev, INSERT, table_entry=ecmp_entry(b"\x0a\x00\x00\x01", 11))[0]
        == code_pb2.NOT_FOUND
    )
    write1(dev, INSERT, table_entry=ecmp_entry(b"\x0a\x00\x00\x01", 10))
    assert engine.calls[-1][3] == api.GroupRef(10)
    direct = l2_entry(MAC, b"\x01")
    direct.table_id = ids.table("ecmp")
    del direct.match[1]
    direct.match[0].exact.value = b"\x01"
    assert code_of(dev, INSERT, table_entry=direct) == (
        code_pb2.INVALID_ARGUMENT,
        "table IngressImpl.ecmp: implemented by IngressImpl.ecmp_selector; "
        "give a member or group id",
    )
    assert (
        code_of(dev, DELETE, action_profile_member=member(1, 1))[0] == code_pb2.FAILED_PRECONDITION
    )
    assert code_of(dev, DELETE, action_profile_group=group(10))[0] == code_pb2.FAILED_PRECONDITION
    write1(dev, DELETE, table_entry=ecmp_entry(b"\x0a\x00\x00\x01", 10))
    write1(dev, MODIFY, action_profile_group=group(10, 2))
    write1(dev, DELETE, action_profile_member=member(1, 1))
    assert [
        e.action_profile_member.member_id
        for e in read(dev, action_profile_member=p4runtime_pb2.ActionProfileMember())
    ] == [2]
    (g,) = read(
        dev,
        action_profile_group=p4runtime_pb2.ActionProfileGroup(
            action_profile_id=ids.profile("ecmp_selector")
        ),
    )
    assert g.action_profile_group == group(10, 2)
    write1(dev, DELETE, action_profile_group=group(10))
    assert read(dev, action_profile_group=p4runtime_pb2.ActionProfileGroup()) == []


def test_pre_entries(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    pre = p4runtime_pb2.PacketReplicationEngineEntry()
    mg = pre.multicast_group_entry
    mg.multicast_group_id = 5
    mg.replicas.add(egress_port=1, instance=1)
    mg.replicas.add(egress_port=2, instance=1)
    write1(dev, INSERT, packet_replication_engine_entry=pre)
    assert engine.mc_groups[5] == (api.Replica(1, 1), api.Replica(2, 1))
    assert code_of(dev, INSERT, packet_replication_engine_entry=pre)[0] == code_pb2.ALREADY_EXISTS
    (got,) = read(
        dev,
        packet_replication_engine_entry=p4runtime_pb2.PacketReplicationEngineEntry(
            multicast_group_entry=p4runtime_pb2.MulticastGroupEntry()
        ),
    )
    assert got.packet_replication_engine_entry == pre
    mg.replicas.add(egress_port=2, instance=1)
    assert code_of(dev, MODIFY, packet_replication_engine_entry=pre) == (
        code_pb2.INVALID_ARGUMENT,
        "multicast group 5: replica (port 2, instance 1) twice",
    )
    cs = p4runtime_pb2.PacketReplicationEngineEntry()
    cs.clone_session_entry.session_id = 100
    cs.clone_session_entry.replicas.add(egress_port=255, instance=0)
    write1(dev, INSERT, packet_replication_engine_entry=cs)
    assert engine.clone_sessions[100] == (api.Replica(255, 0),)
    write1(dev, DELETE, packet_replication_engine_entry=cs)
    assert code_of(dev, DELETE, packet_replication_engine_entry=cs)[0] == code_pb2.NOT_FOUND


def test_registers_and_meters(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    r = p4runtime_pb2.RegisterEntry(register_id=ids.register("scratch"))
    r.index.index = 3
    r.data.bitstring = b"\x01\x02"
    write1(dev, MODIFY, register_entry=r)
    assert engine.registers[("IngressImpl.scratch", 3)] == 0x102
    (got,) = read(
        dev,
        register_entry=p4runtime_pb2.RegisterEntry(
            register_id=ids.register("scratch"), index=p4runtime_pb2.Index(index=3)
        ),
    )
    assert got.register_entry == r
    m = p4runtime_pb2.MeterEntry(
        meter_id=ids.meter("port_meter"), index=p4runtime_pb2.Index(index=2)
    )
    m.config.cir, m.config.cburst, m.config.pir, m.config.pburst = 1000, 100, 2000, 200
    write1(dev, MODIFY, meter_entry=m)
    assert engine.meters[("IngressImpl.port_meter", 2)] == (1000, 100, 2000, 200)
    (got,) = read(
        dev,
        meter_entry=p4runtime_pb2.MeterEntry(
            meter_id=ids.meter("port_meter"), index=p4runtime_pb2.Index(index=2)
        ),
    )
    assert got.meter_entry == m


def test_packet_io_headers(dev: DeviceState) -> None:
    po = p4runtime_pb2.PacketOut(payload=b"\xaa" * 14)
    po.metadata.add(metadata_id=ids.packet_metadata("packet_out", "egress_port"), value=b"\x01\x03")
    # egress_port 0x103 in 9 bits, then 7 pad bits: 1000 0011 1000 0000
    assert dev.packet_out_frame(po) == b"\x81\x80" + b"\xaa" * 14
    pin = dev.packet_in(b"\x81\x80" + b"\xbb" * 14)
    assert pin.payload == b"\xbb" * 14
    assert [(m.metadata_id, m.value) for m in pin.metadata] == [(1, b"\x01\x03"), (2, b"\x00")]
    with pytest.raises(P4RTError) as e:
        dev.packet_in(b"\x81")
    assert e.value.message == "frame shorter than the 2-byte packet_in header"
    po.metadata.add(metadata_id=9, value=b"\x01")
    with pytest.raises(P4RTError) as e:
        dev.packet_out_frame(po)
    assert e.value.message == "packet_out: unknown metadata id 9"


def oneshot_entry(dst: bytes, *ports_weights: tuple[int, int]) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("ecmp"))
    te.match.add(field_id=1).exact.value = dst
    aset = te.action.action_profile_action_set
    for port, weight in ports_weights:
        a = aset.action_profile_actions.add(weight=weight)
        a.action.action_id = ids.action("set_port")
        a.action.params.add(param_id=1, value=b"\x00" + bytes([port]))  # padded
    return te


def test_one_shot_action_selector(dev: DeviceState, engine: RecordingFakeEngine) -> None:
    write1(dev, INSERT, table_entry=oneshot_entry(b"\x0a\x00\x00\x01", (1, 1), (2, 3)))
    profile = "IngressImpl.ecmp_selector"
    m1, m2, g = 1 << 32, (1 << 32) + 1, (1 << 32) + 2
    assert engine.members == {
        (profile, m1): api.ActionCall("IngressImpl.set_port", (1,)),
        (profile, m2): api.ActionCall("IngressImpl.set_port", (2,)),
    }
    assert engine.groups == {(profile, g): (m1, m2, m2, m2)}
    assert engine.calls[-1][3] == api.GroupRef(g)
    (got,) = read(dev, table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("ecmp")))
    canonical = oneshot_entry(b"\x0a\x00\x00\x01", (1, 1), (2, 3))
    for a in canonical.action.action_profile_action_set.action_profile_actions:
        a.action.params[0].value = a.action.params[0].value[1:]
    assert got.table_entry == canonical
    # controller-made members/groups are not visible
    assert read(dev, action_profile_member=p4runtime_pb2.ActionProfileMember()) == []
    # modify: new engine objects, the old ones are gone
    write1(dev, MODIFY, table_entry=oneshot_entry(b"\x0a\x00\x00\x01", (3, 1)))
    assert set(engine.members) == {(profile, g + 1)}
    assert engine.groups == {(profile, g + 2): (g + 1,)}
    assert code_of(dev, INSERT, table_entry=oneshot_entry(b"\x0a\x00\x00\x02", (3, 0))) == (
        code_pb2.INVALID_ARGUMENT,
        "table IngressImpl.ecmp: action set weight must be > 0",
    )
    bad = oneshot_entry(b"\x0a\x00\x00\x02", (3, 1))
    bad.action.action_profile_action_set.action_profile_actions[0].action.action_id = ids.action(
        "drop"
    )
    assert code_of(dev, INSERT, table_entry=bad) == (
        code_pb2.INVALID_ARGUMENT,
        "table IngressImpl.ecmp: action IngressImpl.drop is not an action of it",
    )
    write1(dev, DELETE, table_entry=oneshot_entry(b"\x0a\x00\x00\x01"))
    assert engine.members == {} and engine.groups == {}


def test_optional_reaches_an_optional_capable_json_as_optional(
    engine: RecordingFakeEngine,
) -> None:
    import json

    cfg = load_config()
    bmv2 = json.loads(cfg.p4_device_config)
    (acl_table,) = [t for t in bmv2["pipelines"][0]["tables"] if t["name"] == "IngressImpl.acl"]
    acl_table["key"][2]["match_type"] = "optional"
    cfg.p4_device_config = json.dumps(bmv2).encode()
    d = DeviceState(engine, 1)
    d.set_pipeline(CFG.VERIFY_AND_COMMIT, cfg)
    write1(d, INSERT, table_entry=acl(20, proto=b"\x06"))
    assert engine.calls[-1][2] == (None, None, api.Optional(6))
    # a JSON whose keys do not match the P4Info is refused up front
    del acl_table["key"][2]
    cfg.p4_device_config = json.dumps(bmv2).encode()
    with pytest.raises(P4RTError) as e:
        d.set_pipeline(CFG.VERIFY, cfg)
    assert e.value.message == (
        "table IngressImpl.acl: 3 match fields in the P4Info, 2 keys in the bmv2 JSON"
    )


def test_keyless_table_takes_only_a_default_entry(engine: RecordingFakeEngine) -> None:
    import json

    cfg = load_config()
    (route,) = [t for t in cfg.p4info.tables if t.preamble.name == "IngressImpl.route"]
    del route.match_fields[:]
    bmv2 = json.loads(cfg.p4_device_config)
    (rt,) = [t for t in bmv2["pipelines"][0]["tables"] if t["name"] == "IngressImpl.route"]
    rt["key"] = []
    cfg.p4_device_config = json.dumps(bmv2).encode()
    d = DeviceState(engine, 1)
    d.set_pipeline(CFG.VERIFY_AND_COMMIT, cfg)
    te = p4runtime_pb2.TableEntry(table_id=route.preamble.id)
    te.action.action.action_id = ids.action("drop")
    assert code_of(d, INSERT, table_entry=te) == (
        code_pb2.INVALID_ARGUMENT,
        "table IngressImpl.route is keyless: only its default entry is set",
    )
    te.is_default_action = True
    write1(d, MODIFY, table_entry=te)
    assert engine.calls[-1] == (
        "table_set_default",
        "IngressImpl.route",
        api.ActionCall("IngressImpl.drop", ()),
    )
