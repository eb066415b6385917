"""Packet engine: unions, exit, truncate, jumps in actions, profiles, direct meters."""

from __future__ import annotations

import pytest

from softswitch.api import ActionCall, EngineError, Exact, MemberRef
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
)
from tests.unit.softswitch_engine.test_engine_core import eth, hbytes, load

SM = "standard_metadata"


def test_header_union_members_are_exclusive() -> None:
    p = eth_program()
    p.header_type("u1_t", [("x", 16)])
    p.header_type("u2_t", [("y", 32)])
    p.header("u.a", "u1_t")
    p.header("u.b", "u2_t")
    p.header_union_types.append({"name": "u_t", "id": 0, "headers": [["a", "u1_t"], ["b", "u2_t"]]})
    p.header_unions.append({"name": "u", "id": 0, "union_type": "u_t", "header_ids": [4, 5]})
    p.states = []
    p.state(
        "start",
        [Program.extract("ethernet")],
        key=[f("ethernet", "type")],
        transitions=[(0x1111, None, "pa"), (0x2222, None, "pb"), (None, None, None)],
    )
    p.state("pa", [Program.extract("u.a")])
    p.state("pb", [Program.extract("u.b")])
    p.deparse_order = ["ethernet", "u.a", "u.b"]
    p.action(
        "swap",
        [
            # a valid -> make b valid (a becomes invalid: union semantics)
            prim("add_header", hdr("u.b")),
            assign(f("u.b", "y"), hx(0xB0B0B0B0)),
            assign(
                f("ethernet", "src"),
                expr(
                    op(
                        "|",
                        op("<<", op("b2d", None, op("valid", None, hdr("u.a"))), hx(4)),
                        op(
                            "b2d",
                            None,
                            op("valid_union", None, {"type": "header_union", "value": "u"}),
                        ),
                    )
                ),
            ),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = load(p)
    out = e.process(0, eth(etype=0x1111) + b"\xaa\xaa" + b"rest")
    assert out == [(1, eth(src=0x01, etype=0x1111) + bytes.fromhex("b0b0b0b0") + b"rest")]


def test_exit_stops_the_pipeline_but_finishes_the_action() -> None:
    p = eth_program()
    p.action(
        "a1",
        [assign(f(SM, "egress_spec"), hx(1)), prim("exit"), assign(f("h", "a"), hx(0x11))],
    )
    p.action("a2", [assign(f("h", "b"), hx(0x22))])
    p.table("ingress", "t1", [], [0], default=(0, []), base_next="t2")
    p.table("ingress", "t2", [], [1], default=(1, []))
    p.action("a3", [assign(f("h", "c"), hx(0x33))])
    p.table("egress", "t3", [], [2], default=(2, []))
    e = load(p)
    # t2 skipped; egress still runs (exit only ends ingress)
    assert e.process(0, eth() + hbytes(0, 0, 0, 0)) == [(1, eth() + hbytes(0x11, 0, 0x33, 0))]


def test_truncate_and_jumps_inside_actions() -> None:
    p = eth_program()
    # if (h.a == 1) { h.b = 1 } else { h.b = 2 }; truncate(16)
    p.action(
        "branch",
        [
            {
                "op": "_jump_if_zero",
                "parameters": [
                    expr(op("b2d", None, op("==", f("h", "a"), hx(1)))),
                    {"type": "hexstr", "value": "0x3"},
                ],
            },
            assign(f("h", "b"), hx(1)),
            {"op": "_jump", "parameters": [{"type": "hexstr", "value": "0x4"}]},
            assign(f("h", "b"), hx(2)),
            prim("truncate", hx(16)),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = load(p)
    assert e.process(0, eth() + hbytes(1, 0, 0, 0) + b"zz") == [
        (1, (eth() + hbytes(1, 1, 0, 0))[:16])
    ]
    assert e.process(0, eth() + hbytes(5, 0, 0, 0)) == [(1, (eth() + hbytes(5, 2, 0, 0))[:16])]


def test_action_profile_members_and_valid_key() -> None:
    p = eth_program()
    fwd = p.action("fwd", [assign(f(SM, "egress_spec"), rd(0))], [("port", 9)])
    p.profiles.append({"name": "prof", "id": 0, "max_size": 8})
    p.table(
        "ingress",
        "t",
        [("valid", "h")],
        [fwd],
        default=(fwd, [9]),
        type="indirect",
        action_profile="prof",
    )
    e = load(p)
    e.member_set("prof", 1, ActionCall("fwd", (4,)))
    e.table_add("t", (Exact(1),), MemberRef(1))
    assert e.process(0, eth() + hbytes(0, 0, 0, 0))[0][0] == 4
    assert e.process(0, eth(etype=0x800))[0][0] == 9
    e.member_set("prof", 1, ActionCall("fwd", (5,)))  # modify in place
    assert e.process(0, eth() + hbytes(0, 0, 0, 0))[0][0] == 5
    with pytest.raises(EngineError, match="action profile"):
        e.table_add("t", (Exact(0),), ActionCall("fwd", (1,)))
    with pytest.raises(EngineError, match="no member 7"):
        e.table_add("t", (Exact(0),), MemberRef(7))
    with pytest.raises(EngineError, match="used by table"):
        e.member_delete("prof", 1)


def test_direct_meter_writes_color_on_hit() -> None:
    now = [0.0]
    p = eth_program()
    fwd = p.action("fwd", [assign(f(SM, "egress_spec"), rd(0))], [("port", 9)])
    p.meters.append(
        {
            "name": "dm",
            "id": 0,
            "is_direct": True,
            "rate_count": 2,
            "type": "packets",
            "size": 16,
            "binding": "t",
            "result_target": ["h", "a"],
        }
    )
    p.table("ingress", "t", [("exact", f("h", "b"))], [fwd], default=(fwd, [9]), direct_meters="dm")
    e = SoftEngine(clock=lambda: now[0])
    e.load(p.json())
    hdl = e.table_add("t", (Exact(1),), ActionCall("fwd", (1,)))
    frame = eth() + hbytes(0xFF, 1, 0, 0)
    assert e.process(0, frame)[0][1][14] == 0  # unconfigured: green
    # direct meters are configured by (meter, entry handle)
    e.meter_set("dm", hdl, cir=0, cburst=1, pir=0, pburst=2)
    assert [e.process(0, frame)[0][1][14] for _ in range(3)] == [0, 1, 2]
    # a miss does not touch the result field
    assert e.process(0, eth() + hbytes(0xFF, 2, 0, 0))[0][1][14] == 0xFF


def test_signed_fields_extract_and_compare() -> None:
    p = Program()
    p.header_types.append({"name": "s_t", "id": 2, "fields": [["v", 8, True], ["w", 8, False]]})
    p.header("s", "s_t")
    p.state("start", [Program.extract("s")])
    p.deparse_order = ["s"]
    # w = (v < 0) ? 1 : 0 ; v = v - 1 (wraps from -128 to 127)
    p.action(
        "a",
        [
            assign(f("s", "w"), expr(op("b2d", None, op("<", f("s", "v"), hx(0))))),
            assign(f("s", "v"), expr(op("two_comp_mod", op("-", f("s", "v"), hx(1)), hx(8)))),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.table("ingress", "t", [], [0], default=(0, []))
    e = load(p)
    assert e.process(0, b"\x80\x00") == [(1, b"\x7f\x01")]
    assert e.process(0, b"\x05\x00") == [(1, b"\x04\x00")]


def test_global_timestamps_are_microseconds_since_start() -> None:
    now = [100.0]
    p = eth_program()
    p.action(
        "ts",
        [
            assign(f("h", "d"), f(SM, "ingress_global_timestamp")),
            assign(f(SM, "egress_spec"), hx(1)),
        ],
    )
    p.action("ets", [assign(f("h", "c"), f(SM, "egress_global_timestamp"))])
    p.table("ingress", "t", [], [0], default=(0, []))
    p.table("egress", "e", [], [1], default=(1, []))
    e = SoftEngine(clock=lambda: now[0])
    e.load(p.json())
    now[0] = 100.25
    assert e.process(0, eth() + hbytes(0, 0, 0, 0)) == [
        (1, eth() + hbytes(0, 0, 250000 & 0xFFFF, 250000))
    ]
