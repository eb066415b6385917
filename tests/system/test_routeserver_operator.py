"""The operator's surface of the route server daemon (a process, run by the CLI)
against real GoBGP: ``show neighbors / adj-rib-in / adj-rib-out / route``, clear
(hard, soft in, soft out), reload (SIGHUP and ``reload``), max-prefix.

Addresses of its own, so it runs beside the other GoBGP tests: gobgpd on
127.0.6.52 (BGP 17952, gRPC 50152), the route server on 127.0.6.51, a neighbor
that never answers on 127.0.6.53. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esxmpp import dialect as d
from esxmpp.testing import Pki, make_pki
from tests.system.test_routeserver_gobgp import Forwarder, entry

GOBGP, GOBGP_PORT, GOBGP_API = "127.0.6.52", 17952, 50152
RS, SILENT = "127.0.6.51", "127.0.6.53"
F1 = "0102030405a1"
CLI = [sys.executable, "-m", "routeserver.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gobgp(*args: str) -> str:
    res = subprocess.run(
        ["gobgp", "-u", GOBGP, "-p", str(GOBGP_API), *args],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert res.returncode == 0, f"gobgp {' '.join(args)}: {res.stderr}{res.stdout}"
    return res.stdout


def gobgp_neighbor() -> dict[str, Any]:
    out = gobgp("-j", "neighbor", RS)
    return json.loads(out) if out.strip() else {}


def start_gobgpd(tmp: Path) -> subprocess.Popen[bytes]:
    conf = tmp / "gobgpd.toml"
    conf.write_text(
        f"""[global.config]
  as = 64512
  router-id = "{GOBGP}"
  port = {GOBGP_PORT}
  local-address-list = ["{GOBGP}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{RS}"
    peer-as = 64512
  [neighbors.transport.config]
    local-address = "{GOBGP}"
    passive-mode = true
  [neighbors.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "{GOBGP}"
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 90
"""
        + "".join(
            f"""  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{fam}"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"""
            for fam in ("l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast", "rtc")
        )
    )
    with open(tmp / "gobgpd.log", "ab") as logf:
        proc = subprocess.Popen(
            ["gobgpd", "-f", str(conf), "--api-hosts", f"{GOBGP}:{GOBGP_API}", "-l", "info"],
            stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 15
    while subprocess.run(
        ["gobgp", "-u", GOBGP, "-p", str(GOBGP_API), "neighbor"], capture_output=True, check=False
    ).returncode:
        assert proc.poll() is None, (tmp / "gobgpd.log").read_text()
        assert time.monotonic() < deadline, "gobgpd API did not come up"
        time.sleep(0.05)
    return proc


def rs_config(
    path: Path, pki: Pki, control: int, xmpp: int, extra: str = "", green: bool = False
) -> None:
    server = pki.server("rs.test")
    path.write_text(
        f"""
[server]
router_id = "{RS}"
asn = 64512

[xmpp]
domain = "rs.test"
certfile = "{server.certfile}"
keyfile = "{server.keyfile}"
cafile = "{pki.cafile}"
port = {xmpp}
forwarders = ["{F1}"]

[control]
port = {control}

[bgp]
[[bgp.neighbor]]
address = "{GOBGP}"
asn = 64512
port = {GOBGP_PORT}
{extra}
[[vrf]]
vpn = "red"
import_targets = ["64512:100"]
export_targets = ["64512:100"]
"""
        + (
            """
[[vrf]]
vpn = "green"
import_targets = ["64512:200"]
export_targets = ["64512:200"]
"""
            if green
            else ""
        )
    )


def cli(control: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*CLI, *args, "--control", f"127.0.0.1:{control}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if check:
        assert res.returncode == 0, res.stderr
    return res


def cli_json(control: int, *args: str) -> Any:
    return json.loads(cli(control, *args, "--json").stdout)


async def poll(fn: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        val = await asyncio.to_thread(fn)
        if val:
            return val
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def neighbor(control: int, addr: str = GOBGP) -> dict[str, Any]:
    return dict(cli_json(control, "show", "neighbors", addr)[0])


def http(control: int, method: str, path: str) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{control}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def add(prefix: str, rd: str, *attrs: str, rt: str = "64512:100") -> None:
    gobgp("global", "rib", "-a", "vpnv4", "add", prefix, "label", "20000", "rd", rd,
          "rt", rt, "nexthop", "192.0.2.22", *attrs)  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def test_operator_surface_against_gobgp(tmp_path: Path, pki: Pki) -> None:
    gobgpd = start_gobgpd(tmp_path)
    control, port = free_port(), free_port()
    conf = tmp_path / "rs.toml"
    rs_config(conf, pki, control, port)
    daemon = subprocess.Popen(
        [*CLI, "run", "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "rs.log", "w"),  # noqa: SIM115
    )  # fmt: skip

    async def body() -> None:
        await poll(lambda: cli(control, "show", "vrfs", check=False).returncode == 0, "control")
        await poll(lambda: neighbor(control)["state"] == "established", "session up")
        f1 = Forwarder(pki, F1, port)
        await f1.client.connect()
        try:
            await f1.client.subscribe("red")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000, 7))
            # two paths for one prefix from GoBGP: LOCAL_PREF decides
            add("10.2.2.0/24", "64512:7", "local-pref", "200", "community", "65001:100")
            add("10.2.2.0/24", "64512:8", "med", "5")
            await poll(
                lambda: any(
                    isinstance(n, d.ItemsEvent) and n.items[0][0] == "10.2.2.0/24" for n in f1.notes
                ),
                "the PE route at the forwarder",
            )
            await check_views(control)
            await check_clear(control)
            await check_reload(control, conf, pki, daemon, port)
            await asyncio.to_thread(check_metrics, control)
            await check_max_prefixes(control, f1)
        finally:
            await f1.client.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 170))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        gobgpd.terminate()
        gobgpd.wait(10)
    assert daemon.returncode == 0


async def check_views(control: int) -> None:
    n = await asyncio.to_thread(neighbor, control)
    assert n["uptime"] >= 0 and n["messages_in"]["update"] > 0 and n["messages_out"]["update"] > 0
    stable = {k: v for k, v in n.items() if k not in ("uptime", "messages_in", "messages_out")}
    assert stable == {
        "address": GOBGP, "asn": 64512, "type": "ibgp", "state": "established", "up": True,
        "established": 1,
        "capabilities": sorted(n["capabilities"]),
        "families": ["rtc", "vpnv4", "vpnv6"],
        "configured_families": ["rtc", "vpnv4", "vpnv6"],
        "rtc_filter": True, "graceful_restart": 90, "max_prefixes": 1000000,
        "last_error": "", "notification_in": "", "notification_out": "",
        "prefixes_in": {"vpnv4": 2, "rtc": 1}, "prefixes_out": {"vpnv4": 1, "rtc": 1},
        "updates_in": {"rtc": 1, "vpnv4": 2}, "updates_out": {"rtc": 1, "vpnv4": 1},
        "stale": 0,
    }  # fmt: skip
    # ExaBGP's list: multiprotocol is shown as the families
    assert n["capabilities"] == ["asn4", "graceful-restart", "route-refresh"]

    # route lookup by address (longest match): every attribute, why the best path won
    res = await asyncio.to_thread(cli, control, "show", "route", "10.2.2.2")
    path = [
        "    from             bgp 127.0.6.52 (ibgp)",
        "    next hop         192.0.2.22",
        "    label            20000",
        "    version          0",
        "    origin           incomplete",  # gobgp's CLI default
        "    as path          (empty)",
    ]
    tail = [
        "    ext communities  target:64512:100",
        "    originator id    127.0.6.52",  # GoBGP reflects its own routes with both
        "    cluster list     127.0.6.52",
        "    stale            no",
    ]
    assert res.stdout.splitlines() == [
        "10.2.2.0/24 in VRF red (VPN red): 2 path(s)",
        "  path 1: best (best of 2 paths)",
        path[0], "    rd               64512:7", *path[1:],
        "    local pref       200",
        "    med              0",
        "    communities      65001:100",
        *tail,
        "  path 2: not best (lost on LOCAL_PREF 100 < 200)",
        path[0], "    rd               64512:8", *path[1:],
        "    local pref       100",
        "    med              5",
        "    communities      -",
        *tail,
    ]  # fmt: skip
    by_rd = cli_json(control, "show", "route", "--rd", "64512:8")
    assert [(e["vrf"], e["prefix"], [p["rd"] for p in e["paths"]]) for e in by_rd] == [
        ("red", "10.2.2.0/24", ["64512:7", "64512:8"])
    ]
    assert cli_json(control, "show", "route", "10.2.2.0/24", "--vpn", "green") == []
    res = await asyncio.to_thread(cli, control, "show", "adj-rib-in", GOBGP, "--family", "vpnv4")
    assert res.stdout.splitlines() == [
        "family  rd       prefix       nexthop     label  as_path  local_pref  med  targets    "
        "stale  selected_in",
        "vpnv4   64512:7  10.2.2.0/24  192.0.2.22  20000  -        200         0    64512:100"
        "         red",
        "vpnv4   64512:8  10.2.2.0/24  192.0.2.22  20000  -        100         5    64512:100"
        "         -",
    ]
    res = await asyncio.to_thread(cli, control, "show", "adj-rib-out", GOBGP)
    assert res.stdout.splitlines() == [
        "family  rd            prefix       nexthop     label  targets    version",
        "vpnv4   192.0.2.11:1  10.1.1.1/32  192.0.2.11  10000  64512:100  7",
        "",
        "rtc route_target",
        "64512:100",
    ]
    res = await asyncio.to_thread(cli, control, "show", "neighbors", GOBGP)
    lines = [re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", line) for line in res.stdout.splitlines()]
    messages = lines[13:20]
    assert lines[:13] + lines[20:] == [
        "neighbor          127.0.6.52 AS 64512 (ibgp)",
        "state             established, up for HH:MM:SS",
        "established       1 time(s)",
        "capabilities      asn4,graceful-restart,route-refresh",
        "families          rtc,vpnv4,vpnv6 (configured: rtc,vpnv4,vpnv6)",
        "rtc filter        yes",
        "graceful restart  90 s",
        "max prefixes      1000000",
        "last error        -",
        "notification in   -",
        "notification out  -",
        "stale paths       0",
        "",
        "",
        "family  prefixes_in  prefixes_out  updates_in  updates_out",
        "rtc     1            1             1           1",
        "vpnv4   2            1             2           1",
        "vpnv6   0            0             0           0",
    ]
    assert [m.split()[0] for m in messages] == [
        "messages", "keepalive", "notification", "open", "refresh", "total", "update"
    ]  # fmt: skip
    res = await asyncio.to_thread(cli, control, "show", "neighbors")
    lines = [re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", line) for line in res.stdout.splitlines()]
    assert lines == [
        "address     asn    state        up/down   families         prefixes_in    prefixes_out"
        "   last_error",
        "127.0.6.52  64512  established  HH:MM:SS  rtc,vpnv4,vpnv6  vpnv4:2 rtc:1  vpnv4:1 rtc:1"
        "  -",
    ]
    # views refuse what they cannot answer, precisely
    assert http(control, "GET", "/show/neighbors?peer=10.9.9.9") == (
        404, "unknown: /show/neighbors?peer=10.9.9.9\n"
    )  # fmt: skip
    assert http(control, "GET", "/show/adj-rib-in?peer=10.9.9.9") == (
        400, "BGP peer 10.9.9.9 is not configured\n"
    )  # fmt: skip
    assert http(control, "GET", "/show/route?prefix=10.2.2") == (
        400, "'10.2.2' is not an IP prefix or address\n"
    )  # fmt: skip


def exa_messages(control: int, way: str, kind: str) -> int:
    return int(neighbor(control)[f"messages_{way}"].get(kind, 0))


def gobgp_received_updates() -> int:
    return int(gobgp_neighbor()["state"]["messages"]["received"].get("update", 0))


async def check_clear(control: int) -> None:
    # actions are POST only: a GET (a prefetch, a stray link) changes nothing
    assert http(control, "GET", f"/clear?peer={GOBGP}") == (405, "/clear: use POST\n")
    assert http(control, "POST", "/clear?peer=10.9.9.9") == (
        409, "BGP peer 10.9.9.9 is not configured\n"
    )  # fmt: skip
    # soft in: ROUTE-REFRESH per negotiated family; GoBGP sends its routes again
    before = exa_messages(control, "in", "update")
    assert cli_json(control, "clear", GOBGP, "--soft-in") == {
        "cleared": GOBGP, "mode": "soft-in",
        "actions": ["ROUTE-REFRESH rtc", "ROUTE-REFRESH vpnv4", "ROUTE-REFRESH vpnv6"],
    }  # fmt: skip
    await poll(lambda: exa_messages(control, "out", "refresh") == 3, "3 ROUTE-REFRESH sent")
    await poll(lambda: exa_messages(control, "in", "update") > before, "GoBGP re-sent")
    # soft out: our adj-RIB-out again, the session stays
    before = await asyncio.to_thread(gobgp_received_updates)
    res = await asyncio.to_thread(cli, control, "clear", GOBGP, "--soft-out")
    assert res.stdout == "cleared  127.0.6.52\nmode     soft-out\nactions  adj-RIB-out sent again\n"
    await poll(lambda: gobgp_received_updates() > before, "GoBGP got our routes again")
    assert neighbor(control)["established"] == 1
    # hard: NOTIFICATION Cease / Administrative Reset; the session comes back
    assert cli_json(control, "clear", GOBGP) == {
        "cleared": GOBGP, "mode": "hard", "actions": ["NOTIFICATION Cease subcode 4"]
    }  # fmt: skip
    n = await poll(
        lambda: (x := neighbor(control))["established"] == 2 and x["prefixes_in"] == {
            "vpnv4": 2, "rtc": 1} and x,
        "session back after the hard clear", 60,
    )  # fmt: skip
    # ExaBGP sends the subcode's name as data (GoBGP reads it as the RFC 8203 text)
    assert n["notification_out"] == (
        "code 6 subcode 4 (Cease, Administrative Reset): Administrative Reset"
    )
    assert n["last_error"] != ""
    # a soft reset needs an established session; an unknown mode is refused
    assert http(control, "POST", f"/clear?peer={GOBGP}&mode=gentle") == (
        409, "clear mode 'gentle' is not one of hard, soft, soft-in, soft-out\n"
    )  # fmt: skip


async def check_reload(control: int, conf: Path, pki: Pki, daemon: Any, port: int) -> None:
    uptime = gobgp_neighbor()["timers"]["state"]["uptime"]
    # SIGHUP: a VRF, a neighbor (that never answers) and a prefix limit added
    silent = (
        f'max_prefixes = 3\n[[bgp.neighbor]]\naddress = "{SILENT}"\nasn = 64512\nport = 17953\n'
    )
    rs_config(conf, pki, control, port, extra=silent, green=True)
    daemon.send_signal(signal.SIGHUP)
    await poll(
        lambda: [v["name"] for v in cli_json(control, "show", "vrfs")] == ["red", "green"],
        "VRF green after SIGHUP",
    )
    ns = await poll(lambda: len(x := cli_json(control, "show", "neighbors")) == 2 and x, "2 peers")
    assert [(n["address"], n["up"], n["max_prefixes"]) for n in ns] == [
        (GOBGP, True, 3), (SILENT, False, 1000000)
    ]  # fmt: skip
    # the session with GoBGP was not touched: same session on both sides
    assert ns[0]["established"] == 2
    assert gobgp_neighbor()["timers"]["state"]["uptime"] == uptime
    # the reload command: the neighbor removed again; its answer says what changed
    rs_config(conf, pki, control, port, extra="max_prefixes = 3\n", green=True)
    assert cli_json(control, "reload") == {
        "neighbors": {"added": [], "removed": [SILENT], "changed": []},
        "vrfs": {"added": [], "removed": [], "changed": []},
    }
    assert [n["address"] for n in cli_json(control, "show", "neighbors")] == [GOBGP]
    # a change that needs a restart is refused, nothing changes
    conf.write_text(conf.read_text().replace("asn = 64512\n", "asn = 64513\n", 1))
    res = await asyncio.to_thread(cli, control, "reload", check=False)
    assert (res.returncode, res.stderr) == (
        1, "error: server.asn: cannot change on reload (restart the daemon)\n"
    )  # fmt: skip
    assert gobgp_neighbor()["timers"]["state"]["uptime"] == uptime
    assert neighbor(control)["established"] == 2


async def check_max_prefixes(control: int, f1: Forwarder) -> None:
    # 2 paths in, limit 3 (the reload): the 4th ends the session with Cease/1
    add("10.5.5.0/24", "64512:7")
    add("10.6.6.0/24", "64512:7")
    n = await poll(
        lambda: (x := neighbor(control))["notification_out"] and x["prefixes_in"] == {} and x,
        "Cease/1, the peer's paths gone",
    )
    # (ExaBGP puts the subcode's name in the data, not RFC 4486's AFI/SAFI/limit)
    assert n["notification_out"] == (
        "code 6 subcode 1 (Cease, Maximum Number of Prefixes Reached): "
        "Maximum Number of Prefixes Reached"
    )
    assert n["stale"] == 0
    # its paths went at once (a NOTIFICATION ends graceful restart): the forwarder
    # has the PE's route withdrawn
    await poll(lambda: d.RetractEvent("red", ("10.2.2.0/24",)) in f1.notes, "PE route withdrawn")


def check_metrics(control: int) -> None:
    """Per peer and per VRF, in Prometheus form; ExaBGP's 'reload in progress'
    answers were no malformed messages."""
    lines = http(control, "GET", "/metrics")[1].splitlines()
    for line in (
        'esvpn_rs_vrf_routes{vrf="red"} 2.0',  # ours and the PE's
        'esvpn_rs_vrf_routes{vrf="green"} 0.0',
        'esvpn_rs_vrf_subscribers{vrf="red"} 1.0',
        'esvpn_rs_vrf_subscribers{vrf="green"} 0.0',
        f'esvpn_rs_bgp_peer_prefixes_received{{family="vpnv4",peer="{GOBGP}"}} 2.0',
        f'esvpn_rs_bgp_peer_prefixes_advertised{{family="vpnv4",peer="{GOBGP}"}} 1.0',
        f'esvpn_rs_bgp_peer_prefixes_received{{family="vpnv6",peer="{GOBGP}"}} 0.0',
        f'esvpn_rs_bgp_peer_established_total{{peer="{GOBGP}"}} 2.0',
        'esvpn_rs_bgp_refused_total{reason="malformed"} 0.0',
    ):
        assert line in lines, line
    updates = [x for x in lines if x.startswith('esvpn_rs_vrf_updates_total{vrf="red"}')]
    assert len(updates) == 1 and float(updates[0].split()[1]) >= 2
