"""What the lab is made of: forwarders, route servers, a reflector, end-systems.

The default topology (``default_topology``) is the one the demo shows and the
chaos suite breaks: two ToRs (A, B) joined by a fabric link, two route
servers (each ToR's agent is a client of both), a GoBGP route reflector
peering with both route servers, and four end-systems in two VPNs whose
addresses overlap (red and blue both use 10.1.1.1 and 10.1.1.2), one
dual-stack end-system per VPN on each ToR (each speaks IPv4 and IPv6).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

ASN = 64512
FABRIC = ipaddress.ip_network("192.0.2.0/24")  # tunnel endpoints (in frames only)


@dataclass(frozen=True)
class Vpn:
    name: str
    target: str  # route target, import and export
    vlan: int


@dataclass(frozen=True)
class Tor:
    name: str  # "a"
    system_id: str  # 12 hex digits
    infra: str  # tunnel endpoint, in FABRIC
    fabric_mac: str
    mgmt_host: int  # host part of the management address

    @property
    def domain(self) -> str:
        return f"tor{self.name}.lab"


@dataclass(frozen=True)
class RouteServerNode:
    name: str  # "rs1"
    mgmt_host: int

    @property
    def domain(self) -> str:
        return f"{self.name}.lab"


@dataclass(frozen=True)
class EndSystem:
    name: str  # "h1"
    tor: str
    system_id: str  # its MAC, 12 hex digits
    port: int  # the ToR switch port it is attached to
    vpn: str
    addresses: tuple[str, ...]  # host addresses it publishes (/32, /128)
    mgmt_host: int

    @property
    def mac(self) -> str:
        s = self.system_id
        return ":".join(s[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True)
class Topology:
    prefix: str  # of every namespace and root link name (keep it <= 6 chars)
    mgmt: ipaddress.IPv4Network  # management /24: sessions between daemons
    vpns: tuple[Vpn, ...]
    tors: tuple[Tor, ...]
    route_servers: tuple[RouteServerNode, ...]
    end_systems: tuple[EndSystem, ...]
    reflector_host: int = 2
    root_host: int = 1
    fabric_port: int = 1
    cpu_port: int = 255

    def addr(self, host: int) -> str:
        return str(self.mgmt.network_address + host)

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def tor(self, name: str) -> Tor:
        return next(t for t in self.tors if t.name == name)

    def vpn(self, name: str) -> Vpn:
        return next(v for v in self.vpns if v.name == name)

    def end_system(self, name: str) -> EndSystem:
        return next(e for e in self.end_systems if e.name == name)

    def peers_of(self, es: EndSystem) -> list[EndSystem]:
        """The end-systems of the same VPN elsewhere (those it sends to)."""
        return [o for o in self.end_systems if o.vpn == es.vpn and o is not es]

    def flows(self) -> list[tuple[str, EndSystem, EndSystem, str, str]]:
        """(name, from, to, src address, dst address): every end-system to
        every other of its VPN, once per address family both have."""
        out = []
        for src in self.end_systems:
            for dst in self.peers_of(src):
                for sa in src.addresses:
                    for da in dst.addresses:
                        s, d = ipaddress.ip_address(sa), ipaddress.ip_address(da)
                        if s.version == d.version:
                            out.append((f"{src.name}-{dst.name}-v{s.version}", src, dst, sa, da))
        return out


def default_topology(prefix: str = "esl", mgmt: str = "198.51.100.0/24") -> Topology:
    return Topology(
        prefix=prefix,
        mgmt=ipaddress.IPv4Network(mgmt),
        vpns=(Vpn("red", f"{ASN}:100", 10), Vpn("blue", f"{ASN}:200", 20)),
        tors=(
            Tor("a", "02aa00000001", "192.0.2.1", "02:00:00:00:0a:01", 21),
            Tor("b", "02aa00000002", "192.0.2.2", "02:00:00:00:0b:01", 22),
        ),
        route_servers=(RouteServerNode("rs1", 11), RouteServerNode("rs2", 12)),
        end_systems=(
            EndSystem("h1", "a", "0a0000000001", 3, "red", ("10.1.1.1", "fd00:1::1"), 31),
            EndSystem("h2", "b", "0a0000000002", 3, "red", ("10.1.1.2", "fd00:1::2"), 32),
            EndSystem("h3", "a", "0a0000000003", 4, "blue", ("10.1.1.1", "fd00:2::1"), 33),
            EndSystem("h4", "b", "0a0000000004", 4, "blue", ("10.1.1.2", "fd00:2::2"), 34),
        ),
    )
