"""The ``softswitch`` daemon (python -m softswitch) serving P4Runtime: a
controller sets a pipeline, programs multicast and round-trips a packet
through the real engine and the CPU port."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from tests.system.test_softswitch_p4rt_engine import config
from tests.unit.softswitch_p4rt.harness import Client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon() -> Iterator[str]:
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
            "--device-id",
            "1",
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
