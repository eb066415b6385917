"""Agent configuration: frozen dataclasses loaded from TOML, validated up front.

Example (those with a value in brackets are optional; ``examples/agent.toml``
shows every key, also the optional ones of ``[xmpp]``, ``[[route_servers]]``
and ``[switch.tls]``, with its default; ``esvpn certs`` makes the
certificates)::

    [agent]
    system_id = "02aa00000001"          # our 6-byte id (JID localpart toward route servers)
    state_file = "/var/lib/esvpn/agent.json"   # [none] allocations + routes across restarts
    control = "127.0.0.1:9180"          # [127.0.0.1:9180] HTTP JSON + /metrics (loopback)

    [switch]
    address = "127.0.0.1:9559"
    device_id = 0                       # [0]
    election_id = 1                     # [1]
    p4info = "p4src/build/esvpn.p4info.txtpb"
    bmv2_json = "p4src/build/esvpn.json"
    # [switch.tls] root_cert / cert / key / server_name   [plaintext]

    [fabric]
    infra_address = "192.0.2.1"         # our tunnel endpoint (next hop we export)
    mtu = 1500                          # [1500] max outer packet after encapsulation
    ports = [1]                         # fabric-facing switch ports
    peers = ["192.0.2.2"]               # [[]] extra permitted tunnel sources
    [[fabric.underlay]]                 # how to reach other forwarders
    prefix = "192.0.2.0/24"
    port = 1
    src_mac = "02:00:00:00:00:01"
    dst_mac = "02:00:00:00:00:fe"
    vlan = 0                            # [0] = untagged

    [end_systems.ports]                 # system id -> switch port it is attached to
    "0a0000000001" = 3

    [xmpp]                              # required; end-system side: esxmpp ServerConfig keys
    domain = "tor1.example.net"         # (esxmpp.config lists them all)
    certfile = "/etc/esvpn/pki/server-tor1.example.net.pem"
    keyfile = "/etc/esvpn/pki/server-tor1.example.net.key"
    cafile = "/etc/esvpn/pki/ca.pem"    # [none] required with auth EXTERNAL (the default)

    [[route_servers]]                   # at least one; esxmpp ClientConfig keys
    jid = "02aa00000001@rs1.example.net"
    host = "10.0.0.10"
    port = 5222                         # [5222]
    certfile = "/etc/esvpn/pki/client-02aa00000001.pem"   # or password (SASL PLAIN)
    keyfile = "/etc/esvpn/pki/client-02aa00000001.key"
    cafile = "/etc/esvpn/pki/ca.pem"    # [system CAs]

    [timers]
    stale = 60.0                        # [60] keep routes this long without a route server
    coalesce = 0.005                    # [0.005] batch switch writes over this window
    reconnect = 1.0                     # [1.0] switch / route server retry interval

    [labels]
    min = 16                            # [16]
    max = 1048575                       # [2^20-1]

    [vpns.red]                          # the VPNs end-systems may subscribe to ([none]: no VPN)
    prefixes = ["10.1.0.0/16"]          # [0.0.0.0/0, ::/0] addresses published in red lie here
    host_routes_only = true             # [true] only /32 and /128
    gateway_ipv4 = "10.1.1.1"           # [none] ICMP errors come from it, answers echo
    gateway_ipv6 = "2001:db8:1::1"      # [none]
    dhcp = false                        # [false] DHCPv4 proxy (needs gateway_ipv4)
    dhcp_prefix_len = 24                # [24] subnet mask told to clients
    dhcp_lease = 3600                   # [3600] seconds
    dhcp_dns = []                       # [[]] DNS servers told to clients
    [vpns.red.end_systems]              # [none] narrower ranges for some end-systems
    "0a0000000001" = ["10.1.1.0/28"]

    [limits]                            # per end-system (system id)
    interfaces_per_end_system = 16      # [16] vifs (VPNs)
    addresses_per_end_system = 256      # [256] published addresses
    requests_per_second = 100.0         # [100] sustained request rate, and
    request_burst = 1000                # [1000] requests in a row above it
    switch_answer = 5.0                 # [5] seconds to wait for the switch to take a write

    [punt]                              # rate limits of the punt path (control.punt)
    meter_rate = 100                    # [100] packets/s to the agent, per punt reason
    meter_burst = 50                    # [50]
    icmp_rate = 10.0                    # [10] ICMP errors/s the agent sends
    icmp_burst = 20                     # [20]

Errors name the key: ``switch.device_id: must be an integer >= 0``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from esxmpp.config import (
    ClientConfig,
    ServerConfig,
    client_config_from_toml,
    server_config_from_toml,
)
from esxmpp.config import ConfigError as XmppConfigError
from esxmpp.dialect import DialectError, check_vpn_name, parse_system_id

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """Bad configuration; the message starts with the key's dotted path."""


@dataclass(frozen=True)
class TlsConfig:
    root_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class SwitchConfig:
    address: str
    p4info: Path
    bmv2_json: Path
    device_id: int = 0
    election_id: int = 1
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class Underlay:
    prefix: ipaddress.IPv4Network
    port: int
    src_mac: int
    dst_mac: int
    vlan: int = 0


@dataclass(frozen=True)
class FabricConfig:
    infra_address: ipaddress.IPv4Address
    ports: tuple[int, ...]
    underlay: tuple[Underlay, ...]
    mtu: int = 1500
    peers: tuple[ipaddress.IPv4Address, ...] = ()


@dataclass(frozen=True)
class Timers:
    stale: float = 60.0
    coalesce: float = 0.005
    reconnect: float = 1.0


@dataclass(frozen=True)
class LabelRange:
    min: int = 16
    max: int = (1 << 20) - 1


ANY_PREFIX = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass(frozen=True)
class VpnConfig:
    """``[vpns.<name>]``: a VPN this forwarder serves: what its end-systems
    may publish (control.vrf) and the agent's router duties in it
    (control.punt)."""

    prefixes: tuple[IPNetwork, ...] = ANY_PREFIX
    host_routes_only: bool = True
    # system id -> the prefixes that end-system may use (instead of ``prefixes``)
    end_systems: Mapping[bytes, tuple[IPNetwork, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    gateway_ipv4: ipaddress.IPv4Address | None = None
    gateway_ipv6: ipaddress.IPv6Address | None = None
    dhcp: bool = False
    dhcp_prefix_len: int = 24
    dhcp_lease: int = 3600
    dhcp_dns: tuple[ipaddress.IPv4Address, ...] = ()

    def ranges(self, system_id: bytes) -> tuple[IPNetwork, ...]:
        return self.end_systems.get(system_id, self.prefixes)


@dataclass(frozen=True)
class Limits:
    """Per end-system quotas (``[limits]``): a request beyond one is refused
    ``resource-constraint`` naming the key."""

    interfaces_per_end_system: int = 16
    addresses_per_end_system: int = 256
    requests_per_second: float = 100.0
    request_burst: int = 1000
    switch_answer: float = 5.0


@dataclass(frozen=True)
class PuntConfig:
    """``[punt]``: rate limits of the punt path (control.punt)."""

    meter_rate: int = 100  # packets/s per punt reason, data-plane meter
    meter_burst: int = 50  # packets
    icmp_rate: float = 10.0  # ICMP / ICMPv6 errors per second the agent sends
    icmp_burst: int = 20


@dataclass(frozen=True)
class AgentConfig:
    system_id: bytes
    switch: SwitchConfig
    fabric: FabricConfig
    end_system_ports: Mapping[bytes, int]
    xmpp: ServerConfig
    route_servers: tuple[ClientConfig, ...]  # at least one
    timers: Timers = field(default_factory=Timers)
    labels: LabelRange = field(default_factory=LabelRange)
    state_file: Path | None = None
    control: tuple[str, int] = ("127.0.0.1", 9180)
    # the VPNs this forwarder serves; a subscribe to any other is refused
    vpns: Mapping[str, VpnConfig] = field(default_factory=lambda: MappingProxyType({}))
    limits: Limits = field(default_factory=Limits)
    punt: PuntConfig = field(default_factory=PuntConfig)


# --------------------------------------------------------------------------- helpers


def _known(data: Mapping[str, Any], prefix: str, keys: set[str]) -> None:
    for k in data:
        if k not in keys:
            raise ConfigError(f"{prefix}.{k}: unknown key")


def _table(data: Mapping[str, Any], key: str, prefix: str, required: bool = True) -> Any:
    if key not in data:
        if required:
            raise ConfigError(f"{prefix}{key}: required")
        return {}
    v = data[key]
    if not isinstance(v, dict):
        raise ConfigError(f"{prefix}{key}: must be a table")
    return v


def _int(
    data: Mapping[str, Any], key: str, prefix: str, lo: int, hi: int, default: int | None = None
) -> int:
    if key not in data:
        if default is None:
            raise ConfigError(f"{prefix}.{key}: required")
        return default
    v = data[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{prefix}.{key}: must be an integer {lo}..{hi}")
    return v


def _num(data: Mapping[str, Any], key: str, prefix: str, default: float) -> float:
    v = data.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ConfigError(f"{prefix}.{key}: must be a number > 0")
    return float(v)


def _str(data: Mapping[str, Any], key: str, prefix: str, default: str | None = None) -> str:
    if key not in data:
        if default is None:
            raise ConfigError(f"{prefix}.{key}: required")
        return default
    v = data[key]
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{prefix}.{key}: must be a non-empty string")
    return v


def _ipv4(text: Any, where: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: must be an IPv4 address") from None


def parse_mac(text: Any, where: str) -> int:
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ConfigError(f"{where}: must be a MAC address like 02:00:00:00:00:01")
    try:
        return int("".join(parts), 16)
    except ValueError:
        raise ConfigError(f"{where}: must be a MAC address like 02:00:00:00:00:01") from None


def _hostport(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: must be 'host:port'")
    return host.strip("[]"), int(port)


# --------------------------------------------------------------------------- loader


def config_from_toml(data: Mapping[str, Any]) -> AgentConfig:
    _known(
        data,
        "",
        {
            "agent",
            "switch",
            "fabric",
            "end_systems",
            "xmpp",
            "route_servers",
            "timers",
            "labels",
            "vpns",
            "limits",
            "punt",
        },
    )
    agent = _table(data, "agent", "")
    _known(agent, "agent", {"system_id", "state_file", "control"})
    try:
        system_id = parse_system_id(_str(agent, "system_id", "agent"))
    except DialectError:
        raise ConfigError("agent.system_id: must be 12 hex digits") from None
    state_file = Path(_str(agent, "state_file", "agent")) if "state_file" in agent else None
    control = _hostport(_str(agent, "control", "agent", "127.0.0.1:9180"), "agent.control")

    sw = _table(data, "switch", "")
    _known(sw, "switch", {"address", "device_id", "election_id", "p4info", "bmv2_json", "tls"})
    address = _str(sw, "address", "switch")
    _hostport(address, "switch.address")
    tls = None
    if "tls" in sw:
        t = _table(sw, "tls", "switch.")
        _known(t, "switch.tls", {"root_cert", "cert", "key", "server_name"})
        paths = {k: Path(_str(t, k, "switch.tls")) for k in ("root_cert", "cert", "key") if k in t}
        if ("cert" in paths) != ("key" in paths):
            raise ConfigError("switch.tls.key: cert and key go together")
        tls = TlsConfig(
            server_name=_str(t, "server_name", "switch.tls") if "server_name" in t else None,
            **paths,
        )
    switch = SwitchConfig(
        address=address,
        p4info=Path(_str(sw, "p4info", "switch")),
        bmv2_json=Path(_str(sw, "bmv2_json", "switch")),
        device_id=_int(sw, "device_id", "switch", 0, 2**64 - 1, 0),
        election_id=_int(sw, "election_id", "switch", 1, 2**128 - 1, 1),
        tls=tls,
    )

    fb = _table(data, "fabric", "")
    _known(fb, "fabric", {"infra_address", "mtu", "ports", "peers", "underlay"})
    infra = _ipv4(_str(fb, "infra_address", "fabric"), "fabric.infra_address")
    ports = fb.get("ports")
    if (
        not isinstance(ports, list)
        or not ports
        or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < 511 for p in ports)
    ):
        raise ConfigError("fabric.ports: must be a non-empty list of port numbers 0..510")
    peers_raw = fb.get("peers", [])
    if not isinstance(peers_raw, list):
        raise ConfigError("fabric.peers: must be a list of IPv4 addresses")
    peers = tuple(_ipv4(p, f"fabric.peers[{i}]") for i, p in enumerate(peers_raw))
    ul_raw = fb.get("underlay", [])
    if not isinstance(ul_raw, list) or not ul_raw:
        raise ConfigError("fabric.underlay: must be a non-empty array of tables")
    underlay = []
    for i, u in enumerate(ul_raw):
        w = f"fabric.underlay[{i}]"
        if not isinstance(u, dict):
            raise ConfigError(f"{w}: must be a table")
        _known(u, w, {"prefix", "port", "src_mac", "dst_mac", "vlan"})
        try:
            pfx = ipaddress.IPv4Network(_str(u, "prefix", w), strict=True)
        except ValueError:
            raise ConfigError(f"{w}.prefix: must be an IPv4 prefix (host bits zero)") from None
        underlay.append(
            Underlay(
                prefix=pfx,
                port=_int(u, "port", w, 0, 510),
                src_mac=parse_mac(u.get("src_mac"), f"{w}.src_mac"),
                dst_mac=parse_mac(u.get("dst_mac"), f"{w}.dst_mac"),
                vlan=_int(u, "vlan", w, 0, 4094, 0),
            )
        )
    fabric = FabricConfig(
        infra_address=infra,
        ports=tuple(ports),
        underlay=tuple(underlay),
        mtu=_int(fb, "mtu", "fabric", 576, 9216, 1500),
        peers=peers,
    )

    es = _table(data, "end_systems", "", required=False)
    _known(es, "end_systems", {"ports"})
    es_ports: dict[bytes, int] = {}
    for sid, port in _table(es, "ports", "end_systems.", required=False).items():
        w = f"end_systems.ports.{sid}"
        try:
            key = parse_system_id(sid)
        except DialectError:
            raise ConfigError(f"{w}: key must be a 12 hex digit system id") from None
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 510:
            raise ConfigError(f"{w}: must be a port number 0..510")
        if port in fabric.ports:
            raise ConfigError(f"{w}: port {port} is a fabric port")
        es_ports[key] = port

    # Both are required: without [xmpp] no end-system can attach (the agent
    # would only program the fabric entries), without a route server nothing
    # is exported or learned. A missing one is a mistake, not a mode.
    if "xmpp" not in data:
        raise ConfigError("xmpp: required (the end-systems' XMPP server)")
    try:
        xmpp = server_config_from_toml(_table(data, "xmpp", ""), "xmpp")
    except XmppConfigError as e:
        raise ConfigError(str(e)) from None
    if "route_servers" not in data:
        raise ConfigError("route_servers: required (at least one [[route_servers]])")
    rs_raw = data["route_servers"]
    if not isinstance(rs_raw, list):
        raise ConfigError("route_servers: must be an array of tables")
    if not rs_raw:
        raise ConfigError("route_servers: must name at least one route server")
    rss = []
    for i, r in enumerate(rs_raw):
        if not isinstance(r, dict):
            raise ConfigError(f"route_servers[{i}]: must be a table")
        try:
            rss.append(client_config_from_toml(r, f"route_servers[{i}]"))
        except XmppConfigError as e:
            raise ConfigError(str(e)) from None

    tm = _table(data, "timers", "", required=False)
    _known(tm, "timers", {"stale", "coalesce", "reconnect"})
    timers = Timers(
        stale=_num(tm, "stale", "timers", 60.0),
        coalesce=_num(tm, "coalesce", "timers", 0.005),
        reconnect=_num(tm, "reconnect", "timers", 1.0),
    )
    lb = _table(data, "labels", "", required=False)
    _known(lb, "labels", {"min", "max"})
    lo = _int(lb, "min", "labels", 16, (1 << 20) - 1, 16)
    hi = _int(lb, "max", "labels", 16, (1 << 20) - 1, (1 << 20) - 1)
    if hi < lo:
        raise ConfigError("labels.max: must be >= labels.min")
    return AgentConfig(
        system_id=system_id,
        switch=switch,
        fabric=fabric,
        end_system_ports=MappingProxyType(es_ports),
        xmpp=xmpp,
        route_servers=tuple(rss),
        timers=timers,
        labels=LabelRange(lo, hi),
        state_file=state_file,
        control=control,
        vpns=_vpns(_table(data, "vpns", "", required=False)),
        limits=_limits(_table(data, "limits", "", required=False)),
        punt=_punt(_table(data, "punt", "", required=False)),
    )


def _prefixes(v: Any, where: str) -> tuple[IPNetwork, ...]:
    if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
        raise ConfigError(f"{where}: must be a list of prefixes")
    out = []
    for i, p in enumerate(v):
        try:
            out.append(ipaddress.ip_network(p, strict=True))
        except ValueError:
            raise ConfigError(f"{where}[{i}]: {p!r} is not a prefix (host bits zero)") from None
    return tuple(out)


def _vpns(data: Mapping[str, Any]) -> Mapping[str, VpnConfig]:
    out: dict[str, VpnConfig] = {}
    for name, t in data.items():
        w = f"vpns.{name}"
        try:
            check_vpn_name(name, w)
        except DialectError as e:
            raise ConfigError(e.text) from None
        if not isinstance(t, dict):
            raise ConfigError(f"{w}: must be a table")
        _known(
            t,
            w,
            {"prefixes", "host_routes_only", "end_systems", "gateway_ipv4", "gateway_ipv6"}
            | {"dhcp", "dhcp_prefix_len", "dhcp_lease", "dhcp_dns"},
        )
        host_only = t.get("host_routes_only", True)
        if not isinstance(host_only, bool):
            raise ConfigError(f"{w}.host_routes_only: must be true or false")
        per: dict[bytes, tuple[IPNetwork, ...]] = {}
        for sid, ps in _table(t, "end_systems", f"{w}.", required=False).items():
            try:
                key = parse_system_id(sid)
            except DialectError:
                raise ConfigError(
                    f"{w}.end_systems.{sid}: key must be a 12 hex digit system id"
                ) from None
            per[key] = _prefixes(ps, f"{w}.end_systems.{sid}")
        out[name] = VpnConfig(
            prefixes=_prefixes(t["prefixes"], f"{w}.prefixes") if "prefixes" in t else ANY_PREFIX,
            host_routes_only=host_only,
            end_systems=MappingProxyType(per),
            **_router_duties(t, w),
        )
    return MappingProxyType(out)


def _limits(data: Mapping[str, Any]) -> Limits:
    _known(
        data,
        "limits",
        {
            "interfaces_per_end_system",
            "addresses_per_end_system",
            "requests_per_second",
            "request_burst",
            "switch_answer",
        },
    )
    d = Limits()
    return Limits(
        interfaces_per_end_system=_int(
            data, "interfaces_per_end_system", "limits", 1, 4095, d.interfaces_per_end_system
        ),
        addresses_per_end_system=_int(
            data, "addresses_per_end_system", "limits", 0, 1 << 20, d.addresses_per_end_system
        ),
        requests_per_second=_num(data, "requests_per_second", "limits", d.requests_per_second),
        request_burst=_int(data, "request_burst", "limits", 1, 1 << 20, d.request_burst),
        switch_answer=_num(data, "switch_answer", "limits", d.switch_answer),
    )


def _punt(pt: Mapping[str, Any]) -> PuntConfig:
    _known(pt, "punt", {"meter_rate", "meter_burst", "icmp_rate", "icmp_burst"})
    return PuntConfig(
        meter_rate=_int(pt, "meter_rate", "punt", 0, 1_000_000, 100),
        meter_burst=_int(pt, "meter_burst", "punt", 1, 1_000_000, 50),
        icmp_rate=_num(pt, "icmp_rate", "punt", 10.0),
        icmp_burst=_int(pt, "icmp_burst", "punt", 1, 1_000_000, 20),
    )


def _router_duties(v: Mapping[str, Any], w: str) -> dict[str, Any]:
    """The [vpns.<name>] keys of the agent's router duties (control.punt)."""
    gw4 = _ipv4(v["gateway_ipv4"], f"{w}.gateway_ipv4") if "gateway_ipv4" in v else None
    gw6 = None
    if "gateway_ipv6" in v:
        try:
            gw6 = ipaddress.IPv6Address(v["gateway_ipv6"])
        except (ValueError, TypeError):
            raise ConfigError(f"{w}.gateway_ipv6: must be an IPv6 address") from None
    dhcp = v.get("dhcp", False)
    if not isinstance(dhcp, bool):
        raise ConfigError(f"{w}.dhcp: must be true or false")
    if dhcp and gw4 is None:
        raise ConfigError(f"{w}.dhcp: needs {w}.gateway_ipv4 (the DHCP server and router)")
    dns = v.get("dhcp_dns", [])
    if not isinstance(dns, list):
        raise ConfigError(f"{w}.dhcp_dns: must be a list of IPv4 addresses")
    return {
        "gateway_ipv4": gw4,
        "gateway_ipv6": gw6,
        "dhcp": dhcp,
        "dhcp_prefix_len": _int(v, "dhcp_prefix_len", w, 1, 32, 24),
        "dhcp_lease": _int(v, "dhcp_lease", w, 60, 2**31 - 1, 3600),
        "dhcp_dns": tuple(_ipv4(a, f"{w}.dhcp_dns[{i}]") for i, a in enumerate(dns)),
    }


def load_config(path: str | Path) -> AgentConfig:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from None
    return config_from_toml(data)
