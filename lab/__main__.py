"""``python -m lab``: the demo and its headless check (``make demo``,
``make demo-check``, ``make demo-stop``).

    python -m lab demo  [--target soft|bmv2] [--seconds N]   live view; Ctrl-C tears down
    python -m lab check [--target soft|bmv2]                  headless: exit 0 when traffic
                                                              crossed both ways in both VPNs
                                                              and nothing leaked, else 1
    python -m lab down                                        remove a demo left running
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from lab import chaos
from lab.lab import RECORDS, REPO, Lab, LabError, Slot, pid_alive, poll, teardown
from lab.topology import Topology, default_topology

DEMO = default_topology(prefix="esd", mgmt="203.0.113.0/24")


def gone(pid: int) -> bool:
    return not pid_alive(pid)


def drop_reasons() -> dict[int, str]:
    text = (REPO / "p4src/include/define.p4").read_text()
    return {
        int(n): name.lower()
        for name, n in re.findall(r"drop_reason_t\s+DROP_(\w+)\s*=\s*(\d+);", text)
    }


def topology_text(t: Topology) -> str:
    rr = f"GoBGP route reflector ({t.addr(t.reflector_host)}, AS 64512)"
    rss = "   ".join(f"{r.name} ({t.addr(r.mgmt_host)})" for r in t.route_servers)
    lines = [
        f"                 {rr}",
        "                        |  BGP VPN-IPv4 / VPN-IPv6 / RT-Constraint",
        f"                 {rss}   (ExaBGP inside each)",
        "                        |  XMPP over mutual TLS (each agent to both)",
    ]
    tors = "      ====  MPLS-in-GRE over fab0  ====      ".join(
        f"ToR {x.name.upper()} [{x.infra}]" for x in t.tors
    )
    lines.append(f"        {tors}")
    for x in t.tors:
        es = [e for e in t.end_systems if e.tor == x.name]
        lines.append(
            f"   ToR {x.name.upper()}: "
            + ", ".join(
                f"{e.name} port {e.port} vlan {t.vpn(e.vpn).vlan} {e.vpn} ({' '.join(e.addresses)})"
                for e in es
            )
        )
    lines.append("   VPNs red and blue use the same addresses: they never see each other.")
    return "\n".join(lines)


class Views:
    """What the live view shows, read from the running lab."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.reasons = drop_reasons()
        self.clients: dict[str, Any] = {}

    async def drops(self, tor: str) -> dict[str, int]:
        from control.p4rt import P4Info, P4RuntimeClient

        client = self.clients.get(tor)
        try:
            if client is None or not client.connected:
                info = P4Info.load(REPO / "p4src/build/esvpn.p4info.txtpb")
                client = await P4RuntimeClient.connect(
                    f"{self.lab.mgmt('tor' + tor)}:9559",
                    info,
                    device_id=0,
                    election_id=1,
                    timeout=2,
                )
                self.clients[tor] = client
            out: dict[str, int] = {}
            for counter in ("ingress_drops", "egress_drops"):
                for idx, v in (await client.read_counters(counter)).items():
                    if v.packets:
                        name = self.reasons.get(idx, str(idx))
                        out[name] = out.get(name, 0) + v.packets
            return out
        except Exception as exc:
            self.clients.pop(tor, None)
            return {f"(switch unreachable: {type(exc).__name__})": 0}

    async def close(self) -> None:
        for c in self.clients.values():
            with contextlib.suppress(Exception):
                await c.close()

    async def render(self, started: float) -> Group:
        lab = self.lab
        parts: list[Any] = [Panel(topology_text(lab.topo), title="esvpn demo: topology")]
        for tor in lab.topo.tors:
            routes = Table(title=f"ToR {tor.name.upper()}: routes per VPN", expand=True)
            for col in ("VPN", "prefix", "next hop"):
                routes.add_column(col)
            try:
                for r in lab.agent_show(tor.name, "routes"):
                    if r["source"] == "route-server":
                        routes.add_row(r["vpn"], r["prefix"], ", ".join(r["nexthops"]))
            except Exception as exc:
                routes.add_row("-", f"agent unreachable: {exc}", "")
            ifs = Table(title=f"ToR {tor.name.upper()}: interfaces and drops", expand=True)
            for col in ("vif", "end-system", "VPN", "VLAN", "rx pkts", "tx pkts"):
                ifs.add_column(col)
            try:
                for c in await asyncio.to_thread(lab.agent_show, tor.name, "counters"):
                    ifs.add_row(
                        str(c["vif_id"]),
                        c["system_id"],
                        c["vpn"],
                        str(c["vlan"]),
                        str(c["rx_packets"]),
                        str(c["tx_packets"]),
                    )
            except Exception as exc:
                ifs.add_row("-", f"agent unreachable: {exc}", "", "", "", "")
            drops = await self.drops(tor.name)
            text = ", ".join(f"{k}: {v}" for k, v in sorted(drops.items())) or "none"
            ifs.caption = f"switch drops by reason: {text}"
            parts.append(routes)
            parts.append(ifs)
        flows = Table(title="traffic (50 packets/s per flow)", expand=True)
        for col in ("flow", "VPN", "sent", "received", "lost", "outages"):
            flows.add_column(col)
        status: dict[str, dict[str, Any]] = {}
        for es in lab.topo.end_systems:
            with contextlib.suppress(OSError, ValueError):
                status[es.name] = lab.traffic(es.name)
        leaks = sum(t["leaks"] + t["unexpected"] for t in status.values())
        for name, src, dst, _sa, _da in lab.topo.flows():
            if src.name in status and dst.name in status:
                sent = status[src.name]["sent"].get(name, 0)
                rx = status[dst.name]["received"][name]
                flows.add_row(
                    name,
                    src.vpn,
                    str(sent),
                    str(rx["count"]),
                    str(rx["missing"]),
                    str(len(rx["outages"])),
                )
            else:
                flows.add_row(name, src.vpn, "-", "-", "-", "-")
        flows.caption = (
            f"frames delivered into the wrong VPN or to the wrong end-system: {leaks}   "
            f"running {time.monotonic() - started:.0f} s   Ctrl-C to stop and clean up"
        )
        parts.append(flows)
        return Group(*parts)


async def live(lab: Lab, seconds: float | None) -> None:
    views = Views(lab)
    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        with Live(await views.render(started), refresh_per_second=2, screen=False) as view:
            while not stop.is_set():
                if seconds is not None and time.monotonic() - started > seconds:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                view.update(await views.render(started))
    finally:
        await views.close()


def check(lab: Lab, console: Console) -> bool:
    """Traffic crossed both ways in both VPNs, v4 and v6, nothing leaked, and
    the whole system holds exactly the intended state."""
    ok = True
    try:
        poll(partial(chaos.flowing_recently, lab), 60, "every flow to deliver")
        chaos.wait_exact(lab, 60)
    except LabError as exc:
        console.print(f"[red]FAIL[/red] {exc}")
        ok = False
    for name, src, dst, sa, da in lab.topo.flows():
        sent = lab.traffic(src.name)["sent"].get(name, 0)
        got = lab.traffic(dst.name)["received"][name]["count"]
        good = got > 0
        ok &= good
        mark = "[green]ok[/green]" if good else "[red]FAIL[/red]"
        console.print(f"{mark} {name}: {src.vpn} {sa} -> {da}: sent {sent}, received {got}")
    for es in lab.topo.end_systems:
        t = lab.traffic(es.name)
        if t["leaks"] or t["unexpected"]:
            ok = False
            console.print(
                f"[red]FAIL[/red] {es.name} received {t['leaks'] + t['unexpected']} "
                "frames of another VPN or end-system"
            )
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("demo", "check"):
        s = sub.add_parser(name)
        s.add_argument("--target", choices=("soft", "bmv2"), default="soft")
        s.add_argument("--workdir", type=Path)
        if name == "demo":
            s.add_argument("--seconds", type=float, help="stop after this long")
    sub.add_parser("down")
    args = p.parse_args(argv)
    console = Console()
    if args.cmd == "down":
        for rec in sorted(RECORDS.glob("*.json")) if RECORDS.exists() else []:
            try:
                data = json.loads(rec.read_text())
            except (OSError, ValueError):
                data = {"prefix": rec.stem, "workdir": "?"}
            owner = data.get("owner")
            if isinstance(owner, int) and owner != os.getpid():
                # the demo that runs it stops its processes, removes its
                # namespaces and its temporary directory itself
                with contextlib.suppress(OSError):
                    os.kill(owner, signal.SIGTERM)
                    poll(partial(gone, owner), 15, f"the demo (pid {owner}) to end")
            teardown(data["prefix"])
            rec.unlink(missing_ok=True)
            console.print(f"removed lab {data['prefix']} ({data['workdir']})")
        teardown(DEMO.prefix)
        return 0
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.cmd == "check":  # a slot of its own: a demo may be running beside it
            slot = Slot("d")
            stack.callback(slot.release)
            topo = default_topology(slot.prefix, slot.mgmt)
        else:
            teardown(DEMO.prefix)
            topo = DEMO
        lab = Lab(topo, workdir, target=args.target)
        console.print(
            f"esvpn {args.cmd}: building the lab in network namespaces "
            f"({topo.prefix}-*), logs in {workdir}/logs ..."
        )
        started = time.monotonic()
        try:
            lab.up()
            console.print(f"up in {time.monotonic() - started:.1f} s")
            if args.cmd == "check":
                ok = check(lab, console)
                console.print("demo-check: " + ("[green]PASS[/green]" if ok else "[red]FAIL[/red]"))
                return 0 if ok else 1
            asyncio.run(live(lab, args.seconds))
            return 0
        finally:
            exits = lab.down()
            slow = {k: round(v, 1) for k, v in exits.items() if v > 5}
            console.print(
                "torn down: processes, namespaces and links removed"
                + (f"; slow to exit: {slow}" if slow else "")
            )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
