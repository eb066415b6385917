"""A server and a client built from TOML tables, as the daemons build them."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from esxmpp import dialect as d
from esxmpp.client import XmppClient
from esxmpp.config import client_config_from_toml, server_config_from_toml
from esxmpp.server import XmppServer
from tests.system.test_xmpp_server import Certs, Recorder, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory)


def test_toml_configured_server_and_clients(certs: Certs) -> None:
    server_toml = f"""
[xmpp]
domain = "fwd1.test"
host = "127.0.0.1"
port = 0
certfile = "{certs.server.certfile}"
keyfile = "{certs.server.keyfile}"
cafile = "{certs.pki.cafile}"
auth = ["EXTERNAL", "PLAIN"]
plain_users = {{ "0a0b0c0d0e0f" = "lab-secret" }}
retention = 0.1
"""

    async def main() -> None:
        rec = Recorder()
        srv = XmppServer(server_config_from_toml(tomllib.loads(server_toml)["xmpp"]), rec)
        await srv.start()
        try:
            ext = client_config_from_toml(
                tomllib.loads(
                    f"""
jid = "01020304abcd@fwd1.test"
host = "127.0.0.1"
port = {srv.port}
certfile = "{certs.client.certfile}"
keyfile = "{certs.client.keyfile}"
cafile = "{certs.pki.cafile}"
"""
                )
            )
            plain = client_config_from_toml(
                {
                    "jid": "0a0b0c0d0e0f@fwd1.test",
                    "host": "127.0.0.1",
                    "port": srv.port,
                    "password": "lab-secret",
                    "cafile": str(certs.pki.cafile),
                }
            )
            a, b = XmppClient(ext), XmppClient(plain)
            await a.connect()
            await b.connect()
            await a.subscribe("blue", 10)
            await b.subscribe("blue", 10)  # same VLAN on another system is fine
            await a.close()
            await b.close()

            def expired_for(sid: bytes) -> Callable[[tuple[Any, ...]], bool]:
                return lambda e: e[0] == "expired" and e[1] == sid

            expired = [
                await rec.wait_for(expired_for(sid))
                for sid in (bytes.fromhex("01020304abcd"), bytes.fromhex("0a0b0c0d0e0f"))
            ]
            assert [e[2] for e in expired] == [(d.Unsubscribe("blue"),), (d.Unsubscribe("blue"),)]
        finally:
            await srv.close()

    asyncio.run(asyncio.wait_for(main(), 30))
