"""P4Runtime over TLS and mutual TLS between the agent's switch driver and
the softswitch daemon, with simple_switch_grpc's options and certificates
from esxmpp.pki (issue 18, P4Runtime item 1)."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2

from control.config import config_from_toml
from control.driver import SwitchDriver
from control.p4rt import P4Info, P4RuntimeClient, P4RuntimeError, TlsOptions
from esxmpp.pki import Pki, make_pki
from softswitch import cli
from softswitch.p4runtime import DEFAULT_ADDRESS
from tests.system.softswitch_proc import Softswitch
from tests.system.test_agent_flow import fabric_entities
from tests.system.test_agent_support import COMPILED
from tests.unit.softswitch_p4rt.harness import Client
from tests.unit.test_ctl_config import BASE

AGENT_SID = "02aa00000001"


def tls_args(pki: Pki, mutual: bool) -> list[str]:
    srv = pki.server("switch.test")  # DNS switch.test, IP 127.0.0.1 and ::1
    args = ["--grpc-server-ssl", "--grpc-server-cert", str(srv.certfile),
            "--grpc-server-key", str(srv.keyfile)]  # fmt: skip
    if mutual:
        args += ["--grpc-server-cacert", str(pki.cafile), "--grpc-server-with-client-auth"]
    return args


def agent_switch_config(address: str, tls: dict[str, str]) -> Any:
    """The agent's [switch] section with [switch.tls], through its config loader."""
    data = copy.deepcopy(BASE)
    data["switch"] = {
        "address": address,
        "device_id": 1,
        "election_id": 10,
        "p4info": str(COMPILED[0]),
        "bmv2_json": str(COMPILED[1]),
        "tls": tls,
    }
    return config_from_toml(data).switch


async def driver_syncs(cfg: Any) -> SwitchDriver:
    driver = SwitchDriver(cfg, fabric_entities, reconnect=0.2)
    driver.start()
    try:
        await driver.wait_synced(20)
        assert driver.stats.pipeline_commits == 1
        assert driver.stats.last_reconcile_diff == len(fabric_entities())
        assert await driver.diff() == []
    except BaseException:
        await driver.close()
        raise
    return driver


async def refused(address: str, tls: TlsOptions | None) -> str:
    info = P4Info.load(COMPILED[0])
    try:
        c = await P4RuntimeClient.connect(address, info, 1, 2, tls, timeout=1.0)
    except P4RuntimeError as e:
        return str(e)
    await c.close()
    raise AssertionError("connected")


def test_agent_programs_the_switch_over_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    cli_cert = pki.client(AGENT_SID)
    with Softswitch(tls_args(pki, mutual=True)) as sw:
        # verified against the server certificate's IP address (no server_name)
        cfg = agent_switch_config(
            sw.address,
            {"root_cert": str(pki.cafile), "cert": str(cli_cert.certfile),
             "key": str(cli_cert.keyfile)},
        )  # fmt: skip

        async def scenario() -> None:
            driver = await driver_syncs(cfg)
            try:
                # a client without a certificate is refused, and so is plaintext
                no_cert = await refused(sw.address, TlsOptions(root_cert=pki.cafile))
                assert no_cert == (
                    f"{sw.address}: no connection (unreachable, or TLS refused) within 1.0s"
                )
                assert await refused(sw.address, None) == no_cert
                # a certificate from another CA is refused too
                other = make_pki(tmp_path / "other", ca_name="another CA").client(AGENT_SID)
                assert (
                    await refused(
                        sw.address,
                        TlsOptions(pki.cafile, other.certfile, other.keyfile),
                    )
                    == no_cert
                )
                # the agent still holds the switch, and its state is intact
                assert driver.connected
                assert await driver.diff() == []
            finally:
                await driver.close()

        asyncio.run(scenario())
    assert "(mutual TLS)" in sw.output


def test_server_tls_without_client_auth(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with Softswitch(tls_args(pki, mutual=False)) as sw:
        cfg = agent_switch_config(
            sw.address, {"root_cert": str(pki.cafile), "server_name": "switch.test"}
        )

        async def scenario() -> None:
            driver = await driver_syncs(cfg)
            try:
                # plaintext is refused; a client that does not trust the CA too
                assert await refused(sw.address, None) == (
                    f"{sw.address}: no connection (unreachable, or TLS refused) within 1.0s"
                )
                other = make_pki(tmp_path / "other", ca_name="another CA")
                assert await refused(
                    sw.address, TlsOptions(root_cert=other.cafile)
                ) == await refused(sw.address, None)
            finally:
                await driver.close()

        asyncio.run(scenario())
    assert "(TLS)" in sw.output


def test_plaintext_daemon_listens_on_loopback_by_default() -> None:
    args = cli.build_parser().parse_args(["--no-p4"])
    assert args.grpc_server_addr == DEFAULT_ADDRESS == "127.0.0.1:9559"
    assert cli.tls_config(args) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grpc-server-ssl"], "--grpc-server-ssl: --grpc-server-cert is required"),
        (
            ["--grpc-server-ssl", "--grpc-server-cert", "c.pem"],
            "--grpc-server-ssl: --grpc-server-key is required",
        ),
        (
            [
                *("--grpc-server-ssl", "--grpc-server-cert", "c.pem"),
                *("--grpc-server-key", "k.pem", "--grpc-server-with-client-auth"),
            ],
            "--grpc-server-with-client-auth: --grpc-server-cacert is required",
        ),
        (["--grpc-server-cert", "c.pem"], "--grpc-server-cert: needs --grpc-server-ssl"),
        (
            ["--grpc-server-with-client-auth"],
            "--grpc-server-with-client-auth: needs --grpc-server-ssl",
        ),
    ],
)
def test_tls_options_are_checked(argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "softswitch", "--no-p4", *argv],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stderr.decode()) == (2, f"softswitch: {message}\n")


def test_unreadable_certificate_is_named(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "softswitch", "--no-p4", "--grpc-server-addr", "127.0.0.1:0",
         "--grpc-server-ssl", "--grpc-server-cert", str(tmp_path / "none.pem"),
         "--grpc-server-key", str(tmp_path / "none.key")],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.decode().endswith(
        f"softswitch: --grpc-server-cert: {tmp_path / 'none.pem'}: No such file or directory\n"
    )


def test_grpc_client_with_certificate_is_primary(tmp_path: Path) -> None:
    """A plain grpc client (not the agent) with a client certificate."""
    pki = make_pki(tmp_path / "pki")
    cert = pki.client("controller.test")
    with Softswitch(tls_args(pki, mutual=True)) as sw:
        creds = grpc.ssl_channel_credentials(
            pki.cafile.read_bytes(), cert.keyfile.read_bytes(), cert.certfile.read_bytes()
        )
        c = Client(sw.address, election_id=5, channel=grpc.secure_channel(sw.address, creds))
        try:
            assert c.open_stream().arbitration.status.code == code_pb2.OK
        finally:
            c.close()
