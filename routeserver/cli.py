"""``esvpn-routeserver``: run the daemon, or query a running one.

esvpn-routeserver run --config rs.toml
esvpn-routeserver check --config rs.toml
esvpn-routeserver show vrfs|routes|rtc|peers|sessions [--vrf NAME] [--json]
                  [--control HOST:PORT | --config rs.toml]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from routeserver.config import Config, ConfigError, load

log = logging.getLogger("routeserver")

SHOW = ("sessions", "vrfs", "routes", "rtc", "peers")

_COLUMNS: dict[str, list[str]] = {
    "sessions": ["system_id", "jid", "peer", "mechanism", "subscriptions", "published"],
    "vrfs": [
        "name",
        "vpn",
        "rd",
        "import",
        "export",
        "systems",
        "isolated",
        "subscribers",
        "routes",
    ],
    "routes": [
        "vrf",
        "prefix",
        "nexthop",
        "label",
        "version",
        "source",
        "from",
        "rd",
        "targets",
        "best",
        "stale",
    ],
    "peers": ["address", "asn", "up", "graceful_restart", "routes_in", "routes_out", "stale"],
}


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "-"
    if isinstance(v, bool):
        return "*" if v else ""
    return str(v)


def render_table(what: str, data: Any) -> str:
    """Plain-text table of a ``show`` answer."""
    if what == "rtc":
        rows = [
            {
                "peer": peer,
                "rtc": info["rtc"],
                "received": info["received"],
                "advertised": info["advertised"],
                "routes_out": info["routes_out"],
            }
            for peer, info in sorted(data["peers"].items())
        ]
        head = f"originated: {_cell(data['originated'])}\n"
        cols = ["peer", "rtc", "received", "advertised", "routes_out"]
    else:
        rows, head, cols = data, "", _COLUMNS[what]
    table = [cols] + [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    return head + "\n".join(lines) + "\n"


def fetch(control: str, what: str, vrf: str | None = None) -> Any:
    query = f"?{urllib.parse.urlencode({'vrf': vrf})}" if vrf else ""
    with urllib.request.urlopen(f"http://{control}/show/{what}{query}", timeout=10) as resp:
        return json.loads(resp.read())


def _control_of(args: argparse.Namespace) -> str:
    if args.control:
        return str(args.control)
    if args.config:
        cfg = load(args.config)
        return f"{cfg.control_host}:{cfg.control_port}"
    return "127.0.0.1:8179"


HARD_EXIT = 4.5  # seconds after SIGTERM/SIGINT: kill ExaBGP and exit, whatever still runs


async def _run(cfg: Config) -> int:
    """Serve until SIGINT/SIGTERM (ExaBGP is restarted by the daemon if it dies).

    A signal, even while starting, stops the daemon in a bounded time
    (:meth:`RouteServer.stop`); should anything still hang, a watchdog
    thread kills ExaBGP and exits the process :data:`HARD_EXIT` seconds
    after the first signal.
    """
    from routeserver.server import RouteServer

    rs = RouteServer(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def hard_exit() -> None:
        log.error("still running %.1f s after the signal: exiting hard", HARD_EXIT)
        pid = rs.bgp.pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os._exit(1)

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: stopping", sig.name)
            watchdog = threading.Timer(HARD_EXIT, hard_exit)
            watchdog.daemon = True
            watchdog.start()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    starting = asyncio.create_task(rs.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # a signal while starting
            starting.cancel()
            await asyncio.wait({starting}, timeout=1.0)
            return 0
        starting.result()  # a failed start raises here
        await stopping
    finally:
        stopping.cancel()
        await rs.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="esvpn-routeserver", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the route server daemon")
    r.add_argument("--config", required=True)
    c = sub.add_parser("check", help="validate a configuration file")
    c.add_argument("--config", required=True)
    s = sub.add_parser("show", help="query a running route server")
    s.add_argument("what", choices=SHOW)
    s.add_argument("--vrf")
    s.add_argument("--json", action="store_true")
    s.add_argument("--control", help="HOST:PORT of the control endpoint")
    s.add_argument("--config")
    args = p.parse_args(argv)
    try:
        if args.cmd in ("run", "check"):
            cfg = load(args.config)
            if args.cmd == "check":
                print(f"{args.config}: ok ({len(cfg.vrfs)} VRFs, {len(cfg.neighbors)} neighbors)")
                return 0
            from routeserver.server import setup_logging

            setup_logging(cfg.log_level)
            try:
                return asyncio.run(_run(cfg))
            except KeyboardInterrupt:
                return 0
        data = fetch(_control_of(args), args.what, args.vrf)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError) as e:
        if args.cmd == "run":  # our own sockets (e.g. the control port taken), files
            print(f"error: cannot start the route server: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"error: cannot reach the route server: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        sys.stdout.write(render_table(args.what, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
