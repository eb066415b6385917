"""bmv2's own simple_switch tests, ported: same p4c-compiled JSON, same inputs.

data/packet_redirect.{p4,json}, data/parser_error.{p4,json} and
data/recirc.{p4,json} are the files of
behavioral-model/targets/simple_switch/tests/testdata; the expectations are
those of test_packet_redirect.cpp, test_parser_error.cpp and test_recirc.cpp,
made exact (every output's bytes and port, where bmv2's tests check one byte).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softswitch.api import ActionCall, Exact, Replica, Ternary
from softswitch.engine import SoftEngine

DATA = Path(__file__).parent / "data"


def engine(name: str) -> SoftEngine:
    e = SoftEngine()
    e.load(json.loads((DATA / f"{name}.json").read_text()))
    return e


@pytest.fixture
def redirect() -> SoftEngine:
    e = engine("packet_redirect")
    # the default actions test_packet_redirect.cpp sets up
    for table in ("t_ingress_1", "t_ingress_2", "t_egress"):
        e.table_set_default(table, ActionCall("_nop"))
    e.table_set_default("t_exit", ActionCall("set_hdr"))
    return e


def set_port(e: SoftEngine, f1: int, meta: int, port: int) -> None:
    e.table_add("t_ingress_1", (Exact(f1), Exact(meta)), ActionCall("_set_port", (port,)))


NORMAL_ONLY = Ternary(0, 0xFFFFFFFF)


def test_baseline_packet_length_after_remove_header(redirect: SoftEngine) -> None:
    set_port(redirect, 1, 0, 2)
    # hdrA2 removed: 2 bytes out, hdrA.f2 = packet_length = 2
    assert redirect.process(1, b"\x01\x00\x00\x00") == [(2, b"\x01\x02")]


def test_multicast_copies(redirect: SoftEngine) -> None:
    redirect.table_add("t_ingress_1", (Exact(2), Exact(0)), ActionCall("_multicast", (1,)))
    redirect.mc_group_set(1, [Replica(1, 0), Replica(2, 0)])
    assert redirect.process(1, b"\x02\x00\x00\x00") == [(1, b"\x02\x02"), (2, b"\x02\x02")]


def test_clone_i2e(redirect: SoftEngine) -> None:
    set_port(redirect, 3, 0, 2)
    redirect.table_add(
        "t_ingress_2", (Exact(3), Ternary(0, 0)), ActionCall("_clone_i2e", (1,)), priority=1
    )
    redirect.clone_session_set(1, [Replica(3, 0)])
    # the clone is the packet as received (4 bytes, packet_length 4)
    assert redirect.process(1, b"\x03\x00\x00\x00") == [
        (3, b"\x03\x04\x00\x00"),
        (2, b"\x03\x02"),
    ]


def test_clone_i2e_to_port_and_group(redirect: SoftEngine) -> None:
    set_port(redirect, 3, 0, 2)
    redirect.table_add(
        "t_ingress_2", (Exact(3), Ternary(0, 0)), ActionCall("_clone_i2e", (1,)), priority=1
    )
    redirect.clone_session_set(1, [Replica(3, 0), Replica(4, 0)])
    out = redirect.process(1, b"\x03\x00\x00\x00")
    assert sorted(out) == [(2, b"\x03\x02"), (3, b"\x03\x04\x00\x00"), (4, b"\x03\x04\x00\x00")]


def test_clone_e2e(redirect: SoftEngine) -> None:
    set_port(redirect, 4, 0, 2)
    redirect.table_add(
        "t_egress",
        (Exact(4), NORMAL_ONLY, Ternary(0, 0xFF)),
        ActionCall("_clone_e2e", (1,)),
        priority=1,
    )
    redirect.clone_session_set(1, [Replica(3, 0)])
    # the E2E clone carries the egress-modified headers (hdrA2 removed)
    assert redirect.process(1, b"\x04\x00\x00\x00") == [(3, b"\x04\x02"), (2, b"\x04\x02")]


def test_resubmit_preserves_field_list(redirect: SoftEngine) -> None:
    set_port(redirect, 5, 0, 2)
    set_port(redirect, 5, 1, 3)  # metaA.f1 = 1 comes back with the resubmit
    redirect.table_add("t_ingress_2", (Exact(5), NORMAL_ONLY), ActionCall("_resubmit"), priority=1)
    assert redirect.process(1, b"\x05\x00\x00\x00") == [(3, b"\x05\x02")]


def test_recirculate_preserves_field_list(redirect: SoftEngine) -> None:
    set_port(redirect, 6, 0, 2)
    set_port(redirect, 6, 1, 3)
    redirect.table_add(
        "t_egress",
        (Exact(6), NORMAL_ONLY, Ternary(0, 0xFF)),
        ActionCall("_recirculate"),
        priority=1,
    )
    # pass 1 deparses 06 04 00 00 (hdrA2 removed, f2 = 4); pass 2 with
    # metaA.f1 = 1 goes to port 3 and removes the (new) hdrA2
    assert redirect.process(1, b"\x06\x00\x00\x00\x00\x00") == [(3, b"\x06\x02")]


def test_exit_in_ingress(redirect: SoftEngine) -> None:
    redirect.table_add("t_ingress_1", (Exact(7), Exact(0)), ActionCall("_exit"))
    assert redirect.process(1, b"\x07\x00\x00\x00") == [(0, b"\x07\x04\x00\x00")]


@pytest.mark.parametrize(
    ("frame", "out"),
    [
        (b"\x00\x00\x00\x05", b"\x00\x00\x00\x00"),  # NoError
        (b"\x00\x00", b"\x00\x00\x00\x01\x00\x00"),  # PacketTooShort: setValid, payload kept
        (b"\x00\x00\x00\x14", b"\x00\x00\x00\x02"),  # verify() fails: CustomError
    ],
)
def test_parser_error_codes(frame: bytes, out: bytes) -> None:
    e = engine("parser_error")
    assert e.process(3, frame) == [(3, out)]


def test_recirc_keeps_standard_metadata_of_the_field_list() -> None:
    e = engine("recirc")
    # pass 1 loops back, egress sets f1 = 1, adds hdrA2 and recirculates
    # keeping standard_metadata (so ingress_port); pass 2 parses hdrA2 and
    # the parser sets it to 0xab
    assert e.process(3, b"\x00") == [(3, b"\x01\xab")]
