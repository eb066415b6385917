"""Desired switch state: a pure function of the VRF state and the static config.

Every route points at a next hop id; a next hop id is an action-selector
group (same number) whose members are the route's targets (one member per
distinct target, shared by all groups using it). Ids are kept stable across
calls by :class:`NexthopIds` (and saved across restarts), so a route whose
targets do not change never causes a write.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from control import tables as T
from control.config import FabricConfig
from control.labels import IdPool
from control.p4rt import (
    ActionProfileGroup,
    ActionProfileMember,
    Entity,
    Exact,
    FrozenMap,
    Lpm,
    MulticastGroup,
    Replica,
    TableEntry,
)
from control.vrf import (
    STEP,
    Interface,
    LocalTarget,
    RemoteTarget,
    Steps,
    Target,
    VrfState,
    finish,
)

Names = Callable[[str], str]


def _same(name: str) -> str:
    return name


class NexthopIds:
    """Stable ids: target -> member id, target set -> next hop (= group) id."""

    def __init__(self, hold: float = 0.0) -> None:
        self.member_pool = IdPool(1, 0xFFFFFF, hold, "member id")
        self.nh_pool = IdPool(1, 0xFFFF, hold, "next hop id")
        self.members: dict[Target, int] = {}
        self.nexthops: dict[frozenset[Target], int] = {}

    def assign(self, sets: Iterable[frozenset[Target]], now: float) -> None:
        """Give ids to every set (and its targets); free ids no set uses any more."""
        wanted = set(sets)
        targets = {t for s in wanted for t in s}
        for t in sorted(targets - set(self.members), key=_tkey):
            self.members[t] = self.member_pool.allocate(now)
        for s in sorted(wanted - set(self.nexthops), key=lambda s: sorted(map(_tkey, s))):
            self.nexthops[s] = self.nh_pool.allocate(now)
        for s in set(self.nexthops) - wanted:
            self.nh_pool.release(self.nexthops.pop(s), now)
        for t in set(self.members) - targets:
            self.member_pool.release(self.members.pop(t), now)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "pools": {
                "member": self.member_pool.to_json(now),
                "nexthop": self.nh_pool.to_json(now),
            },
            "members": [[_tjson(t), i] for t, i in sorted(self.members.items(), key=_ikey)],
            "nexthops": [
                [[_tjson(t) for t in sorted(s, key=_tkey)], i]
                for s, i in sorted(self.nexthops.items(), key=_ikey)
            ],
        }

    def restore(self, data: Mapping[str, Any], now: float) -> None:
        for t, i in data.get("members", []):
            self.member_pool.reserve(i)
            self.members[_tfrom(t)] = i
        for ts, i in data.get("nexthops", []):
            self.nh_pool.reserve(i)
            self.nexthops[frozenset(_tfrom(t) for t in ts)] = i
        pools = data.get("pools", {})  # absent in files of older versions
        for key, pool in (("member", self.member_pool), ("nexthop", self.nh_pool)):
            if key in pools:
                pool.restore_json(pools[key], now)


def _ikey(kv: tuple[Any, int]) -> int:
    return kv[1]


def _tkey(t: Target) -> tuple[Any, ...]:
    if isinstance(t, RemoteTarget):
        return (0, int(t.nexthop), t.label)
    return (1, t.vif_id, t.port, t.vlan, t.mac)


def _tjson(t: Target) -> list[Any]:
    if isinstance(t, RemoteTarget):
        return ["remote", str(t.nexthop), t.label]
    return ["local", t.vif_id, t.port, t.vlan, t.mac]


def _tfrom(d: list[Any]) -> Target:
    if d[0] == "remote":
        return RemoteTarget(ipaddress.IPv4Address(d[1]), int(d[2]))
    return LocalTarget(int(d[1]), int(d[2]), int(d[3]), int(d[4]))


def _member(t: Target, member_id: int, n: Names) -> ActionProfileMember:
    if isinstance(t, RemoteTarget):
        return ActionProfileMember(
            n(T.NEXTHOP_SELECTOR),
            member_id,
            n(T.A_ENCAP),
            {T.P_LABEL: t.label, T.P_REMOTE: int(t.nexthop)},
        )
    return ActionProfileMember(
        n(T.NEXTHOP_SELECTOR),
        member_id,
        n(T.A_DELIVER_LOCAL),
        {T.P_VIF_ID: t.vif_id, T.P_PORT: t.port, T.P_VLAN_ID: t.vlan, T.P_DST_MAC: t.mac},
    )


def fabric_entities(fabric: FabricConfig, n: Names = _same) -> set[Entity]:
    """Entries that depend only on the configuration."""
    out: set[Entity] = {
        TableEntry(
            n(T.FABRIC_CONFIG),
            action=n(T.A_SET_FABRIC_CONFIG),
            params={T.P_MY_IPV4: int(fabric.infra_address), T.P_MTU: fabric.mtu},
            is_default=True,
        )
    }
    for p in fabric.ports:
        out.add(TableEntry(n(T.FABRIC_PORT), {T.F_INGRESS_PORT: Exact(p)}, n(T.A_SET_FABRIC_PORT)))
    for p, vlan in fabric_vlans(fabric):
        out.add(
            TableEntry(
                n(T.FABRIC_VLAN),
                {T.F_INGRESS_PORT: Exact(p), T.F_VLAN_ID: Exact(vlan)},
                n(T.A_PERMIT_FABRIC_VLAN),
            )
        )
    for u in fabric.underlay:
        out.add(
            TableEntry(
                n(T.UNDERLAY),
                {T.F_REMOTE: Lpm(int(u.prefix.network_address), u.prefix.prefixlen)},
                n(T.A_SET_UNDERLAY),
                {
                    T.P_PORT: u.port,
                    T.P_SRC_MAC: u.src_mac,
                    T.P_DST_MAC: u.dst_mac,
                    T.P_VLAN_ID: u.vlan,
                },
            )
        )
    for peer in fabric.peers:
        out.add(TableEntry(n(T.TUNNEL_PEER), {T.F_OUTER_SRC: Exact(int(peer))}, n(T.A_PERMIT_PEER)))
    return out


def fabric_vlans(fabric: FabricConfig) -> set[tuple[int, int]]:
    """(fabric port, 802.1Q VLAN; 0 = untagged) pairs tunnel packets are
    taken on: the VLANs of the underlay next hops on each port, untagged on
    a fabric port no underlay entry uses."""
    out = {(u.port, u.vlan) for u in fabric.underlay}
    used = {u.port for u in fabric.underlay}
    out |= {(p, 0) for p in fabric.ports if p not in used}
    return out


def vrf_peer_entry(vrf_id: int, peer: ipaddress.IPv4Address, n: Names = _same) -> TableEntry:
    """``peer`` may send packets with the labels of VRF ``vrf_id``."""
    return TableEntry(
        n(T.VRF_PEER),
        {T.F_VRF_ID: Exact(vrf_id), T.F_OUTER_SRC: Exact(int(peer))},
        n(T.A_PERMIT_VRF_PEER),
    )


def label_entry(itf: Interface, vrf_id: int, n: Names = _same) -> TableEntry:
    """The mpls_label entry delivering ``itf``'s label to it: a route of the
    interface may be advertised only once the switch holds exactly this."""
    return TableEntry(
        n(T.MPLS_LABEL),
        {T.F_LABEL: Exact(itf.label)},
        n(T.A_LABEL_TO_VIF),
        {
            T.P_VIF_ID: itf.vif_id,
            T.P_PORT: itf.port,
            T.P_VLAN_ID: itf.vlan,
            T.P_DST_MAC: itf.mac,
            T.P_VRF_ID: vrf_id,
        },
    )


def desired_entities(
    state: VrfState, fabric: FabricConfig, ids: NexthopIds, now: float, n: Names = _same
) -> set[Entity]:
    """Everything the switch should hold for ``state``.

    ``n`` maps the names of control.tables to the program's (P4Info full
    names, so the driver's canonical form costs nothing); identity by default.
    """
    return finish(desired_steps(state, fabric, ids, now, n))


def desired_steps(
    state: VrfState, fabric: FabricConfig, ids: NexthopIds, now: float, n: Names = _same
) -> Steps[set[Entity]]:
    """:func:`desired_entities` in steps of at most :data:`control.vrf.STEP` routes
    (control.driver awaits between them). Next hop ids are assigned in one step,
    so the entities of one run refer to one assignment."""
    out = fabric_entities(fabric, n)
    # (vrf id, prefix, targets); (vrf id, prefix) unique: selected_routes is a dict
    routes: list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network, frozenset[Target]]] = []
    # (vrf id, forwarder): who may use the VRF's labels (requirements draft
    # §12): the next hops of the VRF's received routes and the static peers
    vrf_peers: set[tuple[int, ipaddress.IPv4Address]] = set()
    for vpn, vrf in sorted(state.vrfs.items()):
        selected = yield from state.selected_steps(vpn)
        routes += [(vrf.vrf_id, prefix, targets) for prefix, targets in selected.items()]
        vrf_peers |= {(vrf.vrf_id, p) for p in fabric.peers}
        vrf_peers |= {
            (vrf.vrf_id, tg.nexthop)
            for targets in selected.values()
            for tg in targets
            if isinstance(tg, RemoteTarget)
        }
        yield
    ids.assign((r[2] for r in routes), now)
    yield

    peers = set(fabric.peers)
    for t, mid in ids.members.items():
        out.add(_member(t, mid, n))
        if isinstance(t, RemoteTarget):
            peers.add(t.nexthop)
    for peer in peers:
        out.add(TableEntry(n(T.TUNNEL_PEER), {T.F_OUTER_SRC: Exact(int(peer))}, n(T.A_PERMIT_PEER)))
    for vrf_id, peer in vrf_peers:
        out.add(vrf_peer_entry(vrf_id, peer, n))
    for s, nh in ids.nexthops.items():
        out.add(
            ActionProfileGroup(n(T.NEXTHOP_SELECTOR), nh, frozenset((ids.members[t], 1) for t in s))
        )
        out.add(TableEntry(n(T.NEXTHOP), {T.F_NEXTHOP_ID: Exact(nh)}, group_id=nh))
    # the hot loop (one entry per route): names, vrf matches and next hop
    # params are shared between entries (all immutable)
    v4, v6, set_nh = n(T.IPV4_ROUTE), n(T.IPV6_ROUTE), n(T.A_SET_NEXTHOP)
    vrf_match: dict[int, Exact] = {}
    nh_params: dict[int, FrozenMap[str, int]] = {}
    nexthops = ids.nexthops
    for k, (vrf_id, prefix, targets) in enumerate(routes, 1):
        if k % STEP == 0:
            yield
        vm = vrf_match.get(vrf_id)
        if vm is None:
            vm = vrf_match[vrf_id] = Exact(vrf_id)
        nh = nexthops[targets]
        params = nh_params.get(nh)
        if params is None:
            params = nh_params[nh] = FrozenMap({T.P_NEXTHOP_ID: nh})
        out.add(
            TableEntry(
                v4 if prefix.version == 4 else v6,
                FrozenMap(
                    {
                        T.F_VRF_ID: vm,
                        T.F_DST: Lpm(int(prefix.network_address), prefix.prefixlen),
                    }
                ),
                set_nh,
                params,
            )
        )

    # Flooding within a VRF, local vifs only (the draft signals no flood labels
    # between forwarders): multicast group = vrf id, one replica per vif with
    # egress_rid = vif id; the egress pipe prunes the source vif.
    for vpn, vrf in state.vrfs.items():
        members = state.interfaces_of(vpn)
        if not members:
            continue
        out.add(MulticastGroup(vrf.vrf_id, frozenset(Replica(i.port, i.vif_id) for i in members)))
        out.add(
            TableEntry(
                n(T.FLOOD),
                {T.F_VRF_ID: Exact(vrf.vrf_id), T.F_FROM_FABRIC: Exact(0)},
                n(T.A_SET_FLOOD_GROUP),
                {T.P_GROUP: vrf.vrf_id},
            )
        )

    for itf in state.interfaces.values():
        out.update(interface_entries(itf, state.vrfs[itf.vpn].vrf_id, n))
        for prefix in itf.addresses:
            out.add(source_entry(itf, prefix, n))
    return out


def interface_entries(itf: Interface, vrf_id: int, n: Names = _same) -> list[TableEntry]:
    """The entries of one vif: egress replica, the vif itself, its label."""
    return [
        TableEntry(
            n(T.REPLICA),
            {T.F_EGRESS_RID: Exact(itf.vif_id)},
            n(T.A_REPLICA_LOCAL),
            {T.P_VIF_ID: itf.vif_id, T.P_VLAN_ID: itf.vlan},
        ),
        TableEntry(
            n(T.VIF),
            {
                T.F_INGRESS_PORT: Exact(itf.port),
                T.F_SRC_MAC: Exact(itf.mac),
                T.F_VLAN_ID: Exact(itf.vlan),
            },
            n(T.A_SET_VIF),
            {T.P_VIF_ID: itf.vif_id, T.P_VRF_ID: vrf_id},
        ),
        label_entry(itf, vrf_id, n),
    ]


def source_entry(
    itf: Interface, prefix: ipaddress.IPv4Network | ipaddress.IPv6Network, n: Names = _same
) -> TableEntry:
    """The anti-spoofing entry that lets ``itf`` send from ``prefix``."""
    return TableEntry(
        n(T.IPV4_SOURCE) if prefix.version == 4 else n(T.IPV6_SOURCE),
        {
            T.F_VIF_ID: Exact(itf.vif_id),
            T.F_SRC: Lpm(int(prefix.network_address), prefix.prefixlen),
        },
        n(T.A_PERMIT),
    )
