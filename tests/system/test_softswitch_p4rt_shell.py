"""p4runtime-shell, unchanged, against the embedded target's P4Runtime server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.rpc import code_pb2
from p4runtime_sh import shell as sh
from p4runtime_sh.p4runtime import P4RuntimeWriteException

from softswitch import api
from tests.unit.softswitch_p4rt.fake_engine import RecordingFakeEngine
from tests.unit.softswitch_p4rt.harness import DEVICE_ID, ServerThread
from tests.unit.softswitch_p4rt.p4rt_data import JSON_PATH, P4INFO_PATH


@pytest.fixture
def shell() -> Iterator[tuple[ServerThread, RecordingFakeEngine]]:
    engine = RecordingFakeEngine()
    server = ServerThread(engine)
    sh.setup(
        device_id=DEVICE_ID,
        grpc_addr=server.address,
        election_id=(0, 1),
        config=sh.FwdPipeConfig(str(P4INFO_PATH), str(JSON_PATH)),
        verbose=False,
    )
    yield server, engine
    sh.teardown()
    server.close()


def test_shell_inserts_and_reads_back(shell: tuple[ServerThread, RecordingFakeEngine]) -> None:
    _, engine = shell
    te = sh.TableEntry("IngressImpl.l2")(action="IngressImpl.set_port")
    te.match["dst_addr"] = "0a:00:00:00:00:01"
    te.match["ingress_port"] = "1"
    te.action["port"] = "2"
    te.insert()
    assert engine.calls[-1] == (
        "table_add",
        "IngressImpl.l2",
        (api.Exact(0x0A0000000001), api.Exact(1)),
        api.ActionCall("IngressImpl.set_port", (2,)),
        0,
    )
    (got,) = list(sh.TableEntry("IngressImpl.l2").read())
    assert got.match["dst_addr"].exact.value == bytes.fromhex("0a0000000001")
    assert got.match["ingress_port"].exact.value == b"\x01"
    assert got.action["port"].value == b"\x02"
    with pytest.raises(P4RuntimeWriteException) as e:
        te.insert()
    assert [(i, err.canonical_code) for i, err in e.value.errors] == [(0, code_pb2.ALREADY_EXISTS)]
    # lpm through the shell's own parsing of "a.b.c.d/len"
    r = sh.TableEntry("IngressImpl.route")(action="IngressImpl.drop")
    r.match["dst_addr"] = "10.1.0.0/16"
    r.insert()
    (route,) = list(sh.TableEntry("IngressImpl.route").read())
    assert route.match["dst_addr"].lpm.prefix_len == 16
    mg = sh.MulticastGroupEntry(7).add(1, 1).add(2, 1)
    mg.insert()
    assert engine.mc_groups[7] == (api.Replica(1, 1), api.Replica(2, 1))
