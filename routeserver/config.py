"""Route server configuration: frozen dataclasses loaded from TOML, validated up front.

Example::

    [server]
    router_id = "192.0.2.254"      # BGP identifier; also the RD administrator
    asn = 64512
    local_address = "192.0.2.254"  # BGP session source address
    log_level = "info"

    [xmpp]                         # passed to esxmpp.config (see there), but for:
    forwarders = ["02aa*"]         # system id patterns of the forwarders that may connect
                                   # [default: none = every session refused]
    domain = "rs1.example.net"
    certfile = "rs1.pem"
    keyfile = "rs1.key"

    [limits]                       # per forwarder (system id)
    routes_per_forwarder = 200000  # published routes (nodes)
    vpns_per_forwarder = 4096      # subscribed VPNs
    requests_per_second = 20000.0  # sustained request rate ...
    request_burst = 500000         # ... above this many requests in a row

    [control]
    host = "127.0.0.1"             # JSON 'show' endpoint and Prometheus /metrics
    port = 8179

    [bgp]
    graceful_restart = 120         # seconds; 0 disables the capability
    exabgp = ".venv/bin/python"    # interpreter that has the exabgp package

    [[bgp.neighbor]]
    address = "192.0.2.1"
    asn = 64512
    port = 179                     # port we connect to
    families = ["vpnv4", "vpnv6", "rtc"]
    # passive = true               # never connect; wait for the peer
    # listen_port = 1790           # accept the peer on server.local_address:1790
    # rtc_filter_out = false       # send every VPN route even if the peer does RTC, e.g. to
    #                              # a reflector that sends no default RTC route (GoBGP)
    max_prefixes = 1000000         # VPN routes accepted at most; one more: NOTIFICATION
                                   # Cease/1 (RFC 4486) and its routes go; 0: no limit

    [[vrf]]
    name = "tenant1"               # VRF name (defaults to the VPN name)
    vpn = "tenant1"                # XMPP collection node (printable ASCII, <= 128 octets)
    systems = ["*"]                # system id patterns: hex digits, fnmatch * ? [0-9a-f]
    import_targets = ["64512:100"]
    export_targets = ["64512:100"]
    # rd = "64512:7"               # default: type 1 per forwarder, <its IPv4>:<index, from 1>
    # isolated = true              # spokes: own forwarders' paths only via import_targets

A (system id, VPN name) pair maps to the first ``[[vrf]]`` (in file order)
whose ``vpn`` equals the name and one of whose ``systems`` patterns matches
the system id. Symmetric VPNs import and export one target; hub-and-spoke
uses two VRFs (spokes export S and import H, the hub exports H and imports
S) and marks the spokes' VRF ``isolated = true``, so that spokes sharing it
do not get each other's routes (each spoke behaves as if it had its own
VRF); extranets import several targets.

Errors name the key: ``vrf[2].import_targets[0]: route target 'x' is not ...``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esxmpp.config import ConfigError as XmppConfigError
from esxmpp.config import ServerConfig, server_config_from_toml
from esxmpp.dialect import DialectError, check_vpn_name

FAMILIES = ("vpnv4", "vpnv6", "rtc")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with the key's dotted path."""


def parse_route_target(text: str) -> str:
    """Canonical 'admin:number' form of a route target ('target:' prefix allowed).

    admin is a 2- or 4-octet AS number or an IPv4 address; number fits the rest
    of the 6 value octets (32 bits after a 2-octet AS, 16 bits otherwise).
    """
    if not isinstance(text, str):
        raise ValueError(f"route target {text!r} is not a string")
    body = text.removeprefix("target:")
    admin, sep, number = body.rpartition(":")
    if not sep or not number.isdigit():
        raise ValueError(f"route target {text!r} is not 'ASN:number' or 'IPv4:number'")
    num = int(number)
    if "." in admin:
        try:
            ipaddress.IPv4Address(admin)
        except ValueError:
            raise ValueError(f"route target {text!r}: {admin!r} is not an IPv4 address") from None
        if num > 0xFFFF:
            raise ValueError(f"route target {text!r}: number must be 0..65535 after an IPv4")
        return f"{admin}:{num}"
    if not admin.isdigit():
        raise ValueError(f"route target {text!r} is not 'ASN:number' or 'IPv4:number'")
    asn = int(admin)
    if asn > 0xFFFFFFFF:
        raise ValueError(f"route target {text!r}: AS number above 4294967295")
    if asn > 0xFFFF and num > 0xFFFF:
        raise ValueError(f"route target {text!r}: number must be 0..65535 after a 4-octet AS")
    if num > 0xFFFFFFFF:
        raise ValueError(f"route target {text!r}: number above 4294967295")
    return f"{asn}:{num}"


def route_target_value(text: str) -> int:
    """The 8-octet route target extended community (RFC 4360) of a canonical RT, as a
    number: type 0x00 (2-octet AS), 0x01 (IPv4) or 0x02 (4-octet AS), sub-type 0x02."""
    admin, _, number = text.rpartition(":")
    num = int(number)
    if "." in admin:
        return (0x0102 << 48) | (int(ipaddress.IPv4Address(admin)) << 16) | num
    asn = int(admin)
    if asn > 0xFFFF:
        return (0x0202 << 48) | (asn << 16) | num
    return (0x0002 << 48) | (asn << 32) | num


def parse_rd(text: str) -> str:
    """Canonical route distinguisher 'admin:number' (types 0, 1 and 2)."""
    try:
        return parse_route_target(text)
    except ValueError as e:
        raise ValueError(str(e).replace("route target", "route distinguisher")) from None


@dataclass(frozen=True)
class Neighbor:
    address: str
    asn: int
    port: int = 179
    families: tuple[str, ...] = FAMILIES
    passive: bool = False
    listen_port: int | None = None  # accept this peer's connections on local_address:port
    rtc_filter_out: bool = True  # RFC 4684 outbound filtering when the peer does RTC
    # VPN routes accepted from the peer at most; one more ends the session with
    # NOTIFICATION Cease / Maximum Number of Prefixes Reached (RFC 4486); 0: no limit
    max_prefixes: int = 1_000_000


@dataclass(frozen=True)
class Vrf:
    name: str
    vpn: str
    rd: str
    import_targets: frozenset[str]
    export_targets: frozenset[str]
    systems: tuple[str, ...] = ("*",)
    # spoke VRF: its forwarders' paths are candidates in it only through
    # import_targets, like one VRF per forwarder (hub and spoke)
    isolated: bool = False
    index: int = 1  # position in the file, from 1: the number of derived RDs
    rd_configured: bool = False  # rd set in the file: one RD for the whole VRF

    def rd_for(self, nexthop: str) -> str:
        """The RD of a forwarder's routes in this VRF.

        Type 1 ``<forwarder IPv4 address>:<VRF index>``: one RD per (forwarder,
        VRF), so every forwarder's path of an anycast prefix stays visible in
        BGP. A configured ``rd`` is used as is; a forwarder reached over IPv6
        gets the VRF's RD (``<router_id>:<index>``).
        """
        if self.rd_configured or ":" in nexthop:
            return self.rd
        return f"{nexthop}:{self.index}"

    def matches(self, system_id: str, vpn: str) -> bool:
        return vpn == self.vpn and any(fnmatch.fnmatchcase(system_id, p) for p in self.systems)


@dataclass(frozen=True)
class Limits:
    """Per-forwarder quotas (``[limits]``); a request beyond one is refused
    ``resource-constraint`` with a text naming the key."""

    routes_per_forwarder: int = 200_000
    vpns_per_forwarder: int = 4096
    requests_per_second: float = 20_000.0
    request_burst: int = 500_000


@dataclass(frozen=True)
class Config:
    router_id: str
    asn: int
    local_address: str
    vrfs: tuple[Vrf, ...]
    neighbors: tuple[Neighbor, ...] = ()
    graceful_restart: int = 120
    exabgp_python: str = ""
    control_host: str = "127.0.0.1"
    control_port: int = 8179
    log_level: str = "info"
    xmpp: ServerConfig | None = None  # None: no XMPP server (BGP-only instance, tests)
    # system id patterns of the forwarders allowed to connect ([xmpp] forwarders);
    # default none: a certificate from the CA is not enough to act as a forwarder
    forwarders: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)

    def is_forwarder(self, system_id: str) -> bool:
        """``system_id`` (12 hex digits) matches one of ``forwarders``."""
        sid = system_id.lower()
        return any(fnmatch.fnmatchcase(sid, p) for p in self.forwarders)

    def vrf_for(self, system_id: str, vpn: str) -> Vrf | None:
        """The VRF of (system id as 12 lowercase hex digits, VPN name), first match wins."""
        for vrf in self.vrfs:
            if vrf.matches(system_id.lower(), vpn):
                return vrf
        return None


# --------------------------------------------------------------- loading


def _table(d: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    v = d.get(key, {})
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: must be a table")
    return v


def _unknown(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for k in d:
        if k not in allowed:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{prefix}{k}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _int(d: Mapping[str, Any], key: str, where: str, lo: int, hi: int, default: int | None) -> int:
    v = d.get(key, default)
    if v is None:
        raise ConfigError(f"{where}.{key}: required")
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}: must be an integer {lo}..{hi}")
    return v


def _str(d: Mapping[str, Any], key: str, where: str, default: str | None) -> str:
    v = d.get(key, default)
    if v is None:
        raise ConfigError(f"{where}.{key}: required")
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    return v


def _ipv4(d: Mapping[str, Any], key: str, where: str, default: str | None) -> str:
    v = _str(d, key, where, default)
    try:
        return str(ipaddress.IPv4Address(v))
    except ValueError:
        raise ConfigError(f"{where}.{key}: {v!r} is not an IPv4 address") from None


def _ip(d: Mapping[str, Any], key: str, where: str) -> str:
    v = _str(d, key, where, None)
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ConfigError(f"{where}.{key}: {v!r} is not an IP address") from None


def _str_list(d: Mapping[str, Any], key: str, where: str, default: list[str] | None) -> list[str]:
    v = d.get(key, default)
    if v is None:
        raise ConfigError(f"{where}.{key}: required")
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{where}.{key}: must be a list of strings")
    return list(v)


def _targets(d: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    out = []
    for i, t in enumerate(_str_list(d, key, where, [])):
        try:
            out.append(parse_route_target(t))
        except ValueError as e:
            raise ConfigError(f"{where}.{key}[{i}]: {e}") from None
    return frozenset(out)


_HEX = frozenset("0123456789abcdef")


def _system_pattern(text: str, where: str) -> str:
    """A system id pattern: fnmatch over 12 hex digits (``*``, ``?``, ``[...]``); lowercased.

    Refused: other characters, an unbalanced ``[``, and patterns that can
    never match 12 digits.
    """
    p = text.lower()
    positions = 0  # characters a match consumes, wildcards '*' aside
    star = False
    i = 0
    while i < len(p):
        c = p[i]
        if c == "[":
            end = p.find("]", i + 2 if p[i + 1 : i + 2] == "!" else i + 1)
            body = p[i + 1 : end].removeprefix("!") if end > 0 else ""
            if end < 0 or not body or set(body) - _HEX - {"-"}:
                raise ConfigError(f"{where}: {text!r} has a bad or unbalanced [...] class")
            positions += 1
            i = end + 1
            continue
        if c == "*":
            star = True
        elif c in _HEX or c == "?":
            positions += 1
        else:
            raise ConfigError(
                f"{where}: {text!r} is not a system id pattern "
                f"(hex digits and the fnmatch wildcards * ? [...] only)"
            )
        i += 1
    if positions > 12 or (not star and positions != 12):
        raise ConfigError(
            f"{where}: {text!r} can never match: a system id has 12 hex digits, "
            f"this pattern needs {'at least ' if star else ''}{positions}"
        )
    return p


def _neighbor(d: Any, where: str) -> Neighbor:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: must be a table")
    _unknown(
        d,
        {
            "address",
            "asn",
            "port",
            "families",
            "passive",
            "listen_port",
            "rtc_filter_out",
            "max_prefixes",
        },
        where,
    )
    filt = d.get("rtc_filter_out", True)
    if not isinstance(filt, bool):
        raise ConfigError(f"{where}.rtc_filter_out: must be true or false")
    fams = _str_list(d, "families", where, list(FAMILIES))
    for i, f in enumerate(fams):
        if f not in FAMILIES:
            raise ConfigError(f"{where}.families[{i}]: {f!r} is not one of {', '.join(FAMILIES)}")
    passive = d.get("passive", False)
    if not isinstance(passive, bool):
        raise ConfigError(f"{where}.passive: must be true or false")
    return Neighbor(
        address=_ip(d, "address", where),
        asn=_int(d, "asn", where, 1, 0xFFFFFFFF, None),
        port=_int(d, "port", where, 1, 65535, 179),
        families=tuple(dict.fromkeys(fams)),
        passive=passive,
        rtc_filter_out=filt,
        max_prefixes=_int(d, "max_prefixes", where, 0, 1 << 32, Neighbor.max_prefixes),
        listen_port=_int(d, "listen_port", where, 1, 65535, None) if "listen_port" in d else None,
    )


def _vrf(d: Any, index: int, router_id: str) -> Vrf:
    where = f"vrf[{index}]"
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: must be a table")
    _unknown(
        d,
        {"name", "vpn", "rd", "systems", "import_targets", "export_targets", "isolated"},
        where,
    )
    isolated = d.get("isolated", False)
    if not isinstance(isolated, bool):
        raise ConfigError(f"{where}.isolated: must be true or false")
    vpn = _str(d, "vpn", where, None)
    try:
        check_vpn_name(vpn, f"{where}.vpn")
    except DialectError as e:
        raise ConfigError(e.text) from None
    systems = _str_list(d, "systems", where, ["*"])
    if not systems:
        raise ConfigError(f"{where}.systems: must not be empty")
    systems = [_system_pattern(p, f"{where}.systems[{i}]") for i, p in enumerate(systems)]
    if "rd" in d:
        try:
            rd = parse_rd(_str(d, "rd", where, None))
        except ValueError as e:
            raise ConfigError(f"{where}.rd: {e}") from None
    else:
        rd = f"{router_id}:{index + 1}"
    imp = _targets(d, "import_targets", where)
    exp = _targets(d, "export_targets", where)
    if not imp and not exp:
        raise ConfigError(f"{where}: needs import_targets or export_targets")
    return Vrf(
        name=_str(d, "name", where, vpn),
        vpn=vpn,
        rd=rd,
        import_targets=imp,
        export_targets=exp,
        systems=tuple(systems),
        isolated=isolated,
        index=index + 1,
        rd_configured="rd" in d,
    )


def load_dict(d: Mapping[str, Any]) -> Config:
    """Validate a parsed TOML document into a :class:`Config`."""
    _unknown(d, {"server", "xmpp", "control", "bgp", "vrf", "limits"}, "")
    server = _table(d, "server", "server")
    _unknown(server, {"router_id", "asn", "local_address", "log_level"}, "server")
    router_id = _ipv4(server, "router_id", "server", None)
    log_level = _str(server, "log_level", "server", "info")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"server.log_level: must be one of {', '.join(LOG_LEVELS)}")
    control = _table(d, "control", "control")
    _unknown(control, {"host", "port"}, "control")
    bgp = _table(d, "bgp", "bgp")
    _unknown(bgp, {"graceful_restart", "exabgp", "neighbor"}, "bgp")
    raw_neighbors = bgp.get("neighbor", [])
    if not isinstance(raw_neighbors, list):
        raise ConfigError("bgp.neighbor: must be an array of tables ([[bgp.neighbor]])")
    neighbors = tuple(_neighbor(n, f"bgp.neighbor[{i}]") for i, n in enumerate(raw_neighbors))
    seen: set[str] = set()
    for i, n in enumerate(neighbors):
        if n.address in seen:
            raise ConfigError(f"bgp.neighbor[{i}].address: {n.address} configured twice")
        seen.add(n.address)
    raw_vrfs = d.get("vrf", [])
    if not isinstance(raw_vrfs, list):
        raise ConfigError("vrf: must be an array of tables ([[vrf]])")
    vrfs = tuple(_vrf(v, i, router_id) for i, v in enumerate(raw_vrfs))
    names: dict[str, int] = {}
    rds: dict[str, int] = {}
    for i, v in enumerate(vrfs):
        if v.name in names:
            raise ConfigError(f"vrf[{i}].name: {v.name!r} already used by vrf[{names[v.name]}]")
        if v.rd in rds:
            raise ConfigError(f"vrf[{i}].rd: {v.rd} already used by vrf[{rds[v.rd]}]")
        names[v.name] = i
        rds[v.rd] = i
    xmpp_table = dict(_table(d, "xmpp", "xmpp"))
    forwarders = tuple(
        _system_pattern(p, f"xmpp.forwarders[{i}]")
        for i, p in enumerate(_str_list(xmpp_table, "forwarders", "xmpp", []))
    )
    xmpp_table.pop("forwarders", None)
    xmpp = None
    if xmpp_table:
        try:
            xmpp = server_config_from_toml(xmpp_table, "xmpp")
        except XmppConfigError as e:
            raise ConfigError(str(e)) from None
    return Config(
        router_id=router_id,
        asn=_int(server, "asn", "server", 1, 0xFFFFFFFF, None),
        local_address=_ip(server, "local_address", "server")
        if "local_address" in server
        else router_id,
        vrfs=vrfs,
        neighbors=neighbors,
        graceful_restart=_int(bgp, "graceful_restart", "bgp", 0, 4095, 120),
        exabgp_python=_str(bgp, "exabgp", "bgp", "") if "exabgp" in bgp else "",
        control_host=_str(control, "host", "control", "127.0.0.1"),
        control_port=_int(control, "port", "control", 0, 65535, 8179),
        log_level=log_level,
        xmpp=xmpp,
        forwarders=forwarders,
        limits=_limits(_table(d, "limits", "limits")),
    )


def _limits(d: Mapping[str, Any]) -> Limits:
    _unknown(
        d,
        {"routes_per_forwarder", "vpns_per_forwarder", "requests_per_second", "request_burst"},
        "limits",
    )
    base = Limits()
    rate = d.get("requests_per_second", base.requests_per_second)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise ConfigError("limits.requests_per_second: must be a number > 0")
    return Limits(
        routes_per_forwarder=_int(
            d, "routes_per_forwarder", "limits", 0, 1 << 32, base.routes_per_forwarder
        ),
        vpns_per_forwarder=_int(
            d, "vpns_per_forwarder", "limits", 0, 1 << 16, base.vpns_per_forwarder
        ),
        requests_per_second=float(rate),
        request_burst=_int(d, "request_burst", "limits", 1, 1 << 32, base.request_burst),
    )


def load(path: str | Path) -> Config:
    """Read and validate a TOML file; :class:`ConfigError` names the bad key."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return load_dict(doc)
