"""``esvpn-routeserver``: run the daemon, or query and control a running one.

esvpn-routeserver run --config rs.toml
esvpn-routeserver check --config rs.toml
esvpn-routeserver show vrfs|routes|rtc|peers|sessions [--vrf NAME] [--json]
esvpn-routeserver show neighbors [ADDRESS] [--json]
esvpn-routeserver show adj-rib-in|adj-rib-out ADDRESS [--family vpnv4|vpnv6|rtc] [--json]
esvpn-routeserver show route [PREFIX|ADDRESS] [--rd RD] [--vpn VPN] [--json]
esvpn-routeserver clear ADDRESS [--soft | --soft-in | --soft-out] [--json]
esvpn-routeserver reload [--json]
  (each with [--control HOST:PORT | --config rs.toml])
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

from rich.console import Console
from rich.table import Table

from routeserver.config import Config, ConfigError, load

log = logging.getLogger("routeserver")

SHOW = (
    "sessions", "vrfs", "routes", "rtc", "peers", "neighbors", "adj-rib-in", "adj-rib-out",
    "route",
)  # fmt: skip

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
    "neighbors": [
        "address", "asn", "state", "up/down", "families", "prefixes_in", "prefixes_out",
        "last_error",
    ],
    "adj-rib-in": [
        "family", "rd", "prefix", "nexthop", "label", "as_path", "local_pref", "med",
        "targets", "stale", "selected_in",
    ],
    "adj-rib-out": ["family", "rd", "prefix", "nexthop", "label", "targets", "version"],
}  # fmt: skip


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "-"
    if isinstance(v, dict):
        return " ".join(f"{k}:{x}" for k, x in v.items()) or "-"
    if isinstance(v, bool):
        return "*" if v else ""
    if v is None:
        return "-"
    return str(v)


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d" if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _render(*items: Any) -> str:
    """Rich renderables as plain text (no colour, no wrapping), lines right-stripped."""
    console = Console(width=400, color_system=None, highlight=False, soft_wrap=True)
    with console.capture() as cap:
        for item in items:
            console.print(item)
    return "".join(line.rstrip() + "\n" for line in cap.get().splitlines())


def _table(cols: list[str], rows: list[list[str]]) -> Table:
    t = Table(box=None, pad_edge=False, show_edge=False)
    for c in cols:
        t.add_column(c, no_wrap=True)
    for row in rows:
        t.add_row(*row)
    return t


def _grid(pairs: list[tuple[str, str]], indent: int = 0) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(no_wrap=True)
    t.add_column(no_wrap=True)
    for k, v in pairs:
        t.add_row(" " * indent + k, v)
    return t


def _neighbor_row(n: dict[str, Any]) -> dict[str, Any]:
    up = n.get("uptime", n.get("downtime", 0))
    return {**n, "up/down": _duration(float(up)), "last_error": n["last_error"] or "-"}


def _neighbor_detail(n: dict[str, Any]) -> list[Any]:
    fams = sorted(set(n["prefixes_in"]) | set(n["prefixes_out"]) | set(n["configured_families"]))
    since = "up for" if n["up"] else "down for"
    pairs = [
        ("neighbor", f"{n['address']} AS {n['asn']} ({n['type']})"),
        ("state", f"{n['state']}, {since} {_duration(n.get('uptime', n.get('downtime', 0)))}"),
        ("established", f"{n['established']} time(s)"),
        ("capabilities", _cell(n["capabilities"])),
        ("families", f"{_cell(n['families'])} (configured: {_cell(n['configured_families'])})"),
        ("rtc filter", "yes" if n["rtc_filter"] else "no"),
        ("graceful restart", f"{n['graceful_restart']} s"),
        ("max prefixes", str(n["max_prefixes"] or "no limit")),
        ("last error", n["last_error"] or "-"),
        ("notification in", n["notification_in"] or "-"),
        ("notification out", n["notification_out"] or "-"),
        ("stale paths", str(n["stale"])),
    ]
    msgs = sorted(set(n["messages_in"]) | set(n["messages_out"]))
    ins, outs = n["messages_in"], n["messages_out"]
    msg_rows = [[m, str(ins.get(m, 0)), str(outs.get(m, 0))] for m in msgs]
    fam_rows = [
        [f, str(n["prefixes_in"].get(f, 0)), str(n["prefixes_out"].get(f, 0)),
         str(n["updates_in"].get(f, 0)), str(n["updates_out"].get(f, 0))]
        for f in fams
    ]  # fmt: skip
    return [
        _grid(pairs),
        "",
        _table(["messages", "in", "out"], msg_rows),
        "",
        _table(["family", "prefixes_in", "prefixes_out", "updates_in", "updates_out"], fam_rows),
    ]


def _route_detail(data: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for entry in data:
        paths = entry["paths"]
        out.append(f"{entry['prefix']} in VRF {entry['vrf']} (VPN {entry['vpn']}): "
                   f"{len(paths)} path(s)")  # fmt: skip
        for i, p in enumerate(paths, 1):
            out.append(f"  path {i}: {'best' if p['best'] else 'not best'} ({p['why']})")
            pairs = [
                ("from", f"{p['source']} {p['from']}"
                 + (f" ({'ebgp' if p['ebgp'] else 'ibgp'})" if p["source"] == "bgp" else "")),
                ("rd", p["rd"]),
                ("next hop", p["nexthop"]),
                ("label", str(p["label"])),
                ("version", str(p["version"])),
            ]  # fmt: skip
            if p["source"] == "bgp":
                path = " ".join(str(a) for a in p["as_path"])
                sets = " ".join("{" + ",".join(map(str, s)) + "}" for s in p["as_sets"])
                pairs += [
                    ("origin", p["origin"]),
                    ("as path", (path + (f" sets {sets}" if sets else "")) or "(empty)"),
                    ("local pref", str(p["local_pref"])),
                    ("med", str(p["med"])),
                    ("communities", _cell(p["communities"])),
                    ("ext communities", _cell(p["ext_communities"])),
                    ("originator id", _cell(p["originator_id"])),
                    ("cluster list", _cell(p["cluster_list"])),
                ]
            else:
                pairs += [
                    ("owner", p["owner"]),
                    ("targets", _cell(p["targets"])),
                ]
            pairs.append(("stale", "yes" if p["stale"] else "no"))
            out.append(_grid(pairs, indent=4))
    if not out:
        out.append("no route")
    return out


def render_table(what: str, data: Any) -> str:
    """The text of a ``show`` (or action) answer: tables by ``rich``."""
    if what == "rtc":
        rows = [
            [peer, _cell(info["rtc"]), _cell(info["received"]), _cell(info["advertised"]),
             _cell(info["routes_out"])]
            for peer, info in sorted(data["peers"].items())
        ]  # fmt: skip
        cols = ["peer", "rtc", "received", "advertised", "routes_out"]
        return _render(f"originated: {_cell(data['originated'])}", _table(cols, rows))
    if what == "neighbor":
        return _render(*_neighbor_detail(data))
    if what == "route":
        return _render(*_route_detail(data))
    if what in ("clear", "reload"):
        return _render(_grid([(k, _cell(v)) for k, v in data.items()]))
    if what == "neighbors":
        data = [_neighbor_row(n) for n in data]
    if what in ("adj-rib-in", "adj-rib-out"):
        rtc = [r for r in data if r["family"] == "rtc"]
        data = [r for r in data if r["family"] != "rtc"]
        cols = _COLUMNS[what]
        parts: list[Any] = [_table(cols, [[_cell(r.get(c, "")) for c in cols] for r in data])]
        if rtc and what == "adj-rib-in":
            rows = [[r["route_target"], _cell(r["stale"])] for r in rtc]
            parts += ["", _table(["rtc route_target", "stale"], rows)]
        elif rtc:
            parts += ["", _table(["rtc route_target"], [[r["route_target"]] for r in rtc])]
        return _render(*parts)
    cols = _COLUMNS[what]
    return _render(_table(cols, [[_cell(r.get(c, "")) for c in cols] for r in data]))


class ControlError(Exception):
    """The route server refused the request; the message is its answer."""


def fetch(
    control: str,
    what: str,
    vrf: str | None = None,
    params: dict[str, str] | None = None,
    post: bool = False,
) -> Any:
    """GET ``/show/<what>`` (or POST ``/<what>``) with the query ``params``."""
    q = {"vrf": vrf} if vrf else {}
    q.update({k: v for k, v in (params or {}).items() if v})
    query = f"?{urllib.parse.urlencode(q)}" if q else ""
    path = f"/{what}" if post else f"/show/{what}"
    req = urllib.request.Request(f"http://{control}{path}{query}", method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise ControlError(e.read().decode(errors="replace").strip() or str(e)) from None


def _control_of(args: argparse.Namespace) -> str:
    if args.control:
        return str(args.control)
    if args.config:
        cfg = load(args.config)
        return f"{cfg.control_host}:{cfg.control_port}"
    return "127.0.0.1:8179"


HARD_EXIT = 4.5  # seconds after SIGTERM/SIGINT: kill ExaBGP and exit, whatever still runs


async def _run(cfg: Config, path: str | None = None) -> int:
    """Serve until SIGINT/SIGTERM (ExaBGP is restarted by the daemon if it dies).

    A signal, even while starting, stops the daemon in a bounded time
    (:meth:`RouteServer.stop`); should anything still hang, a watchdog
    thread kills ExaBGP and exits the process :data:`HARD_EXIT` seconds
    after the first signal.
    """
    from routeserver.server import ReloadError, RouteServer

    rs = RouteServer(cfg, config_path=path)
    stop = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await rs.reload()
        except ReloadError as e:
            log.error("SIGHUP: configuration not reloaded: %s", e)
        except Exception:  # ExaBGP did not answer, or a bug: the daemon goes on
            log.exception("SIGHUP: configuration reload failed")

    def on_hup() -> None:
        task = asyncio.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

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
    loop.add_signal_handler(signal.SIGHUP, on_hup)
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
    s.add_argument("target", nargs="?", help="neighbor address, or prefix/address for route")
    s.add_argument("--vrf")
    s.add_argument("--family", choices=("vpnv4", "vpnv6", "rtc"))
    s.add_argument("--rd", help="route: paths with this route distinguisher")
    s.add_argument("--vpn", help="route: in the VRFs of this VPN only")
    cl = sub.add_parser("clear", help="reset one BGP session (hard: NOTIFICATION Cease/4)")
    cl.add_argument("peer")
    how = cl.add_mutually_exclusive_group()
    how.add_argument("--soft", dest="mode", action="store_const", const="soft")
    how.add_argument("--soft-in", dest="mode", action="store_const", const="soft-in")
    how.add_argument("--soft-out", dest="mode", action="store_const", const="soft-out")
    rl = sub.add_parser("reload", help="re-read the configuration file (as SIGHUP)")
    for sp in (s, cl, rl):
        sp.add_argument("--json", action="store_true")
        sp.add_argument("--control", help="HOST:PORT of the control endpoint")
        sp.add_argument("--config")
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
                return asyncio.run(_run(cfg, args.config))
            except KeyboardInterrupt:
                return 0
        what = args.cmd if args.cmd in ("clear", "reload") else args.what
        if args.cmd == "clear":
            data = fetch(
                _control_of(args), "clear", params={"peer": args.peer, "mode": args.mode or "hard"},
                post=True,
            )  # fmt: skip
        elif args.cmd == "reload":
            data = fetch(_control_of(args), "reload", post=True)
        elif args.what in ("adj-rib-in", "adj-rib-out"):
            if not args.target:
                p.error(f"show {args.what}: the neighbor ADDRESS is required")
            params = {"peer": args.target, "family": args.family or ""}
            data = fetch(_control_of(args), args.what, params=params)
        elif args.what == "route":
            params = {"prefix": args.target or "", "rd": args.rd or "", "vpn": args.vpn or ""}
            data = fetch(_control_of(args), "route", params=params)
        elif args.what == "neighbors":
            data = fetch(_control_of(args), "neighbors", params={"peer": args.target or ""})
            if args.target and not args.json:
                data, what = data[0], "neighbor"
        else:
            data = fetch(_control_of(args), args.what, args.vrf)
    except ControlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
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
        sys.stdout.write(render_table(what, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
