"""Route server against FRR (Debian ``frr``): bgpd as an existing L3VPN PE (iBGP, VPN-IPv4).

bgpd runs without zebra (``-Z``) on 127.0.6.5, BGP port 17911, passive; the
route server (127.0.6.1) connects to it. FRR originates a static VPN route
(``network ... rd ... label ...`` with a route-map setting the RT). Every wait
polls with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esxmpp import dialect as d
from esxmpp.testing import Pki, make_pki
from routeserver.config import Neighbor
from routeserver.server import RouteServer
from tests.system.test_routeserver_gobgp import ASN, F1, RS1, Forwarder, entry, poll, rs_config, run

BGPD = "/usr/lib/frr/bgpd"
# Debian package frr, installed by scripts/apt-deps.sh; no skip when missing.
assert Path(BGPD).exists() and shutil.which("vtysh"), "install frr: scripts/apt-deps.sh"

FRR = "127.0.6.5"
FRR_PORT = 17911
FRR_VTY_PORT = 17912
# the PE's tunnel endpoint: not its loopback session address (a route server
# never gives forwarders a loopback next hop, README.md Threat model)
PE_NH = "192.0.2.55"
STATIC = "network 10.5.5.5/32 rd 64512:55 label 5005 route-map RT"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("rs-frr-pki"))


class Frr:
    def __init__(self, tmp: Path, asn: int = ASN, statics: tuple[str, ...] = (STATIC,)) -> None:
        self.dir = tmp
        conf = tmp / "bgpd.conf"
        lines = "\n".join(f"  {s}" for s in statics)
        # eBGP would set our session address as next hop: a loopback, refused
        ebgp_keep_nh = f"  neighbor {RS1} attribute-unchanged next-hop\n"
        conf.write_text(
            f"""hostname frr-pe
log stdout informational
!
route-map RT permit 10
 set extcommunity rt 64512:100
 set ipv4 vpn next-hop {PE_NH}
!
route-map LOOP permit 10
 set extcommunity rt 64512:100
 set as-path prepend {ASN}
 set ipv4 vpn next-hop {PE_NH}
!
router bgp {asn}
 bgp router-id {FRR}
 no bgp default ipv4-unicast
 no bgp ebgp-requires-policy
 neighbor {RS1} remote-as {ASN}
 neighbor {RS1} update-source {FRR}
 neighbor {RS1} passive
 !
 address-family ipv4 vpn
  neighbor {RS1} activate
{ebgp_keep_nh if asn != ASN else ""}{lines}
 exit-address-family
!
"""
        )
        self.log = open(tmp / "bgpd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [BGPD, "-Z", "-S", "-f", str(conf), "-i", str(tmp / "bgpd.pid"),
             "--vty_socket", str(tmp), "-A", "127.0.0.1", "-P", str(FRR_VTY_PORT),
             "-p", str(FRR_PORT), "-l", FRR],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while self.vtysh("show bgp summary json", check=False) is None:
            assert self.proc.poll() is None, (tmp / "bgpd.log").read_text()
            assert time.monotonic() < deadline, "FRR bgpd vty did not come up"
            time.sleep(0.05)

    def vtysh(self, *commands: str, check: bool = True) -> str | None:
        args = ["vtysh", "--vty_socket", str(self.dir), "-d", "bgpd"]
        for c in commands:
            args += ["-c", c]
        res = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        if res.returncode != 0:
            if check:
                raise AssertionError(f"vtysh {commands}: {res.stderr}{res.stdout}")
            return None
        return res.stdout

    def vpn_routes(self) -> dict[str, Any]:
        """'rd:prefix' -> FRR's first path, from 'show bgp ipv4 vpn json' detail per route."""
        out: dict[str, Any] = {}
        doc = json.loads(self.vtysh("show bgp ipv4 vpn json") or "{}")
        for rd, prefixes in doc.get("routes", {}).get("routeDistinguishers", {}).items():
            for prefix, paths in prefixes.items():
                if paths:
                    out[f"{rd}:{prefix}"] = paths[0]
        return out

    def route_detail(self, rd: str, prefix: str) -> Any:
        """FRR's detail of one VPN route: {rd: {"prefix": ..., "paths": [...]}}."""
        return json.loads(self.vtysh(f"show bgp ipv4 vpn rd {rd} {prefix} json") or "{}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def frr(tmp_path: Path) -> Iterator[Frr]:
    f = Frr(tmp_path)
    yield f
    f.stop()


def test_frr_pe_vpnv4_both_ways(frr: Frr, pki: Pki) -> None:
    async def body() -> None:
        cfg = rs_config(pki, RS1)
        cfg = dataclasses.replace(
            cfg,
            neighbors=(Neighbor(address=FRR, asn=ASN, port=FRR_PORT, families=("vpnv4",)),),
        )
        rs = RouteServer(cfg)
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: rs.rib.show_peers()[0]["up"], "session with FRR")
            # FRR's static VPN route: in the RIB, then in the forwarder's initial table
            await poll(lambda: rs.rib.show_routes("red"), "FRR route in the RIB")
            assert [(r["prefix"], r["from"], r["rd"], r["label"], r["nexthop"], r["best"])
                    for r in rs.rib.show_routes("red")] == [
                ("10.5.5.5/32", FRR, "64512:55", 5005, PE_NH, True)
            ]  # fmt: skip
            await f1.client.connect()
            await f1.client.subscribe("red")
            pe = d.ItemsEvent("red", (("10.5.5.5/32", entry("10.5.5.5/32", PE_NH, 5005)),))
            await poll(lambda: d.EndOfRib("red") in f1.notes, "initial table at F1")
            assert f1.notes == [pe, d.EndOfRib("red")]
            # ours reaches FRR: our RD, the forwarder's label and next hop, RT and version
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000, 7))
            await poll(lambda: "192.0.2.11:1:10.1.1.1/32" in frr.vpn_routes(), "our route at FRR")
            detail = await asyncio.to_thread(frr.route_detail, "192.0.2.11:1", "10.1.1.1/32")
            (path,) = detail["192.0.2.11:1"]["paths"]
            assert (path["remoteLabel"], [n["ip"] for n in path["nexthops"]]) == (
                10000, ["192.0.2.11"]
            )  # fmt: skip
            assert (path["peer"]["peerId"], path["locPrf"], path["origin"]) == (RS1, 100, "IGP")
            # FRR names the version community by type 142 (0x8e) and sub-type 1
            assert path["extendedCommunity"]["string"] == "RT:64512:100 UNK:142, 1"
            # FRR withdraws its route: the forwarder gets the retraction
            await asyncio.to_thread(
                frr.vtysh, "configure terminal", f"router bgp {ASN}", "address-family ipv4 vpn",
                f"no {STATIC.removesuffix(' route-map RT')}", "end",
            )  # fmt: skip
            await poll(lambda: d.RetractEvent("red", ("10.5.5.5/32",)) in f1.notes, "withdrawn")
        finally:
            await f1.client.close()
            await rs.stop()

    run(body)


def test_rtc_configured_but_not_negotiated_routes_unfiltered(
    frr: Frr, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 4684 §4: rtc configured toward FRR, which has no SAFI 132: FRR gets our
    routes (no RTC filtering) and the session-up line says what was negotiated."""

    async def body() -> None:
        cfg = dataclasses.replace(
            rs_config(pki, RS1),
            neighbors=(
                Neighbor(address=FRR, asn=ASN, port=FRR_PORT, families=("vpnv4", "vpnv6", "rtc")),
            ),
        )
        rs = RouteServer(cfg)
        await rs.start()
        f1 = Forwarder(pki, F1, rs.xmpp.port)  # type: ignore[union-attr]
        try:
            await poll(lambda: rs.rib.show_peers()[0]["up"], "session with FRR")
            await f1.client.connect()
            await f1.client.subscribe("red")
            await f1.publish("red", entry("10.1.1.1/32", "192.0.2.11", 10000, 7))
            await poll(lambda: "192.0.2.11:1:10.1.1.1/32" in frr.vpn_routes(), "our route at FRR")
            assert rs.rib.show_peers()[0]["routes_out"] == 1
            assert rs.rib.show_rtc()["peers"][FRR]["rtc"] is False  # type: ignore[index]
            ups = [r for r in caplog.records if "BGP session with" in r.getMessage()]
            assert [(r.levelname, r.getMessage()) for r in ups] == [
                (
                    "WARNING",
                    f"BGP session with {FRR} (AS {ASN}) up (graceful restart 120 s, families "
                    "vpnv4; not negotiated: rtc vpnv6 (no RT-Constraint: this peer gets routes "
                    "unfiltered))",
                )
            ]
        finally:
            await f1.client.close()
            await rs.stop()

    caplog.set_level("INFO", logger="routeserver")
    run(body)


def test_as_path_loop_is_ignored(tmp_path: Path, pki: Pki) -> None:
    """RFC 4271 §9.1.2: FRR (eBGP, AS 65001) sends a route whose AS_PATH holds our
    AS 64512: not used, counted as refused (as-path-loop); the other route is used."""
    looped = "network 10.6.6.6/32 rd 64512:66 label 6006 route-map LOOP"
    frr = Frr(tmp_path, asn=65001, statics=(STATIC, looped))

    async def body() -> None:
        cfg = dataclasses.replace(
            rs_config(pki, RS1),
            neighbors=(Neighbor(address=FRR, asn=65001, port=FRR_PORT, families=("vpnv4",)),),
        )
        rs = RouteServer(cfg)
        await rs.start()
        try:
            await poll(lambda: rs.rib.show_routes("red"), "FRR route in the RIB")
            await poll(lambda: rs.bgp_refused.get("as-path-loop"), "looped route refused")
            assert [(r["prefix"], r["rd"]) for r in rs.rib.show_routes("red")] == [
                ("10.5.5.5/32", "64512:55")
            ]
            assert rs.bgp_refused["as-path-loop"] == 1
            assert rs.rib.counters["as_path_loop"] == 1
            metrics = rs.metrics().splitlines()
            assert 'esvpn_rs_bgp_refused_total{reason="as-path-loop"} 1.0' in metrics
        finally:
            await rs.stop()

    try:
        run(body)
    finally:
        frr.stop()
