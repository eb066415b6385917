"""Route server throughput, XMPP->BGP and BGP->XMPP, against GoBGP ingesting the same feed.

Topology (loopback, non-standard ports; nothing binds 179):

    feeder ExaBGP (127.0.6.43) --iBGP--> gobgpd RR (127.0.6.42)           reference
    feeder ExaBGP (127.0.6.43) --iBGP--> route server (127.0.6.41:17943)  ours, BGP->XMPP
    route server (127.0.6.41) --iBGP--> gobgpd RR (127.0.6.42)            ours, XMPP->BGP
           ^ XMPP/TLS
       forwarder (esxmpp client)

Phases, N routes each:

* ``reference_gobgp_ingest``: the feeder (a plain ExaBGP with N static
  VPN-IPv4 routes carrying the red VPN's route target) connects to gobgpd
  alone; time from the session up to gobgpd holding all N. The feeder then
  goes and gobgpd is empty again.
* ``bgp_to_xmpp``: the same feeder connects to the route server's ExaBGP
  directly; time from the session up (in the RIB) until the forwarder
  subscribed to red has received all N as XMPP notifications (ExaBGP ->
  RIB -> XMPP). GoBGP is not on this path, so the ratio is not bounded by 1.
* ``xmpp_to_bgp``: the forwarder publishes N routes (publish + associate,
  pipelined); time until gobgpd holds them all (XMPP -> RIB -> ExaBGP ->
  BGP -> gobgpd), against the same reference.

    .venv/bin/python bench/rs_routes.py [--routes 2000] [--out bench/results]

Results (routes/s and the ratio to the GoBGP reference) go to
<out>/rs_routes.json. The forwarder (slixmpp) runs in the route server's
process and event loop, so both of our numbers include the client's cost;
the ExaBGP processes and gobgpd are separate processes. The RR gets
``rtc_filter_out = false`` (GoBGP sends its clients no default RTC route).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from esxmpp import dialect as d  # noqa: E402
from esxmpp.client import XmppClient  # noqa: E402
from esxmpp.config import ClientConfig  # noqa: E402
from esxmpp.testing import make_pki  # noqa: E402
from routeserver.config import load_dict  # noqa: E402
from routeserver.server import RouteServer  # noqa: E402

RS, GOBGP, FEEDER = "127.0.6.41", "127.0.6.42", "127.0.6.43"
PORT, API, ASN = 17942, 50092, 64512
RS_FEED_PORT = 17943  # the route server's ExaBGP accepts the feeder here
SID = "0102030405b1"
DOMAIN = "bench.rs"


def gobgp_conf(path: Path) -> None:
    text = f"""[global.config]
  as = {ASN}
  router-id = "{GOBGP}"
  port = {PORT}
  local-address-list = ["{GOBGP}"]
"""
    for addr, fams in ((RS, ("l3vpn-ipv4-unicast", "rtc")), (FEEDER, ("l3vpn-ipv4-unicast",))):
        text += f"""[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {ASN}
  [neighbors.transport.config]
    local-address = "{GOBGP}"
    passive-mode = true
  [neighbors.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "{GOBGP}"
"""
        for f in fams:
            text += f"""  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{f}"
"""
    path.write_text(text)


def feeder_conf(path: Path, n: int, peer: str, port: int) -> None:
    routes = "\n".join(
        f"    route {ipaddress.IPv4Address(0x0B000000 + i)}/32 rd 64512:99 label {100 + i} "
        f"next-hop 192.0.2.99 extended-community [ target:64512:100 ];"
        for i in range(n)
    )
    path.write_text(
        f"""neighbor {peer} {{
  router-id {FEEDER};
  local-address {FEEDER};
  local-as {ASN};
  peer-as {ASN};
  connect {port};
  family {{ ipv4 mpls-vpn; }}
  static {{
{routes}
  }}
}}
"""
    )


def start_feeder(tmp: Path, n: int, peer: str, port: int, name: str) -> subprocess.Popen[bytes]:
    conf = tmp / f"{name}.conf"
    feeder_conf(conf, n, peer, port)
    env = dict(os.environ, exabgp_daemon_drop="false", exabgp_api_cli="false")
    with open(tmp / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "exabgp", str(conf)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def paths_in_gobgp() -> int:
    out = subprocess.run(
        ["gobgp", "-u", GOBGP, "-p", str(API), "-j", "global", "rib", "summary", "-a", "vpnv4"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    try:
        return int(json.loads(out).get("num_path", 0))
    except ValueError:
        return 0


def feeder_established() -> bool:
    out = subprocess.run(
        ["gobgp", "-u", GOBGP, "-p", str(API), "-j", "neighbor", FEEDER],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    try:
        return bool(json.loads(out)["state"]["session_state"] == 6)
    except (ValueError, KeyError):
        return False


async def wait_until(pred: Any, timeout: float, what: str) -> float:
    print(f"waiting for {what}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(pred):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)
    return time.monotonic()


async def bench(n: int, tmp: Path) -> dict[str, Any]:
    pki = make_pki(tmp / "pki")
    server = pki.server(DOMAIN)
    client = pki.client(SID)
    gconf = tmp / "gobgpd.toml"
    gobgp_conf(gconf)
    glog = open(tmp / "gobgpd.log", "wb")  # noqa: SIM115
    gob = subprocess.Popen(
        ["gobgpd", "-f", str(gconf), "--api-hosts", f"{GOBGP}:{API}", "-l", "warn"],
        stdout=glog,
        stderr=subprocess.STDOUT,
    )
    feeder: subprocess.Popen[bytes] | None = None
    rs = RouteServer(
        load_dict(
            {
                "server": {"router_id": RS, "asn": ASN},
                "xmpp": {
                    "domain": DOMAIN,
                    "certfile": str(server.certfile),
                    "keyfile": str(server.keyfile),
                    "cafile": str(pki.cafile),
                    "port": 0,
                    "max_write_buffer": 64 << 20,
                    "forwarders": [SID],
                },
                "control": {"port": 0},
                "bgp": {
                    "neighbor": [
                        # GoBGP (RR) sends no default RTC route: send it everything
                        {"address": GOBGP, "asn": ASN, "port": PORT, "rtc_filter_out": False},
                        {
                            "address": FEEDER,
                            "asn": ASN,
                            "families": ["vpnv4"],
                            "passive": True,
                            "listen_port": RS_FEED_PORT,
                        },
                    ]
                },
                "vrf": [
                    {"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:1"]}
                ],
            }
        )
    )
    got: set[str] = set()

    def on_note(note: d.Notification) -> None:
        if isinstance(note, d.ItemsEvent):
            got.update(i for i, _ in note.items)

    def peer_up(addr: str) -> bool:
        return any(p["address"] == addr and p["up"] for p in rs.rib.show_peers())

    fwd: XmppClient | None = None
    started = False
    try:
        await wait_until(lambda: paths_in_gobgp() == 0 and gob.poll() is None, 15, "gobgpd")

        # reference: the feed into gobgpd alone
        feeder = start_feeder(tmp, n, GOBGP, PORT, "feeder-gobgp")
        # the clock starts when the feeder's session is up (not at ExaBGP's start-up)
        t_ref0 = await wait_until(feeder_established, 60, "feeder session at gobgpd")
        t_ref = await wait_until(lambda: paths_in_gobgp() >= n, 300, "gobgp ingest")
        stop(feeder)
        feeder = None
        await wait_until(lambda: paths_in_gobgp() == 0, 60, "gobgpd empty again")

        await rs.start()
        started = True
        assert rs.xmpp is not None
        fwd = XmppClient(
            ClientConfig(
                jid=f"{SID}@{DOMAIN}",
                host="127.0.0.1",
                port=rs.xmpp.port,
                certfile=client.certfile,
                keyfile=client.keyfile,
                cafile=pki.cafile,
                request_timeout=120,
            ),
            on_note,
        )
        await wait_until(lambda: peer_up(GOBGP), 30, "RS session to gobgpd")
        await fwd.connect()
        await fwd.subscribe("red")
        await wait_until(lambda: rs.rib.show_rtc()["peers"][GOBGP]["advertised"], 10, "rtc")

        # phase 1: the same feed into the route server -> forwarder
        feeder = start_feeder(tmp, n, RS, RS_FEED_PORT, "feeder-rs")
        t0 = await wait_until(lambda: peer_up(FEEDER), 60, "feeder session at the RS")
        t_fwd = await wait_until(lambda: len(got) >= n, 300, "forwarder table")

        # phase 2: XMPP publishes -> GoBGP
        sid = bytes.fromhex(SID)
        t1 = time.monotonic()
        window = 32  # slixmpp matches each answer against every pending iq
        for base in range(0, n, window):
            reqs = []
            for i in range(base, min(n, base + window)):
                e = d.RouteEntry(
                    ipaddress.ip_network(f"{ipaddress.IPv4Address(0x0C000000 + i)}/32"),
                    ipaddress.ip_address("192.0.2.1"),
                    1000 + i,
                    1,
                )
                node = d.item_node_name(sid, e.prefix)
                reqs.append(fwd.publish(node, e))
                reqs.append(fwd.associate("red", node))
            await asyncio.gather(*reqs)
        t_acked = time.monotonic()
        t_bgp = await wait_until(lambda: paths_in_gobgp() >= n, 300, "xmpp routes in gobgp")
        ref_rate = n / (t_ref - t_ref0)
        return {
            "routes": n,
            "reference_gobgp_ingest": {
                "seconds": round(t_ref - t_ref0, 3),
                "routes_per_s": round(ref_rate),
            },
            "bgp_to_xmpp": {
                "seconds": round(t_fwd - t0, 3),
                "routes_per_s": round(n / (t_fwd - t0)),
                "ratio_to_gobgp": round((n / (t_fwd - t0)) / ref_rate, 3),
            },
            "xmpp_to_bgp": {
                "seconds": round(t_bgp - t1, 3),
                "xmpp_acked_seconds": round(t_acked - t1, 3),
                "routes_per_s": round(n / (t_bgp - t1)),
                "ratio_to_gobgp": round((n / (t_bgp - t1)) / ref_rate, 3),
            },
        }
    finally:
        if fwd is not None:
            await fwd.close()
        if started:
            await rs.stop()
        stop(feeder)
        stop(gob)
        glog.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rs-bench-") as tmp:
        result = asyncio.run(bench(args.routes, Path(tmp)))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rs_routes.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
