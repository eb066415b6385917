"""The one module that knows ExaBGP: BGP (VPN-IPv4, VPN-IPv6, RT-Constraint) for the RIB.

ExaBGP 5 runs as a child process. Its process API is reached through a tiny
relay it spawns (``python -m routeserver.exabgp_adapter relay <socket>``,
its stdin/stdout bridged to a Unix socket the daemon listens on): ExaBGP's
JSON messages come in, text commands go out, and every command waits for
ExaBGP's ``done`` / ``error`` acknowledgement (``exabgp.api.ack``), in order.

ExaBGP's configuration and text API have no RT-Constraint: the child is
started as ``python -m routeserver.exabgp_adapter exabgp <conf>``, which adds
(with ExaBGP's own classes, as networking-bagpipe does) the ``ipv4 rtc``
family to the configuration parser and two API commands,
``neighbor <peer> announce rtc <origin-as> <route-target> next-hop <ip>`` and
the matching ``withdraw rtc``, then runs ExaBGP's own ``main``. ExaBGP encodes
and decodes every BGP message; nothing here packs BGP.

Pure helpers (tested without sockets): :func:`render_config`,
:func:`command_for` (RIB output -> command), :func:`parse_message` (ExaBGP
JSON -> RIB inputs, raising :class:`BgpInputError` for malformed input).

Interface version extended community: the RIB's 32-bit interface version
travels as a transitive *experimental* extended community (RFC 4360 / RFC
7153 type range 0x80-0x8F, "Experimental Use"): type 0x8E, sub-type 0x01,
two zero octets, then the version as a 32-bit big-endian number; e.g.
version 7 = ``0x8e01000000000007``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import pwd
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routeserver.config import Config, parse_rd, parse_route_target
from routeserver.rib import (
    ORIGIN_EGP,
    ORIGIN_IGP,
    ORIGIN_INCOMPLETE,
    BgpAnnounce,
    BgpAttrs,
    BgpEndOfRib,
    BgpPeerDown,
    BgpPeerUp,
    BgpRefresh,
    BgpResend,
    BgpRouteAdd,
    BgpRouteDel,
    BgpRtcAdd,
    BgpRtcDel,
    BgpTeardown,
    BgpWithdraw,
    Input,
    Output,
    RtcAnnounce,
    RtcPrefix,
    RtcTarget,
    RtcWithdraw,
    VpnRoute,
)

log = logging.getLogger("routeserver.bgp")

VERSION_EC_TYPE = 0x8E
VERSION_EC_SUBTYPE = 0x01
PROCESS_NAME = "esvpn-rs"
# the daemon's pid, given to its ExaBGP child: the child ends when its parent is gone
PARENT_ENV = "ESVPN_RS_PARENT_PID"
# "1" when the daemon restarts a dead ExaBGP and replays the RIB it kept: the
# graceful-restart Restart State bit (RFC 4724) is set in the first OPENs
RESTARTED_ENV = "ESVPN_RS_RESTARTED"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
YIELD_AFTER = 0.005  # seconds of API lines handled in a row before yielding to the loop

_FAMILIES = {"vpnv4": "ipv4 mpls-vpn", "vpnv6": "ipv6 mpls-vpn", "rtc": "ipv4 rtc"}
_JSON_FAMILY = {"ipv4 mpls-vpn": "vpnv4", "ipv6 mpls-vpn": "vpnv6", "ipv4 rtc": "rtc"}
_ORIGINS = {"igp": ORIGIN_IGP, "egp": ORIGIN_EGP, "incomplete": ORIGIN_INCOMPLETE}


class BgpInputError(ValueError):
    """A message from ExaBGP (i.e. from a BGP peer) that cannot be used; says why.

    ``reason`` is a short label for counting refusals (``malformed``,
    ``bad-attribute``, ``bad-nlri``, ``bad-label``, ``bad-nexthop``, ``too-long``).
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PeerEvent:
    """An operational event of one BGP session (up, down, NOTIFICATION), to be logged."""

    peer: str
    kind: str  # "up" | "down" | "notification"
    level: int  # a logging level
    text: str
    # down: ExaBGP's reason; notification: "code X subcode Y (names)[: data]"
    detail: str = ""
    sent: bool = False  # notification: we sent it (else received)


# BGP NOTIFICATION codes (RFC 4271 §4.5) and Cease subcodes (RFC 4486)
_NOTIFY = {
    1: "Message Header Error",
    2: "OPEN Message Error",
    3: "UPDATE Message Error",
    4: "Hold Timer Expired",
    5: "Finite State Machine Error",
    6: "Cease",
    7: "ROUTE-REFRESH Message Error",
}
_CEASE = {
    1: "Maximum Number of Prefixes Reached",
    2: "Administrative Shutdown",
    3: "Peer De-configured",
    4: "Administrative Reset",
    5: "Connection Rejected",
    6: "Other Configuration Change",
    7: "Connection Collision Resolution",
    8: "Out of Resources",
    9: "Hard Reset",
}


def notification_text(code: object, subcode: object, data: str = "") -> str:
    """'code 6 subcode 4 (Cease, Administrative Reset)', then the peer's text if any."""
    if code == 6 and subcode in (2, 4) and data and ord(data[0]) == len(data.encode()) - 1:
        data = data[1:]  # RFC 9003 Shutdown Communication: a length octet, then UTF-8
    names = [_NOTIFY.get(code, "unknown") if isinstance(code, int) else "unknown"]
    if code == 6 and isinstance(subcode, int) and subcode in _CEASE:
        names.append(_CEASE[subcode])
    text = f"code {code} subcode {subcode} ({', '.join(names)})"
    return f"{text}: {data}" if data else text


class CommandError(RuntimeError):
    """ExaBGP answered a command with ``error``."""


class ChannelLost(CommandError):
    """The command's fate is unknown: the API channel or ExaBGP went away first.

    Not a refusal: a new ExaBGP gets everything the RIB advertises replayed.
    """


# ------------------------------------------------------------------- pure


def version_community(version: int) -> str:
    return f"0x{VERSION_EC_TYPE:02x}{VERSION_EC_SUBTYPE:02x}0000{version:08x}"


def _rt_text(rt: str) -> str:
    return f"target:{rt}"


def render_config(cfg: Config, run: str) -> str:
    """ExaBGP configuration: one neighbor per configured peer, our process on each."""
    lines = [f"process {PROCESS_NAME} {{", f"  run {run};", "  encoder json;", "}", ""]
    for n in cfg.neighbors:
        fams = " ".join(f"{_FAMILIES[f]};" for f in n.families)
        lines += [
            f"neighbor {n.address} {{",
            f"  router-id {cfg.router_id};",
            f"  local-address {cfg.local_address};",
            f"  local-as {cfg.asn};",
            f"  peer-as {n.asn};",
        ]
        if n.port != 179:
            lines.append(f"  connect {n.port};")
        if n.listen_port is not None:
            lines.append(f"  listen {n.listen_port};")
        if n.passive:
            lines.append("  passive true;")
        lines += [
            f"  family {{ {fams} }}",
            "  capability {",
            "    route-refresh;",
        ]
        if cfg.graceful_restart:
            lines.append(f"    graceful-restart {cfg.graceful_restart};")
        lines += [
            "  }",
            "  api {",
            f"    processes [ {PROCESS_NAME} ];",
            "    receive { parsed; update; open; notification; }",
            "    send { parsed; notification; }",
            "    neighbor-changes;",
            "  }",
            "}",
            "",
        ]
    return "\n".join(lines)


def _nexthop_text(route: VpnRoute) -> str:
    nh = route.nexthop
    if route.prefix.version == 6 and nh.version == 4:
        return f"::ffff:{nh}"  # RFC 4659 §3.2.1.1: IPv4-mapped IPv6 next hop
    return str(nh)


def command_for(out: Output, cfg: Config) -> str:
    """The ExaBGP API command carrying out one BGP-side RIB output."""
    match out:
        case BgpAnnounce(peer, route):
            ibgp = any(n.address == peer and n.asn == cfg.asn for n in cfg.neighbors)
            comms = [_rt_text(t) for t in sorted(route.targets)]
            if route.version:
                comms.append(version_community(route.version))
            parts = [
                f"neighbor {peer} announce route {route.prefix} rd {route.rd}",
                f"label {route.label} next-hop {_nexthop_text(route)} origin igp",
            ]
            if ibgp:
                parts.append("local-preference 100")
            if comms:
                parts.append(f"extended-community [ {' '.join(comms)} ]")
            return " ".join(parts)
        case BgpWithdraw(peer, route):
            return (
                f"neighbor {peer} withdraw route {route.prefix} rd {route.rd} "
                f"label {route.label} next-hop {_nexthop_text(route)}"
            )
        case RtcAnnounce(peer, target):
            return f"neighbor {peer} announce rtc {cfg.asn} {target} next-hop {cfg.local_address}"
        case RtcWithdraw(peer, target):
            return f"neighbor {peer} withdraw rtc {cfg.asn} {target} next-hop {cfg.local_address}"
        case BgpTeardown(peer, subcode, _):
            return f"neighbor {peer} teardown {subcode}"
        case BgpRefresh(peer, family):
            return f"neighbor {peer} announce route-refresh {_FAMILIES[family]}"
        case BgpResend(peer):
            return f"neighbor {peer} flush adj-rib out"
    raise TypeError(f"not a BGP output: {out!r}")


def _decode_ext(value: Any) -> tuple[str | None, int | None]:
    """(route target, version) from one JSON extended community; others -> (None, None)."""
    if not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise BgpInputError(f"extended community value {value!r} is not a 64-bit number")
    raw = value.to_bytes(8, "big")
    typ, sub = raw[0], raw[1]
    if sub == 0x02 and typ == 0x00:
        return f"{int.from_bytes(raw[2:4], 'big')}:{int.from_bytes(raw[4:8], 'big')}", None
    if sub == 0x02 and typ == 0x01:
        return f"{ipaddress.IPv4Address(raw[2:6])}:{int.from_bytes(raw[6:8], 'big')}", None
    if sub == 0x02 and typ == 0x02:
        return f"{int.from_bytes(raw[2:6], 'big')}:{int.from_bytes(raw[6:8], 'big')}", None
    if typ == VERSION_EC_TYPE and sub == VERSION_EC_SUBTYPE:
        return None, int.from_bytes(raw[4:8], "big")
    return None, None


def ext_community_text(value: int) -> str:
    """An extended community as operators read it: ``target:64512:100``,
    ``version:7`` (ours), else its 8 octets in hex."""
    rt, ver = _decode_ext(value)
    if rt is not None:
        return f"target:{rt}"
    if ver is not None:
        return f"version:{ver}"
    return f"0x{value:016x}"


def _communities(raw: Any) -> tuple[str, ...]:
    """RFC 1997 communities from ExaBGP's JSON (``[[asn, value], ...]``) as 'asn:value'."""
    out = []
    for c in raw if isinstance(raw, list) else ():
        if isinstance(c, list) and len(c) == 2 and all(isinstance(x, int) for x in c):
            out.append(f"{c[0]}:{c[1]}")
        elif isinstance(c, int):
            out.append(f"{c >> 16}:{c & 0xFFFF}")
    return tuple(out)


def _attrs(attr: Any) -> tuple[BgpAttrs, frozenset[str], int]:
    if not isinstance(attr, dict):
        raise BgpInputError("update without an attribute object")
    origin = _ORIGINS.get(attr.get("origin", "igp"))
    if origin is None:
        raise BgpInputError(f"unknown origin {attr.get('origin')!r}")
    as_path: list[int] = []
    as_sets: list[tuple[int, ...]] = []

    def segment(kind: object, value: list[Any]) -> None:
        asns = [x for x in value if isinstance(x, int)]
        if kind in ("as-set", "confed-set"):  # an AS_SET counts as one (RFC 4271 §9.1.2.2)
            as_sets.append(tuple(asns))
            as_path.append(min(asns) if asns else 0)
        else:
            as_path.extend(asns)

    raw_path = attr.get("as-path", []) or []
    if isinstance(raw_path, dict):
        # ExaBGP 5: {"0": {"element": "as-sequence", "value": [65001, 64512]}, ...}
        raw_path = [raw_path[k] for k in sorted(raw_path, key=lambda k: (len(str(k)), str(k)))]
    for seg in raw_path:
        if isinstance(seg, int):
            as_path.append(seg)
        elif isinstance(seg, list):  # older form: a nested list is an AS_SET
            segment("as-set", seg)
        elif isinstance(seg, dict) and isinstance(seg.get("value"), list):
            segment(seg.get("element"), seg["value"])
    targets: set[str] = set()
    version = 0
    ext_text: list[str] = []
    for ec in attr.get("extended-community", []) or []:
        value = ec.get("value") if isinstance(ec, dict) else ec
        rt, ver = _decode_ext(value)
        if rt is None and ver is None:  # route targets and version: in targets, version
            ext_text.append(ext_community_text(int(value or 0)))
        if rt is not None:
            targets.add(rt)
        if ver is not None:
            version = ver
    lp = attr.get("local-preference", 100)
    med = attr.get("med", 0)
    if not isinstance(lp, int) or not isinstance(med, int):
        raise BgpInputError("local-preference and med must be numbers")
    oid = attr.get("originator-id")
    clusters = attr.get("cluster-list", [])
    if not isinstance(clusters, list):
        raise BgpInputError(f"cluster-list {clusters!r} is not a list")
    return (
        BgpAttrs(
            local_pref=lp,
            as_path=tuple(as_path),
            as_sets=tuple(as_sets),
            origin=origin,
            med=med,
            originator_id=oid if isinstance(oid, str) else None,
            cluster_list_len=len(clusters),
            cluster_list=tuple(str(c) for c in clusters),
            communities=_communities(attr.get("community")),
            ext_communities=tuple(ext_text),
        ),
        frozenset(targets),
        version,
    )


def _prefix(text: Any, family: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(str(text), strict=True)
    except ValueError:
        raise BgpInputError(f"{family}: bad prefix {text!r}") from None
    if (net.version == 4) != (family == "vpnv4"):
        raise BgpInputError(f"{family}: prefix {net} of the wrong address family")
    return net


def _label(nlri: dict[str, Any], family: str) -> int:
    lab = nlri.get("label")
    while isinstance(lab, list) and lab:
        lab = lab[0]
    if not isinstance(lab, int) or not 0 <= lab < 1 << 20:
        raise BgpInputError(f"{family}: bad label {nlri.get('label')!r}", "bad-label")
    return lab


def _rd(nlri: dict[str, Any], family: str) -> str:
    try:
        return parse_rd(str(nlri.get("rd")))
    except ValueError as e:
        raise BgpInputError(f"{family}: {e}") from None


def _rtc_target(nlri: Any) -> RtcTarget:
    if not isinstance(nlri, dict):
        raise BgpInputError(f"rtc: bad NLRI {nlri!r}")
    length = nlri.get("length")
    if length is not None:  # 32..95 bits (_install_rtc_prefixes)
        origin, value = nlri.get("origin"), nlri.get("value")
        if not (
            isinstance(length, int)
            and 32 <= length < 96
            and isinstance(origin, int)
            and isinstance(value, int)
            and 0 <= value < 1 << 64
        ):
            raise BgpInputError(f"rtc: bad NLRI {nlri!r}")
        return RtcPrefix(origin, value, length)
    rt = nlri.get("route-target")
    if rt is None:
        return None
    try:
        return parse_route_target(str(rt))
    except ValueError as e:
        raise BgpInputError(f"rtc: {e}") from None


def _nexthop(text: str, family: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        nh = ipaddress.ip_address(text)
    except ValueError:
        raise BgpInputError(f"{family}: bad next hop {text!r}", "bad-nexthop") from None
    if isinstance(nh, ipaddress.IPv6Address) and nh.ipv4_mapped is not None:
        return nh.ipv4_mapped
    return nh


def _gr_time(open_msg: Any) -> int:
    caps = open_msg.get("capabilities", {}) if isinstance(open_msg, dict) else {}
    for cap in caps.values() if isinstance(caps, dict) else ():
        if isinstance(cap, dict) and cap.get("name") == "graceful restart":
            t = cap.get("time", 0)
            return t if isinstance(t, int) else 0
    return 0


def _open_families(open_msg: Any) -> frozenset[str]:
    """Our families among those a peer's OPEN lists in its multiprotocol capabilities."""
    caps = open_msg.get("capabilities", {}) if isinstance(open_msg, dict) else {}
    out: set[str] = set()
    for cap in caps.values() if isinstance(caps, dict) else ():
        if isinstance(cap, dict) and cap.get("name") == "multiprotocol":
            for fam in cap.get("families", []) or []:
                name = _JSON_FAMILY.get(str(fam).replace("/", " "))
                if name is not None:
                    out.add(name)
    return frozenset(out)


def _open_capabilities(open_msg: Any) -> list[str]:
    caps = open_msg.get("capabilities", {}) if isinstance(open_msg, dict) else {}
    names = (
        str(c.get("name", code)) if isinstance(c, dict) else str(code)
        for code, c in (caps.items() if isinstance(caps, dict) else ())
    )
    return sorted(set(names))


@dataclass
class PeerOpen:
    """What each peer advertised in its last OPEN (filled by parse): graceful-restart
    time, families (multiprotocol), capability names; ``configured``: our families
    per peer (what we advertise), to log what was negotiated."""

    gr: dict[str, int]
    families: dict[str, frozenset[str]] = field(default_factory=dict)
    capabilities: dict[str, list[str]] = field(default_factory=dict)
    configured: dict[str, frozenset[str]] = field(default_factory=dict)


def parse_message(
    line: str,
    opens: PeerOpen,
    errors: list[BgpInputError] | None = None,
    events: list[PeerEvent] | None = None,
) -> list[Input]:
    """RIB inputs from one ExaBGP JSON line.

    A message that is malformed as a whole raises :class:`BgpInputError`.
    Problems inside an UPDATE raise too unless ``errors`` is given: then
    each is appended there and the rest of the UPDATE is used, RFC 7606
    style: a bad attribute treats every route of the UPDATE as withdrawn, a
    bad label or next hop that route; an NLRI without a usable RD and
    prefix (nothing to withdraw) is skipped. Session events (up, down with
    its reason, a NOTIFICATION received) are appended to ``events`` if given.
    """
    try:
        msg = json.loads(line)
    except ValueError as e:
        raise BgpInputError(f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise BgpInputError("JSON message is not an object")
    kind = msg.get("type")
    neighbor = msg.get("neighbor")
    if not isinstance(neighbor, dict):
        return []
    try:
        peer = str(ipaddress.ip_address(neighbor["address"]["peer"]))
    except (KeyError, TypeError, ValueError):
        raise BgpInputError("message without a valid neighbor.address.peer") from None
    note = events.append if events is not None else (lambda e: None)
    asn = neighbor.get("asn", {}).get("peer") if isinstance(neighbor.get("asn"), dict) else None
    who = f"{peer} (AS {asn})" if asn is not None else peer
    if kind == "state":
        state = neighbor.get("state")
        if state == "up":
            gr = opens.gr.get(peer, 0)
            theirs = opens.families.get(peer)
            ours = opens.configured.get(peer)
            level, text = logging.INFO, f"BGP session with {who} up (graceful restart {gr} s"
            if theirs is not None:
                both = theirs if ours is None else theirs & ours
                text += f", families {' '.join(sorted(both)) or 'none'}"
                missing = sorted(ours - theirs) if ours is not None else []
                if missing:
                    level = logging.WARNING
                    text += f"; not negotiated: {' '.join(missing)}"
                    if "rtc" in missing:
                        text += " (no RT-Constraint: this peer gets routes unfiltered)"
            note(PeerEvent(peer, "up", level, text + ")"))
            return [BgpPeerUp(peer, gr, theirs)]
        if state == "down":
            reason = neighbor.get("reason") or "no reason given"
            note(
                PeerEvent(
                    peer, "down", logging.WARNING, f"BGP session with {who} down: {reason}", reason
                )
            )
            return [BgpPeerDown(peer)]
        return []
    if kind == "notification":
        n = neighbor.get("notification")
        n = n if isinstance(n, dict) else {}
        sent = neighbor.get("direction") == "send"
        said = n.get("message")
        said = said if isinstance(said, str) else ""
        detail = notification_text(n.get("code"), n.get("subcode"), said)
        way = "to" if sent else "from"
        note(
            PeerEvent(
                peer,
                "notification",
                logging.WARNING,
                f"BGP NOTIFICATION {way} {who}: {detail}",
                detail,
                sent,
            )
        )
        return []
    if kind == "open":
        if neighbor.get("direction") == "receive":
            opens.gr[peer] = _gr_time(neighbor.get("open"))
            opens.families[peer] = _open_families(neighbor.get("open"))
            opens.capabilities[peer] = _open_capabilities(neighbor.get("open"))
        return []
    message = neighbor.get("message")
    if kind != "update" or not isinstance(message, dict):
        return []
    if "eor" in message:
        eor = message["eor"]
        fam = (
            _JSON_FAMILY.get(f"{eor.get('afi')} {eor.get('safi')}")
            if isinstance(eor, dict)
            else None
        )
        return [BgpEndOfRib(peer, fam)] if fam else []
    update = message.get("update")
    if not isinstance(update, dict):
        return []

    def refuse(err: BgpInputError) -> None:
        if errors is None:
            raise err
        errors.append(err)

    out: list[Input] = []
    for jfam, entries in (update.get("withdraw") or {}).items():
        fam = _JSON_FAMILY.get(jfam)
        if fam is None or not isinstance(entries, list):
            continue
        for nlri in entries:
            try:
                if fam == "rtc":
                    out.append(BgpRtcDel(peer, _rtc_target(nlri)))
                elif isinstance(nlri, dict):
                    out.append(BgpRouteDel(peer, _rd(nlri, fam), _prefix(nlri.get("nlri"), fam)))
                else:
                    raise BgpInputError(f"{fam}: bad withdrawn NLRI {nlri!r}")
            except BgpInputError as e:
                refuse(BgpInputError(str(e), "bad-nlri"))
    announce = update.get("announce") or {}
    attr_error: BgpInputError | None = None
    attrs, targets, version = BgpAttrs(), frozenset[str](), 0
    if announce:
        try:
            attrs, targets, version = _attrs(update.get("attribute"))
        except BgpInputError as e:
            # RFC 7606 treat-as-withdraw: every NLRI of this UPDATE is withdrawn
            refuse(
                BgpInputError(
                    f"{e}; its routes are treated as withdrawn (RFC 7606)", "bad-attribute"
                )
            )
            attr_error = e
    for jfam, by_nh in announce.items():
        fam = _JSON_FAMILY.get(jfam)
        if fam is None or not isinstance(by_nh, dict):
            continue
        for nh_text, entries in by_nh.items():
            for nlri in entries if isinstance(entries, list) else ():
                if fam == "rtc":
                    try:
                        target = _rtc_target(nlri)
                    except BgpInputError as e:
                        refuse(BgpInputError(str(e), "bad-nlri"))
                        continue
                    out.append(BgpRtcDel(peer, target) if attr_error else BgpRtcAdd(peer, target))
                    continue
                try:
                    if not isinstance(nlri, dict):
                        raise BgpInputError(f"{fam}: bad NLRI {nlri!r}")
                    rd, prefix = _rd(nlri, fam), _prefix(nlri.get("nlri"), fam)
                except BgpInputError as e:
                    refuse(BgpInputError(str(e), "bad-nlri"))  # nothing identifies a route
                    continue
                if attr_error is not None:
                    out.append(BgpRouteDel(peer, rd, prefix))
                    continue
                try:
                    label, nexthop = _label(nlri, fam), _nexthop(nh_text, fam)
                except BgpInputError as e:
                    refuse(
                        BgpInputError(
                            f"{e}; {rd}:{prefix} treated as withdrawn (RFC 7606)", e.reason
                        )
                    )
                    out.append(BgpRouteDel(peer, rd, prefix))
                    continue
                out.append(
                    BgpRouteAdd(
                        peer=peer,
                        rd=rd,
                        prefix=prefix,
                        label=label,
                        nexthop=nexthop,
                        targets=targets,
                        version=version,
                        attrs=attrs,
                    )
                )
    return out


# ---------------------------------------------------------------- daemon side


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """One line; b"" at end of stream; None for a line beyond the limit (skipped whole)."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        return e.partial
    except asyncio.LimitOverrunError as e:
        consumed = e.consumed
    while True:  # discard through the end of the over-long line
        try:
            await reader.readexactly(consumed)
            await reader.readuntil(b"\n")
            return None
        except asyncio.IncompleteReadError:
            return b""
        except asyncio.LimitOverrunError as e:
            consumed = e.consumed


class ExaBgp:
    """ExaBGP child process + process-API channel; thin: JSON in, commands out.

    ``on_inputs`` receives the RIB inputs parsed from each message (in order);
    ``on_bad_input`` a :class:`BgpInputError` for a message that was refused.
    """

    def __init__(
        self,
        cfg: Config,
        on_inputs: Callable[[list[Input]], None],
        on_bad_input: Callable[[BgpInputError], None] | None = None,
        python: str | None = None,
        restarted: bool = False,
        on_events: Callable[[list[PeerEvent]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_events = on_events
        self.restarted = restarted  # a restart that replays the RIB: Restart State bit set
        self.on_inputs = on_inputs
        self.on_bad_input = on_bad_input or (lambda e: log.warning("bad BGP input: %s", e))
        self.python = python or cfg.exabgp_python or sys.executable
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self.exited = asyncio.Event()  # set when the ExaBGP child is gone
        self._stopping = False
        self._acks: deque[tuple[asyncio.Future[None], str]] = deque()  # (future, command)
        # the text lines ExaBGP answers before 'done', for the commands that have one
        # (``show neighbor json``, ``reload``): collected, not taken for messages
        self._replies: dict[asyncio.Future[None], list[str]] = {}
        # relay command and configuration file (set by start)
        self._run: str = ""
        self._conf: Path | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._opens = PeerOpen(
            {}, configured={n.address: frozenset(n.families) for n in cfg.neighbors}
        )
        self._up: set[str] = set()  # peers whose session is established
        self.commands_sent = 0
        self.commands_failed = 0  # answered 'error'
        self.commands_lost = 0  # no answer: channel gone
        self.messages_in = 0
        self.bad_messages = 0
        self.unexpected_acks = 0

    async def start(self, timeout: float = 20.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="esvpn-rs-")
        sock = os.path.join(self._dir.name, "api.sock")
        self._server = await asyncio.start_unix_server(self._accept, path=sock, limit=1 << 20)
        run = f"{self.python} -m routeserver.exabgp_adapter relay {sock}"
        conf = Path(self._dir.name) / "exabgp.conf"
        conf.write_text(render_config(self.cfg, run))
        self._run, self._conf = run, conf
        env = dict(os.environ)
        env.update(
            {
                PARENT_ENV: str(os.getpid()),
                RESTARTED_ENV: "1" if self.restarted else "0",
                "exabgp_api_ack": "true",
                "exabgp_api_cli": "false",
                "exabgp_api_terminate": "true",
                "exabgp_api_respawn": "false",
                "exabgp_daemon_drop": "false",
                # ExaBGP started as root switches to exabgp.daemon.user once running,
                # whatever exabgp.daemon.drop says; as 'nobody' a reload could read
                # neither its configuration nor our interpreter: it stays our user
                "exabgp_daemon_user": pwd.getpwuid(os.getuid()).pw_name,
                "exabgp_daemon_daemonize": "false",
                "exabgp_tcp_bind": "",
                "exabgp_log_destination": "stdout",
                "exabgp_log_level": "INFO",
            }
        )
        self._proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "routeserver.exabgp_adapter",
            "exabgp",
            str(conf),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._tasks.append(asyncio.create_task(self._child_log()))
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            await self.stop()
            raise RuntimeError("ExaBGP did not start its API process in time") from None
        except BaseException:  # cancelled while starting: leave no child behind
            self.kill()
            raise

    async def _child_log(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            log.debug("exabgp: %s", raw.decode(errors="replace").rstrip())
        rc = await self._proc.wait()
        if self._stopping:
            log.info("exabgp exited with %s", rc)
        else:
            log.error("exabgp exited unexpectedly with status %s", rc)
        self._fail_acks(ChannelLost(f"ExaBGP exited with status {rc}"))
        self.exited.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.serve_channel(reader, writer)

    async def serve_channel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Run the process-API channel (the relay's connection) until it closes.

        Called for the relay's connection; tests call it with the far end of a
        socket pair to play a faulty API peer.
        """
        if self._writer is not None:
            writer.close()
            return
        self._writer = writer
        self._connected.set()
        loop = asyncio.get_running_loop()
        held_since = loop.time()
        try:
            while True:
                if loop.time() - held_since > YIELD_AFTER:
                    # lines already buffered are read without a pause: let others run
                    await asyncio.sleep(0)
                    held_since = loop.time()
                try:
                    raw = await _read_line(reader)
                except OSError:
                    break
                if raw is None:
                    self.bad_messages += 1
                    self.on_bad_input(
                        BgpInputError("line longer than the API read limit", "too-long")
                    )
                    continue
                if not raw:
                    break
                self._line(raw.decode(errors="replace").strip())
        finally:
            self._fail_acks(ChannelLost("ExaBGP API channel closed"))
            self._writer = None
            writer.close()  # lets the relay (and so ExaBGP) finish promptly

    def _fail_acks(self, err: Exception) -> None:
        while self._acks:
            fut, text = self._acks.popleft()
            self._resolve(fut, text, err)

    def _resolve(self, fut: asyncio.Future[None], text: str, err: Exception | None) -> None:
        """Complete one command's future, counting (and logging) a failure at once."""
        self._replies.pop(fut, None)
        if isinstance(err, ChannelLost):
            self.commands_lost += 1
            log.info("bgp command not acknowledged (%s): %s", err, text)
        elif err is not None:
            self.commands_failed += 1
            log.error("bgp command failed (%s): %s", err, text)
        if fut.done():  # cancelled by its awaiter
            return
        if err is None:
            fut.set_result(None)
        else:
            fut.set_exception(err)

    def _line(self, line: str) -> None:
        if not line:
            return
        if line in ("done", "error"):
            if not self._acks:
                self.unexpected_acks += 1
                log.warning("exabgp: unexpected acknowledgement %r", line)
                return
            fut, text = self._acks.popleft()
            self._resolve(
                fut, text, None if line == "done" else CommandError("ExaBGP refused the command")
            )
            return
        if self._acks and not line.startswith("{"):
            reply = self._replies.get(self._acks[0][0])
            if reply is not None:  # the text answer of the command ExaBGP is on
                reply.append(line)
                return
        self.messages_in += 1
        log.debug("exabgp json: %s", line)
        errors: list[BgpInputError] = []
        events: list[PeerEvent] = []
        try:
            inputs = parse_message(line, self._opens, errors, events)
        except BgpInputError as e:
            errors, inputs = [e], []
        for ev in events:
            level = ev.level
            if ev.kind == "up":
                self._up.add(ev.peer)
            elif ev.kind == "down":
                if ev.peer not in self._up:  # a connection attempt that failed
                    level = logging.INFO
                self._up.discard(ev.peer)
            log.log(level, "%s", ev.text)
        if events and self.on_events is not None:
            self.on_events(events)
        for err in errors:
            self.bad_messages += 1
            self.on_bad_input(err)
        if inputs:
            try:
                self.on_inputs(inputs)
            except Exception:  # a bug must not cut the API channel
                log.exception("handling BGP inputs %s failed", inputs)

    def submit(self, text: str) -> asyncio.Future[None]:
        """Write one command now; the future completes on its acknowledgement.

        It fails with :class:`CommandError` on 'error', with :class:`ChannelLost`
        when the channel is not connected or goes away before the answer.
        Commands are written and acknowledged in order. Writes are buffered:
        await :meth:`drain` for backpressure.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.is_closing():
            self._resolve(fut, text, ChannelLost("ExaBGP API channel not connected"))
            return fut
        self._acks.append((fut, text))
        self._writer.write(text.encode() + b"\n")
        self.commands_sent += 1
        return fut

    async def reload(self, cfg: Config, timeout: float = 10.0) -> None:
        """Use ``cfg``'s neighbors: rewrite ExaBGP's configuration and ``reload`` it.

        ExaBGP ends the sessions of removed neighbors (Cease / Peer De-configured),
        starts new ones, re-establishes those whose definition changed and leaves
        the others alone. Its answer ``reload in progress`` is the command's text
        reply (see :meth:`query`), not a message.
        """
        self.cfg = cfg
        self._opens.configured = {n.address: frozenset(n.families) for n in cfg.neighbors}
        if self._conf is None:
            return
        self._conf.write_text(render_config(cfg, self._run))
        await self.query("reload", timeout)

    async def neighbors(self, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
        """ExaBGP's view of each peer (``show neighbor json``): FSM state, uptime,
        capabilities, messages sent and received by type; keyed by peer address."""
        lines = await self.query("show neighbor json", timeout)
        try:
            data = json.loads("\n".join(lines))
        except ValueError as e:
            raise CommandError(f"show neighbor json: not JSON: {e}") from None
        out: dict[str, dict[str, Any]] = {}
        for n in data if isinstance(data, list) else ():
            peer = n.get("peer") if isinstance(n, dict) else None
            if isinstance(peer, dict) and peer.get("address") is not None:
                out[str(peer["address"])] = n
        return out

    async def query(self, text: str, timeout: float = 5.0) -> list[str]:
        """Send a command that ExaBGP answers with text lines before ``done``
        (``show neighbor json``, ``reload``) and return those lines.

        CommandError on 'error', ChannelLost when the channel goes, TimeoutError.
        """
        fut = self.submit(text)
        reply: list[str] = []
        if not fut.done():
            self._replies[fut] = reply
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except CommandError as e:
            raise type(e)(f"{e}: {text}") from None
        return reply

    def send(self, out: Output) -> asyncio.Future[None]:
        """:meth:`submit` the command carrying out one BGP-side RIB output."""
        return self.submit(command_for(out, self.cfg))

    @property
    def pending(self) -> int:
        """Commands written and not yet acknowledged."""
        return len(self._acks)

    async def drain(self) -> None:
        """Wait until the written commands have left our buffer (no-op when closed)."""
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()

    async def command(self, text: str) -> None:
        """Send one command and wait for its acknowledgement (CommandError on 'error')."""
        fut = self.submit(text)
        try:
            await fut
        except CommandError as e:
            raise CommandError(f"{e}: {text}") from None

    @property
    def pid(self) -> int | None:
        """Process id of the ExaBGP child (None before start)."""
        return None if self._proc is None else self._proc.pid

    @property
    def connected(self) -> bool:
        return self._writer is not None

    def kill(self) -> None:
        """SIGKILL the child now (it takes its relay along); for a bounded shutdown."""
        self._stopping = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def stop(self, grace: float = 2.0) -> None:
        """Terminate the child, kill it after ``grace`` seconds; release everything."""
        self._stopping = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), grace)
            except TimeoutError:
                log.warning("exabgp did not exit %.1f s after SIGTERM; killing it", grace)
                self.kill()
                await self._proc.wait()
        if self._server is not None:
            self._server.close()
        if self._proc is not None:
            # close the exited child's transport now, not when collected after the
            # loop is gone (CPython 3.11 'Event loop is closed' at interpreter exit)
            transport = getattr(self._proc, "_transport", None)
            if transport is not None:
                transport.close()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=1.0)
            for t in late:
                t.cancel()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


# ------------------------------------------------------------ child side


def die_with_parent(
    parent: int | None, sig: int = signal.SIGTERM, grace: float = 3.0, poll: float = 0.2
) -> None:  # pragma: no cover - runs inside the ExaBGP child and its relay
    """End this process when its parent dies, whatever kills the parent.

    The kernel sends ``sig`` when the parent goes (``PR_SET_PDEATHSIG``). If
    the parent is already gone (it died before this ran), or the signal does
    not end us, a watchdog thread that sees our parent pid change sends
    ``sig`` itself and, ``grace`` seconds later, exits hard.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    expected = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(poll)
        os.kill(os.getpid(), sig)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _install_rtc() -> None:  # pragma: no cover - runs inside the ExaBGP child
    """Teach ExaBGP's parser the ipv4 rtc family and the announce/withdraw rtc commands."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.update.attribute import Attributes
    from exabgp.bgp.message.update.attribute.community.extended.rt import (
        RouteTargetASN2Number,
        RouteTargetASN4Number,
        RouteTargetIPNumber,
    )
    from exabgp.bgp.message.update.attribute.localpref import LocalPreference
    from exabgp.bgp.message.update.attribute.origin import Origin
    from exabgp.bgp.message.update.nlri.rtc import RTC
    from exabgp.configuration.neighbor.family import ParseFamily
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.protocol.ip import IP
    from exabgp.reactor.api.command.command import Command
    from exabgp.reactor.api.command.limit import extract_neighbors, match_neighbors
    from exabgp.rib.change import Change

    ParseFamily.convert["ipv4"]["rtc"] = (AFI.ipv4, SAFI.rtc)

    def route_target(text: str) -> Any:
        admin, _, number = parse_route_target(text).rpartition(":")
        if "." in admin:
            return RouteTargetIPNumber(admin, int(number))
        if int(admin) > 0xFFFF:
            return RouteTargetASN4Number(int(admin), int(number))
        return RouteTargetASN2Number(int(admin), int(number))

    def make(action: Any) -> Callable[..., bool]:
        def handler(self: Any, reactor: Any, service: Any, line: str, use_json: bool) -> bool:
            def callback() -> Any:
                try:
                    descriptions, command = extract_neighbors(line)
                    peers = match_neighbors(reactor.peers(service), descriptions)
                    words = command.split()
                    # announce rtc <origin-as> <route-target> next-hop <ip>
                    if len(words) != 6 or words[4] != "next-hop" or not peers:
                        raise ValueError(f"usage: {words[0]} rtc <origin-as> <rt> next-hop <ip>")
                    nlri = RTC.new(
                        AFI.ipv4,
                        SAFI.rtc,
                        ASN(int(words[2])),
                        route_target(words[3]),
                        nexthop=IP.create(words[5]),
                        action=action,
                    )
                    attrs = Attributes()
                    attrs.add(Origin(Origin.IGP))
                    attrs.add(LocalPreference(100))
                    if reactor.configuration.inject_change(peers, Change(nlri, attrs)):
                        self.log_message(f"rtc {words[0]} {words[3]} for {', '.join(peers)}")
                        reactor.processes.answer_done(service)
                    else:
                        reactor.processes.answer_error(service)
                except Exception as e:
                    self.log_failure(f"rtc command {line!r}: {e}")
                    reactor.processes.answer_error(service)
                yield True

            reactor.asynchronous.schedule(service, line, callback())
            return True

        return handler

    Command.register("announce rtc")(make(Action.ANNOUNCE))
    Command.register("withdraw rtc")(make(Action.WITHDRAW))
    _install_rtc_prefixes()


def _install_rtc_prefixes() -> None:  # pragma: no cover - runs inside the ExaBGP child
    """Accept RTC NLRI of every legal length (RFC 4684 §4: 0 or 32..96 bits).

    ExaBGP 5.0 reads every non-zero RTC NLRI as 13 octets: a shorter, legal
    prefix (e.g. 80 bits: origin AS + the first 6 octets of a route target)
    made it send NOTIFICATION 3/10 and reset the session. A length 32..95 is
    read here (the prefix's octets, the rest of the route target zero) and
    reported in the JSON as ``{"origin", "length", "value"}`` (value: the
    8-octet route target as a number); 0 and 96 stay ExaBGP's.
    """
    from exabgp.bgp.message.notification import Notify
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.update.nlri.nlri import NLRI
    from exabgp.bgp.message.update.nlri.rtc import RTC

    plain_unpack = RTC.unpack_nlri.__func__
    plain_json = RTC.json

    def unpack_nlri(cls: Any, afi: Any, safi: Any, bgp: bytes, action: Any, addpath: Any) -> Any:
        path_info, data = NLRI.consume_path_information(bgp, addpath)
        if not data or not 32 <= data[0] < 96:
            return plain_unpack(cls, afi, safi, bgp, action, addpath)
        length = data[0]
        size = 1 + (length + 7) // 8
        if len(data) < size:
            raise Notify(3, 10, f"RTC NLRI truncated: length {length} needs {size} octets")
        origin = int.from_bytes(data[1:5], "big")
        rt = (data[5:size] + bytes(8))[:8]
        keep = (1 << (length - 32)) - 1 << (96 - length) if length > 32 else 0
        nlri = cls(afi, safi, action, ASN(origin), None)
        nlri.prefix_len = length
        nlri.rt_value = int.from_bytes(rt, "big") & keep
        nlri.addpath = path_info
        return nlri, data[size:]

    def json_text(self: Any, announced: bool = True, compact: Any = None) -> str:
        length = getattr(self, "prefix_len", None)
        if length is None:
            return str(plain_json(self, announced, compact))
        return f'{{ "origin": {int(self.origin)}, "length": {length}, "value": {self.rt_value} }}'

    RTC.unpack_nlri = classmethod(unpack_nlri)
    RTC.json = json_text


def _install_bgp_hygiene(restarted: bool) -> None:  # pragma: no cover - in the ExaBGP child
    """Two RFC points ExaBGP 5.0 gets wrong for us, set right in its own classes.

    * RFC 4724 §3: the Restart State bit is for a speaker that restarted. ExaBGP
      sets it in the first OPEN of every process (``FORCE_GRACEFUL``). Ours is
      set only when the daemon restarted ExaBGP and replays the RIB it kept
      (``restarted``, from :data:`RESTARTED_ENV`); a fresh daemon has no state
      to preserve and sends it clear. ExaBGP itself clears it once a session
      is established (a reconnection is not a restart).
    * RFC 4760 §3: an UPDATE that carries only MP_REACH_NLRI SHOULD NOT carry
      NEXT_HOP. ExaBGP's text API records the ``next-hop`` of a VPN route as a
      NEXT_HOP attribute too and packs it beside MP_REACH_NLRI; here it is
      left out of any UPDATE without IPv4 unicast NLRI (all of ours).
    """
    import exabgp.reactor.peer as peer_module
    from exabgp.bgp.message.update import Update
    from exabgp.bgp.message.update.attribute import Attribute, Attributes
    from exabgp.protocol.family import AFI, SAFI

    peer_module.FORCE_GRACEFUL = restarted
    plain_messages = Update.messages

    def messages(self: Any, negotiated: Any, include_withdraw: bool = True) -> Any:
        attrs = self.attributes
        if Attribute.CODE.NEXT_HOP in attrs and not any(
            n.afi == AFI.ipv4 and n.safi == SAFI.unicast for n in self.nlris
        ):
            without = Attributes()
            for code, attribute in attrs.items():
                if code != Attribute.CODE.NEXT_HOP:
                    without[code] = attribute
            self = Update(self.nlris, without)
        yield from plain_messages(self, negotiated, include_withdraw)

    Update.messages = messages
    _install_teardown_notification()


def _install_teardown_notification() -> None:  # pragma: no cover - in the ExaBGP child
    """A ``teardown <subcode>`` of the API sends its NOTIFICATION (RFC 4486).

    ExaBGP closes a session that negotiated graceful restart without any
    NOTIFICATION, whatever ended it, so that the peer keeps our routes. That is
    right when ExaBGP itself stops (the peer keeps our routes stale until we are
    back), wrong when the daemon ends one session on purpose: a clear (Cease /
    Administrative Reset) or a prefix limit (Cease / Maximum Number of Prefixes
    Reached) must tell the peer why. For a teardown asked through the API the
    graceful-restart setting is set aside until the session is reset, so the
    NOTIFICATION goes out; it is back before the next OPEN.
    """
    from exabgp.reactor.peer import Peer

    plain_teardown, plain_reset = Peer.teardown, Peer._reset

    def teardown(self: Any, code: int, restart: bool = True) -> None:
        caps = self.neighbor["capability"]
        if getattr(self, "_esvpn_gr", None) is None and caps["graceful-restart"]:
            self._esvpn_gr = caps["graceful-restart"]
            caps["graceful-restart"] = False
        plain_teardown(self, code, restart)

    def reset(self: Any, message: str = "", error: Any = "") -> None:
        saved = getattr(self, "_esvpn_gr", None)
        if saved is not None:
            self.neighbor["capability"]["graceful-restart"] = saved
            self._esvpn_gr = None
        plain_reset(self, message, error)

    Peer.teardown = teardown
    Peer._reset = reset


def _relay(sock: str) -> int:  # pragma: no cover - runs as ExaBGP's API process
    """Bridge ExaBGP's pipes (our stdin/stdout) and the daemon's Unix socket."""
    import socket

    die_with_parent(None, signal.SIGKILL)

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)

    def up() -> None:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            s.sendall(data)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)

    threading.Thread(target=up, daemon=True).start()
    while True:
        data = s.recv(65536)
        if not data:
            return 0
        os.write(1, data)


def main(argv: list[str]) -> int:  # pragma: no cover - child entry points
    if len(argv) >= 2 and argv[0] == "relay":
        return _relay(argv[1])
    if argv and argv[0] == "exabgp":
        parent = os.environ.get(PARENT_ENV)
        die_with_parent(int(parent) if parent and parent.isdigit() else None)
        _install_rtc()
        _install_bgp_hygiene(os.environ.get(RESTARTED_ENV) == "1")
        from exabgp.application.main import main as exabgp_main

        sys.argv = ["exabgp", *argv[1:]]
        rc = exabgp_main()
        return rc if isinstance(rc, int) else 0
    print("usage: python -m routeserver.exabgp_adapter relay <socket> | exabgp <conf>")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
