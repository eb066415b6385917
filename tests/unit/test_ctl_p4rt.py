"""control.p4rt: typed entities <-> P4Runtime protobufs, against a P4Info built here."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from p4.config.v1 import p4info_pb2
from p4runtime_sh.context import P4Type

from control.p4rt import (
    ActionProfileGroup,
    ActionProfileMember,
    Exact,
    Lpm,
    MulticastGroup,
    P4Info,
    Replica,
    TableEntry,
    Ternary,
    decode_int,
    encode_int,
)

P4INFO_TXT = """
tables {
  preamble { id: 1001 name: "IngressPipe.classifier.vif" alias: "vif" }
  match_fields { id: 1 name: "ingress_port" bitwidth: 9 match_type: EXACT }
  match_fields { id: 2 name: "src_mac" bitwidth: 48 match_type: EXACT }
  match_fields { id: 3 name: "vlan_id" bitwidth: 12 match_type: EXACT }
  action_refs { id: 2001 }
}
tables {
  preamble { id: 1002 name: "IngressPipe.routing.ipv4_route" alias: "ipv4_route" }
  match_fields { id: 1 name: "vrf_id" bitwidth: 16 match_type: EXACT }
  match_fields { id: 2 name: "dst" bitwidth: 32 match_type: LPM }
  action_refs { id: 2002 }
}
tables {
  preamble { id: 1003 name: "IngressPipe.acl" alias: "acl" }
  match_fields { id: 1 name: "proto" bitwidth: 8 match_type: TERNARY }
  action_refs { id: 2002 }
}
actions {
  preamble { id: 2001 name: "IngressPipe.classifier.set_vif" alias: "set_vif" }
  params { id: 1 name: "vif_id" bitwidth: 16 }
  params { id: 2 name: "vrf_id" bitwidth: 16 }
}
actions {
  preamble { id: 2002 name: "IngressPipe.routing.set_nexthop" alias: "set_nexthop" }
  params { id: 1 name: "nexthop_id" bitwidth: 16 }
}
action_profiles {
  preamble { id: 3001 name: "IngressPipe.nexthop_selector" alias: "nexthop_selector" }
  table_ids: 1002
  with_selector: true
  size: 1024
}
"""


@pytest.fixture
def info() -> P4Info:
    pb = p4info_pb2.P4Info()
    text_format.Parse(P4INFO_TXT, pb)
    return P4Info(pb)


def test_canonical_encoding() -> None:
    assert encode_int(0, 9) == b"\x00"
    assert encode_int(1, 9) == b"\x01"
    assert encode_int(0x1FF, 9) == b"\x01\xff"
    assert decode_int(b"\x00\x00\x05") == 5
    with pytest.raises(ValueError, match="does not fit in 9 bits"):
        encode_int(512, 9)


def test_names_and_aliases(info: P4Info) -> None:
    assert info.id("table", "vif") == 1001
    assert info.id("table", "IngressPipe.classifier.vif") == 1001
    assert info.name(2001) == "IngressPipe.classifier.set_vif"
    with pytest.raises(KeyError, match="no table named 'nope'"):
        info.id("table", "nope")
    # unique dotted suffixes resolve too; names(kind) lists full names only
    assert info.id("table", "classifier.vif") == 1001
    assert info.id("action", "routing.set_nexthop") == 2002
    assert info.names("table") == [
        "IngressPipe.acl",
        "IngressPipe.classifier.vif",
        "IngressPipe.routing.ipv4_route",
    ]


def test_names_follow_p4runtime_shell_and_aliases_that_are_no_suffix() -> None:
    pb = p4info_pb2.P4Info()
    text_format.Parse(
        """
tables { preamble { id: 1 name: "Ingress.a.route" alias: "route" } }
tables { preamble { id: 2 name: "Ingress.b.route" alias: "b_route" } }
tables { preamble { id: 4 name: "Ingress.x.acl" alias: "x_acl" } }
tables { preamble { id: 5 name: "Ingress.y.acl" alias: "y_acl" } }
actions { preamble { id: 3 name: "Ingress.fwd" alias: "go" } }
""",
        pb,
    )
    info = P4Info(pb)
    # p4runtime-shell's Context resolves full names and unique suffixes
    assert info.ctx.get_obj(P4Type.table, "a.route").preamble.id == 1
    assert info.id("table", "a.route") == 1
    assert info.id("table", "Ingress.b.route") == 2
    # "acl" is the suffix of two tables and nobody's alias: neither
    assert info.ctx.get_obj(P4Type.table, "acl") is None
    with pytest.raises(KeyError, match="no table named 'acl'"):
        info.id("table", "acl")
    # an alias names its object even where it is no unique suffix
    assert info.id("table", "route") == 1
    assert info.id("table", "b_route") == 2
    assert info.full_name("go") == "Ingress.fwd"
    assert info.name(3) == "Ingress.fwd"
    with pytest.raises(KeyError, match="no P4Info object with id 9"):
        info.by_id(9)
    assert info.names("table") == [
        "Ingress.a.route",
        "Ingress.b.route",
        "Ingress.x.acl",
        "Ingress.y.acl",
    ]


def test_table_entry_round_trip(info: P4Info) -> None:
    e = TableEntry(
        "vif",
        {"ingress_port": Exact(3), "src_mac": Exact(0x0102030405AB), "vlan_id": Exact(10)},
        "set_vif",
        {"vif_id": 7, "vrf_id": 2},
    )
    pb = info.entity_pb(e)
    te = pb.table_entry
    assert te.table_id == 1001
    assert [(m.field_id, m.exact.value) for m in te.match] == [
        (1, b"\x03"),
        (2, b"\x01\x02\x03\x04\x05\xab"),
        (3, b"\x0a"),
    ]
    assert te.action.action.action_id == 2001
    assert [(p.param_id, p.value) for p in te.action.action.params] == [(1, b"\x07"), (2, b"\x02")]
    back = info.entity_from_pb(pb)
    # read back carries full names; equality is by value with the full name
    assert back == TableEntry(
        "IngressPipe.classifier.vif",
        e.match,
        "IngressPipe.classifier.set_vif",
        {"vif_id": 7, "vrf_id": 2},
    )
    assert hash(back) == hash(
        TableEntry(
            "IngressPipe.classifier.vif",
            dict(e.match),
            "IngressPipe.classifier.set_vif",
            {"vrf_id": 2, "vif_id": 7},
        )
    )


def test_lpm_zero_prefix_is_omitted_and_ternary(info: P4Info) -> None:
    pb = info.entity_pb(
        TableEntry("ipv4_route", {"vrf_id": Exact(1), "dst": Lpm(0, 0)}, group_id=4)
    )
    assert [m.field_id for m in pb.table_entry.match] == [1]
    assert pb.table_entry.action.action_profile_group_id == 4
    pb = info.entity_pb(
        TableEntry("acl", {"proto": Ternary(6, 0xFF)}, "set_nexthop", {"nexthop_id": 1}, 10)
    )
    assert pb.table_entry.priority == 10
    assert pb.table_entry.match[0].ternary.mask == b"\xff"


def test_bad_params_rejected(info: P4Info) -> None:
    with pytest.raises(ValueError, match=r"params \['vif_id'\] != \['vif_id', 'vrf_id'\]"):
        info.entity_pb(TableEntry("vif", {"ingress_port": Exact(1)}, "set_vif", {"vif_id": 1}))
    with pytest.raises(KeyError, match="no match field 'port'"):
        info.entity_pb(TableEntry("vif", {"port": Exact(1)}, "set_vif", {"vif_id": 1, "vrf_id": 1}))


def test_profile_and_multicast_round_trip(info: P4Info) -> None:
    m = ActionProfileMember(
        "IngressPipe.nexthop_selector", 5, "IngressPipe.routing.set_nexthop", {"nexthop_id": 9}
    )
    g = ActionProfileGroup("IngressPipe.nexthop_selector", 4, frozenset({(5, 1), (6, 1)}), 16)
    mc = MulticastGroup(3, frozenset({Replica(1, 1), Replica(2, 7)}))
    for ent in (m, g, mc):
        assert info.entity_from_pb(info.entity_pb(ent)) == ent
    assert {m.key(), g.key(), mc.key()} == {
        ("member", "IngressPipe.nexthop_selector", 5),
        ("group", "IngressPipe.nexthop_selector", 4),
        ("mcast", 3),
    }


#: one table entry of each shape (exact, lpm, /0, member, group, ternary, default)
TABLE_ENTRIES = [
    TableEntry(
        "vif",
        {"ingress_port": Exact(0), "src_mac": Exact(0x0102030405AB), "vlan_id": Exact(4094)},
        "set_vif",
        {"vif_id": 300, "vrf_id": 0},
    ),
    TableEntry("ipv4_route", {"vrf_id": Exact(1), "dst": Lpm(0x0A000000, 8)}, group_id=70000),
    TableEntry("ipv4_route", {"vrf_id": Exact(1), "dst": Lpm(0, 0)}, member_id=5),
    TableEntry("acl", {"proto": Ternary(6, 0xFF)}, "set_nexthop", {"nexthop_id": 1}, 10),
    TableEntry("acl", {}, "set_nexthop", {"nexthop_id": 2}, is_default=True),
]


def test_wire_encoder_matches_protobuf_serialization(info: P4Info) -> None:
    from p4.v1 import p4runtime_pb2

    from control.p4rt import INSERT, MODIFY, Update, WireEncoder

    enc = WireEncoder(info)
    ents = [
        *TABLE_ENTRIES,
        ActionProfileMember("nexthop_selector", 5, "set_nexthop", {"nexthop_id": 9}),
        ActionProfileGroup("nexthop_selector", 4, frozenset({(5, 1), (6, 3)}), 16),
        MulticastGroup(3, frozenset({Replica(1, 1), Replica(200, 7)})),
    ]
    for e in ents:
        assert enc.entity(e) == info.entity_pb(e).SerializeToString(), e
    req = p4runtime_pb2.WriteRequest()
    req.ParseFromString(
        enc.write_request(1, (5 << 64) | 7, [Update(INSERT, ents[0]), Update(MODIFY, ents[5])])
    )
    want = p4runtime_pb2.WriteRequest(
        device_id=1, atomicity=p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR
    )
    want.election_id.high, want.election_id.low = 5, 7
    want.updates.add(type=p4runtime_pb2.Update.INSERT, entity=info.entity_pb(ents[0]))
    want.updates.add(type=p4runtime_pb2.Update.MODIFY, entity=info.entity_pb(ents[5]))
    assert req == want


def _wire_corpus(info: P4Info) -> list[bytes]:
    from p4.v1 import p4runtime_pb2

    out = [info.entity_pb(e).table_entry.SerializeToString() for e in TABLE_ENTRIES]
    te = p4runtime_pb2.TableEntry(table_id=1003, priority=-3)  # negative int32: 10 bytes
    fm = te.match.add(field_id=1)
    fm.range.low, fm.range.high = b"\x01", b"\x09"
    out.append(te.SerializeToString())
    te = p4runtime_pb2.TableEntry(table_id=1003)
    te.match.add(field_id=1).optional.value = b"\x11"
    te.action.action.action_id = 2002
    out.append(te.SerializeToString())
    return out


def test_wire_decoder_reads_what_protobuf_reads(info: P4Info) -> None:
    """table_entry_from_wire gives entity_from_pb's entry, and leaves what
    it does not read exactly (fields the typed entry does not carry,
    repeated messages, odd varints) to protobuf."""
    from p4.v1 import p4runtime_pb2

    from control.p4rt import WireFallback, read_response_entities

    corpus = _wire_corpus(info)
    for blob in corpus:
        want = info.entity_from_pb(
            p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry.FromString(blob))
        )
        assert info.table_entry_from_wire(blob) == want
    for extra in (
        b"\x28\x05",  # controller_metadata
        b"\x5a\x02md",  # metadata
        b"\x1a\x02\x10\x01",  # a second action
        b"\x20\x80\x80\x80\x80\x10",  # priority beyond int32
        b"\x08\x80\x80\x80\x80\x10",  # table id beyond uint32
        b"\x38\x01",  # a wire type the field does not have
    ):
        with pytest.raises(WireFallback):
            info.table_entry_from_wire(corpus[0] + extra)
    entities = [
        p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry.FromString(b)) for b in corpus
    ]
    response = p4runtime_pb2.ReadResponse(entities=entities).SerializeToString()
    assert read_response_entities(response) == [e.SerializeToString() for e in entities]


def test_wire_decoder_on_mutated_bytes_agrees_with_protobuf(info: P4Info) -> None:
    """Whatever the wire decoder accepts, protobuf parses to the same entry."""
    import random

    from google.protobuf.message import DecodeError
    from p4.v1 import p4runtime_pb2

    from control.p4rt import WireFallback

    rng = random.Random(11)
    accepted = 0
    for _ in range(3000):
        blob = bytearray(rng.choice(_wire_corpus(info)))
        for _ in range(rng.choice([1, 2])):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        if rng.random() < 0.2:
            del blob[rng.randrange(len(blob)) :]
        try:
            got = info.table_entry_from_wire(bytes(blob))
        except (WireFallback, KeyError):
            continue
        accepted += 1
        try:
            te = p4runtime_pb2.TableEntry.FromString(bytes(blob))
        except DecodeError as exc:
            raise AssertionError(f"accepted what protobuf refuses: {bytes(blob).hex()}") from exc
        assert got == info.entity_from_pb(p4runtime_pb2.Entity(table_entry=te)), bytes(blob).hex()
    assert accepted > 150  # mutations the decoder takes (238 with this seed)
