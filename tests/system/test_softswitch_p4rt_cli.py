"""The ``softswitch`` daemon (python -m softswitch) serving P4Runtime: a
controller sets a pipeline, programs multicast and round-trips a packet
through the real engine and the CPU port."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from tests.system.test_softswitch_p4rt_engine import config
from tests.unit.softswitch_p4rt.harness import Client, write_errors
from tests.unit.softswitch_p4rt.p4rt_data import Ids, load_config, load_p4info


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> Iterator[str]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "softswitch",
            "--no-p4",
            "--grpc-server-addr",
            address,
            "--cpu-port",
            "255",
            *getattr(request, "param", ("--device-id", "1")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=20)  # polls until it listens
        channel.close()
        yield address
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out.decode()


def test_daemon_serves_p4runtime(daemon: str) -> None:
    c = Client(daemon, election_id=1)
    try:
        assert c.open_stream().arbitration.status.code == code_pb2.OK
        caps = c.stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=5)
        assert caps.p4runtime_api_version == "1.4.1"
        c.set_pipeline(config("multicast"))
        pre = p4runtime_pb2.Entity()
        mg = pre.packet_replication_engine_entry.multicast_group_entry
        mg.multicast_group_id = 3
        mg.replicas.add(egress_port=255, instance=9)
        mg.replicas.add(egress_port=4, instance=1)  # no interface bound: dropped
        c.write(p4runtime_pb2.Update(type=p4runtime_pb2.Update.INSERT, entity=pre))
        po = p4runtime_pb2.StreamMessageRequest()
        po.packet.payload = b"\x00\x03"
        c.send(po)
        assert c.next().packet == p4runtime_pb2.PacketIn(payload=b"\x00\x09")
        (got,) = c.read(pre)
        assert got == pre
    finally:
        c.close()


@pytest.mark.parametrize(
    "daemon", [("--device-id", "1"), ("--device-id", "1", "--general-write-path")], indirect=True
)
def test_daemon_write_paths_agree(daemon: str) -> None:
    """The compiled entry parsers and --general-write-path give the same
    per-update results and the same entries back."""
    ids = Ids(load_p4info())
    c = Client(daemon, election_id=1)
    try:
        assert c.open_stream().arbitration.status.code == code_pb2.OK
        c.set_pipeline(load_config())
        updates = []
        for n in [*range(100), 7]:  # 7 twice
            te = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
            te.match.add(field_id=ids.field("l2", "dst_addr")).exact.value = n.to_bytes(6, "big")
            te.match.add(field_id=ids.field("l2", "ingress_port")).exact.value = b"\x00\x01"
            te.action.action.action_id = ids.action("set_port")
            te.action.action.params.add(param_id=ids.param("set_port", "port"), value=b"\x02")
            entity = p4runtime_pb2.Entity(table_entry=te)
            updates.append(p4runtime_pb2.Update(type=p4runtime_pb2.Update.INSERT, entity=entity))
        with pytest.raises(grpc.RpcError) as exc:
            c.write(*updates)
        assert write_errors(exc.value) == [(code_pb2.OK, "")] * 100 + [
            (code_pb2.ALREADY_EXISTS, "table IngressImpl.l2: entry already exists")
        ]
        want = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
        got = c.read(p4runtime_pb2.Entity(table_entry=want))
        assert len(got) == 100
        first = min(got, key=lambda e: e.table_entry.match[0].exact.value).table_entry
        assert [m.exact.value for m in first.match] == [b"\x00", b"\x01"]  # canonical
        assert first.action.action.params[0].value == b"\x02"
    finally:
        c.close()


@pytest.mark.parametrize("daemon", [()], indirect=True)
def test_default_device_id_matches_the_agent(daemon: str) -> None:
    """Started without --device-id (as the README shows), the switch is device
    0, simple_switch_grpc's default and the agent's: an agent with a default
    [switch] config becomes primary instead of looping on NOT_FOUND."""
    import asyncio

    from control.config import SwitchConfig
    from control.p4rt import P4Info, P4RuntimeClient

    default = SwitchConfig(daemon, Path("p4src/build/esvpn.p4info.txtpb"), Path("x.json"))
    assert default.device_id == 0

    async def arbitrate() -> bool:
        c = await P4RuntimeClient.connect(
            daemon, P4Info.load(default.p4info), default.device_id, default.election_id
        )
        try:
            await c.wait_primary(timeout=10)
            return c.is_primary
        finally:
            await c.close()

    assert asyncio.run(arbitrate())
