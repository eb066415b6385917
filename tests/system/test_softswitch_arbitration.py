"""Only the client that won arbitration writes: a backup that learned the
primary's election id cannot use it (issue 18, P4Runtime item 2).

The switch is the softswitch daemon running the esvpn program; the primary is
the agent's P4Runtime client (control.p4rt), the attacker a plain grpc
client, over plaintext and over mutual TLS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from control import tables as T
from control.p4rt import (
    INSERT,
    MODIFY,
    Exact,
    P4Info,
    P4RuntimeClient,
    Pipeline,
    TableEntry,
    TlsOptions,
    Update,
)
from esxmpp.pki import make_pki
from tests.system.softswitch_proc import Softswitch
from tests.system.test_agent_support import COMPILED
from tests.system.test_softswitch_tls import tls_args
from tests.unit.softswitch_p4rt.harness import Client

INFO = P4Info.load(COMPILED[0])
VIF_KEY = {"ingress_port": Exact(3), "src_mac": Exact(0x0A0000000001), "vlan_id": Exact(10)}


def vif(vrf: int) -> TableEntry:
    return INFO.canonical(TableEntry(T.VIF, VIF_KEY, T.A_SET_VIF, {"vif_id": 1, "vrf_id": vrf}))


def update_pb(kind: int, ent: TableEntry) -> p4runtime_pb2.Update:
    return p4runtime_pb2.Update(type=kind, entity=INFO.entity_pb(ent))


async def vifs(client: P4RuntimeClient) -> set[TableEntry]:
    return {INFO.canonical(e) for e in await client.read_table_entries(T.VIF)}


Channel = Callable[[], grpc.Channel | None]


def attack(address: str, channel: Channel) -> None:
    """A backup learns the primary's election id and writes with it."""
    mole = Client(address, election_id=5, channel=channel())
    try:
        note = mole.open_stream()
        assert note.arbitration.status.code == code_pb2.ALREADY_EXISTS  # backup
        learned = (note.arbitration.election_id.high << 64) | note.arbitration.election_id.low
        assert learned == 10
        mole.election_id = learned  # every request now carries the primary's id
        msg = (
            "election id 10 is the primary's of device 1 role '', "
            "but this request does not come from the primary's connection"
        )
        with pytest.raises(grpc.RpcError) as e:
            mole.write(update_pb(p4runtime_pb2.Update.MODIFY, vif(2)))
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, msg)
        with pytest.raises(grpc.RpcError) as e:
            mole.set_pipeline(p4runtime_pb2.ForwardingPipelineConfig())
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, msg)
        # reads stay open to backups
        assert len(mole.read(p4runtime_pb2.Entity(table_entry=INFO.entity_pb(vif(1)).table_entry)))
        # a packet-out from the backup is refused on its stream
        po = p4runtime_pb2.StreamMessageRequest()
        po.packet.payload = bytes(60)
        mole.send(po)
        err = mole.next()
        assert err.error.canonical_code == code_pb2.PERMISSION_DENIED
    finally:
        mole.close()
    # a client without a stream, with the primary's id: refused as well
    stranger = Client(address, election_id=10, channel=channel())
    try:
        with pytest.raises(grpc.RpcError) as e:
            stranger.write(update_pb(p4runtime_pb2.Update.MODIFY, vif(2)))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        stranger.close()


async def scenario(address: str, tls: TlsOptions | None, mole: Channel) -> None:
    primary = await P4RuntimeClient.connect(address, INFO, 1, 10, tls)
    try:
        await primary.wait_primary(5)
        await primary.set_pipeline(Pipeline.load(COMPILED[1], INFO))
        (await primary.write([Update(INSERT, vif(1))])).raise_on_error()
        assert await vifs(primary) == {vif(1)}
        await asyncio.to_thread(attack, address, mole)
        # the switch is unchanged, the primary is still primary and still writes
        assert await vifs(primary) == {vif(1)}
        assert primary.is_primary
        (await primary.write([Update(MODIFY, vif(3))])).raise_on_error()
        assert await vifs(primary) == {vif(3)}
    finally:
        await primary.close()


def test_backup_with_the_primarys_election_id_cannot_write() -> None:
    with Softswitch() as sw:
        asyncio.run(scenario(sw.address, None, lambda: None))


def test_under_mutual_tls_another_certificate_cannot_write(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    agent = pki.client("02aa00000001")
    other = pki.client("0a0000000001")  # a valid certificate of the same CA
    with Softswitch(tls_args(pki, mutual=True)) as sw:
        creds = grpc.ssl_channel_credentials(
            pki.cafile.read_bytes(), other.keyfile.read_bytes(), other.certfile.read_bytes()
        )
        asyncio.run(
            scenario(
                sw.address,
                TlsOptions(pki.cafile, agent.certfile, agent.keyfile),
                lambda: grpc.secure_channel(sw.address, creds),
            )
        )
