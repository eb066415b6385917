"""VRF state of the forwarder: pure (no I/O), every time-dependent call takes ``now``.

Inputs:

* end-system changes, as esxmpp.session plans them (Subscribe, Unsubscribe,
  Publish, Retract, Associate, Dissociate) -> :meth:`VrfState.end_system`;
  raises ``DialectError`` (and changes nothing) for requests it refuses.
* route-server notifications -> :meth:`routes_update`, :meth:`routes_retract`,
  :meth:`end_of_rib`; :meth:`routes_stale` when the route servers are lost.
* the clock -> :meth:`expire`.

Outputs (views the asyncio shell diffs against what it has sent):

* :meth:`exports`: routes to publish to the route servers,
* :meth:`subscribed_vpns`: VPNs to subscribe to at a route server,
* :meth:`selected_routes`: per VRF, prefix -> next hop targets to install
  (the input of control.desired).

Draft §5: a locally originated route is never installed for local delivery by
itself; only a route received from a route server with our own infrastructure
address and the label of a local interface of the same VRF becomes a local
delivery target.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from control.config import Limits, VpnConfig
from control.labels import ExhaustedError, IdPool
from esxmpp.dialect import (
    Associate,
    DialectError,
    Dissociate,
    IPAddress,
    IPNetwork,
    Publish,
    Request,
    Retract,
    RouteEntry,
    Subscribe,
    Unsubscribe,
    format_system_id,
    nexthop_problem,
    parse_item_node,
)

log = logging.getLogger("control.vrf")

STEP = 1000  # items a step of a sliced computation handles at most (see Steps)

R = TypeVar("R")
# A computation in steps: it yields (None) after at most STEP items of work
# and returns its result; an asyncio shell awaits between steps
# (control.driver), so a 100,000-route table never holds the loop in one go.
Steps = Generator[None, None, R]


def finish(steps: Steps[R]) -> R:
    """Run a sliced computation to its end at once; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as e:
            return e.value  # type: ignore[no-any-return]


def net_key(prefix: IPNetwork) -> tuple[int, int, int]:
    """Sort key of a prefix of either family: IPv4 before IPv6, then address and
    length (IPv4 and IPv6 networks do not compare with each other)."""
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def export_key(ex: Export) -> tuple[bytes, str, tuple[int, int, int], int, int]:
    """Sort key of an :class:`Export` (its prefixes may be of both families)."""
    return (ex.system_id, ex.vpn, net_key(ex.prefix), ex.label, ex.version)


@dataclass
class Interface:
    """A virtual interface: (end-system, VLAN) on a switch port, in one VRF."""

    system_id: bytes
    vpn: str
    vlan: int
    port: int
    vif_id: int
    label: int
    # prefix -> (item node, version)
    addresses: dict[IPNetwork, tuple[str, int]] = field(default_factory=dict)
    unconfirmed: bool = False  # restored after a restart, not re-announced yet
    unconfirmed_addresses: set[IPNetwork] = field(default_factory=set)

    @property
    def mac(self) -> int:
        return int.from_bytes(self.system_id, "big")


@dataclass(frozen=True, order=True)
class RemoteTarget:
    """Encapsulate toward another forwarder."""

    nexthop: ipaddress.IPv4Address
    label: int


@dataclass(frozen=True, order=True)
class LocalTarget:
    """Deliver to a local virtual interface (route received back, §5)."""

    vif_id: int
    port: int
    vlan: int
    mac: int


Target = RemoteTarget | LocalTarget


@dataclass(frozen=True, order=True)
class Export:
    """A route this forwarder publishes to the route servers."""

    system_id: bytes
    vpn: str
    prefix: IPNetwork
    label: int
    version: int


@dataclass
class RemoteItem:
    entry: RouteEntry
    stale_since: float | None = None


@dataclass
class Vrf:
    name: str
    vrf_id: int


class VrfState:
    def __init__(
        self,
        infra_address: ipaddress.IPv4Address,
        end_system_ports: Mapping[bytes, int],
        stale: float = 60.0,
        label_range: tuple[int, int] = (16, (1 << 20) - 1),
        vpns: Mapping[str, VpnConfig] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.infra = infra_address
        self.ports = end_system_ports
        self.stale = stale
        # the VPNs served and what may be published in each (None: any VPN,
        # any prefix: tests of other things); per end-system quotas
        self.vpns = vpns
        self.limits = limits or Limits(4095, 1 << 20)
        self.labels = IdPool(*label_range, hold=stale, name="label")
        self.vif_ids = IdPool(1, 4095, hold=stale, name="vif id")  # vif counters: 4096
        self.vrf_ids = IdPool(1, 0xFFFF, hold=stale, name="vrf id")
        self.interfaces: dict[tuple[bytes, str], Interface] = {}
        self.vrfs: dict[str, Vrf] = {}
        self.published: dict[bytes, dict[str, RouteEntry]] = {}
        self.remote: dict[str, dict[str, RemoteItem]] = {}
        self.unconfirmed_deadline: float | None = None
        self.unconfirmed_published: set[tuple[bytes, str]] = set()
        self.generation = 0  # bumped on every change (the shell's "dirty" signal)
        self.refused_routes = 0  # routes from route servers refused (martian next hop)

    # ------------------------------------------------------------------ views
    def interface(self, system_id: bytes, vpn: str) -> Interface | None:
        return self.interfaces.get((system_id, vpn))

    def interfaces_of(self, vpn: str) -> list[Interface]:
        return [i for (_, v), i in sorted(self.interfaces.items()) if v == vpn]

    def subscribed_vpns(self) -> set[str]:
        return set(self.vrfs)

    def exports(self) -> set[Export]:
        return {
            Export(i.system_id, i.vpn, p, i.label, ver)
            for i in self.interfaces.values()
            for p, (_node, ver) in i.addresses.items()
        }

    def selected_routes(self, vpn: str) -> dict[IPNetwork, frozenset[Target]]:
        """prefix -> targets of the newest version received for it (ECMP when several)."""
        return finish(self.selected_steps(vpn))

    def selected_steps(self, vpn: str) -> Steps[dict[IPNetwork, frozenset[Target]]]:
        """:meth:`selected_routes` in steps of at most :data:`STEP` routes; the
        routes are those of when it starts (the state may change between steps)."""
        best: dict[IPNetwork, tuple[int, set[tuple[IPAddress, int]]]] = {}
        items = list(self.remote.get(vpn, {}).values())
        n = 0  # items handled: a step ends every STEP of them, across both passes
        for item in items:
            n += 1
            if n % STEP == 0:
                yield
            e = item.entry
            cur = best.get(e.prefix)
            if cur is None or e.version > cur[0]:
                best[e.prefix] = (e.version, {(e.nexthop, e.label)})
            elif e.version == cur[0]:
                cur[1].add((e.nexthop, e.label))
        local = {i.label: i for i in self.interfaces_of(vpn)}
        out: dict[IPNetwork, frozenset[Target]] = {}
        for prefix, (_v, hops) in best.items():
            n += 1
            if n % STEP == 0:
                yield
            targets: set[Target] = set()
            for nh, label in hops:
                if nh == self.infra:
                    itf = local.get(label)
                    if itf is not None:
                        targets.add(LocalTarget(itf.vif_id, itf.port, itf.vlan, itf.mac))
                elif isinstance(nh, ipaddress.IPv4Address):
                    targets.add(RemoteTarget(nh, label))
            if targets:
                out[prefix] = frozenset(targets)
        return out

    # ------------------------------------------------------------- end-systems
    def end_system(self, system_id: bytes, changes: Sequence[Request], now: float) -> None:
        """Apply the changes esxmpp planned for one request of ``system_id``.

        Validation comes first: a refused request raises DialectError and
        leaves the state exactly as it was.
        """
        for ch in changes:
            self._check(system_id, ch)
        for ch in changes:
            self._apply(system_id, ch, now)
        if changes:
            self.generation += 1

    def _check(self, sid: bytes, ch: Request) -> None:
        sys_text = format_system_id(sid)
        if isinstance(ch, Subscribe):
            if ch.vlan_id is None:
                raise DialectError(
                    "bad-request",
                    f"subscribe {ch.node!r}: option vpn#vlan_id is required "
                    "(this is an external forwarder)",
                )
            if not 1 <= ch.vlan_id <= 4094:
                raise DialectError("bad-request", f"vpn#vlan_id {ch.vlan_id} outside 1..4094")
            if sid not in self.ports:
                raise DialectError(
                    "forbidden", f"system {sys_text} has no end-system port configured"
                )
            if self.vpns is not None and ch.node not in self.vpns:
                raise DialectError(
                    "forbidden", f"VPN {ch.node!r} is not served by this forwarder (vpns)"
                )
            cur = self.interfaces.get((sid, ch.node))
            have = sum(s == sid for s, _ in self.interfaces)
            cap = self.limits.interfaces_per_end_system
            if cur is None and have >= cap:
                raise DialectError(
                    "resource-constraint",
                    f"system {sys_text} already has {have} interfaces "
                    f"(limits.interfaces_per_end_system = {cap})",
                )
            if cur is not None and cur.vlan != ch.vlan_id:
                raise DialectError(
                    "conflict",
                    f"already subscribed to VPN {ch.node!r} with vlan {cur.vlan}; "
                    "unsubscribe first",
                )
            for (s, vpn), itf in self.interfaces.items():
                if s == sid and itf.vlan == ch.vlan_id and vpn != ch.node:
                    raise DialectError(
                        "conflict", f"vlan {ch.vlan_id} is already used by VPN {vpn!r}"
                    )
        elif isinstance(ch, Publish):
            _owner, prefix = parse_item_node(ch.node)
            if prefix != ch.entry.prefix:
                raise DialectError(
                    "bad-request",
                    f"node {ch.node!r} names prefix {prefix} but the entry has {ch.entry.prefix}",
                )
            pubs = self.published.get(sid, {})
            cap = self.limits.addresses_per_end_system
            if ch.node not in pubs and len(pubs) >= cap:
                raise DialectError(
                    "resource-constraint",
                    f"system {sys_text} already publishes {len(pubs)} addresses "
                    f"(limits.addresses_per_end_system = {cap})",
                )
        elif isinstance(ch, Associate):
            if (sid, ch.collection) not in self.interfaces:
                raise DialectError("item-not-found", f"not subscribed to VPN {ch.collection!r}")
            entry = self.published.get(sid, {}).get(ch.node)
            if entry is None:
                raise DialectError("item-not-found", f"node {ch.node!r} is not published")
            for (s, vpn), other in self.interfaces.items():
                if s == sid and vpn != ch.collection and entry.prefix in other.addresses:
                    raise DialectError(
                        "conflict",
                        f"{entry.prefix} is already an address of this system in VPN {vpn!r}",
                    )
                if s != sid and vpn == ch.collection and entry.prefix in other.addresses:
                    # first come: the address is the other end-system's until it
                    # retracts it (or its state expires)
                    raise DialectError(
                        "conflict",
                        f"{entry.prefix} in VPN {vpn!r} belongs to end-system "
                        f"{format_system_id(s)}",
                    )
            self._check_policy(sid, ch.collection, entry.prefix)

    def _check_policy(self, sid: bytes, vpn: str, prefix: IPNetwork) -> None:
        """DialectError('forbidden') unless ``sid`` may use ``prefix`` in ``vpn``."""
        policy = None if self.vpns is None else self.vpns.get(vpn)
        if policy is None:
            return
        if policy.host_routes_only and prefix.prefixlen != prefix.max_prefixlen:
            raise DialectError(
                "forbidden",
                f"{prefix}: only host routes (/{prefix.max_prefixlen}) may be published "
                f"in VPN {vpn!r} (vpns.{vpn}.host_routes_only)",
            )
        ranges = policy.ranges(sid)
        if not any(
            prefix.version == r.version and prefix.subnet_of(r)  # type: ignore[arg-type]
            for r in ranges
        ):
            key = "end_systems" if sid in policy.end_systems else "prefixes"
            raise DialectError(
                "forbidden",
                f"{prefix} is outside the prefixes system {format_system_id(sid)} may use "
                f"in VPN {vpn!r} (vpns.{vpn}.{key})",
            )

    def _apply(self, sid: bytes, ch: Request, now: float) -> None:
        if isinstance(ch, Subscribe):
            assert ch.vlan_id is not None
            cur = self.interfaces.get((sid, ch.node))
            if cur is not None:
                cur.unconfirmed = False
                return
            self._add_interface(sid, ch.node, ch.vlan_id, now)
        elif isinstance(ch, Unsubscribe):
            self._remove_interface(sid, ch.node, now)
        elif isinstance(ch, Publish):
            self.published.setdefault(sid, {})[ch.node] = ch.entry
            self.unconfirmed_published.discard((sid, ch.node))
            # a new version of an associated address is re-exported
            for itf in self.interfaces.values():
                if itf.system_id == sid and ch.entry.prefix in itf.addresses:
                    node, _ = itf.addresses[ch.entry.prefix]
                    if node == ch.node:
                        itf.addresses[ch.entry.prefix] = (node, ch.entry.version)
        elif isinstance(ch, Retract):
            pubs = self.published.get(sid, {})
            entry = pubs.pop(ch.node, None)
            if not pubs:
                self.published.pop(sid, None)
            if entry is not None:
                for itf in self.interfaces.values():
                    if (
                        itf.system_id == sid
                        and itf.addresses.get(entry.prefix, ("",))[0] == ch.node
                    ):
                        del itf.addresses[entry.prefix]
        elif isinstance(ch, Associate):
            itf = self.interfaces[(sid, ch.collection)]
            entry = self.published[sid][ch.node]
            itf.addresses[entry.prefix] = (ch.node, entry.version)
            itf.unconfirmed_addresses.discard(entry.prefix)
        elif isinstance(ch, Dissociate):
            itf2 = self.interfaces.get((sid, ch.collection))
            if itf2 is not None:
                for p, (node, _) in list(itf2.addresses.items()):
                    if node == ch.node:
                        del itf2.addresses[p]
                        itf2.unconfirmed_addresses.discard(p)

    def _add_interface(self, sid: bytes, vpn: str, vlan: int, now: float) -> Interface:
        vrf = self.vrfs.get(vpn)
        allocated: list[tuple[IdPool, int, int]] = []
        try:
            if vrf is None:
                before = self.vrf_ids.next
                vrf_id = self.vrf_ids.allocate(now)
                allocated.append((self.vrf_ids, vrf_id, before))
            before = self.vif_ids.next
            vif_id = self.vif_ids.allocate(now)
            allocated.append((self.vif_ids, vif_id, before))
            label = self.labels.allocate(now)
        except ExhaustedError as e:
            for pool, i, before in allocated:
                pool.cancel(i, before)  # never handed out: no hold, pointer back
            raise DialectError("resource-constraint", str(e)) from None
        if vrf is None:
            self.vrfs[vpn] = Vrf(vpn, vrf_id)
            self.remote.setdefault(vpn, {})
        itf = Interface(sid, vpn, vlan, self.ports[sid], vif_id, label)
        self.interfaces[(sid, vpn)] = itf
        return itf

    def _remove_interface(self, sid: bytes, vpn: str, now: float) -> None:
        itf = self.interfaces.pop((sid, vpn), None)
        if itf is None:
            return
        self.labels.release(itf.label, now)
        self.vif_ids.release(itf.vif_id, now)
        if not self.interfaces_of(vpn):
            vrf = self.vrfs.pop(vpn)
            self.vrf_ids.release(vrf.vrf_id, now)
            self.remote.pop(vpn, None)

    # ------------------------------------------------------------ route server
    def routes_update(self, vpn: str, items: Iterable[tuple[str, RouteEntry]], now: float) -> None:
        del now
        table = self.remote.get(vpn)
        if table is None:  # not (or no longer) subscribed
            return
        for item_id, entry in items:
            problem = nexthop_problem(entry.nexthop)
            if problem is not None:
                # never a tunnel peer; what the item said before is withdrawn
                self.refused_routes += 1
                if self.refused_routes <= 10 or self.refused_routes % 1000 == 0:
                    log.warning(
                        "route %s in VPN %r from the route server refused: %s (%d so far)",
                        entry.prefix, vpn, problem, self.refused_routes,
                    )  # fmt: skip
                table.pop(item_id, None)
                continue
            table[item_id] = RemoteItem(entry)
        self.generation += 1

    def routes_retract(self, vpn: str, item_ids: Iterable[str]) -> None:
        table = self.remote.get(vpn)
        if table is None:
            return
        for i in item_ids:
            table.pop(i, None)
        self.generation += 1

    def routes_stale(self, now: float, vpns: Iterable[str] | None = None) -> None:
        """The routes of ``vpns`` (all) are no longer backed by a route server
        session: keep them for ``stale`` seconds unless they are sent again."""
        for vpn in self.remote if vpns is None else vpns:
            for item in self.remote.get(vpn, {}).values():
                if item.stale_since is None:
                    item.stale_since = now

    def end_of_rib(self, vpn: str) -> None:
        """A route server finished sending ``vpn``'s table: drop what it did not resend."""
        table = self.remote.get(vpn)
        if table is None:
            return
        gone = [i for i, it in table.items() if it.stale_since is not None]
        for i in gone:
            del table[i]
        if gone:
            self.generation += 1

    # ------------------------------------------------------------------ clock
    def next_deadline(self) -> float | None:
        ds = [
            it.stale_since + self.stale
            for t in self.remote.values()
            for it in t.values()
            if it.stale_since is not None
        ]
        if self.unconfirmed_deadline is not None:
            ds.append(self.unconfirmed_deadline)
        return min(ds) if ds else None

    def expire(self, now: float) -> list[str]:
        """Remove what went stale ``stale`` seconds ago; returns what was removed."""
        removed: list[str] = []
        for vpn, table in self.remote.items():
            for i, it in list(table.items()):
                if it.stale_since is not None and it.stale_since + self.stale <= now:
                    del table[i]
                    removed.append(f"route {vpn} {i}")
        if self.unconfirmed_deadline is not None and self.unconfirmed_deadline <= now:
            self.unconfirmed_deadline = None
            for key, itf in list(self.interfaces.items()):
                if itf.unconfirmed:
                    self._remove_interface(*key, now)
                    removed.append(f"interface {format_system_id(key[0])} {key[1]}")
                    continue
                for p in itf.unconfirmed_addresses:
                    itf.addresses.pop(p, None)
                    removed.append(f"address {format_system_id(key[0])} {key[1]} {p}")
                itf.unconfirmed_addresses.clear()
            for sid, node in sorted(self.unconfirmed_published):
                pubs = self.published.get(sid, {})
                if pubs.pop(node, None) is not None:
                    removed.append(f"published {node}")
                if not pubs:
                    self.published.pop(sid, None)
            self.unconfirmed_published.clear()
        if removed:
            self.generation += 1
        return removed

    # ------------------------------------------------------------ persistence
    def _pools(self) -> dict[str, IdPool]:
        return {"label": self.labels, "vif_id": self.vif_ids, "vrf_id": self.vrf_ids}

    def to_json(self, now: float) -> dict[str, Any]:
        """Everything :meth:`restore` needs, including the id pools' hold-downs
        (seconds left as of ``now``) and next-fit pointers."""
        return {
            "pools": {k: p.to_json(now) for k, p in self._pools().items()},
            "vrfs": {v.name: v.vrf_id for v in self.vrfs.values()},
            "interfaces": [
                {
                    "system_id": i.system_id.hex(),
                    "vpn": i.vpn,
                    "vlan": i.vlan,
                    "port": i.port,
                    "vif_id": i.vif_id,
                    "label": i.label,
                    "addresses": [
                        [str(p), n, v]
                        for p, (n, v) in sorted(i.addresses.items(), key=lambda kv: net_key(kv[0]))
                    ],
                }
                for _, i in sorted(self.interfaces.items())
            ],
            "published": {
                sid.hex(): {n: _entry_json(e) for n, e in sorted(nodes.items())}
                for sid, nodes in sorted(self.published.items())
            },
            "remote": {
                vpn: {i: _entry_json(it.entry) for i, it in sorted(t.items())}
                for vpn, t in sorted(self.remote.items())
            },
        }

    def restore(self, data: Mapping[str, Any], now: float) -> None:
        """Load state saved by :meth:`to_json` after a restart: everything is
        kept (so forwarding is undisturbed) but must be re-announced by its
        source within ``stale`` seconds or it is removed."""
        for name, vrf_id in data.get("vrfs", {}).items():
            self.vrf_ids.reserve(vrf_id)
            self.vrfs[name] = Vrf(name, vrf_id)
            self.remote[name] = {}
        for d in data.get("interfaces", []):
            sid = bytes.fromhex(d["system_id"])
            self.vif_ids.reserve(d["vif_id"])
            self.labels.reserve(d["label"])
            itf = Interface(sid, d["vpn"], d["vlan"], d["port"], d["vif_id"], d["label"])
            itf.unconfirmed = True
            for p, n, v in d["addresses"]:
                net = ipaddress.ip_network(p)
                itf.addresses[net] = (n, v)
                itf.unconfirmed_addresses.add(net)
            self.interfaces[(sid, d["vpn"])] = itf
        for sid_hex, nodes in data.get("published", {}).items():
            sid = bytes.fromhex(sid_hex)
            self.published[sid] = {n: _entry_from(e) for n, e in nodes.items()}
            self.unconfirmed_published.update((sid, n) for n in nodes)
        pools = data.get("pools", {})  # absent in files of older versions
        for key, pool in self._pools().items():
            if key in pools:
                pool.restore_json(pools[key], now)
        for vpn, items in data.get("remote", {}).items():
            if vpn in self.remote:
                self.remote[vpn] = {
                    i: RemoteItem(_entry_from(e), stale_since=now) for i, e in items.items()
                }
        if self.interfaces or self.published:
            self.unconfirmed_deadline = now + self.stale
        self.generation += 1


def _entry_json(e: RouteEntry) -> list[Any]:
    return [str(e.prefix), str(e.nexthop), e.label, e.version]


def _entry_from(d: Sequence[Any]) -> RouteEntry:
    return RouteEntry(ipaddress.ip_network(d[0]), ipaddress.ip_address(d[1]), int(d[2]), int(d[3]))
