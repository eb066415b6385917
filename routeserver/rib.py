"""The route server's RIB, pure: typed inputs and a clock in, typed outputs out.

No sockets, no tasks, no ExaBGP or XMPP knowledge. The daemon feeds it what the
XMPP layer and the ExaBGP adapter report and carries out what it returns.

Model
-----
* Paths come from forwarders over XMPP (key: forwarder and owner, VRF, prefix;
  the owner is the end-system whose node it is) and from BGP peers (key:
  peer, RD, prefix). A BGP path carries route targets and the
  attributes the decision process needs.
* A path is a candidate in VRF V when it is an XMPP path of V itself or its
  route targets intersect V's import targets (XMPP paths carry their VRF's
  export targets, as on a PE). In an *isolated* VRF (hub and spoke: the
  spokes' VRF) only the second rule applies, so spokes sharing the VRF do
  not see each other's paths, as if each had a VRF of its own.
* A BGP path whose label is reserved (< 16) is no candidate anywhere: a
  forwarder could not use it, and it must not hide a usable path.
* Ownership: the first end-system (owner) with an XMPP path for a prefix in
  a VRF owns it there until its last such path goes; other owners' XMPP
  paths for it are no candidates meanwhile. Versions are thus compared only
  within one owner's node (a move of the owner to another forwarder), never
  between end-systems: an end-system cannot take another's address by
  publishing a higher version.
* Best path per (VRF, prefix), first difference wins: higher interface
  version (the newest instantiation of a moving address; absent = 0);
  locally learned (XMPP) over BGP-learned, whatever the BGP attributes (as
  a PE prefers its attached routes: Cisco's weight 32768 for locally
  originated routes, Junos' protocol preference; RFC 4271 §9.1.1 leaves
  this to local policy); then RFC 4271 §9.1.2.2 between BGP paths: higher
  local preference, shorter AS path, lower origin, lower MED (same
  neighbouring AS only), eBGP over iBGP, lower router id (ORIGINATOR_ID
  when reflected, RFC 4456 §9), shorter CLUSTER_LIST, lower peer address.
* Only the selected path goes to the forwarders subscribed to V (``FwdRoutes``
  / ``FwdWithdraw``), and a subscription starts with the whole table followed
  by ``FwdEndOfRib``.
* Export: per (VRF, prefix) the best XMPP path of V is advertised to every
  BGP peer with RD = V's RD, the forwarder's label and address as next hop,
  V's export targets and the version. Peers that negotiate RT-Constraint only
  get routes with a target they asked for (RFC 4684; a default RTC route asks
  for everything). BGP-learned routes are not re-advertised (a PE, not a
  reflector).
* RT-Constraint: one RTC route per import target of every VRF with at least
  one subscribed forwarder, withdrawn with the last one.
* Refused BGP commands (``BgpCommandFailed``): the adj-RIB-out entry the
  command recorded is undone and every peer is resynced after a backoff
  (``next_deadline`` / ``expire``).
* Graceful restart (RFC 4724, helper side): when a peer that advertised the
  capability goes down, its paths are kept, marked stale, until it sends
  End-of-RIB for the family or the restart time runs out.
* Bulk work (a peer down with or without graceful restart, an End-of-RIB or
  restart-time sweep) touches every path of a peer. It is a job run in slices
  of at most :data:`WORK_SLICE` paths: the input that starts it returns the
  first slice's outputs, :meth:`Rib.work` gives the next ones while
  :meth:`Rib.has_work`, so the caller never holds its event loop for long.
  Jobs run in the order they were started; inputs handled in between apply
  at once, and a job leaves alone a path announced after the event that
  started it (a peer back up re-announcing).
"""

from __future__ import annotations

import functools
import ipaddress
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from esxmpp.dialect import LABEL_MIN
from routeserver.config import Config, Neighbor, Vrf, parse_rd, route_target_value

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ORIGIN_IGP, ORIGIN_EGP, ORIGIN_INCOMPLETE = 0, 1, 2

# resync after a refused BGP command: first after 1 s, doubling up to 30 s; the
# backoff starts over once no command has been refused for 60 s
RESYNC_BACKOFF_MIN, RESYNC_BACKOFF_MAX, RESYNC_BACKOFF_RESET = 1.0, 30.0, 60.0

WORK_SLICE = 64  # paths one slice of bulk work (sweep, stale marking) handles at most

# End-of-RIB to a forwarder is held while BGP routes its subscription pulls in
# may still come: RTC_ROUTES_WAIT seconds after an RTC route for one of the
# VRF's import targets went to an established peer (RFC 4684 gives no marker
# for "routes for this RTC sent"), and until each established peer's
# End-of-RIB, at most EOR_WAIT seconds after its session came up
RTC_ROUTES_WAIT = 1.0
EOR_WAIT = 10.0


class RibError(ValueError):
    """An input the RIB refuses; the message says precisely why. State is unchanged."""


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class XmppSubscribe:
    system_id: str  # 12 lowercase hex digits
    vpn: str


@dataclass(frozen=True)
class XmppUnsubscribe:
    system_id: str
    vpn: str


@dataclass(frozen=True)
class XmppRouteAdd:
    system_id: str
    vpn: str
    prefix: IPNetwork
    nexthop: IPAddress
    label: int
    version: int = 0
    owner: str = ""  # the end-system whose node this is (12 hex digits)


@dataclass(frozen=True)
class XmppRouteDel:
    system_id: str
    vpn: str
    prefix: IPNetwork
    owner: str = ""


@dataclass(frozen=True)
class BgpAttrs:
    local_pref: int = 100
    as_path: tuple[int, ...] = ()  # an AS_SET counts as one entry (its lowest AS)
    origin: int = ORIGIN_IGP
    med: int = 0
    originator_id: str | None = None
    cluster_list_len: int = 0  # RFC 4456: 0 without a CLUSTER_LIST
    as_sets: tuple[tuple[int, ...], ...] = ()  # the AS_SETs' members (loop check)
    # shown to operators (``show route``), not used by the decision process:
    cluster_list: tuple[str, ...] = ()  # RFC 4456 CLUSTER_LIST, in order
    communities: tuple[str, ...] = ()  # RFC 1997 'asn:value'
    # extended communities other than route targets and the version, as text
    ext_communities: tuple[str, ...] = ()


@dataclass(frozen=True)
class BgpRouteAdd:
    peer: str
    rd: str
    prefix: IPNetwork
    label: int
    nexthop: IPAddress
    targets: frozenset[str]
    version: int = 0
    attrs: BgpAttrs = field(default_factory=BgpAttrs)


@dataclass(frozen=True)
class BgpRouteDel:
    peer: str
    rd: str
    prefix: IPNetwork


@dataclass(frozen=True)
class RtcPrefix:
    """An RT-Constraint NLRI of 32..95 bits (RFC 4684 §4): the origin AS, then the
    first ``length - 32`` bits of a route target; it asks for every route target
    that starts with those bits (32 bits: every route target)."""

    origin: int
    value: int  # the 8-octet route target as a number, bits past the prefix zero
    length: int

    def covers(self, target: str) -> bool:
        bits = self.length - 32
        shift = 64 - bits
        return bits <= 0 or route_target_value(target) >> shift == self.value >> shift

    def __str__(self) -> str:
        return f"{self.origin}:0x{self.value:016x}/{self.length}"


# an RTC route: a whole route target (96 bits; the origin AS does not matter to
# us), a prefix of one, or None = the default RTC route (length 0): everything
RtcTarget = str | RtcPrefix | None


@dataclass(frozen=True)
class BgpRtcAdd:
    peer: str
    target: RtcTarget


@dataclass(frozen=True)
class BgpRtcDel:
    peer: str
    target: RtcTarget


@dataclass(frozen=True)
class BgpPeerUp:
    peer: str
    graceful_restart: int = 0  # restart time the peer advertised, 0 = no GR
    # families both sides advertised in their OPEN (RFC 4760 multiprotocol
    # capability); None = not known, taken as the configured ones
    families: frozenset[str] | None = None


@dataclass(frozen=True)
class BgpPeerDown:
    peer: str


@dataclass(frozen=True)
class BgpEndOfRib:
    peer: str
    family: str  # "vpnv4" | "vpnv6" | "rtc"


@dataclass(frozen=True)
class BgpCommandFailed:
    """The BGP speaker refused to carry out one of our BGP outputs (ExaBGP ``error``).

    The RIB forgets what that output recorded in the peer's adj-RIB-out (an
    announcement not made, a withdrawal not done) and schedules a resync
    after a backoff (see :meth:`Rib.expire`), which sends it again if it
    still applies.
    """

    output: BgpAnnounce | BgpWithdraw | RtcAnnounce | RtcWithdraw


CLEAR_MODES = ("hard", "soft", "soft-in", "soft-out")


@dataclass(frozen=True)
class BgpClear:
    """An operator's clear of one peer's session: ``hard`` tears it down with a
    NOTIFICATION Cease / Administrative Reset (RFC 4486 subcode 4); ``soft-in``
    asks the peer to send its routes again (route refresh, RFC 2918);
    ``soft-out`` sends it ours again; ``soft`` both."""

    peer: str
    mode: str = "hard"


Input = (
    XmppSubscribe
    | XmppUnsubscribe
    | XmppRouteAdd
    | XmppRouteDel
    | BgpRouteAdd
    | BgpRouteDel
    | BgpRtcAdd
    | BgpRtcDel
    | BgpPeerUp
    | BgpPeerDown
    | BgpEndOfRib
    | BgpCommandFailed
    | BgpClear
)

# ----------------------------------------------------------------- outputs


@dataclass(frozen=True)
class FwdRoute:
    prefix: IPNetwork
    nexthop: IPAddress
    label: int
    version: int = 0


@dataclass(frozen=True)
class FwdRoutes:
    """Routes added or replaced in the forwarder's VPN table."""

    system_id: str
    vpn: str
    routes: tuple[FwdRoute, ...]


@dataclass(frozen=True)
class FwdWithdraw:
    system_id: str
    vpn: str
    prefixes: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class FwdEndOfRib:
    system_id: str
    vpn: str


@dataclass(frozen=True)
class VpnRoute:
    """A VPN-IPv4/VPN-IPv6 route as advertised to BGP."""

    rd: str
    prefix: IPNetwork
    label: int
    nexthop: IPAddress
    targets: frozenset[str]
    version: int = 0


@dataclass(frozen=True)
class BgpAnnounce:
    peer: str
    route: VpnRoute


@dataclass(frozen=True)
class BgpWithdraw:
    peer: str
    route: VpnRoute


@dataclass(frozen=True)
class RtcAnnounce:
    peer: str
    target: str


@dataclass(frozen=True)
class RtcWithdraw:
    peer: str
    target: str


CEASE_MAX_PREFIXES = 1  # RFC 4486 Cease subcodes
CEASE_ADMIN_RESET = 4


@dataclass(frozen=True)
class BgpTeardown:
    """End the peer's session with NOTIFICATION Cease and this subcode (RFC 4486)."""

    peer: str
    subcode: int
    reason: str = ""


@dataclass(frozen=True)
class BgpRefresh:
    """Ask the peer to send its routes of ``family`` again (route refresh, RFC 2918)."""

    peer: str
    family: str


@dataclass(frozen=True)
class BgpResend:
    """Send the peer every route of our adj-RIB-out again (a soft reset out)."""

    peer: str


Output = (
    FwdRoutes
    | FwdWithdraw
    | FwdEndOfRib
    | BgpAnnounce
    | BgpWithdraw
    | RtcAnnounce
    | RtcWithdraw
    | BgpTeardown
    | BgpRefresh
    | BgpResend
)

# ------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Path:
    """One candidate path; ``source`` is 'xmpp' or 'bgp', ``origin_id`` the system id or peer."""

    source: str
    origin_id: str
    rd: str
    prefix: IPNetwork
    nexthop: IPAddress
    label: int
    targets: frozenset[str]
    version: int = 0
    attrs: BgpAttrs = field(default_factory=BgpAttrs)
    ebgp: bool = False
    vrf: str | None = None  # own VRF of an XMPP path
    stale: bool = False
    session: int = field(default=0, compare=False)  # the BGP session (of its peer) it came in
    owner: str = ""  # XMPP: the end-system whose node it is


def check_route(prefix: IPNetwork, nexthop: IPAddress) -> None:
    """RibError unless the route can be advertised (IPv6 over IPv4 is fine, not the reverse)."""
    if prefix.version == 4 and nexthop.version == 6:
        raise RibError(f"IPv4 prefix {prefix} with IPv6 next hop {nexthop} is not supported")


def as_path_loop(ev: BgpRouteAdd, asn: int) -> bool:
    """True when the route's AS_PATH contains ``asn`` (RFC 4271 §9.1.2 loop)."""
    return asn in ev.attrs.as_path or any(asn in s for s in ev.attrs.as_sets)


def family_of(prefix: IPNetwork) -> str:
    return "vpnv4" if prefix.version == 4 else "vpnv6"


@functools.lru_cache(maxsize=4096)  # router ids and peers: few, parsed once each
def _ip_key(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 0)
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return (9, 0)
    return (a.version, int(a))


@dataclass
class _Peer:
    address: str
    asn: int
    configured_rtc: bool  # RT-Constraint configured for this peer
    filter_out: bool = True  # RFC 4684 outbound filtering by the peer's RTC routes
    configured: frozenset[str] = frozenset({"vpnv4", "vpnv6", "rtc"})
    # families in use: the configured ones both sides advertised in the OPEN of
    # the last session (RFC 4760); nothing before the first session is up
    families: frozenset[str] = frozenset()
    up: bool = False
    session: int = 0  # counts the peer's sessions: paths remember the one they came in
    gr_time: int = 0
    gr_deadline: float | None = None
    rtc_in: dict[RtcTarget, bool] = field(default_factory=dict)  # target -> stale
    up_at: float = 0.0
    eor_pending: set[str] = field(default_factory=set)  # VPN families before End-of-RIB
    # our RTC target -> (when sent, acknowledged by the speaker): End-of-RIB waits
    rtc_sent: dict[str, tuple[float, bool]] = field(default_factory=dict)
    adj_out: dict[tuple[str, IPNetwork], VpnRoute] = field(default_factory=dict)
    rtc_out: set[str] = field(default_factory=set)
    max_prefixes: int = 0  # VPN routes accepted from the peer at most (0: no limit)
    # a teardown we asked for (Cease subcode): its paths go at once when the
    # session ends, graceful restart or not (RFC 4724 §4: not after a NOTIFICATION)
    teardown: int | None = None
    # per family: paths in adj-RIB-in, routes in adj-RIB-out, and route
    # updates (one per NLRI announced or withdrawn) received and sent
    prefixes_in: dict[str, int] = field(default_factory=dict)
    prefixes_out: dict[str, int] = field(default_factory=dict)
    updates_in: dict[str, int] = field(default_factory=dict)
    updates_out: dict[str, int] = field(default_factory=dict)

    @property
    def rtc(self) -> bool:
        """RT-Constraint in use: configured and negotiated (RFC 4684 §4)."""
        return "rtc" in self.families


class Rib:
    """See the module docstring. All methods are synchronous and never do I/O."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.router_id = config.router_id
        self.vrfs: dict[str, Vrf] = {v.name: v for v in config.vrfs}
        self._peers: dict[str, _Peer] = {n.address: _new_peer(n) for n in config.neighbors}
        # all paths: xmpp key ('forwarder:owner', vrf, prefix) / bgp key (peer, rd, prefix)
        self._xmpp: dict[tuple[str, str, IPNetwork], Path] = {}
        # (vrf, prefix) -> owner -> [order of its claim, its XMPP paths]: the
        # first owner still holding a path owns the prefix in the VRF
        self._claims: dict[tuple[str, IPNetwork], dict[str, list[int]]] = {}
        self._claim_seq = 0
        self._bgp: dict[tuple[str, str, IPNetwork], Path] = {}
        # per peer: its paths' keys, and how many of them are stale
        self._peer_paths: dict[str, dict[tuple[str, str, IPNetwork], None]] = {
            a: {} for a in self._peers
        }
        self._stale: dict[str, int] = dict.fromkeys(self._peers, 0)
        self._jobs: deque[Iterator[list[Output]]] = deque()  # bulk work, in slices
        self._by_prefix: dict[IPNetwork, set[tuple[str, tuple[str, str, IPNetwork]]]] = {}
        self._selected: dict[tuple[str, IPNetwork], Path] = {}
        self._vrf_selected: dict[str, dict[IPNetwork, Path]] = {}  # the same, per VRF
        self._dumps: dict[tuple[str, str], int] = {}  # (vrf, system id) -> latest table dump
        self._subscribers: dict[str, set[str]] = {}  # vrf name -> system ids
        self._exports: dict[tuple[str, IPNetwork], VpnRoute] = {}  # (rd, prefix)
        self._vrf_rds: dict[tuple[str, IPNetwork], set[str]] = {}  # (vrf, prefix) -> RDs out
        self.counters: dict[str, int] = {}
        # resync after refused BGP commands: when, and the backoff for the next one
        self._resync_at: float | None = None
        self._now = 0.0  # the clock of the latest input or expire()
        self._held: dict[tuple[str, str], float] = {}  # (vrf, system id) -> End-of-RIB due
        self._backoff = RESYNC_BACKOFF_MIN
        self._last_refusal: float | None = None
        # per VRF: changes of its selected routes (a route selected, replaced or withdrawn)
        self.vrf_updates: dict[str, int] = dict.fromkeys(self.vrfs, 0)

    # ------------------------------------------------------------ dispatch

    def handle(self, event: Input, now: float) -> list[Output]:
        """Apply one input; raises :class:`RibError` (state unchanged) for a bad one."""
        self._now = now
        match event:
            case XmppSubscribe():
                out = self._subscribe(event)
            case XmppUnsubscribe():
                out = self._unsubscribe(event)
            case XmppRouteAdd():
                out = self._xmpp_add(event)
            case XmppRouteDel():
                out = self._xmpp_del(event)
            case BgpRouteAdd():
                out = self._bgp_add(event)
            case BgpRouteDel():
                out = self._bgp_del(event)
            case BgpRtcAdd():
                out = self._rtc_add(event)
            case BgpRtcDel():
                out = self._rtc_del(event)
            case BgpPeerUp():
                out = self._peer_up(event)
            case BgpPeerDown():
                out = self._peer_down(event, now)
            case BgpEndOfRib():
                out = self._eor(event)
            case BgpCommandFailed():
                out = self._command_failed(event, now)
            case BgpClear():
                out = self._clear(event)
        name = type(event).__name__
        self.counters[name] = self.counters.get(name, 0) + 1
        return out

    def next_deadline(self) -> float | None:
        ds = [p.gr_deadline for p in self._peers.values() if p.gr_deadline is not None]
        ds += self._held.values()
        if self._resync_at is not None:
            ds.append(self._resync_at)
        return min(ds) if ds else None

    def expire(self, now: float) -> list[Output]:
        """Drop stale paths of peers whose graceful-restart time ran out; resync BGP if due;
        send the End-of-RIB markers held until now."""
        self._now = now
        out: list[Output] = self._release(now)
        for peer in self._peers.values():
            if peer.gr_deadline is not None and peer.gr_deadline <= now:
                peer.gr_deadline = None
                out += self._start(self._sweep(peer, ("vpnv4", "vpnv6", "rtc")))
        if self._resync_at is not None and self._resync_at <= now:
            self._resync_at = None
            self.counters["bgp_resync"] = self.counters.get("bgp_resync", 0) + 1
            out += self._rtc_update()
            for peer in self._peers.values():
                out += self._readvertise(peer)
        return out

    # ------------------------------------------------------------ bulk work

    def has_work(self) -> bool:
        """True while a bulk job (sweep, stale marking) has slices left: call :meth:`work`."""
        return bool(self._jobs)

    def work(self, budget: int = WORK_SLICE) -> list[Output]:
        """Run at most ``budget`` steps (paths) of the pending bulk jobs, in order."""
        out: list[Output] = []
        while budget > 0 and self._jobs:
            job = self._jobs[0]
            for step in job:
                out += step
                budget -= 1
                if budget == 0:
                    break
            else:
                self._jobs.popleft()
        return out

    def _start(self, job: Iterator[list[Output]]) -> list[Output]:
        """Queue a bulk job; the outputs of the first slice of pending work come back now."""
        self._jobs.append(job)
        return self.work()

    def _put(self, key: tuple[str, str, IPNetwork], path: Path) -> None:
        old = self._bgp.get(key)
        if old is None:
            _bump(self._peers[key[0]].prefixes_in, family_of(key[2]), 1)
        self._stale[key[0]] += path.stale - (old is not None and old.stale)
        self._bgp[key] = path
        self._peer_paths[key[0]][key] = None
        self._by_prefix.setdefault(key[2], set()).add(("bgp", key))

    def _drop(self, key: tuple[str, str, IPNetwork]) -> None:
        old = self._bgp.pop(key)
        _bump(self._peers[key[0]].prefixes_in, family_of(key[2]), -1)
        self._stale[key[0]] -= old.stale
        del self._peer_paths[key[0]][key]
        self._unindex(key[2], ("bgp", key))

    def _command_failed(self, ev: BgpCommandFailed, now: float) -> list[Output]:
        """Undo in adj-RIB-out what a refused command recorded; a resync will retry it."""
        cmd = ev.output
        peer = self._peers.get(cmd.peer)
        if peer is None:  # removed by a reload meanwhile
            return []
        match cmd:
            case BgpAnnounce(_, route):
                key = (route.rd, route.prefix)
                if peer.adj_out.get(key) == route:
                    _out_set(peer, key, None)
            case BgpWithdraw(_, route):
                key = (route.rd, route.prefix)
                if key not in peer.adj_out:
                    _out_set(peer, key, route)  # the speaker may still advertise it
            case RtcAnnounce(_, target):
                peer.rtc_out.discard(target)
            case RtcWithdraw(_, target):
                if peer.rtc:
                    peer.rtc_out.add(target)
        if self._last_refusal is not None and now - self._last_refusal > RESYNC_BACKOFF_RESET:
            self._backoff = RESYNC_BACKOFF_MIN
        self._last_refusal = now
        if self._resync_at is None:
            self._resync_at = now + self._backoff
            self._backoff = min(self._backoff * 2, RESYNC_BACKOFF_MAX)
        return []

    def _clear(self, ev: BgpClear) -> list[Output]:
        """An operator's clear (see :class:`BgpClear`); RibError for a peer that is
        not configured or, for a soft reset, not established."""
        peer = self._peer(ev.peer)
        if ev.mode not in CLEAR_MODES:
            raise RibError(f"clear mode {ev.mode!r} is not one of {', '.join(CLEAR_MODES)}")
        if ev.mode == "hard":
            if peer.up:
                peer.teardown = CEASE_ADMIN_RESET
            return [BgpTeardown(peer.address, CEASE_ADMIN_RESET, "cleared by the operator")]
        if not peer.up:
            raise RibError(f"BGP peer {peer.address} is not established: no soft reset")
        out: list[Output] = []
        if ev.mode in ("soft", "soft-in"):
            out += [BgpRefresh(peer.address, f) for f in sorted(peer.families)]
        if ev.mode in ("soft", "soft-out"):
            out.append(BgpResend(peer.address))
        return out

    # -------------------------------------------------------------- lookup

    def vrf_of(self, system_id: str, vpn: str) -> Vrf:
        vrf = self.config.vrf_for(system_id, vpn)
        if vrf is None:
            raise RibError(f"no VRF configured for system {system_id} in VPN {vpn!r}")
        return vrf

    def _peer(self, address: str) -> _Peer:
        peer = self._peers.get(address)
        if peer is None:
            raise RibError(f"BGP peer {address} is not configured")
        return peer

    # ----------------------------------------------------------------- xmpp

    def _subscribe(self, ev: XmppSubscribe) -> list[Output]:
        vrf = self.vrf_of(ev.system_id, ev.vpn)
        subs = self._subscribers.setdefault(vrf.name, set())
        if ev.system_id in subs:
            return []
        subs.add(ev.system_id)
        rtc = self._rtc_update()  # first: End-of-RIB waits for what it pulls in
        return self._start(self._dump(vrf, ev.system_id)) + rtc

    def resend(self, system_id: str, vpn: str) -> list[Output]:
        """The whole table of a subscribed VPN again, then End-of-RIB (a resumed
        session): a bulk job, the first slice's outputs now (see :meth:`work`)."""
        vrf = self.vrf_of(system_id, vpn)
        if system_id not in self._subscribers.get(vrf.name, ()):
            return []
        return self._start(self._dump(vrf, system_id))

    def _dump(self, vrf: Vrf, sid: str) -> Iterator[list[Output]]:
        """Job: the selected routes of ``vrf`` to subscriber ``sid``, then End-of-RIB.

        One step per route of the VRF. The subscriber gets every later change
        as it happens, so each slice sends what is selected *then*: a route
        withdrawn meanwhile is skipped, one changed meanwhile goes with its
        new value. An unsubscribe (or a newer dump of the same table) ends it.
        """
        self._dumps[(vrf.name, sid)] = token = self._dumps.get((vrf.name, sid), 0) + 1
        # taken now: later routes reach the subscriber through _recompute
        prefixes = list(self._vrf_selected.get(vrf.name, ()))

        def current() -> bool:
            return self._dumps.get((vrf.name, sid)) == token and sid in self._subscribers.get(
                vrf.name, ()
            )

        def job() -> Iterator[list[Output]]:
            for i in range(0, len(prefixes), WORK_SLICE):
                if not current():
                    return
                table = self._vrf_selected.get(vrf.name, {})
                chunk = prefixes[i : i + WORK_SLICE]
                routes = tuple(self._fwd(p) for p in map(table.get, chunk) if p is not None)
                if routes:
                    yield [FwdRoutes(sid, vrf.vpn, routes)]
                for _ in range(len(chunk) - 1 if routes else len(chunk)):
                    yield []  # one step per route
            if current():
                del self._dumps[(vrf.name, sid)]
                yield self._end_of_rib(vrf, sid)

        return job()

    def _eor_due(self, vrf: Vrf) -> float:
        """When End-of-RIB for ``vrf`` may go: BGP routes it pulls in are in by then."""
        due = 0.0
        for peer in self._peers.values():
            if not peer.up:
                continue
            if peer.eor_pending:
                due = max(due, peer.up_at + EOR_WAIT)
            for t in vrf.import_targets:
                sent = peer.rtc_sent.get(t)
                if sent is not None:  # unacknowledged yet: at most EOR_WAIT
                    due = max(due, sent[0] + (RTC_ROUTES_WAIT if sent[1] else EOR_WAIT))
        return due

    def rtc_sent(self, peer: str, target: str, now: float) -> list[Output]:
        """The BGP speaker took our RTC route for ``target`` to ``peer`` (its
        acknowledgement): the routes it pulls in get RTC_ROUTES_WAIT from now."""
        self._now = now
        p = self._peers.get(peer)
        if p is not None and target in p.rtc_sent:
            p.rtc_sent[target] = (now, True)
            for key in self._held:
                vrf = self.vrfs.get(key[0])
                if vrf is not None and target in vrf.import_targets:
                    self._held[key] = self._eor_due(vrf)
        return []

    def _end_of_rib(self, vrf: Vrf, sid: str) -> list[Output]:
        due = self._eor_due(vrf)
        if due > self._now:
            self._held[(vrf.name, sid)] = due
            return []
        self._held.pop((vrf.name, sid), None)
        return [FwdEndOfRib(sid, vrf.vpn)]

    def _release(self, now: float) -> list[Output]:
        """End-of-RIB markers whose wait is over (or no longer needed)."""
        out: list[Output] = []
        for (name, sid), due in list(self._held.items()):
            vrf = self.vrfs.get(name)
            if vrf is None or sid not in self._subscribers.get(name, ()):
                del self._held[(name, sid)]
            elif due <= now or self._eor_due(vrf) <= now:
                out += self._end_of_rib(vrf, sid)
        return out

    def table(self, vrf_name: str) -> tuple[FwdRoute, ...]:
        """The selected routes of a VRF, as forwarders get them (prefix order)."""
        table = self._vrf_selected.get(vrf_name, {})
        return tuple(self._fwd(table[p]) for p in sorted(table, key=_net_order))

    def _unsubscribe(self, ev: XmppUnsubscribe) -> list[Output]:
        vrf = self.vrf_of(ev.system_id, ev.vpn)
        subs = self._subscribers.get(vrf.name, set())
        if ev.system_id not in subs:
            return []
        subs.discard(ev.system_id)
        if not subs:
            del self._subscribers[vrf.name]
        return self._rtc_update()

    def _xmpp_add(self, ev: XmppRouteAdd) -> list[Output]:
        vrf = self.vrf_of(ev.system_id, ev.vpn)
        check_route(ev.prefix, ev.nexthop)
        path = Path(
            source="xmpp",
            origin_id=ev.system_id,
            rd=vrf.rd_for(str(ev.nexthop)),
            prefix=ev.prefix,
            nexthop=ev.nexthop,
            label=ev.label,
            targets=vrf.export_targets,
            version=ev.version,
            vrf=vrf.name,
            owner=ev.owner,
        )
        key = (f"{ev.system_id}:{ev.owner}", vrf.name, ev.prefix)
        old = self._xmpp.get(key)
        if old == path:
            return []
        if old is None:
            claims = self._claims.setdefault((vrf.name, ev.prefix), {})
            claim = claims.get(ev.owner)
            if claim is None:
                self._claim_seq += 1
                claims[ev.owner] = [self._claim_seq, 1]
            else:
                claim[1] += 1
        self._xmpp[key] = path
        self._by_prefix.setdefault(ev.prefix, set()).add(("xmpp", key))
        return self._recompute(ev.prefix)

    def owner_of(self, vrf_name: str, prefix: IPNetwork) -> str | None:
        """The end-system that owns ``prefix`` in the VRF (first come), if any."""
        claims = self._claims.get((vrf_name, prefix))
        if not claims:
            return None
        return min(claims.items(), key=lambda kv: kv[1][0])[0]

    def _xmpp_del(self, ev: XmppRouteDel, vrf: Vrf | None = None) -> list[Output]:
        vrf = vrf or self.vrf_of(ev.system_id, ev.vpn)
        key = (f"{ev.system_id}:{ev.owner}", vrf.name, ev.prefix)
        if key not in self._xmpp:
            return []
        del self._xmpp[key]
        claims = self._claims[(vrf.name, ev.prefix)]
        claims[ev.owner][1] -= 1
        if not claims[ev.owner][1]:
            del claims[ev.owner]
            if not claims:
                del self._claims[(vrf.name, ev.prefix)]
        self._unindex(ev.prefix, ("xmpp", key))
        return self._recompute(ev.prefix)

    # ------------------------------------------------------------------ bgp

    def _bgp_add(self, ev: BgpRouteAdd) -> list[Output]:
        peer = self._peer(ev.peer)
        _bump(peer.updates_in, family_of(ev.prefix), 1)
        key = (ev.peer, ev.rd, ev.prefix)
        if (
            peer.max_prefixes
            and key not in self._bgp
            and len(self._peer_paths[ev.peer]) >= peer.max_prefixes
        ):
            # RFC 4486: Cease / Maximum Number of Prefixes Reached, once per session
            self.counters["max_prefixes"] = self.counters.get("max_prefixes", 0) + 1
            if peer.teardown is not None:
                return []
            peer.teardown = CEASE_MAX_PREFIXES
            return [
                BgpTeardown(
                    peer.address,
                    CEASE_MAX_PREFIXES,
                    f"more than {peer.max_prefixes} prefixes (bgp.neighbor.max_prefixes)",
                )
            ]
        if ev.attrs.originator_id == self.router_id:
            # our own route reflected back (RFC 4456 §8): ignore, as a withdrawal
            self.counters["own_route_reflected"] = self.counters.get("own_route_reflected", 0) + 1
            return self._bgp_remove(key)
        if as_path_loop(ev, self.config.asn):
            # RFC 4271 §9.1.2: a route whose AS_PATH holds our AS is not used;
            # as a withdrawal, so an earlier path of that key goes too
            self.counters["as_path_loop"] = self.counters.get("as_path_loop", 0) + 1
            return self._bgp_remove(key)
        path = Path(
            source="bgp",
            origin_id=ev.peer,
            rd=ev.rd,
            prefix=ev.prefix,
            nexthop=ev.nexthop,
            label=ev.label,
            targets=ev.targets,
            version=ev.version,
            attrs=ev.attrs,
            ebgp=peer.asn != self.config.asn,
            session=peer.session,
        )
        key = (ev.peer, ev.rd, ev.prefix)
        old = self._bgp.get(key)
        if old == path:
            if old is not None and old.session != path.session:
                self._bgp[key] = path  # the same path, in the peer's current session
            return []
        self._put(key, path)
        return self._recompute(ev.prefix)

    def _bgp_del(self, ev: BgpRouteDel) -> list[Output]:
        _bump(self._peer(ev.peer).updates_in, family_of(ev.prefix), 1)
        return self._bgp_remove((ev.peer, ev.rd, ev.prefix))

    def _bgp_remove(self, key: tuple[str, str, IPNetwork]) -> list[Output]:
        if key not in self._bgp:
            return []
        self._drop(key)
        return self._recompute(key[2])

    def _rtc_add(self, ev: BgpRtcAdd) -> list[Output]:
        peer = self._peer(ev.peer)
        _bump(peer.updates_in, "rtc", 1)
        if peer.rtc_in.get(ev.target) is False:
            return []
        peer.rtc_in[ev.target] = False
        return self._readvertise(peer)

    def _rtc_del(self, ev: BgpRtcDel) -> list[Output]:
        peer = self._peer(ev.peer)
        _bump(peer.updates_in, "rtc", 1)
        if ev.target not in peer.rtc_in:
            return []
        del peer.rtc_in[ev.target]
        return self._readvertise(peer)

    def _peer_up(self, ev: BgpPeerUp) -> list[Output]:
        """A session is established: what it negotiated decides what it gets.

        Routes and RTC routes go to established peers only (a peer that never
        came up has no adj-RIB-out); a peer gets the families both sides
        negotiated, and RTC filtering only if RT-Constraint was negotiated
        (RFC 4684 §4: a peer without it gets every route its policy allows).
        """
        peer = self._peer(ev.peer)
        peer.up = True
        peer.session += 1
        peer.gr_time = ev.graceful_restart
        peer.families = peer.configured if ev.families is None else peer.configured & ev.families
        peer.up_at = self._now
        peer.eor_pending = set(peer.families) - {"rtc"}
        peer.rtc_sent.clear()
        out: list[Output] = []
        if not peer.rtc and peer.rtc_out:
            out += [RtcWithdraw(peer.address, t) for t in sorted(peer.rtc_out)]
            peer.rtc_out = set()
        if not peer.rtc:
            peer.rtc_in.clear()
        out += self._rtc_sync(peer, self._wanted_targets())
        return out + self._readvertise(peer)

    def _peer_down(self, ev: BgpPeerDown, now: float) -> list[Output]:
        peer = self._peer(ev.peer)
        if not peer.up:
            return []
        peer.up = False
        reset, peer.teardown = peer.teardown, None
        if peer.gr_time > 0 and reset is None:
            peer.rtc_in = dict.fromkeys(peer.rtc_in, True)
            peer.gr_deadline = now + peer.gr_time
            return self._start(self._mark_stale(peer))
        return self._start(self._sweep(peer, ("vpnv4", "vpnv6", "rtc"), stale_only=False))

    def _mark_stale(self, peer: _Peer) -> Iterator[list[Output]]:
        """Job: mark stale the paths of the peer's session that just went down."""
        # taken now, not when the job's turn comes: the peer may be back by then
        session, keys = peer.session, list(self._peer_paths[peer.address])

        def job() -> Iterator[list[Output]]:
            for key in keys:
                p = self._bgp.get(key)
                if p is not None and p.session <= session and not p.stale:
                    self._put(key, replace(p, stale=True))
                yield []

        return job()

    def _eor(self, ev: BgpEndOfRib) -> list[Output]:
        peer = self._peer(ev.peer)
        peer.eor_pending.discard(ev.family)
        return self._start(self._eor_sweep(peer, ev.family)) + self._release(self._now)

    def _eor_sweep(self, peer: _Peer, family: str) -> Iterator[list[Output]]:
        yield from self._sweep(peer, (family,))
        if self._stale[peer.address] == 0 and not any(peer.rtc_in.values()):
            peer.gr_deadline = None

    def _sweep(
        self, peer: _Peer, families: Iterable[str], stale_only: bool = True
    ) -> Iterator[list[Output]]:
        """Job: remove the peer's paths of ``families`` (only the stale ones if
        ``stale_only``, else those of its session that just went down)."""
        fams = set(families)
        # taken now, not when the job's turn comes: the peer may be back by then
        session, keys = peer.session, list(self._peer_paths[peer.address])

        def job() -> Iterator[list[Output]]:
            for key in keys:
                p = self._bgp.get(key)
                if (
                    p is not None
                    and family_of(p.prefix) in fams
                    and (p.stale if stale_only else p.session <= session)
                ):
                    self._drop(key)
                    yield self._recompute(p.prefix)
                else:
                    yield []
            if "rtc" in fams and (stale_only or peer.session == session):
                keep: dict[RtcTarget, bool] = {
                    t: s for t, s in peer.rtc_in.items() if stale_only and not s
                }
                if keep != peer.rtc_in:
                    peer.rtc_in = keep
                    yield self._readvertise(peer)

        return job()

    # ------------------------------------------------------------ selection

    def _unindex(self, prefix: IPNetwork, item: tuple[str, tuple[str, str, IPNetwork]]) -> None:
        s = self._by_prefix.get(prefix)
        if s is not None:
            s.discard(item)
            if not s:
                del self._by_prefix[prefix]

    def _paths(self, prefix: IPNetwork) -> list[Path]:
        out = []
        for kind, key in self._by_prefix.get(prefix, ()):
            out.append(self._xmpp[key] if kind == "xmpp" else self._bgp[key])
        return out

    def _candidate(self, p: Path, vrf: Vrf) -> bool:
        if p.source == "xmpp" and p.vrf == vrf.name and not vrf.isolated:
            return True
        if p.label < LABEL_MIN:  # 0..15 reserved (RFC 3032): forwarders refuse them
            return False  # a forwarder cannot use it: never selected, so never half-sent
        return bool(p.targets & vrf.import_targets)

    def _rank(self, p: Path) -> tuple[object, ...]:
        a = p.attrs
        if p.source == "xmpp":
            rid = self.router_id
        else:
            rid = a.originator_id or p.origin_id
        return (
            -p.version,
            0 if p.source == "xmpp" else 1,
            -a.local_pref,
            len(a.as_path),
            a.origin,
            0 if p.ebgp else 1,
            _ip_key(rid),
            a.cluster_list_len,
            _ip_key(p.origin_id) if p.source == "bgp" else (0, 0),
            p.origin_id,
            p.rd,
            str(p.nexthop),
            p.label,
        )

    def _owned(self, paths: list[Path]) -> list[Path]:
        """``paths`` without the XMPP paths of an end-system that does not own
        their prefix in their VRF (see the module docstring: Ownership)."""
        if sum(p.source == "xmpp" for p in paths) <= 1:
            return paths
        out = []
        for p in paths:
            if p.source == "xmpp" and p.vrf and self.owner_of(p.vrf, p.prefix) != p.owner:
                continue
            out.append(p)
        return out

    def best(self, paths: list[Path]) -> Path | None:
        """The decision process over ``paths`` (MED compared within one neighbour AS)."""
        paths = self._owned(paths)
        if len(paths) <= 1:
            return paths[0] if paths else None
        # MED: drop paths beaten on MED by a path from the same neighbouring AS
        # when everything before MED is equal.
        ranked = sorted((self._rank(p), i, p) for i, p in enumerate(paths))
        top = ranked[0][2]
        pre = ranked[0][0][:5]  # version, local, LOCAL_PREF, AS_PATH length, ORIGIN
        tied = [p for r, _, p in ranked if r[:5] == pre]
        if len(tied) > 1:
            by_as: dict[int | None, int] = {}
            for p in tied:
                nas = p.attrs.as_path[0] if p.attrs.as_path else None
                by_as[nas] = min(by_as.get(nas, p.attrs.med), p.attrs.med)
            tied = [
                p
                for p in tied
                if p.attrs.med <= by_as[p.attrs.as_path[0] if p.attrs.as_path else None]
            ]
            return tied[0]
        return top

    def _recompute(self, prefix: IPNetwork) -> list[Output]:
        out: list[Output] = []
        paths = self._paths(prefix)
        for vrf in self.vrfs.values():
            cands = [p for p in paths if self._candidate(p, vrf)]
            new = self.best(cands)
            old = self._selected.get((vrf.name, prefix))
            if new is None:
                if old is not None:
                    self.vrf_updates[vrf.name] = self.vrf_updates.get(vrf.name, 0) + 1
                    del self._selected[(vrf.name, prefix)]
                    del self._vrf_selected[vrf.name][prefix]
                    for sid in sorted(self._subscribers.get(vrf.name, ())):
                        out.append(FwdWithdraw(sid, vrf.vpn, (prefix,)))
            else:
                self._selected[(vrf.name, prefix)] = new
                self._vrf_selected.setdefault(vrf.name, {})[prefix] = new
                if old is None or self._fwd(old) != self._fwd(new):
                    self.vrf_updates[vrf.name] = self.vrf_updates.get(vrf.name, 0) + 1
                    for sid in sorted(self._subscribers.get(vrf.name, ())):
                        out.append(FwdRoutes(sid, vrf.vpn, (self._fwd(new),)))
            # export: per RD (one per forwarder, Vrf.rd_for) the best XMPP path of
            # this VRF for this prefix
            if vrf.export_targets:
                by_rd: dict[str, list[Path]] = {}
                for p in paths:
                    if p.source == "xmpp" and p.vrf == vrf.name:
                        by_rd.setdefault(p.rd, []).append(p)
                key = (vrf.name, prefix)
                gone = self._vrf_rds.pop(key, set()) - set(by_rd)
                if by_rd:
                    self._vrf_rds[key] = set(by_rd)
                for rd in sorted(gone):
                    out += self._export(rd, prefix, None)
                for rd, local in sorted(by_rd.items()):
                    best_local = self.best(local)
                    assert best_local is not None
                    out += self._export(
                        rd,
                        prefix,
                        VpnRoute(
                            rd=rd,
                            prefix=prefix,
                            label=best_local.label,
                            nexthop=best_local.nexthop,
                            targets=vrf.export_targets,
                            version=best_local.version,
                        ),
                    )
        return out

    @staticmethod
    def _fwd(p: Path) -> FwdRoute:
        return FwdRoute(p.prefix, p.nexthop, p.label, p.version)

    # --------------------------------------------------------------- export

    def _eligible(self, peer: _Peer, route: VpnRoute) -> bool:
        if not peer.up or family_of(route.prefix) not in peer.families:
            return False
        if not peer.rtc or not peer.filter_out:
            return True
        if None in peer.rtc_in:
            return True
        if any(t in peer.rtc_in for t in route.targets):
            return True  # route targets are matched exactly (RFC 4684 §4) ...
        return any(  # ... against RTC routes of 96 bits; shorter ones by prefix
            isinstance(k, RtcPrefix) and any(k.covers(t) for t in route.targets)
            for k in peer.rtc_in
        )

    def _export(self, rd: str, prefix: IPNetwork, route: VpnRoute | None) -> list[Output]:
        key = (rd, prefix)
        if route is None:
            self._exports.pop(key, None)
        else:
            self._exports[key] = route
        out: list[Output] = []
        for peer in self._peers.values():
            out += self._advertise(peer, key, route)
        return out

    def _advertise(
        self, peer: _Peer, key: tuple[str, IPNetwork], route: VpnRoute | None
    ) -> list[Output]:
        if not peer.up:
            return []  # what it gets is decided when its session comes up (_peer_up)
        old = peer.adj_out.get(key)
        if route is not None and not self._eligible(peer, route):
            route = None
        if route == old:
            return []
        fam = family_of(key[1])
        _bump(peer.updates_out, fam, 1)
        _out_set(peer, key, route)
        if route is None:
            assert old is not None
            return [BgpWithdraw(peer.address, old)]
        return [BgpAnnounce(peer.address, route)]

    def _readvertise(self, peer: _Peer) -> list[Output]:
        out: list[Output] = []
        keys = sorted(set(self._exports) | set(peer.adj_out), key=_export_order)
        for key in keys:
            out += self._advertise(peer, key, self._exports.get(key))
        return out

    def _wanted_targets(self) -> set[str]:
        out: set[str] = set()
        for name in self._subscribers:
            out |= self.vrfs[name].import_targets
        return out

    def _rtc_update(self) -> list[Output]:
        wanted = self._wanted_targets()
        out: list[Output] = []
        for peer in self._peers.values():
            out += self._rtc_sync(peer, wanted)
        return out

    def _rtc_sync(self, peer: _Peer, wanted: set[str]) -> list[Output]:
        """Our RTC routes to one established peer that negotiated RT-Constraint."""
        if not peer.up or not peer.rtc:
            return []
        out: list[Output] = []
        for t in sorted(peer.rtc_out - wanted):
            out.append(RtcWithdraw(peer.address, t))
        for t in sorted(wanted - peer.rtc_out):
            out.append(RtcAnnounce(peer.address, t))
            peer.rtc_sent[t] = (self._now, False)
        _bump(peer.updates_out, "rtc", len(out))
        for t in list(peer.rtc_sent):
            when, acked = peer.rtc_sent[t]
            if t not in wanted or when + (RTC_ROUTES_WAIT if acked else EOR_WAIT) <= self._now:
                del peer.rtc_sent[t]
        peer.rtc_out = set(wanted)
        return out

    def up_peers(self) -> list[str]:
        return [a for a, p in self._peers.items() if p.up]

    def replay(self) -> list[Output]:
        """Everything currently advertised to BGP (for a fresh BGP speaker)."""
        out: list[Output] = []
        for peer in self._peers.values():
            out += [RtcAnnounce(peer.address, t) for t in sorted(peer.rtc_out)]
            out += [
                BgpAnnounce(peer.address, peer.adj_out[k])
                for k in sorted(peer.adj_out, key=_export_order)
            ]
        return out

    # ----------------------------------------------------------- inspection

    def show_vrfs(self) -> list[dict[str, object]]:
        return [
            {
                "name": v.name,
                "vpn": v.vpn,
                "rd": v.rd,
                "import": sorted(v.import_targets),
                "export": sorted(v.export_targets),
                "systems": list(v.systems),
                "isolated": v.isolated,
                "subscribers": sorted(self._subscribers.get(v.name, ())),
                "routes": len(self._vrf_selected.get(v.name, ())),
            }
            for v in self.vrfs.values()
        ]

    def show_routes(self, vrf: str | None = None) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for v in self.vrfs.values():
            if vrf is not None and v.name != vrf:
                continue
            prefixes = sorted(
                {p for p in self._by_prefix if any(self._candidate(x, v) for x in self._paths(p))},
                key=_net_order,
            )
            for prefix in prefixes:
                sel = self._selected.get((v.name, prefix))
                for p in sorted(
                    (x for x in self._paths(prefix) if self._candidate(x, v)), key=self._rank
                ):
                    out.append(
                        {
                            "vrf": v.name,
                            "prefix": str(prefix),
                            "nexthop": str(p.nexthop),
                            "label": p.label,
                            "version": p.version,
                            "source": p.source,
                            "from": p.origin_id,
                            "rd": p.rd,
                            "targets": sorted(p.targets),
                            "best": p == sel,
                            "stale": p.stale,
                        }
                    )
        return out

    def show_rtc(self) -> dict[str, object]:
        return {
            "originated": sorted(self._wanted_targets()),
            "peers": {
                a: {
                    "rtc": p.rtc,
                    "received": sorted("default" if t is None else str(t) for t in p.rtc_in),
                    "advertised": sorted(p.rtc_out),
                    "routes_out": len(p.adj_out),
                }
                for a, p in self._peers.items()
            },
        }

    def show_peers(self) -> list[dict[str, object]]:
        return [
            {
                "address": a,
                "asn": p.asn,
                "up": p.up,
                "graceful_restart": p.gr_time,
                "stale": self._stale[a],
                "routes_in": len(self._peer_paths[a]),
                "routes_out": len(p.adj_out),
            }
            for a, p in self._peers.items()
        ]

    def show_neighbors(self) -> list[dict[str, object]]:
        """Per peer: configuration, session, negotiated families, counts per family."""
        out: list[dict[str, object]] = []
        for a, p in self._peers.items():
            prefixes_in = {f: n for f, n in sorted(p.prefixes_in.items()) if n}
            if p.rtc_in:
                prefixes_in["rtc"] = len(p.rtc_in)
            prefixes_out = {f: n for f, n in sorted(p.prefixes_out.items()) if n}
            if p.rtc_out:
                prefixes_out["rtc"] = len(p.rtc_out)
            out.append(
                {
                    "address": a,
                    "asn": p.asn,
                    "type": "ebgp" if p.asn != self.config.asn else "ibgp",
                    "up": p.up,
                    "configured_families": sorted(p.configured),
                    "families": sorted(p.families) if p.up else [],
                    "rtc_filter": p.rtc and p.filter_out,
                    "graceful_restart": p.gr_time,
                    "max_prefixes": p.max_prefixes,
                    "stale": self._stale[a],
                    "prefixes_in": prefixes_in,
                    "prefixes_out": prefixes_out,
                    "updates_in": dict(sorted(p.updates_in.items())),
                    "updates_out": dict(sorted(p.updates_out.items())),
                }
            )
        return out

    def adj_rib_in(self, peer: str, family: str | None = None) -> list[dict[str, object]]:
        """The paths ``peer`` sent us (after the AS_PATH loop and own-route checks), with
        every attribute and the VRFs that selected them; RTC routes for ``rtc``."""
        p = self._peer(peer)
        _check_family(family)
        out: list[dict[str, object]] = []
        keys = sorted(self._peer_paths[peer], key=lambda k: (k[1], _net_order(k[2])))
        for key in keys:
            path = self._bgp[key]
            if family is None or family_of(path.prefix) == family:
                info = self._path_info(path)
                info["selected_in"] = sorted(
                    v for v in self.vrfs if self._selected.get((v, path.prefix)) == path
                )
                out.append(info)
        if family in (None, "rtc"):
            for t, stale in sorted(p.rtc_in.items(), key=lambda kv: str(kv[0])):
                out.append(
                    {"family": "rtc", "route_target": "default" if t is None else str(t),
                     "from": peer, "stale": stale}
                )  # fmt: skip
        return out

    def adj_rib_out(self, peer: str, family: str | None = None) -> list[dict[str, object]]:
        """What we advertise to ``peer`` (our adj-RIB-out), per family."""
        p = self._peer(peer)
        _check_family(family)
        out: list[dict[str, object]] = []
        for key in sorted(p.adj_out, key=_export_order):
            r = p.adj_out[key]
            if family is None or family_of(r.prefix) == family:
                out.append(
                    {
                        "family": family_of(r.prefix),
                        "rd": r.rd,
                        "prefix": str(r.prefix),
                        "label": r.label,
                        "nexthop": str(r.nexthop),
                        "targets": sorted(r.targets),
                        "version": r.version,
                    }
                )
        if family in (None, "rtc"):
            out += [{"family": "rtc", "route_target": t} for t in sorted(p.rtc_out)]
        return out

    def lookup(
        self, prefix: str | None = None, rd: str | None = None, vpn: str | None = None
    ) -> list[dict[str, object]]:
        """Every path for a prefix (an address: the longest prefix that holds it, per
        VRF), an RD or a VPN, grouped per (VRF, prefix), with every attribute and why
        the best path won (each other path: the step of the decision process it lost
        on). RibError for a malformed prefix or RD."""
        net: IPNetwork | None = None
        addr: IPAddress | None = None
        if prefix is not None:
            try:
                if "/" in prefix:
                    net = ipaddress.ip_network(prefix, strict=False)
                else:
                    addr = ipaddress.ip_address(prefix)
            except ValueError:
                raise RibError(f"{prefix!r} is not an IP prefix or address") from None
        if rd is not None:
            try:
                rd = parse_rd(rd)
            except ValueError as e:
                raise RibError(str(e)) from None
        out: list[dict[str, object]] = []
        for v in self.vrfs.values():
            if vpn is not None and v.vpn != vpn:
                continue
            if net is not None:
                prefixes = [net] if net in self._by_prefix else []
            else:
                prefixes = sorted(self._by_prefix, key=_net_order)
            entries: list[tuple[IPNetwork, list[Path]]] = []
            for pfx in prefixes:
                if addr is not None and (pfx.version != addr.version or addr not in pfx):
                    continue
                cands = [x for x in self._paths(pfx) if self._candidate(x, v)]
                if rd is not None and not any(x.rd == rd for x in cands):
                    continue
                if cands:
                    entries.append((pfx, cands))
            if addr is not None and entries:  # longest match
                entries = [max(entries, key=lambda e: e[0].prefixlen)]
            for pfx, cands in entries:
                out.append(self._explain(v, pfx, cands))
        return out

    def _explain(self, vrf: Vrf, prefix: IPNetwork, cands: list[Path]) -> dict[str, object]:
        best = self._selected.get((vrf.name, prefix))
        owned = self._owned(cands)
        ranked = sorted(cands, key=self._rank)
        paths: list[dict[str, object]] = []
        for p in ranked:
            info = self._path_info(p)
            info["best"] = p == best
            if p == best:
                info["why"] = "only path" if len(cands) == 1 else f"best of {len(cands)} paths"
            elif p not in owned:
                info["why"] = (
                    f"not the owner: end-system {self.owner_of(vrf.name, prefix)} "
                    "published this prefix first"
                )
            elif best is None:
                info["why"] = "not selected"
            else:
                info["why"] = "lost on " + self._lost_on(p, best, owned)
            paths.append(info)
        return {"vrf": vrf.name, "vpn": vrf.vpn, "prefix": str(prefix), "paths": paths}

    def _lost_on(self, p: Path, best: Path, paths: list[Path]) -> str:
        """The step of the decision process (see :meth:`best`) at which ``p`` lost."""
        rp, rb = self._rank(p), self._rank(best)
        for i in range(5):
            if rp[i] != rb[i]:
                return _step_text(i, p, best, self)
        nas = p.attrs.as_path[0] if p.attrs.as_path else None
        same_as = [
            x for x in paths
            if self._rank(x)[:5] == rp[:5] and (x.attrs.as_path[:1] or (None,))[0] == nas
        ]  # fmt: skip
        lowest = min(x.attrs.med for x in same_as)
        if p.attrs.med > lowest:
            return f"MED {p.attrs.med} > {lowest} (lowest from neighbour AS {nas})"
        for i in range(5, len(rp)):
            if rp[i] != rb[i]:
                return _step_text(i, p, best, self)
        return "equal"

    def _path_info(self, p: Path) -> dict[str, object]:
        a = p.attrs
        info: dict[str, object] = {
            "family": family_of(p.prefix),
            "source": p.source,
            "from": p.origin_id,
            "rd": p.rd,
            "prefix": str(p.prefix),
            "nexthop": str(p.nexthop),
            "label": p.label,
            "version": p.version,
            "targets": sorted(p.targets),
            "stale": p.stale,
        }
        if p.source == "xmpp":
            info["owner"] = p.owner
            info["vrf"] = p.vrf
            return info
        info.update(
            {
                "ebgp": p.ebgp,
                "origin": _ORIGIN_NAMES.get(a.origin, str(a.origin)),
                "as_path": list(a.as_path),
                "as_sets": [list(x) for x in a.as_sets],
                "local_pref": a.local_pref,
                "med": a.med,
                "communities": list(a.communities),
                "ext_communities": [f"target:{t}" for t in sorted(p.targets)]
                + ([f"version:{p.version}"] if p.version else [])
                + list(a.ext_communities),
                "originator_id": a.originator_id,
                "cluster_list": list(a.cluster_list),
            }
        )
        return info

    def reconfigure(self, config: Config) -> list[Output]:
        """Apply a new configuration (a reload): neighbors and VRFs added, removed or
        changed; the rest is left alone (RibError, nothing changed, when a
        ``[server]`` value differs: it needs a restart).

        A removed peer's paths go (its session is ended by the BGP speaker); a
        changed one keeps its session state and gets the new families, RTC
        filtering and prefix limit. A removed VRF's forwarder paths go, its
        subscribers get its routes withdrawn and lose the subscription; a
        changed VRF's forwarder paths get its new RD and export targets. Every
        prefix is selected and exported again, as a bulk job.
        """
        for attr in ("router_id", "asn", "local_address"):
            if getattr(config, attr) != getattr(self.config, attr):
                raise RibError(f"server.{attr}: cannot change on reload (restart the daemon)")
        out: list[Output] = []
        new_peers = {n.address: n for n in config.neighbors}
        for a in [a for a in self._peers if a not in new_peers]:
            for key in list(self._peer_paths[a]):
                out += self._bgp_remove(key)
            del self._peers[a], self._peer_paths[a], self._stale[a]
        for a, n in new_peers.items():
            old = self._peers.get(a)
            if old is None:
                self._peers[a] = _new_peer(n)
                self._peer_paths[a] = {}
                self._stale[a] = 0
                continue
            old.asn, old.configured_rtc = n.asn, "rtc" in n.families
            old.filter_out, old.configured = n.rtc_filter_out, frozenset(n.families)
            old.max_prefixes = n.max_prefixes
            if old.up:
                old.families &= old.configured
        new_vrfs = {v.name: v for v in config.vrfs}
        for name, vrf in self.vrfs.items():
            new = new_vrfs.get(name)
            if new is not None and new == vrf:
                continue
            for key in [k for k in self._xmpp if k[1] == name]:
                path = self._xmpp[key]
                if new is None:  # its forwarders' paths go
                    sid, _, owner = key[0].partition(":")
                    out += self._xmpp_del(XmppRouteDel(sid, vrf.vpn, key[2], owner), vrf)
                else:
                    self._xmpp[key] = replace(
                        path, rd=new.rd_for(str(path.nexthop)), targets=new.export_targets
                    )
            if new is None:
                for sid in sorted(self._subscribers.pop(name, ())):
                    table = self._vrf_selected.get(name, {})
                    if table:
                        out.append(FwdWithdraw(sid, vrf.vpn, tuple(sorted(table, key=_net_order))))
                for pfx in list(self._vrf_selected.pop(name, {})):
                    del self._selected[(name, pfx)]
                for vkey in [k for k in self._vrf_rds if k[0] == name]:
                    for rd in sorted(self._vrf_rds.pop(vkey)):
                        out += self._export(rd, vkey[1], None)
                self.vrf_updates.pop(name, None)
        self.config, self.vrfs = config, new_vrfs
        for name in new_vrfs:
            self.vrf_updates.setdefault(name, 0)
        out += self._rtc_update()
        prefixes = sorted(self._by_prefix, key=_net_order)

        def job() -> Iterator[list[Output]]:
            for pfx in prefixes:
                yield self._recompute(pfx) if pfx in self._by_prefix else []

        return out + self._start(job())

    def sizes(self) -> dict[str, int]:
        return {
            "xmpp_paths": len(self._xmpp),
            "bgp_paths": len(self._bgp),
            "selected": len(self._selected),
            "exports": len(self._exports),
            "subscriptions": sum(len(s) for s in self._subscribers.values()),
            "rtc_originated": len(self._wanted_targets()),
        }


_ORIGIN_NAMES = {ORIGIN_IGP: "igp", ORIGIN_EGP: "egp", ORIGIN_INCOMPLETE: "incomplete"}
_STEPS = (
    "interface version",
    "locally learned (XMPP) over BGP",
    "LOCAL_PREF",
    "AS_PATH length",
    "ORIGIN",
    "eBGP over iBGP",
    "router id",
    "CLUSTER_LIST length",
    "peer address",
    "source",
    "RD",
    "next hop",
    "label",
)


def _step_text(i: int, p: Path, best: Path, rib: Rib) -> str:
    """'LOCAL_PREF 100 < 200': step ``i`` of the rank, ``p``'s value against the best's."""
    a, b = p.attrs, best.attrs
    name = _STEPS[i]
    if i == 0:
        return f"{name} {p.version} < {best.version}"
    if i == 1:
        return name
    if i == 2:
        return f"{name} {a.local_pref} < {b.local_pref}"
    if i == 3:
        return f"{name} {len(a.as_path)} > {len(b.as_path)}"
    if i == 4:
        return f"{name} {_ORIGIN_NAMES[a.origin]} > {_ORIGIN_NAMES[b.origin]}"
    if i == 6:
        rid = a.originator_id or p.origin_id
        brid = rib.router_id if best.source == "xmpp" else (b.originator_id or best.origin_id)
        return f"{name} {rid} > {brid}"
    if i == 7:
        return f"{name} {len(a.cluster_list) or a.cluster_list_len} > " + str(
            len(b.cluster_list) or b.cluster_list_len
        )
    if i == 8:
        return f"{name} {p.origin_id} > {best.origin_id}"
    values = {9: (p.origin_id, best.origin_id), 10: (p.rd, best.rd),
              11: (p.nexthop, best.nexthop), 12: (p.label, best.label)}  # fmt: skip
    if i in values:
        mine, theirs = values[i]
        return f"{name} {mine} > {theirs} (tie-break)"
    return name


def _check_family(family: str | None) -> None:
    if family is not None and family not in ("vpnv4", "vpnv6", "rtc"):
        raise RibError(f"family {family!r} is not one of vpnv4, vpnv6, rtc")


def coalesce(outputs: Iterable[Output]) -> list[Output]:
    """Merge runs of forwarder outputs per (system id, VPN) into fewer, larger ones.

    Per forwarder and VPN the order is kept: consecutive ``FwdRoutes`` become
    one (a prefix repeated keeps its last value, in its first place),
    consecutive ``FwdWithdraw`` one. Everything else keeps its position.

    Linear in the number of routes and prefixes: a run is gathered in one
    dict and turned into its output once, at the end.
    """
    out: list[Output] = []
    last: dict[tuple[str, str], int] = {}  # key -> index in out of its last output
    # index in out -> the routes / prefixes gathered for the run that starts there
    runs: dict[int, dict[IPNetwork, FwdRoute | None]] = {}
    for o in outputs:
        if isinstance(o, FwdRoutes | FwdWithdraw | FwdEndOfRib):
            key = (o.system_id, o.vpn)
            i = last.get(key)
            if i is not None:
                prev = out[i]
                if isinstance(o, FwdRoutes) and isinstance(prev, FwdRoutes):
                    run = runs.get(i)
                    if run is None:
                        run = runs[i] = {r.prefix: r for r in prev.routes}
                    run.update((r.prefix, r) for r in o.routes)
                    continue
                if isinstance(o, FwdWithdraw) and isinstance(prev, FwdWithdraw):
                    run = runs.get(i)
                    if run is None:
                        run = runs[i] = dict.fromkeys(prev.prefixes)
                    run.update(dict.fromkeys(o.prefixes))
                    continue
            last[key] = len(out)
        out.append(o)
    for i, run in runs.items():
        first = out[i]
        if isinstance(first, FwdRoutes):
            routes = tuple(r for r in run.values() if r is not None)
            out[i] = FwdRoutes(first.system_id, first.vpn, routes)
        elif isinstance(first, FwdWithdraw):
            out[i] = FwdWithdraw(first.system_id, first.vpn, tuple(run))
    return out


def _net_order(n: IPNetwork) -> tuple[int, int, int]:
    return (n.version, int(n.network_address), n.prefixlen)


def _export_order(key: tuple[str, IPNetwork]) -> tuple[str, tuple[int, int, int]]:
    return (key[0], _net_order(key[1]))


def _new_peer(n: Neighbor) -> _Peer:
    return _Peer(
        n.address,
        n.asn,
        "rtc" in n.families,
        n.rtc_filter_out,
        frozenset(n.families),
        max_prefixes=n.max_prefixes,
    )


def _bump(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


def _out_set(peer: _Peer, key: tuple[str, IPNetwork], route: VpnRoute | None) -> None:
    """Record ``route`` (None: nothing) for ``key`` in the peer's adj-RIB-out."""
    had = key in peer.adj_out
    if route is None:
        peer.adj_out.pop(key, None)
    else:
        peer.adj_out[key] = route
    _bump(peer.prefixes_out, family_of(key[1]), (route is not None) - had)
