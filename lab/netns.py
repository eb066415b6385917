"""Network namespaces and veths for the lab, through iproute2.

The kernel of the machines this runs on has veth, bridges and network
namespaces but no VLAN, GRE or MPLS modules: every 802.1Q, GRE or MPLS frame
is built and read in user space (the switch and the traffic generator), so
the lab needs nothing else. Every name the lab makes starts with its prefix,
so one call removes all of a lab's namespaces (and with them their links).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class NetnsError(RuntimeError):
    """An iproute2 command failed; the message has its stderr."""


def run(args: Sequence[str], ns: str | None = None, check: bool = True) -> str:
    cmd = [*(["ip", "netns", "exec", ns] if ns else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    if check and res.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def namespaces() -> list[str]:
    out = run(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    # IPv4 management only: no router solicitations, MLD or DAD from the
    # lab's links reaching the switches' ports as noise
    run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ns)
    run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"], ns)
    run(["ip", "link", "set", "lo", "up"], ns)


def veth(a_ns: str | None, a: str, b_ns: str | None, b: str, mtu: int = 1500) -> None:
    """A veth pair a <-> b, each end in its namespace (None: the root one), up."""
    cmd = ["ip", "link", "add", a, *(["netns", a_ns] if a_ns else []), "mtu", str(mtu)]
    cmd += ["type", "veth", "peer", "name", b, *(["netns", b_ns] if b_ns else []), "mtu", str(mtu)]
    run(cmd)
    for ns, name in ((a_ns, a), (b_ns, b)):
        run(["ip", "link", "set", name, "up"], ns)


def bridge(ns: str, name: str) -> None:
    run(["ip", "link", "add", name, "type", "bridge"], ns)
    run(["ip", "link", "set", name, "up"], ns)


def enslave(ns: str, port: str, bridge_name: str) -> None:
    run(["ip", "link", "set", port, "master", bridge_name], ns)


def address(ns: str | None, ifname: str, cidr: str) -> None:
    run(["ip", "addr", "add", cidr, "dev", ifname], ns)


def link_up(ns: str | None, ifname: str, up: bool = True) -> None:
    run(["ip", "link", "set", ifname, "up" if up else "down"], ns)


def blackhole(ns: str, dest: str, on: bool = True) -> None:
    """Drop every packet from ``ns`` to ``dest`` silently (no FIN, no RST):
    a TCP connection between them is cut as by a failed link."""
    run(["ip", "route", "add" if on else "del", "blackhole", f"{dest}/32"], ns)


def pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def delete_link(ns: str | None, ifname: str) -> None:
    run(["ip", "link", "del", ifname], ns, check=False)


def delete_namespace(ns: str) -> None:
    run(["ip", "netns", "del", ns], check=False)
