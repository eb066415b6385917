"""Route server against real peers: GoBGP (gobgpd) as route reflector / L3VPN PE,
ExaBGP as our BGP speaker, forwarders as real XMPP clients over TLS.

Addresses: gobgpd on 127.0.6.2 (BGP port 17906, gRPC 50066); route servers on
127.0.6.1 and 127.0.6.3 (ExaBGP connects out; nothing binds port 179).
Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress as ip
import json
import os
import shutil
import signal
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
from routeserver.config import Neighbor, load_dict
from routeserver.server import RouteServer

# gobgpd/gobgp come from scripts/apt-deps.sh (Debian package gobgpd); no skip when missing.
assert shutil.which("gobgpd") and shutil.which("gobgp"), "install gobgpd: scripts/apt-deps.sh"

GOBGP = "127.0.6.2"
GOBGP_PORT = 17906
GOBGP_API = 50066
RS1, RS2 = "127.0.6.1", "127.0.6.3"
DIRECT_PORT = 17907
ASN = 64512
DOMAIN = "rs.test"
F1, F2, F3 = "0102030405a1", "0102030405a2", "0102030405a3"


def gobgpd_config(path: Path, restart_time: int = 90, asn: int = ASN) -> None:
    """gobgpd as route reflector (iBGP, asn == ASN) or as an eBGP PE (another asn)."""
    neighbors = ""
    rr = f"""  [neighbors.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "{GOBGP}"
"""
    for addr in (RS1, RS2):
        neighbors += f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {ASN}
  [neighbors.transport.config]
    local-address = "{GOBGP}"
    passive-mode = true
{rr if asn == ASN else ""}  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = {restart_time}
"""
        fams = ["l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast"] + (["rtc"] if asn == ASN else [])
        for fam in fams:
            neighbors += f"""  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{fam}"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"""
    path.write_text(
        f"""[global.config]
  as = {asn}
  router-id = "{GOBGP}"
  port = {GOBGP_PORT}
  local-address-list = ["{GOBGP}"]
{neighbors}"""
    )


def gobgp(*args: str, check: bool = True) -> str:
    res = subprocess.run(
        ["gobgp", "-u", GOBGP, "-p", str(GOBGP_API), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"gobgp {' '.join(args)}: {res.stderr}{res.stdout}")
    return res.stdout


def gobgp_json(*args: str) -> Any:
    out = gobgp("-j", *args)
    return json.loads(out) if out.strip() else {}


def start_gobgpd(tmp_path: Path, restart_time: int = 90, asn: int = ASN) -> subprocess.Popen[bytes]:
    conf = tmp_path / "gobgpd.toml"
    gobgpd_config(conf, restart_time, asn)
    with open(tmp_path / "gobgpd.log", "ab") as logf:
        proc = subprocess.Popen(
            ["gobgpd", "-f", str(conf), "--api-hosts", f"{GOBGP}:{GOBGP_API}", "-l", "info"],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 15
    while True:
        res = subprocess.run(
            ["gobgp", "-u", GOBGP, "-p", str(GOBGP_API), "neighbor"],
            capture_output=True,
            check=False,
        )
        if res.returncode == 0:
            return proc
        assert proc.poll() is None, (tmp_path / "gobgpd.log").read_text()
        assert time.monotonic() < deadline, "gobgpd API did not come up"
        time.sleep(0.05)


@pytest.fixture
def gobgpd(tmp_path: Path):
    procs = [start_gobgpd(tmp_path)]
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("rs-pki"))


def rs_config(pki: Pki, router_id: str, retention: float = 60.0, peer_asn: int = ASN) -> Any:
    """Route server config; toward an eBGP PE (peer_asn != ASN) without RT-Constraint."""
    fams = ["vpnv4", "vpnv6", "rtc"] if peer_asn == ASN else ["vpnv4", "vpnv6"]
    server = pki.server(DOMAIN)
    return load_dict(
        {
            "server": {"router_id": router_id, "asn": ASN},
            "xmpp": {
                "domain": DOMAIN,
                "certfile": str(server.certfile),
                "keyfile": str(server.keyfile),
                "cafile": str(pki.cafile),
                "port": 0,
                "retention": retention,
                "forwarders": [F1, F2, F3],
            },
            "control": {"port": 0},
            "bgp": {
                "graceful_restart": 120,
                "neighbor": [
                    {"address": GOBGP, "asn": peer_asn, "port": GOBGP_PORT, "families": fams}
                ],
            },
            "vrf": [
                {"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:100"]},
                {"vpn": "green", "import_targets": ["64512:200"], "export_targets": ["64512:200"]},
                {"vpn": "blue", "import_targets": ["64512:300"], "export_targets": []},
            ],
        }
    )


async def poll(fn: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Call ``fn`` (sync) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        val = await asyncio.to_thread(fn)
        if val:
            return val
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def neighbor_established(addr: str) -> bool:
    data = gobgp_json("neighbor", addr)
    return data.get("state", {}).get("session_state") == 6


class Forwarder:
    """A forwarder's XMPP client recording every notification."""

    def __init__(self, pki: Pki, sid: str, port: int) -> None:
        pair = pki.client(sid)
        self.sid = sid
        self.notes: list[d.Notification] = []
        self.client = XmppClient(
            ClientConfig(
                jid=f"{sid}@{DOMAIN}",
                host="127.0.0.1",
                port=port,
                certfile=pair.certfile,
                keyfile=pair.keyfile,
                cafile=pki.cafile,
            ),
            self.notes.append,
        )

    async def publish(self, vpn: str, entry: d.RouteEntry) -> None:
        node = d.item_node_name(bytes.fromhex(self.sid), entry.prefix)
        await self.client.publish(node, entry)
        await self.client.associate(vpn, node)


def entry(prefix: str, nh: str, label: int, version: int = 0) -> d.RouteEntry:
    return d.RouteEntry(ip.ip_network(prefix), ip.ip_address(nh), label, version)


def vpn_paths(family: str) -> dict[str, Any]:
    """GoBGP global RIB: 'rd:prefix' -> the first path's summary."""
    out = {}
    for key, paths in gobgp_json("global", "rib", "-a", family).items():
        p = paths[0]
        ext = next(a for a in p["attrs"] if a["type"] == 16)["value"]
        mp = next(a for a in p["attrs"] if a["type"] == 14)
        out[key] = {
            "labels": p["nlri"]["labels"],
            "rd": p["nlri"]["rd"],
            "nexthop": mp["nexthop"],
            "ext": sorted((e["type"], e["subtype"], e["value"]) for e in ext),
            "from": p.get("neighbor-ip"),
        }
    return out


def rtc_routes() -> list[str]:
    return sorted(
        line.split()[1]
        for line in gobgp("global", "rib", "-a", "rtc").splitlines()
        if line.startswith("*")
    )


def version_ec(v: int) -> tuple[int, int, str]:
    # GoBGP shows an unknown extended community as base64 of sub-type + 6 value octets
    return (0x8E, 0x01, base64.b64encode(b"\x01\x00\x00" + v.to_bytes(4, "big")).decode())


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 55))


def test_xmpp_to_bgp_and_back_with_rtc(gobgpd: Any, pki: Pki) -> None:
    async def body() -> None:
        rs = RouteServer(rs_config(pki, RS1))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        f2 = Forwarder(pki, F2, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1), "RS1 established")
            await f1.client.connect()
            await f2.client.connect()
            await f1.client.subscribe("red")
            await f2.client.subscribe("green")
            await poll(lambda: rtc_routes() == ["64512:64512:100", "64512:64512:200"], "RTC")
            await poll(
                lambda: d.EndOfRib("red") in f1.notes and d.EndOfRib("green") in f2.notes,
                "End-of-RIB, once what our RTC routes pull in from BGP is in",
            )
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000, 7))
            await f1.publish("red", entry("2001:db8::1/128", "192.0.2.11", 10001, 7))

            # our routes in GoBGP's VPN RIBs: RD type 1 router id:1, RT, version, label, NH
            v4 = await poll(lambda: vpn_paths("vpnv4"), "vpnv4 route in GoBGP")
            assert v4 == {
                "192.0.2.11:1:10.1.1.1/32": {
                    "labels": [10000],
                    "rd": {"type": 1, "admin": "192.0.2.11", "assigned": 1},
                    "nexthop": "192.0.2.11",
                    "ext": sorted([(0, 2, "64512:100"), version_ec(7)]),
                    "from": RS1,
                }
            }
            v6 = await poll(lambda: vpn_paths("vpnv6"), "vpnv6 route in GoBGP")
            assert v6 == {
                "192.0.2.11:1:2001:db8::1/128": {
                    "labels": [10001],
                    "rd": {"type": 1, "admin": "192.0.2.11", "assigned": 1},
                    "nexthop": "192.0.2.11",
                    "ext": sorted([(0, 2, "64512:100"), version_ec(7)]),
                    "from": RS1,
                }
            }

            # an existing PE's routes (injected into GoBGP): red, green, and blue
            # (nobody subscribed to blue -> RTC keeps it away from us)
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.2.2.2/32", "label", "20000",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.4.4.4/32", "label", "40000",
                  "rd", "64512:9", "rt", "64512:200", "nexthop", "192.0.2.44")  # fmt: skip
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.3.3.3/32", "label", "30000",
                  "rd", "64512:8", "rt", "64512:300", "nexthop", "192.0.2.33")  # fmt: skip
            red_pe = d.ItemsEvent(
                "red", (("10.2.2.2/32", entry("10.2.2.2/32", "192.0.2.22", 20000)),)
            )
            green_pe = d.ItemsEvent(
                "green", (("10.4.4.4/32", entry("10.4.4.4/32", "192.0.2.44", 40000)),)
            )
            await poll(lambda: red_pe in f1.notes and green_pe in f2.notes, "PE routes at F1/F2")
            own = [
                d.ItemsEvent(
                    "red", (("10.1.1.1/32", entry("10.1.1.1/32", "192.0.2.11", 10000, 7)),)
                ),
                d.ItemsEvent(
                    "red",
                    (("2001:db8::1/128", entry("2001:db8::1/128", "192.0.2.11", 10001, 7)),),
                ),
            ]
            assert f1.notes == [d.EndOfRib("red"), *own, red_pe]
            assert f2.notes == [d.EndOfRib("green"), green_pe]
            # RTC filtering: GoBGP never sent the blue route to us
            adj_out = gobgp("neighbor", RS1, "adj-out", "-a", "vpnv4")
            assert "10.2.2.2/32" in adj_out and "10.3.3.3/32" not in adj_out
            assert [r["prefix"] for r in rs.rib.show_routes("blue")] == []

            # operator interface: the CLI against the control endpoint, and metrics
            control = f"127.0.0.1:{rs.control_port}"
            cli = [sys.executable, "-m", "routeserver.cli", "show", "routes", "--vrf", "red"]
            res = await asyncio.to_thread(
                subprocess.run, [*cli, "--json", "--control", control],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            common = {"vrf": "red", "targets": ["64512:100"], "best": True, "stale": False}
            assert json.loads(res.stdout) == [
                {"prefix": "10.1.1.1/32", "nexthop": "192.0.2.11", "label": 10000, "version": 7,
                 "source": "xmpp", "from": F1, "rd": "192.0.2.11:1", **common},
                {"prefix": "10.2.2.2/32", "nexthop": "192.0.2.22", "label": 20000, "version": 0,
                 "source": "bgp", "from": GOBGP, "rd": "64512:7", **common},
                {"prefix": "2001:db8::1/128", "nexthop": "192.0.2.11", "label": 10001,
                 "version": 7, "source": "xmpp", "from": F1, "rd": "192.0.2.11:1", **common},
            ]  # fmt: skip
            res = await asyncio.to_thread(
                subprocess.run, [*cli, "--control", control],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            lines = res.stdout.splitlines()
            assert lines[0].split() == [
                "vrf", "prefix", "nexthop", "label", "version", "source", "from", "rd",
                "targets", "best", "stale",
            ]  # fmt: skip
            assert lines[2].split() == [
                "red", "10.2.2.2/32", "192.0.2.22", "20000", "0", "bgp", GOBGP, "64512:7",
                "64512:100", "*",
            ]  # fmt: skip
            metrics = await asyncio.to_thread(http_get, f"http://{control}/metrics")
            assert f'esvpn_rs_bgp_peer_up{{peer="{GOBGP}"}} 1.0' in metrics.splitlines()
            assert 'esvpn_rs_rib_entries{kind="subscriptions"} 2.0' in metrics.splitlines()

            # bad input from a forwarder gets a precise error and changes nothing
            with pytest.raises(d.DialectError) as ei:
                await f1.client.subscribe("nope")
            assert (ei.value.condition, ei.value.text) == (
                "item-not-found",
                f"no VRF configured for system {F1} in VPN 'nope'",
            )
            with pytest.raises(d.DialectError) as ei:
                await f1.publish("red", entry("10.7.7.7/32", "2001:db8::7", 10007))
            assert (ei.value.condition, ei.value.text) == (
                "not-acceptable",
                "IPv4 prefix 10.7.7.7/32 with IPv6 next hop 2001:db8::7 is not supported",
            )
            assert "192.0.2.11:1:10.7.7.7/32" not in vpn_paths("vpnv4")

            # a VPN-IPv6 route from the PE (IPv4-mapped next hop) reaches F1 as IPv6-over-IPv4
            gobgp("global", "rib", "-a", "vpnv6", "add", "2001:db8::2/128", "label", "20001",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "::ffff:192.0.2.22")  # fmt: skip
            v6_pe = d.ItemsEvent(
                "red", (("2001:db8::2/128", entry("2001:db8::2/128", "192.0.2.22", 20001)),)
            )
            await poll(lambda: v6_pe in f1.notes, "VPN-IPv6 PE route at F1")
            gobgp("global", "rib", "-a", "vpnv6", "del", "2001:db8::2/128", "label", "20001",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "::ffff:192.0.2.22")  # fmt: skip
            await poll(lambda: d.RetractEvent("red", ("2001:db8::2/128",)) in f1.notes, "v6 gone")

            # sessions as the operator sees them
            sessions = await asyncio.to_thread(http_get, f"http://{control}/show/sessions")
            assert sorted((s["system_id"], s["subscriptions"], s["published"])
                          for s in json.loads(sessions)) == [
                (F1, ["red"], 2), (F2, ["green"], 0)
            ]  # fmt: skip

            # withdraw at the PE -> retract at the forwarder
            gobgp("global", "rib", "-a", "vpnv4", "del", "10.2.2.2/32", "label", "20000",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
            await poll(lambda: d.RetractEvent("red", ("10.2.2.2/32",)) in f1.notes, "retract")

            # last subscriber of green leaves -> its RTC route is withdrawn
            await f2.client.unsubscribe("green")
            await poll(lambda: rtc_routes() == ["64512:64512:100"], "green RTC withdrawn")

            # F1 reconnects within the retention time: nothing was withdrawn from BGP,
            # and the new session gets the VPN's table again, then end-of-RIB
            await f1.client.close()
            f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
            await f1.client.connect()
            await poll(lambda: d.EndOfRib("red") in f1.notes, "table after resume")
            assert f1.notes == [
                d.ItemsEvent(
                    "red",
                    (
                        ("10.1.1.1/32", entry("10.1.1.1/32", "192.0.2.11", 10000, 7)),
                        ("2001:db8::1/128", entry("2001:db8::1/128", "192.0.2.11", 10001, 7)),
                    ),
                ),
                d.EndOfRib("red"),
            ]
            assert sorted(vpn_paths("vpnv4")) == [
                "192.0.2.11:1:10.1.1.1/32",
                "64512:8:10.3.3.3/32",
                "64512:9:10.4.4.4/32",
            ]
        finally:
            await f1.client.close()
            await f2.client.close()
            await rs.stop()

    run(body)


def test_two_route_servers_through_reflector_and_stale_timeout(gobgpd: Any, pki: Pki) -> None:
    async def body() -> None:
        retention = 3.0
        rs1 = RouteServer(rs_config(pki, RS1, retention=retention))
        rs2 = RouteServer(rs_config(pki, RS2))
        await rs1.start()
        await rs2.start()
        f1 = Forwarder(pki, F1, rs1.xmpp.port)  # type: ignore[union-attr]
        f3 = Forwarder(pki, F3, rs2.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1) and neighbor_established(RS2), "peers")
            await f3.client.connect()
            await f3.client.subscribe("red")
            await f1.client.connect()
            await f1.client.subscribe("red")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000, 3))
            # F1's route reaches F3 through RS1 -> GoBGP (RR) -> RS2, version intact
            moved = d.ItemsEvent(
                "red", (("10.1.1.1/32", entry("10.1.1.1/32", "192.0.2.11", 10000, 3)),)
            )
            await poll(lambda: moved in f3.notes, "F1 route at F3")
            # and F3's at F1
            await f3.publish("red", entry("10.1.1.3/32", "192.0.2.13", 10003))
            back = d.ItemsEvent(
                "red", (("10.1.1.3/32", entry("10.1.1.3/32", "192.0.2.13", 10003)),)
            )
            await poll(lambda: back in f1.notes, "F3 route at F1")
            # the address moves to F3's host with a newer version: everyone selects it
            await f3.publish("red", entry("10.1.1.1/32", "192.0.2.13", 10013, 4))
            newer = d.ItemsEvent(
                "red", (("10.1.1.1/32", entry("10.1.1.1/32", "192.0.2.13", 10013, 4)),)
            )
            await poll(lambda: newer in f1.notes, "moved address at F1")
            # F1 goes away: its routes stay in BGP until its XMPP state expires
            key = "192.0.2.11:1:10.1.1.1/32"
            assert key in vpn_paths("vpnv4")
            await f1.client.close()
            table = rs1.xmpp.table  # type: ignore[union-attr]
            expiry = await poll(table.next_deadline, "RS1 noticed the close")
            # half the retention later, by RS1's own expiry clock: still advertised
            await poll(lambda: time.monotonic() >= expiry - retention / 2, "half the retention")
            assert table.next_deadline() == expiry
            assert key in vpn_paths("vpnv4")
            assert rs1.rib.sizes()["xmpp_paths"] == 1
            await poll(lambda: key not in vpn_paths("vpnv4"), "F1 route withdrawn after expiry")
            assert time.monotonic() >= expiry
            assert rs1.rib.sizes()["xmpp_paths"] == 0
        finally:
            await f1.client.close()
            await f3.client.close()
            await rs1.stop()
            await rs2.stop()

    run(body)


def test_graceful_restart_keeps_pe_routes_until_restart_time(tmp_path: Path, pki: Pki) -> None:
    procs = [start_gobgpd(tmp_path, restart_time=3)]
    proc = procs[0]

    async def body() -> None:
        rs = RouteServer(rs_config(pki, RS1))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1), "RS1 established")
            await f1.client.connect()
            await f1.client.subscribe("red")
            # End-of-RIB comes once what our RTC route pulls in from BGP is in
            await poll(lambda: d.EndOfRib("red") in f1.notes, "End-of-RIB at F1")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000, 1))
            mine = d.ItemsEvent(
                "red", (("10.1.1.1/32", entry("10.1.1.1/32", "192.0.2.11", 10000, 1)),)
            )
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.2.2.2/32", "label", "20000",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
            pe = d.ItemsEvent("red", (("10.2.2.2/32", entry("10.2.2.2/32", "192.0.2.22", 20000)),))
            await poll(lambda: pe in f1.notes, "PE route at F1")
            assert rs.rib.show_peers()[0]["graceful_restart"] == 3
            proc.kill()  # no NOTIFICATION: a restarting speaker
            await poll(lambda: not rs.rib.show_peers()[0]["up"], "session down")
            # helper mode: the route is kept, stale, and the forwarder still has it
            assert [(r["prefix"], r["stale"]) for r in rs.rib.show_routes("red")] == [
                ("10.1.1.1/32", False),
                ("10.2.2.2/32", True),
            ]
            assert f1.notes == [d.EndOfRib("red"), mine, pe]
            # the peer does not come back within its restart time: withdrawn
            await poll(lambda: d.RetractEvent("red", ("10.2.2.2/32",)) in f1.notes, "sweep")
            assert [r["prefix"] for r in rs.rib.show_routes("red")] == ["10.1.1.1/32"]
            # when it does come back, it gets our RTC and VPN routes again
            procs.append(start_gobgpd(tmp_path, restart_time=3))
            await poll(lambda: "192.0.2.11:1:10.1.1.1/32" in vpn_paths("vpnv4"), "re-advertised")
            assert rtc_routes() == ["64512:64512:100"]
        finally:
            await f1.client.close()
            await rs.stop()

    try:
        run(body)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(10)


def direct_config(pki: Pki, router_id: str, peer: str, **neighbor: Any) -> Any:
    cfg = rs_config(pki, router_id)
    return dataclasses.replace(cfg, neighbors=(Neighbor(address=peer, asn=ASN, **neighbor),))


def test_two_route_servers_over_direct_ibgp(pki: Pki) -> None:
    """No reflector: RS1 connects to RS2, which listens; RTC and VPN routes both ways."""

    async def body() -> None:
        rs1 = RouteServer(direct_config(pki, RS1, RS2, port=DIRECT_PORT))
        rs2 = RouteServer(direct_config(pki, RS2, RS1, passive=True, listen_port=DIRECT_PORT))
        await rs2.start()
        await rs1.start()
        f1 = Forwarder(pki, F1, rs1.xmpp.port)  # type: ignore[union-attr]
        f3 = Forwarder(pki, F3, rs2.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: rs1.rib.show_peers()[0]["up"] and rs2.rib.show_peers()[0]["up"],
                       "direct session")  # fmt: skip
            await f1.client.connect()
            await f3.client.connect()
            await f1.client.subscribe("red")
            await f3.client.subscribe("red")
            await poll(lambda: rs1.rib.show_rtc()["peers"][RS2]["received"] == ["64512:100"],
                       "RS2's RTC at RS1")  # fmt: skip
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000, 2))
            await f3.publish("red", entry("10.1.1.3/32", "192.0.2.13", 10003))
            at_f3 = d.ItemsEvent(
                "red", (("10.1.1.1/32", entry("10.1.1.1/32", "192.0.2.11", 10000, 2)),)
            )
            at_f1 = d.ItemsEvent(
                "red", (("10.1.1.3/32", entry("10.1.1.3/32", "192.0.2.13", 10003)),)
            )
            await poll(lambda: at_f3 in f3.notes and at_f1 in f1.notes, "routes across")
            # nothing for a VPN the other side does not subscribe to
            await f1.client.subscribe("green")
            await f1.publish("green", entry("10.9.9.9/32", "192.0.2.11", 10009))
            await poll(lambda: rs1.rib.show_rtc()["peers"][RS2]["routes_out"] == 1, "filtered")
            # a red route published after the green one must reach F3 through RS2: once
            # it has, RS2 has processed whatever RS1 sent after the green publish
            await f1.publish("red", entry("10.1.1.9/32", "192.0.2.11", 10019))
            later = d.ItemsEvent(
                "red", (("10.1.1.9/32", entry("10.1.1.9/32", "192.0.2.11", 10019)),)
            )
            await poll(lambda: later in f3.notes, "later red route at F3")
            await rs1.flush()
            assert rs1.rib.show_rtc()["peers"][RS2]["routes_out"] == 2  # type: ignore[index]
            assert [r["prefix"] for r in rs2.rib.show_routes("green")] == []
            assert [r["prefix"] for r in rs2.rib.show_routes("red")] == [
                "10.1.1.1/32", "10.1.1.3/32", "10.1.1.9/32"
            ]  # fmt: skip
        finally:
            await f1.client.close()
            await f3.client.close()
            await rs1.stop()
            await rs2.stop()

    run(body)


def test_ebgp_pe(tmp_path: Path, pki: Pki) -> None:
    """GoBGP as an existing L3VPN PE in AS 65001 over eBGP, without RT-Constraint."""
    procs = [start_gobgpd(tmp_path, asn=65001)]

    async def body() -> None:
        rs = RouteServer(rs_config(pki, RS1, peer_asn=65001))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1), "eBGP session")
            await f1.client.connect()
            await f1.client.subscribe("red")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000))
            paths = await poll(lambda: gobgp_json("global", "rib", "-a", "vpnv4"), "our route")
            attrs = {a["type"]: a for a in paths["192.0.2.11:1:10.1.1.1/32"][0]["attrs"]}
            assert attrs[2]["as_paths"] == [{"segment_type": 2, "num": 1, "asns": [ASN]}]
            assert 5 not in attrs  # no LOCAL_PREF over eBGP
            assert attrs[14]["nexthop"] == "192.0.2.11"
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.2.2.2/32", "label", "20000",
                  "rd", "65001:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
            await poll(lambda: any(r["prefix"] == "10.2.2.2/32"
                                   for r in rs.rib.show_routes("red")), "PE route")  # fmt: skip
            (pe,) = [r for r in rs.rib.show_routes("red") if r["prefix"] == "10.2.2.2/32"]
            # the PE's next hop and label, learned over eBGP, reach the forwarder
            assert (pe["source"], pe["from"], pe["nexthop"], pe["label"], pe["best"]) == (
                "bgp", GOBGP, "192.0.2.22", 20000, True
            )  # fmt: skip
            pe_note = d.ItemsEvent(
                "red", (("10.2.2.2/32", entry("10.2.2.2/32", "192.0.2.22", 20000)),)
            )
            await poll(lambda: pe_note in f1.notes, "PE route at F1")
        finally:
            await f1.client.close()
            await rs.stop()

    try:
        run(body)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(10)


def test_graceful_restart_stale_routes_swept_at_end_of_rib(tmp_path: Path, pki: Pki) -> None:
    """The PE restarts (120 s restart time) without its old route: End-of-RIB sweeps it."""
    procs = [start_gobgpd(tmp_path, restart_time=120)]

    async def body() -> None:
        rs = RouteServer(rs_config(pki, RS1))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1), "RS1 established")
            await f1.client.connect()
            await f1.client.subscribe("red")
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.2.2.2/32", "label", "20000",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
            pe = d.ItemsEvent("red", (("10.2.2.2/32", entry("10.2.2.2/32", "192.0.2.22", 20000)),))
            await poll(lambda: pe in f1.notes, "PE route at F1")
            procs[0].kill()
            await poll(lambda: not rs.rib.show_peers()[0]["up"], "session down")
            assert [r["stale"] for r in rs.rib.show_routes("red")] == [True]
            procs.append(start_gobgpd(tmp_path, restart_time=120))
            # well before the 120 s restart time: swept by End-of-RIB
            await poll(lambda: d.RetractEvent("red", ("10.2.2.2/32",)) in f1.notes, "EoR sweep")
            assert rs.rib.show_peers()[0]["up"] is True
            assert rs.rib.next_deadline() is None
        finally:
            await f1.client.close()
            await rs.stop()

    try:
        run(body)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(10)


def test_exabgp_crash_is_survived(gobgpd: Any, pki: Pki) -> None:
    """ExaBGP killed: the daemon restarts it and replays; forwarders see no withdrawal."""

    async def body() -> None:
        rs = RouteServer(rs_config(pki, RS1))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1), "RS1 established")
            await f1.client.connect()
            await f1.client.subscribe("red")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000))
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.2.2.2/32", "label", "20000",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
            pe = d.ItemsEvent("red", (("10.2.2.2/32", entry("10.2.2.2/32", "192.0.2.22", 20000)),))
            await poll(lambda: pe in f1.notes, "PE route at F1")
            old = rs.bgp.pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            await poll(lambda: rs.counters["exabgp_restarts"] == 1 and rs.bgp.pid != old,
                       "ExaBGP restarted")  # fmt: skip
            await poll(lambda: rs.rib.show_peers()[0]["up"], "session back")

            def ours_fresh() -> bool:
                paths = gobgp_json("global", "rib", "-a", "vpnv4").get("192.0.2.11:1:10.1.1.1/32")
                return bool(paths) and paths[0]["stale"] is False

            await poll(ours_fresh, "our route re-advertised")
            await poll(lambda: rs.rib.show_routes("red")[1]["stale"] is False, "PE route fresh")
            assert [type(n).__name__ for n in f1.notes].count("RetractEvent") == 0
            assert rtc_routes() == ["64512:64512:100"]
        finally:
            await f1.client.close()
            await rs.stop()

    run(body)


def test_anycast_prefix_from_two_forwarders_keeps_both_paths(gobgpd: Any, pki: Pki) -> None:
    """Draft §6 (RD from the end system): one RD per (forwarder, VRF), type 1
    <forwarder address>:<VRF index>, so GoBGP holds both forwarders' paths."""

    async def body() -> None:
        rs = RouteServer(rs_config(pki, RS1))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        f2 = Forwarder(pki, F2, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1), "RS1 established")
            for f, nh, label in ((f1, "192.0.2.11", 10000), (f2, "192.0.2.12", 20000)):
                await f.client.connect()
                await f.client.subscribe("red")
                await f.publish("red", entry("10.8.8.8/32", nh, label, 3))
            both = {
                "192.0.2.11:1:10.8.8.8/32": ([10000], "192.0.2.11"),
                "192.0.2.12:1:10.8.8.8/32": ([20000], "192.0.2.12"),
            }
            await poll(
                lambda: (
                    {k: (v["labels"], v["nexthop"]) for k, v in vpn_paths("vpnv4").items()} == both
                ),
                "both anycast paths in GoBGP",
            )
        finally:
            await f1.client.close()
            await f2.client.close()
            await rs.stop()

    run(body)


def test_end_of_rib_to_a_forwarder_follows_the_routes_its_rtc_pulls_in(
    gobgpd: Any, pki: Pki
) -> None:
    """A PE route is in GoBGP before the forwarder subscribes: our RTC route for the
    VPN pulls it in from BGP, and the forwarder's End-of-RIB comes after it (a
    forwarder that sweeps stale routes on End-of-RIB never drops a good one)."""

    async def body() -> None:
        rs = RouteServer(rs_config(pki, RS1))
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: neighbor_established(RS1), "RS1 established")
            gobgp("global", "rib", "-a", "vpnv4", "add", "10.2.2.2/32", "label", "20000",
                  "rd", "64512:7", "rt", "64512:100", "nexthop", "192.0.2.22")  # fmt: skip
            await poll(lambda: rs.rib.show_peers()[0]["up"], "session up at the RIB")
            await f1.client.connect()
            await f1.client.subscribe("red")
            await poll(lambda: d.EndOfRib("red") in f1.notes, "End-of-RIB at F1")
            red_pe = d.ItemsEvent(
                "red", (("10.2.2.2/32", entry("10.2.2.2/32", "192.0.2.22", 20000)),)
            )
            assert f1.notes == [red_pe, d.EndOfRib("red")]
        finally:
            await f1.client.close()
            await rs.stop()

    run(body)
