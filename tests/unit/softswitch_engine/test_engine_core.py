"""Packet engine: parser, deparser, tables, expressions, PRE — exact bytes out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softswitch.api import (
    ActionCall,
    CounterValue,
    EngineError,
    Exact,
    GroupRef,
    Lpm,
    Optional,
    Range,
    Replica,
    Ternary,
    UnsupportedConstruct,
)
from softswitch.engine import SoftEngine
from tests.unit.softswitch_engine.jsonprog import (
    Program,
    assign,
    eth_program,
    expr,
    f,
    hdr,
    hx,
    op,
    prim,
    rd,
    ternop,
)

DATA = Path(__file__).parent / "data"
SM = "standard_metadata"


def eth(dst: int = 0x0A0B0C0D0E0F, src: int = 0x010203040506, etype: int = 0x88B5) -> bytes:
    return dst.to_bytes(6, "big") + src.to_bytes(6, "big") + etype.to_bytes(2, "big")


def hbytes(a: int, b: int, c: int, d: int) -> bytes:
    return bytes([a, b]) + c.to_bytes(2, "big") + d.to_bytes(4, "big")


def load(p: Program) -> SoftEngine:
    e = SoftEngine()
    e.load(p.json())
    return e


def fwd_action(p: Program) -> int:
    return p.action("fwd", [assign(f(SM, "egress_spec"), rd(0))], [("port", 9)])


# ------------------------------------------------------------ simple_router


def test_simple_router_from_p4c_routes_and_updates_checksum() -> None:
    """bmv2's own simple_router.json (compiled by p4c): lpm, exact, csum16."""
    e = SoftEngine()
    e.load(json.loads((DATA / "simple_router.json").read_text()))
    e.table_add("ipv4_lpm", (Lpm(0x0A000000, 8),), ActionCall("set_nhop", (0x0A000001, 3)))
    e.table_add("ipv4_lpm", (Lpm(0x0A010000, 16),), ActionCall("set_nhop", (0x0A000002, 4)))
    e.table_add("forward", (Exact(0x0A000001),), ActionCall("set_dmac", (0x000000000002,)))
    e.table_add("forward", (Exact(0x0A000002),), ActionCall("set_dmac", (0x000000000022,)))
    e.table_add("send_frame", (Exact(3),), ActionCall("rewrite_mac", (0x000000000003,)))
    e.table_add("send_frame", (Exact(4),), ActionCall("rewrite_mac", (0x000000000004,)))

    def ip(dst: bytes, ttl: int) -> bytes:
        head = bytes.fromhex("4500002100010000") + bytes([ttl, 0x11])
        rest = bytes([1, 1, 1, 1]) + dst
        return head + inet_csum(head + rest).to_bytes(2, "big") + rest

    udp = bytes.fromhex("00350035000dad92") + b"hello"
    frame = eth(0x000000000001, 0x000000000009, 0x0800) + ip(bytes([10, 1, 2, 3]), 64) + udp
    # longest prefix 10.1/16 wins; TTL 63 and the IPv4 checksum recomputed
    assert e.process(1, frame) == [
        (4, eth(0x22, 0x04, 0x0800) + ip(bytes([10, 1, 2, 3]), 63) + udp)
    ]
    frame2 = eth(0x1, 0x9, 0x0800) + ip(bytes([10, 2, 2, 3]), 64) + udp
    assert e.process(1, frame2) == [(3, eth(0x2, 0x3, 0x0800) + ip(bytes([10, 2, 2, 3]), 63) + udp)]
    # no route: NoAction leaves egress_spec 0, so bmv2 sends it out of port 0
    # unchanged (send_frame misses too)
    frame3 = eth(0x1, 0x9, 0x0800) + ip(bytes([11, 0, 0, 1]), 64) + udp
    assert e.process(1, frame3) == [(0, frame3)]
    # not IPv4: the conditional skips routing
    arp = eth(0xFFFFFFFFFFFF, 0x9, 0x0806) + bytes(28)
    assert e.process(1, arp) == [(0, arp)]


def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# ------------------------------------------------------------ parser/deparser


def test_parse_select_default_and_payload_kept() -> None:
    p = eth_program()
    fwd = fwd_action(p)
    p.table("ingress", "t", [], [fwd], default=(fwd, [7]))
    e = load(p)
    other = eth(etype=0x0800) + b"\x01\x02\x03"
    assert e.process(1, other) == [(7, other)]
    frame = eth() + hbytes(1, 2, 3, 4) + b"payload"
    assert e.process(1, frame) == [(7, frame)]


def test_truncated_header_sets_parser_error_and_continues() -> None:
    p = eth_program()
    # egress: copy parser_error into ethernet.src and h validity into dst
    p.action(
        "report",
        [
            assign(f("ethernet", "src"), f(SM, "parser_error")),
            assign(f("ethernet", "dst"), expr(op("b2d", None, op("valid", None, hdr("h"))))),
        ],
    )
    fwd = fwd_action(p)
    p.table("ingress", "t", [], [fwd], default=(fwd, [2]))
    p.table("egress", "r", [], [0], default=(0, []))
    e = load(p)
    short = eth() + b"\x01\x02\x03"  # h needs 8 bytes
    # PacketTooShort (1); h invalid; the 3 unparsed bytes stay as payload
    assert e.process(1, short) == [(2, eth(0, 1) + b"\x01\x02\x03")]


def test_select_with_mask_and_lookahead_and_verify() -> None:
    p = eth_program()
    p.header_type("x_t", [("v", 8)])
    p.header("x", "x_t")
    p.states = []
    p.state(
        "start",
        [Program.extract("ethernet")],
        key=[{"type": "lookahead", "value": [0, 8]}, f("ethernet", "type")],
        # key = lookahead byte . ethertype (24 bits); masks select on the high nibble
        transitions=[(0xA00000, 0xF00000, "parse_x"), (None, None, None)],
    )
    p.state(
        "parse_x",
        [
            Program.extract("x"),
            {
                "op": "verify",
                "parameters": [
                    op("!=", f("x", "v"), hx(0xAF)),
                    {"type": "hexstr", "value": "0x2"},
                ],
            },
        ],
    )
    p.deparse_order = ["ethernet", "x"]
    seterr = p.action("seterr", [assign(f("ethernet", "type"), f(SM, "parser_error"))])
    fwd = fwd_action(p)
    p.table("ingress", "t", [], [fwd], default=(fwd, [1]))
    p.table("egress", "r", [], [seterr], default=(seterr, []))
    e = load(p)
    # 0xA5 matches 0xA? -> x extracted, verify ok, no error
    assert e.process(0, eth(etype=0x1111) + b"\xa5zz") == [(1, eth(etype=0) + b"\xa5zz")]
    # 0xAF fails verify -> error 2 (NoMatch); x stays valid (extracted before)
    assert e.process(0, eth(etype=0x1111) + b"\xafzz") == [(1, eth(etype=2) + b"\xafzz")]
    # 0x5A: default, nothing more parsed
    assert e.process(0, eth(etype=0x1111) + b"\x5azz") == [(1, eth(etype=0) + b"\x5azz")]


def test_add_and_remove_header_and_packet_length() -> None:
    p = eth_program()
    p.action(
        "push_h",
        [
            prim("add_header", hdr("h")),
            assign(f("h", "d"), f(SM, "packet_length")),
            assign(f("ethernet", "type"), hx(0x88B5)),
            assign(f(SM, "egress_spec"), hx(3)),
        ],
    )
    p.action("pop_h", [prim("remove_header", hdr("h")), assign(f(SM, "egress_spec"), hx(4))])
    p.action("len", [assign(f("ethernet", "src"), f(SM, "packet_length"))])
    p.table("ingress", "t", [("exact", f("ethernet", "type"))], [0, 1], default=(0, []))
    p.table("egress", "e", [], [2], default=(2, []))
    e = load(p)
    e.table_add("t", (Exact(0x88B5),), ActionCall("pop_h"))
    plain = eth(etype=0x0800) + b"data"
    # add_header: fields zeroed, +8 bytes seen by egress's packet_length
    assert e.process(1, plain) == [(3, eth(src=26, etype=0x88B5) + hbytes(0, 0, 0, 18) + b"data")]
    tagged = eth() + hbytes(1, 2, 3, 4) + b"data"
    assert e.process(1, tagged) == [(4, eth(src=18) + b"data")]


# ------------------------------------------------------------ expressions


def test_expressions_masking_signed_and_ternary() -> None:
    p = eth_program()
    p.scalar("s8", 8, signed=True)
    p.action(
        "calc",
        [
            # a = (a + 200) & 0xff  -> wraps
            assign(f("h", "a"), expr(op("&", op("+", f("h", "a"), hx(200)), hx(0xFF)))),
            # b = ~b (p4c masks ~ as (~b) & 0xff)
            assign(f("h", "b"), expr(op("&", op("~", None, f("h", "b")), hx(0xFF)))),
            # c = c << 4 truncated to 16 bits by the assignment
            assign(f("h", "c"), expr(op("<<", f("h", "c"), hx(4)))),
            # s8 = two_comp_mod(-a_orig...) via signed field: store 0xF0 -> -16
            assign(f("scalars", "s8"), hx(0xF0)),
            # d = s8 < 0 ? 1 : 2   (signed compare of the stored value)
            assign(
                f("h", "d"),
                expr(ternop(op("<", f("scalars", "s8"), hx(0)), hx(1), hx(2))),
            ),
            # src = usat_cast(a + 1000, 8) . sat_cast(-1000, 8) . two_comp_mod(0x1ff, 8)
            assign(
                f("ethernet", "src"),
                expr(
                    op(
                        "|",
                        op(
                            "|",
                            op(
                                "<<", op("usat_cast", op("+", f("h", "a"), hx(1000)), hx(8)), hx(16)
                            ),
                            op(
                                "<<",
                                op("&", op("sat_cast", op("-", None, hx(1000)), hx(8)), hx(0xFF)),
                                hx(8),
                            ),
                        ),
                        op("&", op("two_comp_mod", hx(0x1FF), hx(8)), hx(0xFF)),
                    )
                ),
            ),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = load(p)
    frame = eth() + hbytes(100, 0x0F, 0x1234, 0) + b""
    out = e.process(0, frame)
    # a: 300 & 0xff = 44; b: 0xf0; c: 0x2340; d: 1; src: 0xff(usat) 0x80(sat -128) 0xff(-1)
    assert out == [(1, eth(src=0xFF80FF) + hbytes(44, 0xF0, 0x2340, 1))]


def test_conditionals_and_hit_miss_next() -> None:
    p = eth_program()
    fwd = fwd_action(p)
    noop = p.action("NoAction", [])
    p.table(
        "ingress",
        "t",
        [("exact", f("h", "a"))],
        [fwd, noop],
        default=(noop, []),
        next_tables={"__HIT__": None, "__MISS__": "t2"},
    )
    p.conditional(
        "ingress",
        "c0",
        op("and", op("d2b", None, f("h", "$valid$")), op(">", f("h", "b"), hx(5))),
        "t3",
        None,
    )
    mark = p.action("mark", [assign(f("h", "d"), hx(0xDEAD))])
    p.table("ingress", "t2", [], [fwd], default=(fwd, [9]), base_next="c0")
    p.table("ingress", "t3", [], [mark], default=(mark, []))
    e = load(p)
    e.table_add("t", (Exact(1),), ActionCall("fwd", (5,)))
    assert e.process(0, eth() + hbytes(1, 9, 0, 0)) == [(5, eth() + hbytes(1, 9, 0, 0))]
    assert e.process(0, eth() + hbytes(2, 9, 0, 0)) == [(9, eth() + hbytes(2, 9, 0, 0xDEAD))]
    assert e.process(0, eth() + hbytes(2, 5, 0, 0)) == [(9, eth() + hbytes(2, 5, 0, 0))]


# ------------------------------------------------------------ tables


def test_lpm_longest_prefix_and_delete() -> None:
    p = eth_program()
    fwd = fwd_action(p)
    p.table(
        "ingress",
        "t",
        [("exact", f("h", "a")), ("lpm", f("h", "d"))],
        [fwd],
        default=(fwd, [9]),
        match_type="lpm",
    )
    e = load(p)
    h8 = e.table_add("t", (Exact(1), Lpm(0x0A000000, 8)), ActionCall("fwd", (8,)))
    h24 = e.table_add("t", (Exact(1), Lpm(0x0A010200, 24)), ActionCall("fwd", (24,)))
    e.table_add("t", (Exact(1), None), ActionCall("fwd", (0,)))

    def port(a: int, d: int) -> int:
        return e.process(0, eth() + hbytes(a, 0, 0, d))[0][0]

    assert port(1, 0x0A010203) == 24
    assert port(1, 0x0A020203) == 8
    assert port(1, 0x0B000000) == 0
    assert port(2, 0x0A010203) == 9
    e.table_delete("t", h24)
    assert port(1, 0x0A010203) == 8
    e.table_modify("t", h8, ActionCall("fwd", (88,)))
    assert port(1, 0x0A010203) == 88
    with pytest.raises(EngineError, match="exists"):
        e.table_add("t", (Exact(1), Lpm(0x0A000000, 8)), ActionCall("fwd", (1,)))
    with pytest.raises(EngineError, match="outside the prefix"):
        e.table_add("t", (Exact(1), Lpm(0x0A000001, 8)), ActionCall("fwd", (1,)))


def test_ternary_range_optional_priorities() -> None:
    p = eth_program()
    fwd = fwd_action(p)
    p.table(
        "ingress",
        "t",
        [("ternary", f("h", "a")), ("range", f("h", "c")), ("optional", f("h", "b"))],
        [fwd],
        default=(fwd, [9]),
        match_type="range",
    )
    e = load(p)
    e.table_add("t", (Ternary(0x10, 0xF0), None, None), ActionCall("fwd", (1,)), priority=10)
    e.table_add(
        "t", (Ternary(0x12, 0xFF), Range(100, 200), None), ActionCall("fwd", (2,)), priority=20
    )
    e.table_add("t", (None, None, Optional(7)), ActionCall("fwd", (3,)), priority=30)

    def port(a: int, b: int, c: int) -> int:
        return e.process(0, eth() + hbytes(a, b, c, 0))[0][0]

    assert port(0x12, 0, 150) == 2
    assert port(0x12, 0, 201) == 1
    assert port(0x1F, 0, 150) == 1
    assert port(0x12, 7, 150) == 3  # highest priority wins
    assert port(0x22, 0, 150) == 9
    with pytest.raises(EngineError, match="outside the mask"):
        e.table_add("t", (Ternary(0x11, 0xF0), None, None), ActionCall("fwd", (1,)), priority=1)


def test_const_entries_and_default_actions() -> None:
    p = eth_program()
    fwd = fwd_action(p)
    setd = p.action("setd", [assign(f("h", "d"), rd(0))], [("v", 32)])
    entries = [
        {
            "match_key": [{"match_type": "ternary", "key": "0x01", "mask": "0xff"}],
            "action_entry": {"action_id": fwd, "action_data": ["0x5"]},
            "priority": 1,
        },
        {
            "match_key": [{"match_type": "ternary", "key": "0x00", "mask": "0x00"}],
            "action_entry": {"action_id": fwd, "action_data": ["0x6"]},
            "priority": 2,
        },
    ]
    p.table(
        "ingress",
        "t",
        [("ternary", f("h", "a"))],
        [fwd],
        default=(fwd, [9]),
        entries=entries,
        base_next="u",
    )
    p.table("ingress", "u", [("exact", f("h", "b"))], [setd], default=(setd, [0xD]))
    e = load(p)

    def run(a: int, b: int = 0) -> tuple[int, int]:
        port, out = e.process(0, eth() + hbytes(a, b, 0, 0))[0]
        return port, int.from_bytes(out[18:22], "big")

    # bmv2 const priorities: lower number wins (1 beats the catch-all 2)
    assert run(1) == (5, 0xD)
    assert run(2) == (6, 0xD)
    e.table_set_default("u", ActionCall("setd", (0xE,)))
    assert run(1) == (5, 0xE)
    e.table_reset_default("u")
    assert run(1) == (5, 0xD)
    e.table_add("u", (Exact(3),), ActionCall("setd", (0xF,)))
    assert run(1, 3) == (5, 0xF)
    with pytest.raises(EngineError, match="not an action of this table"):
        e.table_set_default("u", ActionCall("fwd", (1,)))


def test_action_argument_validation() -> None:
    p = eth_program()
    fwd_action(p)
    p.table("ingress", "t", [("exact", f("h", "a"))], [0], default=(0, [1]))
    e = load(p)
    with pytest.raises(EngineError, match="does not fit in 9 bits"):
        e.table_add("t", (Exact(1),), ActionCall("fwd", (512,)))
    with pytest.raises(EngineError, match="takes 1 arguments"):
        e.table_add("t", (Exact(1),), ActionCall("fwd", ()))
    with pytest.raises(EngineError, match="no action named"):
        e.table_add("t", (Exact(1),), ActionCall("nope", ()))
    with pytest.raises(EngineError, match="does not fit in 8 bits"):
        e.table_add("t", (Exact(256),), ActionCall("fwd", (1,)))
    with pytest.raises(EngineError, match="no table named"):
        e.table_add("x", (Exact(1),), ActionCall("fwd", (1,)))


# ------------------------------------------------------------ stateful


def test_counters_registers_direct_counters() -> None:
    p = eth_program()
    p.counters.append({"name": "c", "id": 0, "is_direct": False, "size": 4})
    p.counters.append({"name": "t_counter", "id": 1, "is_direct": True, "binding": "t"})
    p.registers.append({"name": "r", "id": 0, "size": 4, "bitwidth": 16})
    p.action(
        "act",
        [
            prim("count", {"type": "counter_array", "value": "c"}, f("h", "a")),
            prim(
                "register_read", f("h", "c"), {"type": "register_array", "value": "r"}, f("h", "a")
            ),
            prim(
                "register_write",
                {"type": "register_array", "value": "r"},
                f("h", "a"),
                expr(op("+", f("h", "c"), hx(0x10001))),
            ),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [("exact", f("h", "b"))], [0], default=(0, []), with_counters=True)
    e = load(p)
    hdl = e.table_add("t", (Exact(5),), ActionCall("act"))
    e.register_write("r", 2, 0x00FF)
    frame = eth() + hbytes(2, 5, 0, 0) + b"xyz"
    assert e.process(0, frame) == [(1, eth() + hbytes(2, 5, 0x00FF, 0) + b"xyz")]
    assert e.register_read("r", 2) == 0x0100  # (0xff + 0x10001) masked to 16 bits
    assert e.counter_read("c", 2) == CounterValue(1, len(frame))
    assert e.direct_counter_read("t", hdl) == CounterValue(1, len(frame))
    e.process(0, eth() + hbytes(2, 6, 0, 0))  # miss: direct counter unchanged
    assert e.direct_counter_read("t", hdl) == CounterValue(1, len(frame))
    e.counter_write("c", 2, CounterValue(0, 0))
    assert e.counter_read("c", 2) == CounterValue(0, 0)
    with pytest.raises(EngineError, match="out of range"):
        e.counter_read("c", 4)
    with pytest.raises(EngineError, match="does not fit"):
        e.register_write("r", 0, 1 << 16)


def test_meter_colors_with_injected_clock() -> None:
    now = [0.0]
    p = eth_program()
    p.meters.append(
        {"name": "m", "id": 0, "is_direct": False, "size": 2, "rate_count": 2, "type": "packets"}
    )
    p.action(
        "meter",
        [
            prim("execute_meter", {"type": "meter_array", "value": "m"}, hx(1), f("h", "a")),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = SoftEngine(clock=lambda: now[0])
    e.load(p.json())
    frame = eth() + hbytes(9, 0, 0, 0)

    def color() -> int:
        return e.process(0, frame)[0][1][14]

    assert color() == 0  # unconfigured meter: green
    e.meter_set("m", 1, cir=1, cburst=1, pir=2, pburst=2)
    assert [color(), color(), color()] == [0, 1, 2]
    now[0] = 1.0  # one second: 1 committed token, 2 peak tokens
    assert [color(), color(), color()] == [0, 1, 2]


# ------------------------------------------------------------ selectors


def test_action_selector_picks_member_by_crc16_modulo_group_size() -> None:
    from softswitch.engine_hash import crc16

    p = eth_program()
    fwd = fwd_action(p)
    p.profiles.append(
        {
            "name": "sel",
            "id": 0,
            "max_size": 64,
            "selector": {"algo": "crc16", "input": [f("h", "c"), f("h", "d")]},
        }
    )
    p.table(
        "ingress",
        "t",
        [("exact", f("h", "a"))],
        [fwd],
        default=(fwd, [9]),
        type="indirect_ws",
        action_profile="sel",
    )
    e = load(p)
    for mid, port in ((10, 1), (11, 2), (12, 3)):
        e.member_set("sel", mid, ActionCall("fwd", (port,)))
    e.group_set("sel", 1, [12, 10, 11])  # order given does not matter: member handles do
    e.table_add("t", (Exact(1),), GroupRef(1))
    seen = set()
    for c in range(40):
        out = e.process(0, eth() + hbytes(1, 0, c, 0x01020304))
        expect = [1, 2, 3][crc16(c.to_bytes(2, "big") + bytes([1, 2, 3, 4])) % 3]
        assert out[0][0] == expect
        seen.add(expect)
    assert seen == {1, 2, 3}
    with pytest.raises(EngineError, match="still in group"):
        e.member_delete("sel", 10)


# ------------------------------------------------------------ PRE


def _rid_program() -> Program:
    p = eth_program()
    p.field_lists.append({"id": 1, "name": "fl", "elements": [f("scalars", "m16")]})
    p.action(
        "ing",
        [
            assign(f(SM, "mcast_grp"), f("h", "a")),
            assign(f(SM, "egress_spec"), hx(1)),
            assign(f("scalars", "m16"), hx(0x77)),
        ],
    )
    p.action(
        "egr",
        [
            assign(f("h", "c"), f(SM, "egress_rid")),
            assign(f("h", "b"), f(SM, "instance_type")),
            assign(f("h", "d"), f("scalars", "m16")),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    p.table("egress", "e", [], [1], default=(1, []))
    return p


def test_multicast_replicas_carry_egress_rid() -> None:
    e = load(_rid_program())
    e.mc_group_set(5, [Replica(3, 100), Replica(2, 100), Replica(4, 200)])
    out = e.process(0, eth() + hbytes(5, 0, 0, 0))
    assert out == [
        (2, eth() + hbytes(5, 5, 100, 0x77)),
        (3, eth() + hbytes(5, 5, 100, 0x77)),
        (4, eth() + hbytes(5, 5, 200, 0x77)),
    ]
    # unknown group: nothing out
    assert e.process(0, eth() + hbytes(6, 0, 0, 0)) == []
    # group 0: unicast to egress_spec 1, instance_type NORMAL
    assert e.process(0, eth() + hbytes(0, 0, 0, 0)) == [(1, eth() + hbytes(0, 0, 0, 0x77))]
    e.mc_group_delete(5)
    assert e.process(0, eth() + hbytes(5, 0, 0, 0)) == []


def test_clone_i2e_reparses_original_and_keeps_field_list() -> None:
    p = _rid_program()
    p.actions[0]["primitives"].insert(0, prim("clone_ingress_pkt_to_egress", hx(7), hx(1)))
    p.actions[0]["primitives"].append(
        assign(f("h", "a"), hx(0xEE))
    )  # modified only in the original
    e = load(p)
    e.clone_session_set(7, [Replica(9, 1)])
    out = e.process(0, eth() + hbytes(0, 0, 0, 0))
    assert out == [
        # the clone: original bytes, instance_type 1, rid 1, m16 preserved by field list 1
        (9, eth() + hbytes(0, 1, 1, 0x77)),
        (1, eth() + hbytes(0xEE, 0, 0, 0x77)),
    ]


def test_clone_e2e_and_egress_drop() -> None:
    p = _rid_program()
    p.actions[1]["primitives"] += [
        prim("clone_egress_pkt_to_egress", hx(8), hx(1)),
        prim("mark_to_drop", hdr(SM)),
    ]
    # the clone must not clone again: only clone/drop when instance_type == 0
    p.conditional("egress", "c", op("==", f(SM, "instance_type"), hx(0)), "e", None)
    p.action(
        "ecl",
        [assign(f("h", "c"), f(SM, "egress_rid")), assign(f("h", "b"), f(SM, "instance_type"))],
    )
    p.table("egress", "e2", [], [2], default=(2, []))
    p.conditionals["egress"][0]["false_next"] = "e2"
    p.init["egress"] = "c"
    e = load(p)
    e.clone_session_set(8, [Replica(6, 3)])
    out = e.process(0, eth() + hbytes(0, 0, 0, 0))
    # the original is dropped in egress; the E2E clone carries the egress
    # pipeline's header changes, rid 3, instance_type 2
    assert out == [(6, eth() + hbytes(0, 2, 3, 0x77))]


def test_resubmit_and_recirculate_with_field_lists() -> None:
    p = eth_program()
    p.field_lists.append({"id": 1, "name": "fl", "elements": [f("scalars", "m8")]})
    # ingress: first pass (instance_type 0) -> resubmit with m8 = 1;
    # resubmitted pass -> forward to port 2, stamp instance_type and m8 into h
    p.action("resub", [assign(f("scalars", "m8"), hx(1)), prim("resubmit", hx(1))])
    p.action(
        "out",
        [
            assign(f(SM, "egress_spec"), hx(2)),
            assign(f("h", "a"), f(SM, "instance_type")),
            assign(f("h", "b"), f("scalars", "m8")),
        ],
    )
    p.conditional("ingress", "c", op("==", f(SM, "instance_type"), hx(0)), "t1", "t2")
    p.table("ingress", "t1", [], [0], default=(0, []))
    p.table("ingress", "t2", [], [1], default=(1, []))
    p.init["ingress"] = "c"
    # egress (instance_type is NORMAL again there): m8 == 1 -> recirculate once
    # with m8 = 2
    p.action(
        "recirc",
        [
            assign(f("scalars", "m8"), hx(2)),
            prim("recirculate", hx(1)),
            assign(f("h", "c"), hx(0xCC)),
        ],
    )
    p.conditional("egress", "ce", op("==", f("scalars", "m8"), hx(1)), "t3", None)
    p.table("egress", "t3", [], [2], default=(2, []))
    p.init["egress"] = "ce"
    e = load(p)
    out = e.process(0, eth() + hbytes(0, 0, 0, 0) + b"p")
    # pass 1: resubmit; pass 2 (type 6, m8 1): out + recirculate (deparsed with c=0xCC);
    # pass 3 (type 4, m8 2): h.a = 4, h.b = 2
    assert out == [(2, eth() + hbytes(4, 2, 0xCC, 0) + b"p")]


# ------------------------------------------------------------ stacks, checksums


def test_header_stack_extract_push_pop() -> None:
    p = Program()
    p.header_type("ethernet_t", [("dst", 48), ("src", 48), ("type", 16)])
    p.header_type("l_t", [("label", 20), ("tc", 3), ("bos", 1), ("ttl", 8)])
    p.header("ethernet", "ethernet_t")
    p.stack("mpls", "l_t", 3)
    p.state(
        "start",
        [Program.extract("ethernet")],
        key=[f("ethernet", "type")],
        transitions=[(0x8847, None, "parse_mpls"), (None, None, None)],
    )
    p.state(
        "parse_mpls",
        [{"op": "extract", "parameters": [{"type": "stack", "value": "mpls"}]}],
        key=[{"type": "stack_field", "value": ["mpls", "bos"]}],
        transitions=[(0, None, "parse_mpls"), (None, None, None)],
    )
    p.deparse_order = ["ethernet", "mpls[0]", "mpls[1]", "mpls[2]"]
    p.action(
        "swap",
        [
            prim("pop", {"type": "header_stack", "value": "mpls"}, hx(1)),
            prim("push", {"type": "header_stack", "value": "mpls"}, hx(2)),
            prim("add_header", hdr("mpls[0]")),
            prim("add_header", hdr("mpls[1]")),
            assign(f("mpls[0]", "label"), hx(0xABCDE)),
            assign(
                f("mpls[1]", "label"),
                expr(op("last_stack_index", None, {"type": "header_stack", "value": "mpls"})),
            ),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = load(p)

    def lbl(label: int, bos: int, ttl: int = 64) -> bytes:
        return ((label << 12) | (bos << 8) | ttl).to_bytes(4, "big")

    frame = eth(etype=0x8847) + lbl(100, 0) + lbl(200, 1) + b"ip"
    # pop 1 -> [200]; push 2 -> [_, _, 200]; count 1+2 = 3 -> last index 2
    out = e.process(0, frame)
    assert out == [(1, eth(etype=0x8847) + lbl(0xABCDE, 0, 0) + lbl(2, 0, 0) + lbl(200, 1) + b"ip")]
    # 4 labels do not fit a 3-stack: StackOutOfBounds, the 4th label stays payload
    frame4 = eth(etype=0x8847) + lbl(1, 0) + lbl(2, 0) + lbl(3, 0) + lbl(4, 1)
    assert e.process(0, frame4)[0][0] == 1


def test_checksum_verify_and_update_with_payload() -> None:
    p = eth_program()
    p.calculations.append(
        {
            "name": "calc",
            "id": 0,
            "algo": "csum16",
            "input": [f("h", "a"), f("h", "b"), f("h", "d"), {"type": "payload"}],
        }
    )
    p.checksums.append(
        {
            "name": "ck_v",
            "id": 0,
            "target": ["h", "c"],
            "type": "generic",
            "calculation": "calc",
            "verify": True,
            "update": False,
            "if_cond": op("d2b", None, f("h", "$valid$")),
        }
    )
    p.checksums.append(
        {
            "name": "ck_u",
            "id": 1,
            "target": ["h", "c"],
            "type": "generic",
            "calculation": "calc",
            "verify": False,
            "update": True,
            "if_cond": op("d2b", None, f("h", "$valid$")),
        }
    )
    p.action(
        "a",
        [
            assign(f("ethernet", "type"), expr(op("|", hx(0x8800), f(SM, "checksum_error")))),
            assign(f("h", "d"), hx(0x11223344)),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = load(p)

    csum = inet_csum

    payload = b"abc"
    good = csum(bytes([1, 2]) + (5).to_bytes(4, "big") + payload)
    new = csum(bytes([1, 2]) + (0x11223344).to_bytes(4, "big") + payload)
    # correct checksum: no checksum_error; updated for the new d
    assert e.process(0, eth() + hbytes(1, 2, good, 5) + payload) == [
        (1, eth(etype=0x8800) + hbytes(1, 2, new, 0x11223344) + payload)
    ]
    # wrong checksum: checksum_error = 1 (the packet is not dropped)
    assert e.process(0, eth() + hbytes(1, 2, good ^ 1, 5) + payload) == [
        (1, eth(etype=0x8801) + hbytes(1, 2, new, 0x11223344) + payload)
    ]


def test_hash_primitive_with_base_and_max() -> None:
    from softswitch.engine_hash import crc32

    p = eth_program()
    p.calculations.append(
        {"name": "h32", "id": 0, "algo": "crc32", "input": [f("h", "a"), f("h", "d")]}
    )
    p.action(
        "hash",
        [
            prim(
                "modify_field_with_hash_based_offset",
                f("h", "c"),
                hx(10),
                {"type": "calculation", "value": "h32"},
                hx(1000),
            ),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = load(p)
    out = e.process(0, eth() + hbytes(3, 0, 0, 0xCAFEBABE))
    expect = crc32(bytes([3]) + (0xCAFEBABE).to_bytes(4, "big")) % 1000 + 10
    assert out == [(1, eth() + hbytes(3, 0, expect, 0xCAFEBABE))]


# ------------------------------------------------------------ refusal


def test_unsupported_constructs_are_refused_and_old_program_kept() -> None:
    p = eth_program()
    fwd = fwd_action(p)
    p.table("ingress", "t", [], [fwd], default=(fwd, [3]))
    e = load(p)
    bad = eth_program()
    bad.action("d", [prim("generate_digest", hx(1), hx(1))])
    with pytest.raises(UnsupportedConstruct, match="primitive 'generate_digest'"):
        e.load(bad.json())
    assert e.process(0, eth()) == [(3, eth())]  # old program still runs
    for key, val, msg in (
        ("learn_lists", [{"name": "L", "id": 1, "elements": []}], "learn_lists"),
        ("parse_vsets", [{"name": "pv", "id": 0, "compressed_bitwidth": 8}], "parse_vsets"),
        ("extern_instances", [{"name": "x", "id": 0, "type": "ext"}], "extern_instances"),
        ("something_new", 1, "top-level key 'something_new'"),
    ):
        b = eth_program()
        b.extra[key] = val
        with pytest.raises(UnsupportedConstruct, match=msg):
            SoftEngine().load(b.json())
    b = eth_program()
    b.calculations.append({"name": "x", "id": 0, "algo": "xxh64", "input": []})
    with pytest.raises(UnsupportedConstruct, match="xxh64"):
        SoftEngine().load(b.json())
    b = eth_program()
    b.action("x", [assign(f("h", "a"), expr(op("**", hx(1), hx(2))))])
    with pytest.raises(UnsupportedConstruct, match=r"operator '\*\*'"):
        SoftEngine().load(b.json())


def test_malformed_json_is_a_precise_engine_error() -> None:
    p = eth_program()
    p.action("x", [assign(f("nope", "a"), hx(1))])
    with pytest.raises(EngineError, match=r"unknown field nope\.a"):
        SoftEngine().load(p.json())


def test_no_program_processes_nothing() -> None:
    assert SoftEngine().process(1, b"\x00" * 20) == []


def test_ternary_delete_and_equal_priority_order() -> None:
    p = eth_program()
    fwd = fwd_action(p)
    p.table("ingress", "t", [("ternary", f("h", "a"))], [fwd], default=(fwd, [9]))
    e = load(p)
    h1 = e.table_add("t", (Ternary(0x10, 0xF0),), ActionCall("fwd", (1,)), priority=5)
    h2 = e.table_add("t", (Ternary(0x12, 0xFF),), ActionCall("fwd", (2,)), priority=5)
    h3 = e.table_add("t", (None,), ActionCall("fwd", (3,)), priority=1)

    def port() -> int:
        return e.process(0, eth() + hbytes(0x12, 0, 0, 0))[0][0]

    assert port() == 1  # same priority: the older entry wins
    e.table_delete("t", h1)
    assert port() == 2
    e.table_delete("t", h2)
    assert port() == 3
    e.table_delete("t", h3)
    assert port() == 9
    with pytest.raises(EngineError, match="no entry"):
        e.table_delete("t", h3)
    # the key is free again
    e.table_add("t", (Ternary(0x10, 0xF0),), ActionCall("fwd", (4,)), priority=5)
    assert port() == 4
