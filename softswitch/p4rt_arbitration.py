"""Primary/backup client arbitration (P4Runtime spec §5): pure state machine.

Clients are identified by an opaque stream key. Per (device_id, role name),
the connected client with the highest election id is the primary; a client
without an election id never becomes primary. Every change of primary is
announced to every client of that (device, role): status OK to the primary,
ALREADY_EXISTS to backups (NOT_FOUND when there is no primary), with the
primary's election id (or the highest one ever seen when there is none).
A second client with an election id already in use is refused with
INVALID_ARGUMENT; when the primary leaves, the highest remaining client is
elected.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from softswitch.p4rt_store import INVALID_ARGUMENT, P4RTError

Group = tuple[int, str]  # (device id, role name)


@dataclass
class _Client:
    group: Group
    election_id: int | None
    role: p4runtime_pb2.Role


def election_id_of(msg: p4runtime_pb2.MasterArbitrationUpdate) -> int | None:
    if not msg.HasField("election_id"):
        return None
    return int((msg.election_id.high << 64) | msg.election_id.low)


class Arbitration:
    def __init__(self) -> None:
        self._clients: dict[Hashable, _Client] = {}
        self._primary: dict[Group, Hashable | None] = {}
        self._highest: dict[Group, int] = {}

    def _elect(self, group: Group) -> Hashable | None:
        best: Hashable | None = None
        best_id = -1
        for key, c in self._clients.items():
            if c.group == group and c.election_id is not None and c.election_id > best_id:
                best, best_id = key, c.election_id
        return best

    def _update_for(self, key: Hashable) -> p4runtime_pb2.MasterArbitrationUpdate:
        c = self._clients[key]
        primary = self._primary.get(c.group)
        msg = p4runtime_pb2.MasterArbitrationUpdate(device_id=c.group[0])
        if c.group[1] or c.role.HasField("config"):
            msg.role.CopyFrom(c.role)
        eid = (
            self._clients[primary].election_id if primary is not None else None
        ) or self._highest.get(c.group)
        if eid is not None:
            msg.election_id.high = eid >> 64
            msg.election_id.low = eid & ((1 << 64) - 1)
        if primary is None:
            msg.status.code = code_pb2.NOT_FOUND
            msg.status.message = "no primary client"
        elif primary == key:
            msg.status.code = code_pb2.OK
            msg.status.message = "primary"
        else:
            msg.status.code = code_pb2.ALREADY_EXISTS
            msg.status.message = "backup; a client with a higher election id is primary"
        return msg

    def _notify(
        self, group: Group, changed: bool, joiner: Hashable | None
    ) -> list[tuple[Hashable, p4runtime_pb2.MasterArbitrationUpdate]]:
        keys = [k for k, c in self._clients.items() if c.group == group]
        if not changed:
            keys = [k for k in keys if k == joiner]
        return [(k, self._update_for(k)) for k in keys]

    def join(
        self, key: Hashable, msg: p4runtime_pb2.MasterArbitrationUpdate
    ) -> list[tuple[Hashable, p4runtime_pb2.MasterArbitrationUpdate]]:
        """A client (re)sends arbitration; returns who to tell what."""
        group: Group = (msg.device_id, msg.role.name)
        eid = election_id_of(msg)
        old = self._clients.get(key)
        if old is not None and old.group != group:
            raise P4RTError(INVALID_ARGUMENT, "a stream cannot change device id or role")
        if eid is not None:
            for k, c in self._clients.items():
                if k != key and c.group == group and c.election_id == eid:
                    raise P4RTError(
                        INVALID_ARGUMENT,
                        f"election id {eid} is already used by another client",
                    )
            self._highest[group] = max(self._highest.get(group, 0), eid)
        role = p4runtime_pb2.Role()
        role.CopyFrom(msg.role)
        self._clients[key] = _Client(group, eid, role)
        before = self._primary.get(group)
        after = self._elect(group)
        self._primary[group] = after
        return self._notify(group, before != after, key)

    def leave(self, key: Hashable) -> list[tuple[Hashable, p4runtime_pb2.MasterArbitrationUpdate]]:
        c = self._clients.pop(key, None)
        if c is None:
            return []
        before = self._primary.get(c.group)
        after = self._elect(c.group)
        self._primary[c.group] = after
        return self._notify(c.group, before != after, None)

    def is_primary_key(self, key: Hashable) -> bool:
        c = self._clients.get(key)
        return c is not None and self._primary.get(c.group) == key

    def is_primary(self, device_id: int, role: str, election_id: int | None) -> bool:
        """Is this election id the primary's? (Not enough to accept a write:
        see `primary_key` and P4RuntimeServer._check_primary.)"""
        return self.primary_key(device_id, role, election_id) is not None

    def primary_key(self, device_id: int, role: str, election_id: int | None) -> Hashable | None:
        """The primary's stream key when ``election_id`` is the primary's, else None."""
        primary = self._primary.get((device_id, role))
        if primary is None or election_id is None:
            return None
        return primary if self._clients[primary].election_id == election_id else None

    def primaries(self, device_id: int) -> list[Hashable]:
        return [k for (dev, _), k in self._primary.items() if dev == device_id and k is not None]
