"""XMPP server load: concurrent sessions on one process, iq and route-publish rates.

The server under test runs in its own process; the load generator is
byte-level asyncio clients in this process (STARTTLS + SASL PLAIN + bind each,
as the draft's end-systems or forwarders would). Measured for esxmpp's
XmppServer (accept-everything handler) and, side by side when ``prosody`` is
installed (Debian package; run as reference with the same certificates and
client load), for Prosody:

* ``sessions``: time to bring up N concurrent sessions (goal: 10,000 on one
  process), the server's RSS with all of them up, and a ping round over all
  of them (each session answered, none dropped);
* ``pings``: K sessions each pipelining R XEP-0199 pings; iqs per second;
* ``publishes``: K sessions each pipelining R XEP-0060 publishes of distinct
  §6 route entries, byte for byte the same stanzas to both servers (no
  ``to``: the publisher's own service; on Prosody that is its PEP service,
  mod_pep, which creates each node on first publish and keeps nodes and items
  in memory here, ``default_storage = "memory"``, as esxmpp does); publishes
  per second;
* ``routes`` (esxmpp only; Prosody has no collections to associate to): K
  sessions each pipelining R (publish + associate) pairs; routes per second.

    .venv/bin/python bench/xmpp_load.py [--sessions 10000] [--publishers 50] \
        [--routes-per-session 200] [--reference prosody|none] [--out bench/results]

Results go to <out>/xmpp_load.json, with esxmpp/reference ratios.

Measured on the 2-core development box (p4c building in the background),
10,000 sessions each: esxmpp 92 s to bring them up, 71 KiB RSS per session,
all answering a ping round; 22,000 pipelined iqs/s; 2,600 routes/s (publish +
associate) from 50 publishers. Prosody 0.12 (epoll) under the same load: 68 s,
46 KiB per session, 2,800 pipelined iqs/s. Ratios esxmpp/Prosody: session
setup 0.74, memory per session 1.54, pipelined iq rate 7.8.

Publish comparison, 2026-12-01, same box (load average above 4 from the
background build, so single runs vary by 2-3x), small scale: ``--sessions 200
--publishers 10 --routes-per-session 100`` (1,000 publishes, each a new node),
Prosody 0.12.3 (Debian 12). Two runs: esxmpp 2,280 and 858 publishes/s,
Prosody 43 and 51 publishes/s; ratio esxmpp/Prosody 53 and 17. One Prosody
session alone publishing 100 new nodes reached about 150/s (about 500/s when
republishing to one node): its PEP node creation is what costs. Not yet run at
10,000 sessions.
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
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import write_result  # noqa: E402
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
        max_preauth_connections=400,  # one source logs in 200 at a time
        max_preauth_per_address=400,
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


PING = "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"


def answered(el: object, iq_id: str) -> bool:
    get = getattr(el, "get", None)
    return get is not None and get("type") == "result" and get("id") == iq_id


async def bench_sessions(port: int, ctx: ssl.SSLContext, n: int, pid: int) -> dict[str, object]:
    sem = asyncio.Semaphore(200)
    rss0 = rss_kib(pid)
    t0 = time.perf_counter()
    clients = await asyncio.gather(*(login(port, ctx, i, sem) for i in range(n)))
    t_up = time.perf_counter() - t0
    rss = rss_kib(pid)
    t1 = time.perf_counter()
    for c in clients:
        await c.send(PING.format(id="p"))
    answers = await asyncio.gather(*(c.element(60) for c in clients))
    t_ping = time.perf_counter() - t1
    assert all(answered(a, "p") for a in answers)
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


async def timed_runs(
    clients: list[RawClient], run: Callable[[int, RawClient], Awaitable[None]]
) -> float:
    """Seconds for run(j, client) on every client at once; then the clients close."""
    t0 = time.perf_counter()
    await asyncio.gather(*(run(j, c) for j, c in enumerate(clients)))
    dt = time.perf_counter() - t0
    for c in clients:
        c.close()
    return dt


async def bench_pings(
    port: int, ctx: ssl.SSLContext, k: int, per: int, base: int
) -> dict[str, object]:
    clients = [await login(port, ctx, base + i, asyncio.Semaphore(1)) for i in range(k)]

    async def run(raw: RawClient) -> None:
        await raw.send("".join(PING.format(id=f"q{r}") for r in range(per)))
        for r in range(per):
            assert answered(await raw.element(60), f"q{r}")

    dt = await timed_runs(clients, lambda _j, c: run(c))
    return {
        "sessions": k,
        "iqs": k * per,
        "seconds": round(dt, 3),
        "iqs_per_second": round(k * per / dt, 1),
    }


async def publisher(port: int, ctx: ssl.SSLContext, i: int, routes: int) -> RawClient:
    raw = await RawClient.open(port)
    await raw.login(DOMAIN, ctx, sid(i), "pw")
    await raw.send(d.to_bytes(d.build_request(d.Subscribe("vpn-bench"), "s")))
    assert await raw.xml() == "<iq type='result' id='s'/>"
    return raw


def publish_stanzas(me: bytes, j: int, per: int, tag: str) -> list[tuple[str, bytes]]:
    """``per`` XEP-0060 publishes of distinct §6 route entries for system ``me``:
    (node, stanza) pairs, iq ids ``<tag><n>``."""
    out = []
    for r in range(per):
        prefix = ipaddress.ip_network(f"{ipaddress.IPv4Address(0x0A000000 + j * 65536 + r)}/32")
        node = d.item_node_name(me, prefix)
        entry = d.RouteEntry(prefix, ipaddress.ip_address("192.0.2.1"), 16 + r, 1)
        out.append((node, d.to_bytes(d.build_request(d.Publish(node, entry), f"{tag}{r}"))))
    return out


async def bench_publishes(
    port: int, ctx: ssl.SSLContext, k: int, per: int, base: int
) -> dict[str, object]:
    """K sessions each pipelining R publishes, the same bytes to every server.

    A publish without ``to`` goes to the publisher's own service: esxmpp's
    dialect, and on Prosody the account's PEP service (XEP-0163), which
    creates the node on first publish; each publish here creates a new node.
    """
    clients = [await login(port, ctx, base + i, asyncio.Semaphore(1)) for i in range(k)]

    async def run(j: int, raw: RawClient) -> None:
        pubs = publish_stanzas(bytes.fromhex(sid(base + j)), j, per, "u")
        await raw.send(b"".join(stanza for _node, stanza in pubs))
        got: set[str] = set()
        for _ in range(per):
            el = await raw.element(60)
            assert el.get("type") == "result", d.serialize(el)
            got.add(el.get("id", ""))
        assert got == {f"u{r}" for r in range(per)}

    dt = await timed_runs(clients, run)
    n = k * per
    return {
        "publishers": k,
        "publishes": n,
        "seconds": round(dt, 3),
        "publishes_per_second": round(n / dt, 1),
    }


async def bench_routes(
    port: int, ctx: ssl.SSLContext, k: int, per: int, base: int
) -> dict[str, object]:
    clients = [await publisher(port, ctx, base + i, per) for i in range(k)]

    async def run(j: int, raw: RawClient) -> None:
        me = bytes.fromhex(sid(base + j))
        out = []
        for r, (node, pub) in enumerate(publish_stanzas(me, j, per, "p")):
            out.append(pub)
            out.append(d.to_bytes(d.build_request(d.Associate("vpn-bench", node), f"a{r}")))
        await raw.send(b"".join(out))
        for _ in range(2 * per):
            x = await raw.xml(60)
            assert x.startswith("<iq type='result'"), x

    dt = await timed_runs(clients, run)
    routes = k * per
    return {
        "publishers": k,
        "routes": routes,
        "iqs": 2 * routes,
        "seconds": round(dt, 3),
        "routes_per_second": round(routes / dt, 1),
        "iqs_per_second": round(2 * routes / dt, 1),
    }


class Target:
    """A server under test in its own process."""

    name = ""

    def __init__(self, tmp: Path, users: int) -> None:
        self.tmp = tmp
        self.users = users
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    async def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Ours(Target):
    name = "esxmpp"

    async def start(self) -> None:
        port_file = self.tmp / "port"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.tmp), "--sessions", str(self.users)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("esxmpp server did not start")
            await asyncio.sleep(0.05)
        self.port = int(port_file.read_text())


class Prosody(Target):
    """Prosody (Debian package) with the same certificate, PLAIN accounts, epoll."""

    name = "prosody"

    async def start(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        t = self.tmp / "prosody"
        accounts = t / "data" / DOMAIN.replace(".", "%2e") / "accounts"
        accounts.mkdir(parents=True)
        for i in range(self.users):
            (accounts / f"{sid(i)}.dat").write_text('return {\n\t["password"] = "pw";\n};\n')
        cfg = t / "prosody.cfg.lua"
        cfg.write_text(
            f'''pidfile = "{t}/prosody.pid"
data_path = "{t}/data"
run_as_root = true
log = {{ warn = "{t}/prosody.log" }}
network_backend = "epoll"
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
component_ports = {{}}
http_ports = {{}}
https_ports = {{}}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "pep"; "posix"; }}
modules_disabled = {{ "s2s"; "offline"; "c2s_limits"; "limits"; }}
c2s_require_encryption = true
authentication = "internal_plain"
-- accounts from the files written above; everything else (PEP nodes and items)
-- in memory, as esxmpp keeps its state
default_storage = "memory"
storage = {{ accounts = "internal"; }}
VirtualHost "{DOMAIN}"
  ssl = {{ certificate = "{self.tmp}/server-{DOMAIN}.pem";
          key = "{self.tmp}/server-{DOMAIN}.key"; }}
'''
        )
        self.proc = subprocess.Popen(
            ["prosody", "--config", str(cfg), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("prosody did not start") from None
                await asyncio.sleep(0.05)


async def measure(
    target: Target, ctx: ssl.SSLContext, args: argparse.Namespace, routes: bool
) -> dict[str, object]:
    await target.start()
    try:
        out: dict[str, object] = {
            "sessions": await bench_sessions(target.port, ctx, args.sessions, target.pid),
            "pings": await bench_pings(
                target.port, ctx, args.publishers, args.routes_per_session * 2, args.sessions
            ),
            "publishes": await bench_publishes(
                target.port,
                ctx,
                args.publishers,
                args.routes_per_session,
                args.sessions + args.publishers,
            ),
        }
        if routes:
            out["routes"] = await bench_routes(
                target.port,
                ctx,
                args.publishers,
                args.routes_per_session,
                args.sessions + 2 * args.publishers,
            )
        return out
    finally:
        target.stop()


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="xmpp-bench-"))
    pki = make_pki(tmp)
    pki.server(DOMAIN)
    ctx = ssl.create_default_context(cafile=str(pki.cafile))
    users = args.sessions + 3 * args.publishers
    ours = await measure(Ours(tmp, users), ctx, args, routes=True)
    result: dict[str, object] = {
        "bench": "xmpp_load",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "goal_sessions": GOAL_SESSIONS,
        "esxmpp": ours,
        "goal_met": ours["sessions"]["sessions"] >= GOAL_SESSIONS,  # type: ignore[index]
    }
    if args.reference == "prosody" and shutil.which("prosody"):
        ref = await measure(Prosody(tmp, users), ctx, args, routes=False)
        result["prosody"] = ref

        def ratio(section: str, key: str) -> float:
            a = ours[section][key]  # type: ignore[index]
            b = ref[section][key]  # type: ignore[index]
            return round(a / b, 2) if b else 0.0

        result["ratio_esxmpp_over_prosody"] = {
            "sessions_per_second": ratio("sessions", "sessions_per_second"),
            "kib_per_session": ratio("sessions", "kib_per_session"),
            "pings_per_second_all_sessions": ratio("sessions", "pings_per_second"),
            "pipelined_iqs_per_second": ratio("pings", "iqs_per_second"),
            "publishes_per_second": ratio("publishes", "publishes_per_second"),
        }
    elif args.reference == "prosody":
        result["prosody"] = "not installed (apt-get install prosody)"
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=GOAL_SESSIONS)
    ap.add_argument("--publishers", type=int, default=50)
    ap.add_argument("--routes-per-session", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--reference", choices=("prosody", "none"), default="prosody")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.sessions, args.serve / "port"))
        return
    result = asyncio.run(main_async(args))
    write_result(args.out, "xmpp_load", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
