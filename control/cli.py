"""``esvpn``: operator CLI of the forwarder agent, and the end-system host tool.

    esvpn show sessions|vrfs|interfaces|routes|labels|counters|diff [--json]
          [--agent 127.0.0.1:9180]
    esvpn host run --config host.toml
    esvpn host subscribe --vpn NAME --vlan ID      [--socket PATH]
    esvpn host unsubscribe --vpn NAME
    esvpn host publish 10.1.1.5/32 [--vpn NAME] [--version N]
    esvpn host retract 10.1.1.5/32
    esvpn host status
    esvpn host check --config host.toml
    esvpn certs --dir DIR [--days N] [--force] NAME...   (lab CA + certificates)

Exit status: 0 ok, 1 refused / agent error, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from control.config import ConfigError

VIEWS = ("sessions", "vrfs", "interfaces", "routes", "labels", "counters", "diff")


def fetch(agent: str, path: str, timeout: float = 10.0) -> Any:
    url = f"http://{agent}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            error = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            error = raw.decode("utf-8", "replace").strip() or e.reason
        raise RuntimeError(f"the agent at {agent} answered {e.code}: {error}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError(f"cannot reach the agent at {agent}: {e}") from None


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(map(str, v)) if v else "-"
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items()) if v else "-"
    if v is None or v == "":
        return "-"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table (columns in first-seen order)."""
    if not rows:
        return "(none)\n"
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines) + "\n"


def _show(a: argparse.Namespace) -> int:
    try:
        data = fetch(a.agent, f"/v1/{a.view}")
    except RuntimeError as e:
        print(f"esvpn: {e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(data, indent=2))
    elif a.view == "diff":
        ups = data["updates"]
        print(f"{len(ups)} update(s) pending")
        sys.stdout.write(table(ups) if ups else "")
    else:
        sys.stdout.write(table(data))
    return 0


def _host(a: argparse.Namespace) -> int:
    from control.host import HostAgent, load_host_config, send_command

    if a.cmd in ("run", "check"):
        try:
            cfg = load_host_config(a.config)
        except ConfigError as e:
            print(f"esvpn host: {a.config}: {e}", file=sys.stderr)
            return 2
        if a.cmd == "check":
            print("config ok")
            return 0

        async def run() -> None:
            from esxmpp.tasks import SHUTDOWN_DEADLINE, exit_watchdog

            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            agent = HostAgent(cfg)
            await agent.start()
            await stop.wait()
            exit_watchdog(SHUTDOWN_DEADLINE, "esvpn host run")
            await agent.close()

        asyncio.run(run())
        return 0
    req: dict[str, Any] = {"op": a.cmd}
    if a.cmd in ("subscribe", "unsubscribe"):
        req["vpn"] = a.vpn
    if a.cmd == "subscribe":
        req["vlan"] = a.vlan
    if a.cmd in ("publish", "retract"):
        req["prefix"] = a.prefix
    if a.cmd == "publish":
        if a.vpn is not None:
            req["vpn"] = a.vpn
        req["version"] = a.version
    try:
        resp = asyncio.run(send_command(Path(a.socket), req))
    except (OSError, TimeoutError) as e:
        print(f"esvpn host: cannot reach {a.socket}: {e}", file=sys.stderr)
        return 1
    if not resp.get("ok"):
        print(f"esvpn host: {resp.get('error')}", file=sys.stderr)
        return 1
    if a.cmd == "status":
        print(json.dumps({k: v for k, v in resp.items() if k != "ok"}, indent=2))
    return 0


def _certs(a: argparse.Namespace) -> int:
    """Lab CA in ``a.dir`` (created when missing) and a certificate per name."""
    from esxmpp.pki import classify, issue, open_pki

    try:
        names = [classify(n) for n in a.names]
    except ValueError as e:
        print(f"esvpn certs: {e}", file=sys.stderr)
        return 2
    try:
        pki, created = open_pki(a.dir, days=a.days)
        print(f"{'created' if created else 'kept'} CA {pki.cafile} {pki.ca_keyfile}")
        for name, server in names:
            pair = pki.paths(name, server)
            what = "server" if server else "client"
            if pair.certfile.exists() and pair.keyfile.exists() and not a.force:
                print(f"kept {what} {name}: {pair.certfile} {pair.keyfile}")
                continue
            pair = issue(pki, name, server)
            print(f"created {what} {name}: {pair.certfile} {pair.keyfile}")
    except (OSError, ValueError) as e:
        print(f"esvpn certs: {e}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="esvpn", description="esvpn forwarder agent CLI")
    sub = p.add_subparsers(dest="group", required=True)
    show = sub.add_parser("show", help="show agent state")
    show.add_argument("view", choices=VIEWS)
    show.add_argument("--json", action="store_true")
    show.add_argument("--agent", default="127.0.0.1:9180", help="agent control address")
    host = sub.add_parser("host", help="end-system host tool")
    hs = host.add_subparsers(dest="cmd", required=True)
    run = hs.add_parser("run", help="hold the session to the forwarder")
    run.add_argument("--config", required=True, type=Path)
    sock = argparse.ArgumentParser(add_help=False)
    sock.add_argument("--socket", default="/run/esvpn-host.sock")
    s = hs.add_parser("subscribe", parents=[sock])
    s.add_argument("--vpn", required=True)
    s.add_argument("--vlan", required=True, type=int)
    u = hs.add_parser("unsubscribe", parents=[sock])
    u.add_argument("--vpn", required=True)
    pb = hs.add_parser("publish", parents=[sock])
    pb.add_argument("prefix")
    pb.add_argument("--vpn")
    pb.add_argument("--version", type=int, default=0)
    r = hs.add_parser("retract", parents=[sock])
    r.add_argument("prefix")
    hs.add_parser("status", parents=[sock])
    chk = hs.add_parser("check", help="check a host.toml and exit")
    chk.add_argument("--config", required=True, type=Path)
    certs = sub.add_parser(
        "certs",
        help="make a lab CA and certificates for the project's mutual TLS",
        description="Create DIR/ca.pem and ca.key when missing, then a certificate per NAME "
        "signed by that CA: a system id (12 hex digits) gets a client certificate "
        "(client-ID.pem/.key: CN and DNS SAN = the id, as the XMPP servers read it); "
        "any other NAME is a server's XMPP domain (server-NAME.pem/.key: DNS SAN = "
        "the domain, plus 127.0.0.1 and ::1). Existing certificates are kept unless --force.",
    )
    certs.add_argument("--dir", required=True, type=Path, help="where the CA and files live")
    certs.add_argument("--days", type=int, default=365, help="validity (default 365)")
    certs.add_argument("--force", action="store_true", help="re-issue existing certificates")
    certs.add_argument("names", nargs="*", metavar="NAME", help="system id or XMPP domain")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.group == "show":
        return _show(a)
    if a.group == "certs":
        return _certs(a)
    return _host(a)


if __name__ == "__main__":
    sys.exit(main())
