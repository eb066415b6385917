"""bmv2 hash algorithms (check values) and the in-process port layer."""

from __future__ import annotations

import pytest

from softswitch import engine_hash
from softswitch.api import ActionCall, Exact
from softswitch.engine import SoftEngine
from softswitch.ports import MemoryPort, PortHub, parse_interface
from tests.unit.softswitch_engine.jsonprog import assign, eth_program, f, rd

CHECK = b"123456789"


def test_crc_check_values_match_bmv2_algorithms() -> None:
    # bmv2 crc16 = CRC-16/ARC, crc32 = CRC-32 (zlib), crcCCITT = CRC-16/CCITT-FALSE
    assert engine_hash.crc16(CHECK) == 0xBB3D
    assert engine_hash.crc32(CHECK) == 0xCBF43926
    assert engine_hash.crc_ccitt(CHECK) == 0x29B1
    assert engine_hash.crc16_custom(CHECK) == 0xBB3D
    assert engine_hash.crc32_custom(CHECK) == 0xCBF43926
    assert engine_hash.crc8_custom(CHECK) == 0xF4  # CRC-8 (poly 0x07)


def test_csum16_identity_xor() -> None:
    # RFC 1071 example words 0001 f203 f4f5 f6f7 -> sum ddf2 -> checksum 220d
    assert engine_hash.csum16(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert engine_hash.csum16(b"\x01") == 0xFEFF  # odd byte padded with zero
    assert engine_hash.identity(bytes.fromhex("0102")) == 0x0102
    assert engine_hash.identity(bytes(range(1, 11))) == 0x0102030405060708
    assert engine_hash.xor16(bytes.fromhex("123456")) == 0x1234 ^ 0x5600
    assert engine_hash.xor32(bytes.fromhex("0102030405")) == 0x01020304 ^ 0x05000000


def test_round_robin_hashes_are_per_instance() -> None:
    rr = engine_hash.get_hash("round_robin")
    assert rr is not None
    assert [rr(b"x"), rr(b"x"), rr(b"y")] == [0, 1, 2]
    rc = engine_hash.get_hash("round_robin_consistent")
    assert rc is not None
    assert [rc(b"a"), rc(b"b"), rc(b"a")] == [0, 1, 0]
    assert engine_hash.get_hash("xxh64") is None


def test_port_hub_dispatches_outputs_and_cpu() -> None:
    p = eth_program()
    fwd = p.action("fwd", [assign(f("standard_metadata", "egress_spec"), rd(0))], [("port", 9)])
    p.table("ingress", "t", [("exact", f("h", "a"))], [fwd], default=(fwd, [3]))
    e = SoftEngine()
    e.load(p.json())
    e.table_add("t", (Exact(1),), ActionCall("fwd", (255,)))
    hub = PortHub(e, cpu_port=255)
    p1, p2 = MemoryPort(), MemoryPort()
    hub.attach(1, p1)
    hub.attach(2, p2)
    to_cpu: list[bytes] = []
    hub.cpu_hook = to_cpu.append
    frame = bytes(12) + b"\x88\xb5" + bytes([1]) + bytes(7)
    hub.receive(1, frame)
    other = bytes(12) + b"\x08\x00"
    hub.receive(2, other)  # to port 3, which has no driver
    assert to_cpu == [frame]
    assert p1.sent == p2.sent == []
    assert hub.stats.dropped_no_port == 1
    with pytest.raises(ValueError, match="already bound"):
        hub.attach(1, MemoryPort())
    with pytest.raises(ValueError, match="CPU port"):
        hub.attach(255, MemoryPort())


def test_parse_interface() -> None:
    assert parse_interface("3@veth3") == (3, "veth3")
    for bad, msg in (("veth3", "PORT@IFNAME"), ("x@veth", "integer"), ("511@v", "0..510")):
        with pytest.raises(ValueError, match=msg):
            parse_interface(bad)


def test_cli_arguments_are_validated_up_front() -> None:
    from softswitch.cli import _check, build_parser

    def check(*argv: str) -> list[tuple[int, str]]:
        return _check(build_parser().parse_args(list(argv)))

    assert check("-i", "1@veth1", "-i", "2@veth3", "--cpu-port", "255", "--no-p4") == [
        (1, "veth1"),
        (2, "veth3"),
    ]
    assert check("prog.json") == []
    for argv, msg in (
        (("--no-p4", "prog.json"), "mutually exclusive"),
        ((), "--no-p4"),
        (("-i", "1@a", "-i", "1@b", "--no-p4"), "bound twice"),
        (("-i", "5@a", "--cpu-port", "5", "--no-p4"), "CPU port"),
        (("--cpu-port", "600", "--no-p4"), "--cpu-port"),
        (("--device-id", "-1", "--no-p4"), "--device-id"),
    ):
        with pytest.raises(ValueError, match=msg):
            check(*argv)


def test_restore_vlan_from_packet_auxdata() -> None:
    import struct

    from softswitch.ports import PACKET_AUXDATA, SOL_PACKET, restore_vlan

    untagged = bytes.fromhex("0a0b0c0d0e0f010203040506") + b"\x08\x00" + bytes(46)
    # what a veth reported for a frame sent with tag 0x8100 / vid 42
    aux = bytes.fromhex("510000003c0000003c00000000000e002a000081")
    assert restore_vlan(untagged, [(SOL_PACKET, PACKET_AUXDATA, aux)]) == (
        untagged[:12] + b"\x81\x00\x00\x2a" + untagged[12:]
    )
    # 802.1ad outer tag, TPID reported
    aux_ad = struct.pack("=IIIHHHH", 0x51, 60, 60, 0, 14, 0x2005, 0x88A8)
    assert restore_vlan(untagged, [(SOL_PACKET, PACKET_AUXDATA, aux_ad)]) == (
        untagged[:12] + b"\x88\xa8\x20\x05" + untagged[12:]
    )
    # no tag: unchanged
    none = struct.pack("=IIIHHHH", 0x1, 60, 60, 0, 14, 0, 0)
    assert restore_vlan(untagged, [(SOL_PACKET, PACKET_AUXDATA, none)]) == untagged
    assert restore_vlan(untagged, []) == untagged


def test_cli_accepts_simple_switch_grpc_style_separator(monkeypatch: pytest.MonkeyPatch) -> None:
    from softswitch import cli

    seen: list[object] = []

    async def fake_run(args: object, ifaces: object) -> int:
        seen.append((vars(args)["grpc_server_addr"], vars(args)["cpu_port"], ifaces))
        return 0

    monkeypatch.setattr(cli, "run", fake_run)
    argv = [
        "-i",
        "1@veth1",
        "--no-p4",
        "--",
        "--grpc-server-addr",
        "127.0.0.1:9559",
        "--cpu-port",
        "255",
    ]
    assert cli.main(argv) == 0
    assert seen == [("127.0.0.1:9559", 255, [(1, "veth1")])]
    assert cli.main(["--no-p4", "x.json"]) == 2
