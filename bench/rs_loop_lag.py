"""Route server event-loop lag under bulk BGP work (issue 19, bug 5).

The route server runs in this process with its XMPP server (TLS) and one
forwarder subscribed to the VPN, the forwarder being a separate process
(``--forwarder`` mode of this script), so its parsing is not on our loop.
A configured BGP peer's inputs are fed to the daemon as the ExaBGP adapter
delivers them (``RouteServer._bgp_inputs``, one call per UPDATE of 100
routes); ExaBGP itself is not started: these phases produce no BGP output.

Phases, N routes each (N = 100,000; 10,000 with --quick), each measured with
a fresh :class:`esxmpp.looplag.LoopLag` from the event to the forwarder
holding the result:

* ``peer_down``: the peer (no graceful restart) goes down: N withdrawals.
* ``gr_expiry``: the peer (restart time 1 s) goes down, its paths are
  marked stale, the restart time runs out: N withdrawals.
* ``eor_sweep``: the peer (restart time 120 s) goes down and comes back,
  re-sends nothing and End-of-RIB: N stale paths swept.

* ``ingest``: N announcements arrive (as BGP UPDATEs of 100 routes) until the
  forwarder holds them; measured before each of the phases above, the
  worst of the three recorded.
* ``table_load``: with N routes in the RIB a second forwarder connects and
  subscribes: the whole table, then End-of-RIB (the load a forwarder also
  gets when its session is resumed).

Results: ``<out>/rs_loop_lag.json`` (worst lag in ms and seconds per phase).

    .venv/bin/python bench/rs_loop_lag.py [--quick] [--routes N] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
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
from esxmpp.looplag import LoopLag  # noqa: E402
from esxmpp.server import XmppServer  # noqa: E402
from esxmpp.testing import make_pki  # noqa: E402
from routeserver.config import load_dict  # noqa: E402
from routeserver.rib import (  # noqa: E402
    WORK_SLICE,
    BgpEndOfRib,
    BgpPeerDown,
    BgpPeerUp,
    BgpRouteAdd,
    Input,
)
from routeserver.server import RouteServer  # noqa: E402

PE = "192.0.2.1"
SID = "0102030405c1"
SID2 = "0102030405c2"  # the forwarder subscribing to the full table
DOMAIN = "lag.rs"
UPDATE = 100  # routes per BGP UPDATE (per adapter callback)
PHASES = ("peer_down", "gr_expiry", "eor_sweep")


def route(i: int) -> BgpRouteAdd:
    return BgpRouteAdd(
        PE,
        "64512:7",
        ipaddress.IPv4Network((0x0B000000 + i, 32)),
        100 + i % 1_000_000,
        ipaddress.IPv4Address("192.0.2.7"),
        frozenset({"64512:100"}),
    )


async def forwarder(port: int, certfile: str, keyfile: str, cafile: str, sid: str = SID) -> None:
    """Child mode: subscribe to red, print 'have gone' counts as they change."""
    have: set[str] = set()
    gone = 0

    def on_note(note: d.Notification) -> None:
        nonlocal gone
        if isinstance(note, d.ItemsEvent):
            have.update(i for i, _ in note.items)
        elif isinstance(note, d.RetractEvent):
            have.difference_update(note.item_ids)
            gone += len(note.item_ids)

    client = XmppClient(
        ClientConfig(
            jid=f"{sid}@{DOMAIN}",
            host="127.0.0.1",
            port=port,
            certfile=Path(certfile),
            keyfile=Path(keyfile),
            cafile=Path(cafile),
            # 3 s as in the issue; the forwarder loading the full table does not
            # ping: it parses 100,000 routes slower than we send them and a ping
            # answer waits behind MBs in the socket buffers (more than 10 s)
            ping_interval=1.0 if sid == SID else 3600.0,
            ping_timeout=3.0,
            request_timeout=60.0,
        ),
        on_note,
    )
    await client.connect()
    await client.subscribe("red")
    last = None
    while client.connected:
        now = (len(have), gone)
        if now != last:
            print(f"{now[0]} {now[1]}", flush=True)
            last = now
        await asyncio.sleep(0.02)
    print("disconnected", flush=True)


class Forwarder:
    """The forwarder process, its last reported counts."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.have = self.gone = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            parts = raw.decode().split()
            if parts == ["disconnected"]:
                raise RuntimeError("the forwarder was disconnected")
            self.have, self.gone = int(parts[0]), int(parts[1])

    async def until(self, pred: Any, what: str, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while not pred():
            if self.task.done():
                self.task.result()
                raise RuntimeError(f"forwarder ended before {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.01)
        return time.monotonic()


async def feed(rs: RouteServer, n: int) -> None:
    """Feed as the adapter does (one call per UPDATE), yielding between UPDATEs."""
    for i in range(0, n, UPDATE):
        inputs: list[Input] = [route(j) for j in range(i, min(n, i + UPDATE))]
        rs._bgp_inputs(inputs)
        await asyncio.sleep(0)


async def bench(n: int, tmp: Path) -> dict[str, Any]:
    pki = make_pki(tmp / "pki")
    server = pki.server(DOMAIN)
    pair = pki.client(SID)
    cfg = load_dict(
        {
            "server": {"router_id": "10.255.0.1", "asn": 64512},
            "xmpp": {
                "domain": DOMAIN,
                "certfile": str(server.certfile),
                "keyfile": str(server.keyfile),
                "cafile": str(pki.cafile),
                "port": 0,
                "max_write_buffer": 256 << 20,
                "forwarders": [SID, SID2],
            },
            "control": {"port": 0},
            "bgp": {"neighbor": [{"address": PE, "asn": 64512, "families": ["vpnv4"]}]},
            "vrf": [{"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:1"]}],
        }
    )
    rs = RouteServer(cfg)
    rs.xmpp = XmppServer(cfg.xmpp, rs)  # type: ignore[arg-type]
    await rs.xmpp.start()
    rs.start_tasks(supervise=False)  # no ExaBGP: these phases send nothing to BGP
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--forwarder",
        str(rs.xmpp.port),
        str(pair.certfile),
        str(pair.keyfile),
        str(pki.cafile),
        stdout=asyncio.subprocess.PIPE,
    )
    fwd = Forwarder(proc)

    pair2 = pki.client(SID2)

    async def spawn() -> Forwarder:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--forwarder",
            str(rs.xmpp.port),  # type: ignore[union-attr]
            str(pair2.certfile),
            str(pair2.keyfile),
            str(pki.cafile),
            SID2,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return Forwarder(proc)

    second = await spawn()  # now, while our heap is small; connects on "go"

    result: dict[str, Any] = {"routes": n, "work_slice": WORK_SLICE}
    try:
        await fwd.until(lambda: rs.show("sessions", {}), "forwarder session", 60)
        await asyncio.sleep(0.5)  # let the subscription settle

        ingest_lag: list[float] = []

        async def load(gr: int) -> float:
            base = fwd.gone
            rs._bgp_inputs([BgpPeerUp(PE, gr)])
            lag = LoopLag()
            lag.start()
            t0 = time.monotonic()
            await feed(rs, n)
            t1 = await fwd.until(lambda: fwd.have == n, f"{n} routes at the forwarder")
            lag.stop()
            ingest_lag.append(lag.worst)
            assert fwd.gone == base
            return t1 - t0

        async def phase(name: str, gr: int, event: Any) -> None:
            ingest = await load(gr)
            if name == "peer_down":  # a forwarder subscribing to the full table
                lag = LoopLag()
                lag.start()
                t0 = time.monotonic()
                assert second.proc.stdin is not None
                second.proc.stdin.write(b"go\n")
                try:
                    t1 = await second.until(lambda: second.have == n, f"table of {n} routes")
                finally:
                    lag.stop()
                    second.proc.terminate()
                    await second.proc.wait()
                    second.task.cancel()
                result["table_load"] = {
                    "worst_lag_ms": round(lag.worst * 1000, 1),
                    "samples": lag.count,
                    "seconds": round(t1 - t0, 2),
                    "note": "from the forwarder connecting (TLS, bind, subscribe) to holding N",
                }
                print("table_load", result["table_load"], file=sys.stderr, flush=True)
            lag = LoopLag()
            lag.start()
            base = fwd.gone
            t0 = time.monotonic()
            await event()
            t1 = await fwd.until(lambda: fwd.gone - base == n, f"{name}: {n} withdrawals")
            lag.stop()
            result[name] = {
                "worst_lag_ms": round(lag.worst * 1000, 1),
                "samples": lag.count,
                "seconds": round(t1 - t0, 2),
                "ingest_seconds": round(ingest, 2),
                "routes_per_s_withdrawn": round(n / (t1 - t0)),
            }
            print(name, result[name], file=sys.stderr, flush=True)

        async def peer_down() -> None:
            rs._bgp_inputs([BgpPeerDown(PE)])

        await phase("peer_down", 0, peer_down)
        await phase("gr_expiry", 1, peer_down)  # restart time 1 s runs out

        async def down_up_eor() -> None:
            rs._bgp_inputs([BgpPeerDown(PE)])
            rs._bgp_inputs([BgpPeerUp(PE, 120)])
            rs._bgp_inputs([BgpEndOfRib(PE, "vpnv4")])

        await phase("eor_sweep", 120, down_up_eor)
        result["ingest"] = {
            "worst_lag_ms": round(max(ingest_lag) * 1000, 1),
            "runs": len(ingest_lag),
            "seconds": max(result[k]["ingest_seconds"] for k in PHASES),
        }
        result["worst_lag_ms"] = max(
            result[k]["worst_lag_ms"] for k in (*PHASES, "ingest", "table_load")
        )
        result["worst_lag_ms_since_start"] = round(rs.lag.worst * 1000, 1)
        result["gc_freezes"] = rs.gc.freezes
        result["note"] = (
            "worst_lag_ms per phase: from the event until the forwarder holds the "
            "result; since_start also includes building the bench's inputs and the "
            "forwarder processes' start"
        )
    finally:
        proc.terminate()
        await proc.wait()
        fwd.task.cancel()
        await rs.stop()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="10,000 routes instead of 100,000")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--forwarder", nargs="+", help=argparse.SUPPRESS)  # PORT CERT KEY CA [SID]
    args = ap.parse_args()
    if args.forwarder:
        port, cert, key, ca, *sid = args.forwarder
        if sid:  # started ahead (forking a big process holds its loop): wait for "go"
            sys.stdin.readline()
        asyncio.run(forwarder(int(port), cert, key, ca, *sid))
        return
    n = args.routes or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="rs-lag-") as tmp:
        result = asyncio.run(bench(n, Path(tmp)))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rs_loop_lag.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
