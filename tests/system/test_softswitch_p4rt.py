"""The embedded target's P4Runtime server over real gRPC sessions on 127.0.0.1."""

from __future__ import annotations

import datetime
import gc
import time
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from softswitch import api
from softswitch.p4runtime import TlsConfig
from tests.unit.softswitch_p4rt.fake_engine import RecordingFakeEngine
from tests.unit.softswitch_p4rt.harness import CPU_PORT, Client, ServerThread, write_errors
from tests.unit.softswitch_p4rt.p4rt_data import Ids, load_config, load_p4info

ids = Ids(load_p4info())
INSERT = p4runtime_pb2.Update.INSERT
MODIFY = p4runtime_pb2.Update.MODIFY
DELETE = p4runtime_pb2.Update.DELETE
G = p4runtime_pb2.GetForwardingPipelineConfigRequest
S = p4runtime_pb2.SetForwardingPipelineConfigRequest
MAC = bytes.fromhex("0a0000000001")


@pytest.fixture
def engine() -> RecordingFakeEngine:
    return RecordingFakeEngine()


@pytest.fixture
def server(engine: RecordingFakeEngine) -> Iterator[ServerThread]:
    s = ServerThread(engine)
    yield s
    s.close()


@pytest.fixture
def primary(server: ServerThread) -> Iterator[Client]:
    c = Client(server.address, election_id=10)
    first = c.open_stream()
    assert first.arbitration.status.code == code_pb2.OK
    yield c
    c.close()


def l2_entry(mac: bytes, port: bytes, out_port: bytes = b"\x02") -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
    te.match.add(field_id=ids.field("l2", "dst_addr")).exact.value = mac
    te.match.add(field_id=ids.field("l2", "ingress_port")).exact.value = port
    te.action.action.action_id = ids.action("set_port")
    te.action.action.params.add(param_id=ids.param("set_port", "port"), value=out_port)
    return te


def upd(t: int, te: p4runtime_pb2.TableEntry) -> p4runtime_pb2.Update:
    return p4runtime_pb2.Update(type=t, entity=p4runtime_pb2.Entity(table_entry=te))


def l2_read() -> p4runtime_pb2.Entity:
    return p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry(table_id=ids.table("l2")))


def test_capabilities(server: ServerThread) -> None:
    c = Client(server.address)
    resp = c.stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=5)
    assert resp.p4runtime_api_version == "1.4.1"
    c.close()


def test_no_pipeline_and_no_primary(server: ServerThread, primary: Client) -> None:
    with pytest.raises(grpc.RpcError) as e:
        primary.stub.GetForwardingPipelineConfig(G(device_id=1, response_type=G.ALL), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        primary.write(upd(INSERT, l2_entry(MAC, b"\x01")))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == "no forwarding pipeline config set"
    with pytest.raises(grpc.RpcError) as e:
        primary.read(l2_read())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stranger = Client(server.address, election_id=3)  # no stream: not primary
    with pytest.raises(grpc.RpcError) as e:
        stranger.set_pipeline(load_config())
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == "election id 3 is not the primary of device 1 role ''"
    stranger.close()
    with pytest.raises(grpc.RpcError) as e:
        primary.stub.GetForwardingPipelineConfig(G(device_id=7), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_pipeline_roundtrip(server: ServerThread, primary: Client) -> None:
    primary.set_pipeline(load_config(cookie=42))
    full = primary.stub.GetForwardingPipelineConfig(
        G(device_id=1, response_type=G.ALL), timeout=5
    ).config
    assert full.p4info == load_p4info()
    assert full.p4_device_config == load_config().p4_device_config
    assert full.cookie.cookie == 42
    only = primary.stub.GetForwardingPipelineConfig(
        G(device_id=1, response_type=G.COOKIE_ONLY), timeout=5
    ).config
    assert only == p4runtime_pb2.ForwardingPipelineConfig(
        cookie=p4runtime_pb2.ForwardingPipelineConfig.Cookie(cookie=42)
    )
    bad = load_config()
    bad.p4_device_config = b"{"
    with pytest.raises(grpc.RpcError) as e:
        primary.set_pipeline(bad, S.VERIFY)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_write_batch_per_update_errors_and_read_back(
    server: ServerThread, primary: Client, engine: RecordingFakeEngine
) -> None:
    primary.set_pipeline(load_config())
    primary.write(upd(INSERT, l2_entry(MAC, b"\x01")))
    wide = l2_entry(MAC, b"\x03")
    wide.match[0].exact.value = b"\x01" + MAC
    with pytest.raises(grpc.RpcError) as e:
        primary.write(
            upd(INSERT, l2_entry(MAC, b"\x01")),  # duplicate
            upd(INSERT, l2_entry(MAC, b"\x02")),  # fine
            upd(DELETE, l2_entry(MAC, b"\x09")),  # missing
            upd(INSERT, wide),  # too wide
        )
    assert write_errors(e.value) == [
        (code_pb2.ALREADY_EXISTS, "table IngressImpl.l2: entry already exists"),
        (code_pb2.OK, ""),
        (code_pb2.NOT_FOUND, "table IngressImpl.l2: no such entry"),
        (
            code_pb2.INVALID_ARGUMENT,
            "table IngressImpl.l2 field dst_addr: bytestring of 7 bytes does not fit in 48 bits",
        ),
    ]
    got = [e.table_entry for e in primary.read(l2_read())]
    assert got == [l2_entry(MAC, b"\x01"), l2_entry(MAC, b"\x02")]
    # all tables (table id 0): the const table's entries too
    assert len(primary.read(p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry()))) == 4
    with pytest.raises(grpc.RpcError) as e:
        primary.write(upd(INSERT, l2_entry(MAC, b"\x05")), atomicity=2)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # counters in reads when asked
    engine.direct_counters[("IngressImpl.l2", 1)] = api.CounterValue(packets=2, bytes=120)
    req = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
    req.counter_data.SetInParent()
    first = primary.read(p4runtime_pb2.Entity(table_entry=req))[0].table_entry
    assert first.counter_data == p4runtime_pb2.CounterData(byte_count=120, packet_count=2)


def test_arbitration_two_clients(server: ServerThread, primary: Client) -> None:
    primary.set_pipeline(load_config())
    backup = Client(server.address, election_id=5)
    note = backup.open_stream()
    assert note.arbitration.status.code == code_pb2.ALREADY_EXISTS
    assert note.arbitration.election_id.low == 10  # the primary's
    with pytest.raises(grpc.RpcError) as e:
        backup.write(upd(INSERT, l2_entry(MAC, b"\x01")))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert backup.read(l2_read()) == []  # reads are for everyone

    usurper = Client(server.address, election_id=20)
    assert usurper.open_stream().arbitration.status.code == code_pb2.OK
    demoted = primary.next()
    assert demoted.arbitration.status.code == code_pb2.ALREADY_EXISTS
    assert demoted.arbitration.election_id.low == 20
    assert backup.next().arbitration.status.code == code_pb2.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as e:
        primary.write(upd(INSERT, l2_entry(MAC, b"\x01")))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    usurper.write(upd(INSERT, l2_entry(MAC, b"\x01")))

    twin = Client(server.address, election_id=20)
    err = twin.open_stream()
    assert isinstance(err, grpc.RpcError)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "election id 20 is already used by another client"
    twin.close()

    usurper.close()  # the primary goes away: the highest remaining is elected
    again = primary.next()
    assert again.arbitration.status.code == code_pb2.OK
    assert again.arbitration.election_id.low == 10
    assert backup.next().arbitration.status.code == code_pb2.ALREADY_EXISTS
    primary.write(upd(DELETE, l2_entry(MAC, b"\x01")))
    backup.close()


def test_packet_out_and_packet_in(
    server: ServerThread, primary: Client, engine: RecordingFakeEngine
) -> None:
    primary.set_pipeline(load_config())
    payload = bytes.fromhex("ffffffffffff0a00000000010806") + b"\x00" * 28
    # the fake engine loops a packet-out on port 7 back to the CPU as from port 7
    engine.on_process = lambda port, frame: (
        [(CPU_PORT, bytes([0x03, 0x80]) + frame[2:])] if port == CPU_PORT else []
    )
    po = p4runtime_pb2.StreamMessageRequest()
    po.packet.payload = payload
    po.packet.metadata.add(
        metadata_id=ids.packet_metadata("packet_out", "egress_port"), value=b"\x07"
    )
    primary.send(po)
    pin = primary.next().packet
    assert engine.processed == [(CPU_PORT, bytes([0x03, 0x80]) + payload)]
    assert pin.payload == payload
    assert [(m.metadata_id, m.value) for m in pin.metadata] == [(1, b"\x07"), (2, b"\x00")]
    # a frame the engine emits towards the CPU port from elsewhere (a port driver)
    server.call(lambda: server.server.packet_in(bytes([0x00, 0x80]) + payload))
    pin = primary.next().packet
    assert [(m.metadata_id, m.value) for m in pin.metadata] == [(1, b"\x01"), (2, b"\x00")]
    # a malformed packet-out gets a StreamError, the stream lives on
    bad = p4runtime_pb2.StreamMessageRequest()
    bad.packet.payload = payload
    bad.packet.metadata.add(metadata_id=1, value=b"\x02\x00")
    primary.send(bad)
    err = primary.next().error
    assert err.canonical_code == code_pb2.INVALID_ARGUMENT
    assert err.message == "packet_out egress_port: value 0x200 does not fit in 9 bits"
    assert err.packet_out.packet_out == bad.packet
    primary.send(po)
    assert primary.next().packet.payload == payload


def _self_signed() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def test_tls(engine: RecordingFakeEngine) -> None:
    cert, key = _self_signed()
    s = ServerThread(engine, tls=TlsConfig(cert_chain=cert, private_key=key))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert)
        channel = grpc.secure_channel(
            f"localhost:{s.port}", creds, options=(("grpc.ssl_target_name_override", "localhost"),)
        )
        c = Client(s.address, election_id=1, channel=channel)
        assert c.open_stream().arbitration.status.code == code_pb2.OK
        c.set_pipeline(load_config())
        c.write(upd(INSERT, l2_entry(MAC, b"\x01")))
        assert len(c.read(l2_read())) == 1
        c.close()
    finally:
        s.close()


def test_stream_and_request_errors(server: ServerThread, primary: Client) -> None:
    primary.set_pipeline(load_config())
    # a stream that does not start with an arbitration is closed
    rogue = Client(server.address, election_id=3)
    rogue.stream = None
    po = p4runtime_pb2.StreamMessageRequest()
    po.packet.payload = b"\x00" * 14
    rogue.send(po)
    err = rogue.open_stream()  # queued after the packet: the packet goes first
    assert isinstance(err, grpc.RpcError)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "the first stream message must be an arbitration"
    rogue.close()
    # a backup's packet-out is refused on its stream
    backup = Client(server.address, election_id=4)
    assert backup.open_stream().arbitration.status.code == code_pb2.ALREADY_EXISTS
    backup.send(po)
    err = backup.next().error
    assert err.canonical_code == code_pb2.PERMISSION_DENIED
    assert err.message == "packet-out from a non-primary client"
    backup.close()
    # wrong device, unknown ids in reads
    req = p4runtime_pb2.WriteRequest(device_id=9)
    req.election_id.low = 10
    with pytest.raises(grpc.RpcError) as e:
        primary.stub.Write(req, timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "unknown device id 9"
    with pytest.raises(grpc.RpcError) as e:
        primary.read(p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry(table_id=5)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "unknown table id 5"
    with pytest.raises(grpc.RpcError) as e:
        primary.stub.Write(p4runtime_pb2.WriteRequest(device_id=1), timeout=5)  # no election id
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # garbage instead of a WriteRequest
    raw_write = primary.channel.unary_unary("/p4.v1.P4Runtime/Write")
    with pytest.raises(grpc.RpcError) as e:
        raw_write(b"\x0a\xff\xff", timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("malformed WriteRequest")
    # the server is still fine
    primary.write(upd(INSERT, l2_entry(MAC, b"\x01")))
    assert len(primary.read(l2_read())) == 1


def test_reads_of_counters_registers_and_pre(
    server: ServerThread, primary: Client, engine: RecordingFakeEngine
) -> None:
    primary.set_pipeline(load_config())
    engine.counters[("IngressImpl.port_counter", 3)] = api.CounterValue(packets=1, bytes=64)
    every = primary.read(p4runtime_pb2.Entity(counter_entry=p4runtime_pb2.CounterEntry()))
    assert len(every) == 512
    assert every[3].counter_entry.data == p4runtime_pb2.CounterData(byte_count=64, packet_count=1)
    regs = primary.read(p4runtime_pb2.Entity(register_entry=p4runtime_pb2.RegisterEntry()))
    assert [r.register_entry.index.index for r in regs] == list(range(16))
    assert {r.register_entry.data.bitstring for r in regs} == {b"\x00"}
    cs = p4runtime_pb2.Entity()
    cs.packet_replication_engine_entry.clone_session_entry.session_id = 5
    cs.packet_replication_engine_entry.clone_session_entry.replicas.add(port=b"\x00\xff")
    primary.write(p4runtime_pb2.Update(type=INSERT, entity=cs))
    every_cs = p4runtime_pb2.Entity()
    every_cs.packet_replication_engine_entry.clone_session_entry.SetInParent()
    (got,) = primary.read(every_cs)
    assert got.packet_replication_engine_entry.clone_session_entry.replicas[0].port == b"\xff"
    assert engine.clone_sessions[5] == (api.Replica(255, 0),)


def test_engine_failure_on_packet_out_keeps_the_stream(
    server: ServerThread, primary: Client, engine: RecordingFakeEngine
) -> None:
    primary.set_pipeline(load_config())

    def boom(port: int, frame: bytes) -> list[tuple[int, bytes]]:
        raise api.EngineError("parser exploded")

    engine.on_process = boom
    po = p4runtime_pb2.StreamMessageRequest()
    po.packet.payload = b"\x01" * 14
    primary.send(po)
    err = primary.next().error
    assert err.canonical_code == code_pb2.INTERNAL
    assert err.message == "packet-out failed: parser exploded"
    engine.on_process = lambda port, frame: [(CPU_PORT, frame)]
    primary.send(po)
    assert primary.next().packet.payload == b"\x01" * 14


def test_listen_failure_is_an_oserror(server: ServerThread, engine: RecordingFakeEngine) -> None:
    from softswitch.p4runtime import P4RuntimeServer

    other = P4RuntimeServer(engine, device_id=1, cpu_port=CPU_PORT)
    with pytest.raises(OSError) as e:
        server.run(other.start(f"127.0.0.1:{server.port}"))  # taken
    assert str(e.value).startswith(f"P4Runtime server cannot listen on 127.0.0.1:{server.port}")


def test_packet_in_to_a_client_that_does_not_read_is_bounded(
    server: ServerThread, primary: Client
) -> None:
    from softswitch import p4runtime

    primary.set_pipeline(load_config())
    frame = bytes([0x00, 0x80]) + b"\xaa" * 14

    def flood() -> tuple[int, int]:
        # all on the loop in one go: the client cannot drain anything meanwhile
        for _ in range(p4runtime.MAX_QUEUED_PACKET_INS + 10):
            server.server.packet_in(frame)
        return server.server.packet_in_dropped, len(server.server._streams)

    dropped, streams = server.call(flood)
    assert streams == 1
    assert dropped == 10
    for _ in range(p4runtime.MAX_QUEUED_PACKET_INS):
        assert primary.next().packet.payload == b"\xaa" * 14


def test_big_write_batches_freeze_the_heap_for_a_while() -> None:
    """_WriteGc: a batch of FREEZE_MIN updates or more freezes the heap (the
    GC no longer rescans stored entries) for HOLD seconds, which later big
    batches do not extend; then, and when the server stops, it thaws; a
    small batch changes nothing."""
    from softswitch.engine import SoftEngine

    server = ServerThread(SoftEngine())
    wgc = server.server.write_gc
    client = Client(server.address, election_id=1)

    def big(port: bytes) -> list[p4runtime_pb2.Update]:
        return [upd(INSERT, l2_entry(next(macs), port)) for _ in range(wgc.FREEZE_MIN)]

    try:
        assert client.open_stream().arbitration.status.code == code_pb2.OK
        client.set_pipeline(load_config())
        gc.unfreeze()  # an agent run in this process before may have frozen it (its own GcFreeze)
        assert gc.get_freeze_count() == 0
        wgc.HOLD = 3600.0  # thawed below, not by the clock
        macs = (i.to_bytes(6, "big") for i in range(1, 10_000))
        client.write(*(upd(INSERT, l2_entry(next(macs), b"\x01")) for _ in range(10)))
        assert server.call(lambda: wgc.thaw_at) is None and gc.get_freeze_count() == 0
        client.write(*big(b"\x01"))
        until = server.call(lambda: wgc.thaw_at)
        assert until is not None and gc.get_freeze_count() > 0
        client.write(*big(b"\x01"))  # frozen too, the hold not extended
        assert server.call(lambda: wgc.thaw_at) == until
        server.call(wgc.thaw)  # what the timer does
        assert server.call(lambda: wgc.thaw_at) is None and gc.get_freeze_count() == 0
        wgc.HOLD = 0.01
        client.write(*big(b"\x02"))
        deadline = time.monotonic() + 10
        while server.call(lambda: wgc.thaw_at) is not None and time.monotonic() < deadline:
            pass  # each call waits for the loop, which runs the timer meanwhile
        assert server.call(lambda: wgc.thaw_at) is None and gc.get_freeze_count() == 0
        wgc.HOLD = 3600.0
        client.write(*big(b"\x03"))
        assert gc.get_freeze_count() > 0
        assert len(client.read(l2_read())) == 10 + 4 * wgc.FREEZE_MIN
    finally:
        client.close()
        server.close()
    assert gc.get_freeze_count() == 0  # stopping thaws
