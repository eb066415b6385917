"""XMPP server load: concurrent sessions on one process, and route publishes per second.

The server (esxmpp.server.XmppServer with an accept-everything handler) runs
in its own process; the load generator is byte-level asyncio clients in this
process (STARTTLS + SASL PLAIN + bind each, as the draft's end-systems or
forwarders would). Measured:

* ``sessions``: time to bring up N concurrent sessions (goal: 10,000 on one
  process), the server's RSS with all of them up, and a ping round over all
  of them (each session answered, none dropped);
* ``routes``: K sessions each pipelining R (publish + associate) pairs; routes
  per second until the last answer (every answer checked).

    .venv/bin/python bench/xmpp_load.py [--sessions 10000] [--publishers 50] \
        [--routes-per-session 200] [--out bench/results]

Results go to <out>/xmpp_load.json. No reference implementation is run here
(Prosody needs a pubsub component with a different node model); the numbers
are absolute and the goal is the session count.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from esxmpp import dialect as d  # noqa: E402
from esxmpp.config import ServerConfig  # noqa: E402
from esxmpp.server import ServerSession, XmppServer  # noqa: E402
from esxmpp.testing import RawClient, make_pki  # noqa: E402

DOMAIN = "bench.test"
GOAL_SESSIONS = 10_000


def sid(i: int) -> str:
    return f"02{i:010x}"


class Accept:
    """Accept-everything handler (the server's own checks still run)."""

    def session_opened(self, session: ServerSession, resumed: bool) -> None:
        pass

    def request(
        self, session: ServerSession, request: d.Request, changes: Sequence[d.Request]
    ) -> None:
        pass

    def session_closed(self, session: ServerSession, reason: str) -> None:
        pass

    def state_expired(self, system_id: bytes, changes: Sequence[d.Request]) -> None:
        pass


async def serve(pki_dir: Path, sessions: int, port_file: Path) -> None:
    cfg = ServerConfig(
        domain=DOMAIN,
        certfile=pki_dir / f"server-{DOMAIN}.pem",
        keyfile=pki_dir / f"server-{DOMAIN}.key",
        cafile=pki_dir / "ca.pem",
        port=0,
        auth=("PLAIN",),
        plain_users={sid(i): "pw" for i in range(sessions + 10)},
        max_sessions=sessions + 100,
        negotiation_timeout=120.0,
        ping_interval=600.0,
        max_write_buffer=1 << 22,
    )
    srv = XmppServer(cfg, Accept())
    await srv.start()
    port_file.write_text(str(srv.port))
    await asyncio.Event().wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def login(port: int, ctx: ssl.SSLContext, i: int, sem: asyncio.Semaphore) -> RawClient:
    async with sem:
        raw = await RawClient.open(port)
        await raw.login(DOMAIN, ctx, sid(i), "pw")
        return raw


async def bench_sessions(port: int, ctx: ssl.SSLContext, n: int, pid: int) -> dict[str, object]:
    sem = asyncio.Semaphore(200)
    rss0 = rss_kib(pid)
    t0 = time.perf_counter()
    clients = await asyncio.gather(*(login(port, ctx, i, sem) for i in range(n)))
    t_up = time.perf_counter() - t0
    rss = rss_kib(pid)
    t1 = time.perf_counter()
    for c in clients:
        await c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    answers = await asyncio.gather(*(c.xml(60) for c in clients))
    t_ping = time.perf_counter() - t1
    assert all(a == "<iq type='result' id='p'/>" for a in answers)
    for c in clients:
        c.close()
    return {
        "sessions": n,
        "goal_sessions": GOAL_SESSIONS,
        "setup_seconds": round(t_up, 2),
        "sessions_per_second": round(n / t_up, 1),
        "server_rss_kib_idle": rss0,
        "server_rss_kib_with_sessions": rss,
        "kib_per_session": round((rss - rss0) / n, 1),
        "ping_round_seconds": round(t_ping, 3),
        "pings_per_second": round(n / t_ping, 1),
    }


async def publisher(port: int, ctx: ssl.SSLContext, i: int, routes: int) -> RawClient:
    raw = await RawClient.open(port)
    await raw.login(DOMAIN, ctx, sid(i), "pw")
    await raw.send(d.to_bytes(d.build_request(d.Subscribe("vpn-bench"), "s")))
    assert await raw.xml() == "<iq type='result' id='s'/>"
    return raw


async def bench_routes(
    port: int, ctx: ssl.SSLContext, k: int, per: int, base: int
) -> dict[str, object]:
    clients = [await publisher(port, ctx, base + i, per) for i in range(k)]

    async def run(j: int, raw: RawClient) -> None:
        me = bytes.fromhex(sid(base + j))
        out = []
        for r in range(per):
            prefix = ipaddress.ip_network(f"{ipaddress.IPv4Address(0x0A000000 + j * 65536 + r)}/32")
            node = d.item_node_name(me, prefix)
            entry = d.RouteEntry(prefix, ipaddress.ip_address("192.0.2.1"), 16 + r, 1)
            out.append(d.to_bytes(d.build_request(d.Publish(node, entry), f"p{r}")))
            out.append(d.to_bytes(d.build_request(d.Associate("vpn-bench", node), f"a{r}")))
        await raw.send(b"".join(out))
        for _ in range(2 * per):
            x = await raw.xml(60)
            assert x.startswith("<iq type='result'"), x

    t0 = time.perf_counter()
    await asyncio.gather(*(run(j, c) for j, c in enumerate(clients)))
    dt = time.perf_counter() - t0
    for c in clients:
        c.close()
    routes = k * per
    return {
        "publishers": k,
        "routes": routes,
        "iqs": 2 * routes,
        "seconds": round(dt, 3),
        "routes_per_second": round(routes / dt, 1),
        "iqs_per_second": round(2 * routes / dt, 1),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="xmpp-bench-"))
    pki = make_pki(tmp)
    pki.server(DOMAIN)
    port_file = tmp / "port"
    total = args.sessions + args.publishers
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(tmp), "--sessions", str(total)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text())
        ctx = ssl.create_default_context(cafile=str(pki.cafile))
        sessions = await bench_sessions(port, ctx, args.sessions, proc.pid)
        routes = await bench_routes(
            port, ctx, args.publishers, args.routes_per_session, args.sessions
        )
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "bench": "xmpp_load",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "sessions": sessions,
        "routes": routes,
        "goal_met": sessions["sessions"] >= GOAL_SESSIONS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=GOAL_SESSIONS)
    ap.add_argument("--publishers", type=int, default=50)
    ap.add_argument("--routes-per-session", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.sessions, args.serve / "port"))
        return
    result = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "xmpp_load.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
