"""A recording fake of the packet engine (softswitch.api.Engine), for the
P4Runtime server tests: it keeps what it is told, records every call, and
lets a test fail the next call (an engine fault the server must survive)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from softswitch import api


class RecordingFakeEngine:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.loaded: Mapping[str, Any] | None = None
        self.entries: dict[str, dict[int, tuple[api.Key, api.EntryTarget, int]]] = {}
        self.defaults: dict[str, api.ActionCall | None] = {}
        self.members: dict[tuple[str, int], api.ActionCall] = {}
        self.groups: dict[tuple[str, int], tuple[int, ...]] = {}
        self.counters: dict[tuple[str, int], api.CounterValue] = {}
        self.direct_counters: dict[tuple[str, int], api.CounterValue] = {}
        self.registers: dict[tuple[str, int], int] = {}
        self.meters: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        self.mc_groups: dict[int, tuple[api.Replica, ...]] = {}
        self.clone_sessions: dict[int, tuple[api.Replica, ...]] = {}
        self.processed: list[tuple[int, bytes]] = []
        #: what process() returns for a frame
        self.on_process: Callable[[int, bytes], api.Output] = lambda port, frame: []
        self._next_handle = 1
        self.fail_next: str | None = None

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail_next is not None:
            msg, self.fail_next = self.fail_next, None
            raise api.EngineError(msg)

    def load(self, bmv2_json: Mapping[str, Any]) -> None:
        self._call("load")
        self.__init__()  # type: ignore[misc]
        self.calls.append(("load",))
        self.loaded = bmv2_json

    def table_add(
        self, table: str, key: api.Key, target: api.EntryTarget, priority: int = 0
    ) -> int:
        self._call("table_add", table, key, target, priority)
        handle = self._next_handle
        self._next_handle += 1
        self.entries.setdefault(table, {})[handle] = (key, target, priority)
        self.direct_counters[(table, handle)] = api.CounterValue(0, 0)
        return handle

    def fast_writer(
        self, table: str, action: str, key_widths: Sequence[int], arg_widths: Sequence[int]
    ) -> api.FastWriter | None:
        return None  # every add and modify is recorded through table_add/modify

    def table_modify(self, table: str, handle: int, target: api.EntryTarget) -> None:
        self._call("table_modify", table, handle, target)
        key, _, prio = self.entries[table][handle]
        self.entries[table][handle] = (key, target, prio)

    def table_delete(self, table: str, handle: int) -> None:
        self._call("table_delete", table, handle)
        del self.entries[table][handle]

    def table_set_default(self, table: str, action: api.ActionCall) -> None:
        self._call("table_set_default", table, action)
        self.defaults[table] = action

    def table_reset_default(self, table: str) -> None:
        self._call("table_reset_default", table)
        self.defaults[table] = None

    def member_set(self, profile: str, member_id: int, action: api.ActionCall) -> None:
        self._call("member_set", profile, member_id, action)
        self.members[(profile, member_id)] = action

    def member_delete(self, profile: str, member_id: int) -> None:
        self._call("member_delete", profile, member_id)
        del self.members[(profile, member_id)]

    def group_set(self, profile: str, group_id: int, members: Sequence[int]) -> None:
        self._call("group_set", profile, group_id, tuple(members))
        self.groups[(profile, group_id)] = tuple(members)

    def group_delete(self, profile: str, group_id: int) -> None:
        self._call("group_delete", profile, group_id)
        del self.groups[(profile, group_id)]

    def counter_read(self, counter: str, index: int) -> api.CounterValue:
        return self.counters.get((counter, index), api.CounterValue(0, 0))

    def counter_write(self, counter: str, index: int, value: api.CounterValue) -> None:
        self._call("counter_write", counter, index, value)
        self.counters[(counter, index)] = value

    def direct_counter_read(self, table: str, handle: int) -> api.CounterValue:
        return self.direct_counters[(table, handle)]

    def direct_counter_write(self, table: str, handle: int, value: api.CounterValue) -> None:
        self._call("direct_counter_write", table, handle, value)
        self.direct_counters[(table, handle)] = value

    def register_read(self, register: str, index: int) -> int:
        return self.registers.get((register, index), 0)

    def register_write(self, register: str, index: int, value: int) -> None:
        self._call("register_write", register, index, value)
        self.registers[(register, index)] = value

    def meter_set(
        self, meter: str, index: int, cir: int, cburst: int, pir: int, pburst: int
    ) -> None:
        self._call("meter_set", meter, index, cir, cburst, pir, pburst)
        self.meters[(meter, index)] = (cir, cburst, pir, pburst)

    def mc_group_set(self, group_id: int, replicas: Sequence[api.Replica]) -> None:
        self._call("mc_group_set", group_id, tuple(replicas))
        self.mc_groups[group_id] = tuple(replicas)

    def mc_group_delete(self, group_id: int) -> None:
        self._call("mc_group_delete", group_id)
        del self.mc_groups[group_id]

    def clone_session_set(self, session_id: int, replicas: Sequence[api.Replica]) -> None:
        self._call("clone_session_set", session_id, tuple(replicas))
        self.clone_sessions[session_id] = tuple(replicas)

    def clone_session_delete(self, session_id: int) -> None:
        self._call("clone_session_delete", session_id)
        del self.clone_sessions[session_id]

    def process(self, ingress_port: int, frame: bytes) -> api.Output:
        self.processed.append((ingress_port, frame))
        return self.on_process(ingress_port, frame)
