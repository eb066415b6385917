"""Pure session semantics: what each client advertised, retention after close.

No sockets, no clock of its own: every call that depends on time takes
``now`` (seconds, any monotonic origin). The server (:mod:`esxmpp.server`)
drives one :class:`SessionTable`; it can be driven directly in tests.

State is per system id (the 6-byte id of the client, draft §6). Requests are
checked against that state with :meth:`SessionTable.plan`, which returns the
*changes* the request causes, normalised so a consumer only ever sees a
consistent sequence:

* ``Subscribe`` -> ``[Subscribe]`` (``[]`` when identical to the current one)
* ``Unsubscribe(v)`` -> ``[Dissociate(v, n) for each node in v] + [Unsubscribe(v)]``
* ``Publish`` -> ``[Publish]`` (``[]`` when identical)
* ``Retract(n)`` -> ``[Dissociate(v, n) for each VPN of n] + [Retract(n)]``
* ``Associate`` / ``Dissociate`` -> themselves (``[]`` when already so)

:meth:`SessionTable.commit` then applies them (the server calls the
application's handler in between, so a handler error leaves state untouched).

When a session closes its state is kept ``retention`` seconds; a session for
the same system id opened within that time takes it back with no change
events. Such a resumed session re-advertises what it still holds and then
sends ``EndOfSync``: its plan withdraws (dissociations, retractions,
unsubscriptions) whatever the earlier session advertised and this one did
not, so both sides agree again (:meth:`SessionTable.mark` records what the
session re-advertised; it is called after each accepted request). After the
retention, :meth:`SessionTable.expire` returns the withdrawal: all
dissociations, then retractions, then unsubscriptions.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from esxmpp.dialect import (
    Associate,
    DialectError,
    Dissociate,
    EndOfSync,
    Publish,
    Request,
    Retract,
    RouteEntry,
    Subscribe,
    Unsubscribe,
    format_system_id,
    parse_item_node,
)


@dataclass
class Advertised:
    """Everything one system id has advertised (mutable; owned by the table)."""

    subscriptions: dict[str, int | None] = field(default_factory=dict)  # vpn -> vlan
    published: dict[str, RouteEntry] = field(default_factory=dict)  # node -> entry
    associations: dict[str, set[str]] = field(default_factory=dict)  # node -> vpns

    def empty(self) -> bool:
        return not self.subscriptions and not self.published

    def members(self, vpn: str) -> list[str]:
        """Published nodes associated with ``vpn``, sorted."""
        return sorted(n for n, vpns in self.associations.items() if vpn in vpns)

    def withdrawal(self) -> list[Request]:
        """The changes that remove all of this state, in safe order."""
        out: list[Request] = []
        for node in sorted(self.associations):
            out.extend(Dissociate(v, node) for v in sorted(self.associations[node]))
        out.extend(Retract(n) for n in sorted(self.published))
        out.extend(Unsubscribe(v) for v in sorted(self.subscriptions))
        return out


@dataclass(frozen=True)
class Opened:
    """Result of :meth:`SessionTable.open`.

    ``resumed``: state from a previous session was taken back (no withdrawal).
    ``replaced``: key of a live session for the same system id that the caller
    must now close (duplicate = 'takeover').
    """

    resumed: bool
    replaced: Hashable | None = None


@dataclass(frozen=True)
class Expired:
    """Retention ran out for ``system_id``; ``changes`` withdraw what it advertised."""

    system_id: bytes
    changes: tuple[Request, ...]


@dataclass
class _Resync:
    """What a session that resumed earlier state has advertised again so far."""

    subscriptions: set[str] = field(default_factory=set)
    published: set[str] = field(default_factory=set)
    associations: set[tuple[str, str]] = field(default_factory=set)  # (node, vpn)


@dataclass
class _Entry:
    state: Advertised
    key: Hashable | None  # live session key, None when closed
    deadline: float | None = None
    resync: _Resync | None = None  # resumed, and no EndOfSync yet in this session


class SessionTable:
    """Advertised state per system id, with retention and duplicate-session policy.

    ``own_nodes_only``: a published/associated node's system id prefix must be
    the publisher's own (end-system -> forwarder). A forwarder relaying its
    end-systems' nodes to a route server needs ``False``.
    """

    def __init__(
        self,
        retention: float = 60.0,
        duplicate: Literal["takeover", "refuse"] = "takeover",
        own_nodes_only: bool = True,
    ) -> None:
        self.retention = retention
        self.duplicate = duplicate
        self.own_nodes_only = own_nodes_only
        self._entries: dict[bytes, _Entry] = {}

    # ------------------------------------------------------------ lifecycle

    def open(self, system_id: bytes, key: Hashable, now: float) -> Opened:
        """A session for ``system_id`` was authenticated and bound.

        Raises DialectError('conflict') when another session is live and the
        policy is 'refuse'.
        """
        del now
        ent = self._entries.get(system_id)
        if ent is None:
            self._entries[system_id] = _Entry(Advertised(), key)
            return Opened(resumed=False)
        if ent.key is not None:
            if self.duplicate == "refuse":
                raise DialectError(
                    "conflict", f"system id {format_system_id(system_id)} already has a session"
                )
            old = ent.key
            ent.key = key
            ent.resync = _Resync()
            return Opened(resumed=True, replaced=old)
        ent.key = key
        ent.deadline = None
        ent.resync = None if ent.state.empty() else _Resync()
        return Opened(resumed=ent.resync is not None)

    def close(self, system_id: bytes, key: Hashable, now: float) -> None:
        """Session ``key`` ended; start the retention timer (if it is still the live one)."""
        ent = self._entries.get(system_id)
        if ent is None or ent.key != key:
            return
        ent.key = None
        if ent.state.empty():
            del self._entries[system_id]
            return
        ent.deadline = now + self.retention

    def expire(self, now: float) -> list[Expired]:
        """Drop every closed state whose retention ended at or before ``now``."""
        out: list[Expired] = []
        for sid in sorted(self._entries):
            ent = self._entries[sid]
            if ent.key is None and ent.deadline is not None and ent.deadline <= now:
                out.append(Expired(sid, tuple(ent.state.withdrawal())))
                del self._entries[sid]
        return out

    def next_deadline(self) -> float | None:
        """Earliest retention deadline, or None."""
        ds = [e.deadline for e in self._entries.values() if e.deadline is not None]
        return min(ds) if ds else None

    def state(self, system_id: bytes) -> Advertised | None:
        """Current state of ``system_id`` (read it, do not modify it)."""
        ent = self._entries.get(system_id)
        return None if ent is None else ent.state

    def live(self, system_id: bytes) -> Hashable | None:
        """Key of the live session of ``system_id``, if any."""
        ent = self._entries.get(system_id)
        return None if ent is None else ent.key

    def system_ids(self) -> list[bytes]:
        return sorted(self._entries)

    # ------------------------------------------------------------- requests

    def _own(self, system_id: bytes, node: str) -> None:
        owner, _prefix = parse_item_node(node)
        if self.own_nodes_only and owner != system_id:
            raise DialectError(
                "not-authorized",
                f"node {node!r} belongs to system {owner.hex()}, not {system_id.hex()}",
            )

    def plan(self, system_id: bytes, req: Request) -> list[Request]:
        """Check ``req`` against the state; return its changes (raises DialectError)."""
        ent = self._entries.get(system_id)
        if ent is None:
            raise DialectError("not-authorized", "no session for this system id")
        st = ent.state
        if isinstance(req, EndOfSync):
            return self._unsynced(ent)
        if isinstance(req, Subscribe):
            if st.subscriptions.get(req.node, -1) == req.vlan_id:
                return []
            if req.vlan_id is not None:
                for vpn, vlan in st.subscriptions.items():
                    if vlan == req.vlan_id and vpn != req.node:
                        raise DialectError(
                            "conflict", f"vlan {req.vlan_id} is already used by VPN {vpn!r}"
                        )
            return [req]
        if isinstance(req, Unsubscribe):
            if req.node not in st.subscriptions:
                raise DialectError("item-not-found", f"not subscribed to VPN {req.node!r}")
            return [*(Dissociate(req.node, n) for n in st.members(req.node)), req]
        if isinstance(req, Publish):
            self._own(system_id, req.node)
            old = st.published.get(req.node)
            if old is not None:
                if req.entry.version < old.version:
                    raise DialectError(
                        "not-acceptable",
                        f"node {req.node!r}: version {req.entry.version} is older than "
                        f"{old.version}",
                    )
                if old == req.entry:
                    return []
            return [req]
        if isinstance(req, Retract):
            if req.node not in st.published:
                raise DialectError("item-not-found", f"node {req.node!r} is not published")
            vpns = sorted(st.associations.get(req.node, ()))
            return [*(Dissociate(v, req.node) for v in vpns), req]
        if isinstance(req, Associate):
            if req.collection not in st.subscriptions:
                raise DialectError("item-not-found", f"not subscribed to VPN {req.collection!r}")
            if req.node not in st.published:
                raise DialectError("item-not-found", f"node {req.node!r} is not published")
            if req.collection in st.associations.get(req.node, ()):
                return []
            return [req]
        if req.collection not in st.associations.get(req.node, ()):
            raise DialectError(
                "item-not-found", f"node {req.node!r} is not in VPN {req.collection!r}"
            )
        return [req]

    @staticmethod
    def _unsynced(ent: _Entry) -> list[Request]:
        """The withdrawal of what a resumed session has not advertised again."""
        rs = ent.resync
        if rs is None:
            return []
        st = ent.state
        gone_nodes = sorted(set(st.published) - rs.published)
        gone_vpns = sorted(set(st.subscriptions) - rs.subscriptions)
        dissociate = {
            (node, vpn)
            for node, vpns in st.associations.items()
            for vpn in vpns
            if (node, vpn) not in rs.associations or node in gone_nodes or vpn in gone_vpns
        }
        out: list[Request] = [Dissociate(v, n) for n, v in sorted(dissociate)]
        out.extend(Retract(n) for n in gone_nodes)
        out.extend(Unsubscribe(v) for v in gone_vpns)
        return out

    def mark(self, system_id: bytes, req: Request) -> None:
        """``req`` was accepted (and its changes committed): what it advertises
        is current again; an EndOfSync ends the resynchronisation."""
        ent = self._entries.get(system_id)
        if ent is None or ent.resync is None:
            return
        if isinstance(req, EndOfSync):
            ent.resync = None
        elif isinstance(req, Subscribe):
            ent.resync.subscriptions.add(req.node)
        elif isinstance(req, Publish):
            ent.resync.published.add(req.node)
        elif isinstance(req, Associate):
            ent.resync.associations.add((req.node, req.collection))

    def commit(self, system_id: bytes, changes: Sequence[Request]) -> None:
        """Apply changes returned by :meth:`plan` for the same system id."""
        st = self._entries[system_id].state
        for ch in changes:
            if isinstance(ch, Subscribe):
                st.subscriptions[ch.node] = ch.vlan_id
            elif isinstance(ch, Unsubscribe):
                st.subscriptions.pop(ch.node, None)
            elif isinstance(ch, Publish):
                st.published[ch.node] = ch.entry
            elif isinstance(ch, Retract):
                st.published.pop(ch.node, None)
                st.associations.pop(ch.node, None)
            elif isinstance(ch, Associate):
                st.associations.setdefault(ch.node, set()).add(ch.collection)
            elif isinstance(ch, Dissociate):
                vpns = st.associations.get(ch.node)
                if vpns is not None:
                    vpns.discard(ch.collection)
                    if not vpns:
                        del st.associations[ch.node]

    def apply(self, system_id: bytes, req: Request) -> list[Request]:
        """plan + commit + mark in one step."""
        changes = self.plan(system_id, req)
        self.commit(system_id, changes)
        self.mark(system_id, req)
        return changes
