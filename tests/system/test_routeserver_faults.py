"""The route-server daemon as a process under faults: kill -9, SIGTERM under load.

Real parts only: ``esvpn-routeserver run`` as a subprocess, its real ExaBGP
child, gobgpd as the route reflector (127.0.6.2:17906, gRPC 50066, as in
test_routeserver_gobgp.py) and forwarders as real XMPP clients over TLS.
Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from esxmpp import dialect as d
from esxmpp.client import XmppClient
from esxmpp.config import ClientConfig
from esxmpp.testing import Pki, make_pki
from lab.lab import descendants, pid_alive
from tests.system.test_routeserver_gobgp import (
    DOMAIN,
    F1,
    F2,
    GOBGP,
    GOBGP_PORT,
    RS1,
    Forwarder,
    entry,
    gobgp,
    gobgp_json,
    neighbor_established,
    poll,
    start_gobgpd,
    vpn_paths,
)

CLI = [sys.executable, "-m", "routeserver.cli"]
OURS = "192.0.2.11:1:10.1.1.1/32"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("rs-faults-pki"))


@pytest.fixture
def gobgpd(tmp_path: Path) -> Any:
    proc = start_gobgpd(tmp_path)
    yield proc
    if proc.poll() is None:
        proc.terminate()
    proc.wait(10)


GOBGP_NEIGHBOR = f"""
[[bgp.neighbor]]
address = "{GOBGP}"
asn = 64512
port = {GOBGP_PORT}
families = ["vpnv4", "vpnv6", "rtc"]
"""


def write_config(
    tmp_path: Path, pki: Pki, xmpp_port: int, control_port: int, neighbor: str = GOBGP_NEIGHBOR
) -> Path:
    server = pki.server(DOMAIN)
    conf = tmp_path / "rs.toml"
    conf.write_text(
        f"""
[server]
router_id = "{RS1}"
asn = 64512
log_level = "info"

[xmpp]
domain = "{DOMAIN}"
host = "127.0.0.1"
port = {xmpp_port}
certfile = "{server.certfile}"
keyfile = "{server.keyfile}"
cafile = "{pki.cafile}"
retention = 60.0
forwarders = ["{F1}", "{F2}"]

[control]
port = {control_port}

[bgp]
graceful_restart = 120
{neighbor}
[[vrf]]
vpn = "red"
import_targets = ["64512:100"]
export_targets = ["64512:100"]
"""
    )
    return conf


class RsProcess:
    """``esvpn-routeserver run`` as a child process; its JSON log lines kept in a file."""

    def __init__(self, conf: Path, control_port: int, log: Path) -> None:
        self.control_port = control_port
        self.log = log
        with open(log, "ab") as logf:
            self.proc = subprocess.Popen(
                [*CLI, "run", "--config", str(conf)], stdout=logf, stderr=subprocess.STDOUT
            )

    def get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.control_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def answers(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return bool(self.get("/show/peers"))
        except OSError:
            return False

    def up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return bool(json.loads(self.get("/show/peers"))[0]["up"])
        except OSError:
            return False

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def exabgp_of(pid: int) -> list[int]:
    out = []
    for c in descendants(pid):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"routeserver.exabgp_adapter" in cmd:
            out.append(c)
    return out


def stale(key: str) -> bool:
    paths = gobgp_json("global", "rib", "-a", "vpnv4").get(key)
    return bool(paths) and paths[0].get("stale") is True


def run(body: Callable[[], Awaitable[None]], timeout: float = 120) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout))


def test_kill_9_takes_exabgp_along_and_a_restart_peers_again(
    tmp_path: Path, pki: Pki, gobgpd: Any
) -> None:
    """Bug 4: kill -9 of the daemon ends its ExaBGP child (and relay): the session
    goes down, our routes leave GoBGP, and a restarted daemon establishes again."""
    xmpp_port, control_port = free_port(), free_port()
    conf = write_config(tmp_path, pki, xmpp_port, control_port)
    procs: list[RsProcess] = []

    async def body() -> None:
        rs = RsProcess(conf, control_port, tmp_path / "rs1.log")
        procs.append(rs)
        await poll(rs.up, "route server established", 30)
        await poll(lambda: neighbor_established(RS1), "GoBGP sees RS1")
        f1 = Forwarder(pki, F1, xmpp_port)
        await f1.client.connect()
        try:
            await f1.client.subscribe("red")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000))
            await poll(lambda: OURS in vpn_paths("vpnv4"), "our route in GoBGP")
        finally:
            await f1.client.close()
        helpers = exabgp_of(rs.proc.pid)
        assert len(helpers) == 2, helpers  # ExaBGP and the API relay it runs
        rs.proc.kill()
        rs.proc.wait(5)
        await poll(
            lambda: not any(pid_alive(p) for p in helpers), "ExaBGP gone with its parent", 10
        )
        await poll(lambda: not neighbor_established(RS1), "GoBGP session down", 10)
        # graceful restart (120 s): GoBGP keeps our route, stale, for the restart time
        await poll(lambda: stale(OURS), "our route stale in GoBGP", 10)
        # the same configuration, the same ports: a restarted daemon peers again
        rs2 = RsProcess(conf, control_port, tmp_path / "rs2.log")
        procs.append(rs2)
        await poll(rs2.up, "restarted route server established", 30)
        await poll(lambda: neighbor_established(RS1), "GoBGP sees RS1 again")
        # the new daemon has no forwarder: its End-of-RIB sweeps the stale route
        await poll(lambda: OURS not in vpn_paths("vpnv4"), "stale route swept", 10)
        assert gobgp_json("neighbor", RS1)["state"]["session_state"] == 6
        # bug 8: session events reach the log at info/warning, with the peer and reason
        up = (
            "info",
            f"BGP session with {GOBGP} (AS 64512) up (graceful restart 90 s, "
            "families rtc vpnv4 vpnv6)",
        )
        assert up in [(r["level"], r["msg"]) for r in rs2.records()]
        gobgp("neighbor", RS1, "reset")  # GoBGP sends a Cease NOTIFICATION

        def logged(level: str, start: str) -> bool:
            return any(r["level"] == level and r["msg"].startswith(start) for r in rs2.records())

        cease = (
            f"BGP NOTIFICATION from {GOBGP} (AS 64512): code 6 subcode 4 "
            "(Cease, Administrative Reset)"
        )
        await poll(lambda: logged("warning", cease), "the NOTIFICATION logged", 10)
        down = f"BGP session with {GOBGP} (AS 64512) down: notification received (6,4)"
        await poll(lambda: logged("warning", down), "the session down logged", 10)

    try:
        run(body)
    finally:
        for p in procs:
            p.stop()


async def flood(fwd: Forwarder, count: int, sent: list[int]) -> None:
    """Publish ``count`` routes one after the other; stop quietly when the server goes."""
    try:
        for i in range(count):
            await fwd.publish(
                "red", entry(f"10.50.{i // 250}.{i % 250 + 1}/32", "192.0.2.11", 16 + i)
            )
            sent.append(i)
    except Exception:  # the server went away under us: that is the point
        return


def test_sigterm_under_load_exits_within_5s_and_restarts_on_the_same_ports(
    tmp_path: Path, pki: Pki, gobgpd: Any
) -> None:
    """Bug 6: SIGTERM while forwarders publish, BGP is up and routes flow: the daemon
    exits within 5 s with its children, and a new one binds the same ports."""
    xmpp_port, control_port = free_port(), free_port()
    conf = write_config(tmp_path, pki, xmpp_port, control_port)
    procs: list[RsProcess] = []

    async def body() -> None:
        rs = RsProcess(conf, control_port, tmp_path / "rs1.log")
        procs.append(rs)
        await poll(rs.up, "route server established", 30)
        gobgp("global", "rib", "-a", "vpnv4", "add", "10.2.2.2/32", "label", "20000",
              "rd", "64512:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
        fwds = [Forwarder(pki, sid, xmpp_port) for sid in (F1, F2)]
        sent: list[int] = []
        for f in fwds:
            await f.client.connect()
            await f.client.subscribe("red")
        pe = d.ItemsEvent("red", (("10.2.2.2/32", entry("10.2.2.2/32", "192.0.2.22", 20000)),))
        await poll(lambda: all(pe in f.notes for f in fwds), "PE route at the forwarders")
        load = asyncio.create_task(flood(fwds[0], 100_000, sent))
        try:
            # routes flow both ways: F1's stream reaches GoBGP and F2
            await poll(lambda: len(sent) >= 50, "F1 publishing")
            await poll(lambda: len(vpn_paths("vpnv4")) > 10, "F1's routes in GoBGP")
            helpers = exabgp_of(rs.proc.pid)
            assert len(helpers) == 2, helpers
            t0 = time.monotonic()
            rs.proc.send_signal(signal.SIGTERM)
            await poll(lambda: rs.proc.poll() is not None, "exit after SIGTERM", 5.0)
            await poll(
                lambda: not any(pid_alive(p) for p in helpers),
                "children gone",
                5.0 - (time.monotonic() - t0),
            )
            assert rs.proc.returncode == 0, rs.log.read_text()[-2000:]
        finally:
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
            for f in fwds:
                await f.client.close()
        # the same ports at once: XMPP, control, and the BGP session
        rs2 = RsProcess(conf, control_port, tmp_path / "rs2.log")
        procs.append(rs2)
        await poll(rs2.up, "restarted route server established", 30)
        again = Forwarder(pki, F2, xmpp_port)
        await again.client.connect()
        try:
            await again.client.subscribe("red")
            await poll(lambda: pe in again.notes, "PE route after the restart")
        finally:
            await again.client.close()

    try:
        run(body)
    finally:
        for p in procs:
            p.stop()


FEEDER, FEED_PORT = "127.0.6.8", 17914  # a plain ExaBGP with static routes, peering with RS1


def start_feeder(tmp_path: Path, count: int) -> subprocess.Popen[bytes]:
    routes = "\n".join(
        f"    route {ipaddress.IPv4Address(0x0B000000 + i)}/32 rd 64512:99 label {100 + i} "
        "next-hop 192.0.2.99 extended-community [ target:64512:100 ];"
        for i in range(count)
    )
    conf = tmp_path / "feeder.conf"
    conf.write_text(
        f"""neighbor {RS1} {{
  router-id {FEEDER};
  local-address {FEEDER};
  local-as 64512;
  peer-as 64512;
  connect {FEED_PORT};
  family {{ ipv4 mpls-vpn; }}
  static {{
{routes}
  }}
}}
"""
    )
    env = dict(os.environ, exabgp_daemon_drop="false", exabgp_api_cli="false")
    with open(tmp_path / "feeder.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "exabgp", str(conf)], env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def test_big_peer_down_keeps_forwarders_and_control_served(tmp_path: Path, pki: Pki) -> None:
    """Bug 5: a peer with 5,000 VPN routes goes down (no graceful restart): a forwarder
    with a 1 s ping timeout stays connected, control requests answer, and every route
    is withdrawn from it."""
    count = 5000
    xmpp_port, control_port = free_port(), free_port()
    neighbor = f"""
[[bgp.neighbor]]
address = "{FEEDER}"
asn = 64512
families = ["vpnv4"]
passive = true
listen_port = {FEED_PORT}
"""
    conf = write_config(tmp_path, pki, xmpp_port, control_port, neighbor)
    rs = RsProcess(conf, control_port, tmp_path / "rs.log")
    feeder: subprocess.Popen[bytes] | None = None

    async def body() -> None:
        nonlocal feeder
        await poll(rs.answers, "control up", 30)
        pair = pki.client(F1)
        have: set[str] = set()
        gone: set[str] = set()

        def on_note(note: d.Notification) -> None:
            if isinstance(note, d.ItemsEvent):
                have.update(i for i, _ in note.items)
            elif isinstance(note, d.RetractEvent):
                gone.update(note.item_ids)

        client = XmppClient(
            ClientConfig(
                jid=f"{F1}@{DOMAIN}", host="127.0.0.1", port=xmpp_port,
                certfile=pair.certfile, keyfile=pair.keyfile, cafile=pki.cafile,
                ping_interval=0.2, ping_timeout=1.0,
            ),
            on_note,
        )  # fmt: skip
        await client.connect()
        try:
            await client.subscribe("red")
            feeder = start_feeder(tmp_path, count)
            await poll(lambda: len(have) == count, f"{count} routes at the forwarder", 120)
            assert client.connected
            feeder.kill()  # the session drops: no graceful restart, every path goes
            answered = 0
            deadline = time.monotonic() + 60
            while len(gone) < count:
                assert time.monotonic() < deadline, f"{len(gone)} of {count} withdrawn"
                # a control request answers meanwhile (the loop is not held)
                await asyncio.to_thread(rs.get, "/show/peers")
                answered += 1
                assert client.connected, "forwarder dropped during the withdrawal"
                await asyncio.sleep(0.05)
            assert gone == have and answered >= 1
            peer = json.loads(await asyncio.to_thread(rs.get, "/show/peers"))[0]
            assert (peer["address"], peer["up"], peer["routes_in"]) == (FEEDER, False, 0)
            await client.ping()  # the session is alive and answers
            assert client.connected
            metrics = rs.get("/metrics")
            assert "esvpn_rs_loop_lag_worst_seconds " in metrics
        finally:
            await client.close()

    try:
        run(body, 240)
    finally:
        if feeder is not None and feeder.poll() is None:
            feeder.kill()
        if feeder is not None:
            feeder.wait(10)
        rs.stop()
