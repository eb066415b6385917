"""What one P4Runtime request may cost the softswitch daemon (issue 18,
P4Runtime item 4): oversized requests are refused, a large batch is applied
while the ports keep forwarding, and many failing updates come back as an
error the client can read."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from p4.v1 import p4runtime_pb2

from tests.system.softswitch_proc import Softswitch
from tests.unit.softswitch_p4rt.harness import Client, write_errors
from tests.unit.softswitch_p4rt.p4rt_data import Ids, load_config, load_p4info

IDS = Ids(load_p4info())
INSERT = p4runtime_pb2.Update.INSERT
DELETE = p4runtime_pb2.Update.DELETE
BIG_METADATA = (("grpc.max_metadata_size", 64 << 20),)  # as the agent's client


def l2(mac: int, port_in: int = 1, port_out: int = 2) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=IDS.table("l2"))
    te.match.add(field_id=IDS.field("l2", "dst_addr")).exact.value = mac.to_bytes(6, "big")
    te.match.add(field_id=IDS.field("l2", "ingress_port")).exact.value = bytes([port_in])
    te.action.action.action_id = IDS.action("set_port")
    te.action.action.params.add(param_id=IDS.param("set_port", "port"), value=bytes([port_out]))
    return te


def upd(kind: int, te: p4runtime_pb2.TableEntry) -> p4runtime_pb2.Update:
    return p4runtime_pb2.Update(type=kind, entity=p4runtime_pb2.Entity(table_entry=te))


_SENTINEL = bytes.fromhex("a1b2c3d4e5f6")


def raw_request(kind: int, macs: range | list[int]) -> bytes:
    """A serialized WriteRequest (device 1, election id 1) of one l2 update
    per MAC, spliced from a template: building 20k protobuf messages costs
    the test client seconds."""
    te = l2(int.from_bytes(_SENTINEL, "big"))
    one = upd(kind, te).SerializeToString()
    head, tail = one.split(_SENTINEL)
    field = b"\x22" + bytes([len(one)])  # updates (field 4), one-byte length
    assert len(one) < 0x80
    body = b"".join(field + head + m.to_bytes(6, "big") + tail for m in macs)
    return write_request().SerializeToString() + body


def raw_write(c: Client, request: bytes, timeout: float = 60) -> None:
    write = c.channel.unary_unary(
        "/p4.v1.P4Runtime/Write",
        request_serializer=None,
        response_deserializer=p4runtime_pb2.WriteResponse.FromString,
    )
    write(request, timeout=timeout)


def l2_read() -> p4runtime_pb2.Entity:
    return p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry(table_id=IDS.table("l2")))


@contextlib.contextmanager
def primary(sw: Softswitch, options: tuple[tuple[str, int], ...] = ()) -> Iterator[Client]:
    c = Client(sw.address, election_id=1, channel=grpc.insecure_channel(sw.address, options))
    try:
        assert c.open_stream().arbitration.status.code == code_pb2.OK
        c.set_pipeline(load_config())
        yield c
    finally:
        c.close()


def write_request(*updates: p4runtime_pb2.Update) -> p4runtime_pb2.WriteRequest:
    req = p4runtime_pb2.WriteRequest(device_id=1)
    req.election_id.low = 1
    req.updates.extend(updates)
    return req


def test_limits_have_their_documented_defaults() -> None:
    from softswitch import cli
    from softswitch.p4runtime import Limits

    assert Limits() == Limits(8 << 20, 20_000, 256, 1 << 20)
    assert cli.limits(cli.build_parser().parse_args(["--no-p4"])) == Limits()


def test_oversized_requests_are_refused_and_change_nothing() -> None:
    with Softswitch(["--max-write-updates", "1000"]) as sw, primary(sw) as c:
        c.write(upd(INSERT, l2(1)))
        # over the message size (default 8 MiB): gRPC refuses it unread
        huge = l2(2)
        huge.match[0].exact.value = bytes(9 << 20)
        req = write_request(upd(INSERT, huge))
        size = req.ByteSize()
        with pytest.raises(grpc.RpcError) as e:
            c.stub.Write(req, timeout=30)
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"SERVER: Received message larger than max ({size} vs. {8 << 20})",
        )
        # over the updates per request: refused before any is applied
        with pytest.raises(grpc.RpcError) as e:
            raw_write(c, raw_request(INSERT, range(100, 1101)))
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "WriteRequest has 1001 updates; this switch takes at most 1000 in one request "
            "(--max-write-updates)",
        )
        (only,) = c.read(l2_read())
        assert only.table_entry.match[0].exact.value == b"\x01"  # l2(1), canonical
        # and the switch still serves: the largest allowed batch goes in
        raw_write(c, raw_request(INSERT, range(100, 1100)))
        assert len(c.read(l2_read())) == 1001


def test_many_failing_updates_come_back_readable() -> None:
    with Softswitch(["--max-write-error-bytes", "100000"]) as sw:
        # details within the limit: one p4.v1.Error per update (agent-sized client)
        with primary(sw, BIG_METADATA) as c:
            c.write(upd(INSERT, l2(7)))
            with pytest.raises(grpc.RpcError) as e:
                raw_write(c, raw_request(DELETE, range(7, 1007)))
            errors = write_errors(e.value)
            assert len(errors) == 1000
            assert errors[0] == (code_pb2.OK, "")
            assert {code for code, _ in errors[1:]} == {code_pb2.NOT_FOUND}
            assert e.value.details() == "999 of 1000 updates failed"
        # over it: a summary, which a client with gRPC's default limits reads
        with primary(sw) as c:
            raw_write(c, raw_request(INSERT, range(0, 4000, 2)))
            with pytest.raises(grpc.RpcError) as e:
                raw_write(c, raw_request(INSERT, range(4000)))  # the even ones exist
            assert e.value.code() == grpc.StatusCode.UNKNOWN
            first = "; ".join(
                f"#{i} ALREADY_EXISTS: table IngressImpl.l2: entry already exists"
                for i in range(0, 20, 2)
            )
            message = (
                "2000 of 4000 updates failed; per-update errors omitted: they exceed "
                f"100000 bytes (--max-write-error-bytes); first 10: {first}"
            )
            assert e.value.details() == message
            (blob,) = [v for k, v in e.value.trailing_metadata() if k == "grpc-status-details-bin"]
            status = status_pb2.Status.FromString(blob)
            assert (status.code, status.message, len(status.details)) == (
                code_pb2.UNKNOWN,
                message,
                0,
            )
            # the updates that could be applied were
            assert len(c.read(l2_read())) == 4000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def frame(dst: int, seq: int) -> bytes:
    return (
        dst.to_bytes(6, "big")
        + bytes.fromhex("020000000001")
        + b"\x88\xb5"
        + seq.to_bytes(8, "big")
        + bytes(38)
    )


def test_ports_keep_forwarding_while_a_batch_is_applied() -> None:
    """Rounds of three frames go through port 1: to the first MAC of a batch,
    to its last MAC, then a marker that is always forwarded (frames keep
    their order through the switch, so the marker ends the round). A round
    in which the first MAC's frame is forwarded and the later-sent last MAC's
    is not was processed while the batch was half applied: impossible when
    a batch blocks the packet path until it is done."""
    tag = f"{os.getpid() % 10000:04d}"
    links = [(f"es{tag}f1", f"es{tag}g1"), (f"es{tag}f2", f"es{tag}g2")]
    for sw_side, test_side in links:
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", sw_side)
        ip("link", "add", sw_side, "type", "veth", "peer", "name", test_side)
        for ifname in (sw_side, test_side):
            ip("link", "set", ifname, "up")
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    try:
        tx.bind((links[0][1], 3))
        rx.bind((links[1][1], 3))
        rx.settimeout(10)
        args = ["-i", f"1@{links[0][0]}", "-i", f"2@{links[1][0]}"]
        with Softswitch(args) as sw, primary(sw) as c:
            marker, first, n = 0x0200000000AA, 0x0A0000000000, 20_000
            last = first + n - 1
            c.write(upd(INSERT, l2(marker)))
            batch = raw_request(INSERT, range(first, first + n))
            done = threading.Event()
            result: list[BaseException | None] = []

            def write() -> None:
                try:
                    raw_write(c, batch, timeout=120)
                    result.append(None)
                except BaseException as exc:  # surfaced below
                    result.append(exc)
                done.set()

            rounds: list[tuple[bool, bool]] = []  # (first forwarded, last forwarded)
            seq = 0
            writer = threading.Thread(target=write)
            writer.start()
            while True:
                finished = done.is_set()  # the batch was applied before this round
                seq += 3
                for dst, s in ((first, seq), (last, seq + 1), (marker, seq + 2)):
                    tx.send(frame(dst, s))
                got: set[int] = set()
                while True:  # until the marker: frames stay in order through the switch
                    data = rx.recv(2048)
                    if data[12:14] != b"\x88\xb5":
                        continue  # not ours (e.g. IPv6 neighbour discovery)
                    s = int.from_bytes(data[14:22], "big")
                    got.add(s)
                    if s == seq + 2:
                        break
                rounds.append((seq in got, seq + 1 in got))
                if finished:
                    break
            writer.join(30)
            assert result == [None]
            during = [r for r in rounds if r == (True, False)]
            # frames were forwarded while the batch was being applied
            assert during, f"rounds (first, last forwarded): {sorted(set(rounds))}"
            assert rounds[-1] == (True, True)
    finally:
        tx.close()
        rx.close()
        for sw_side, _ in links:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", sw_side)
