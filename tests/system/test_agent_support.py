"""Support for the agent system tests (no tests here).

``COMPILED``: the data-plane program compiled by p4c (p4src/build/esvpn.json
and esvpn.p4info.txtpb), what the agent flow tests run on the embedded
target's real engine. ``write_sized_program`` copies it with some tables made
smaller (to make the switch refuse writes for real: RESOURCE_EXHAUSTED).

``ObservedSoftEngine``: the embedded target's engine (softswitch.engine),
unchanged, that also records every call that changes its state (so a test can
assert the switch was not touched) and the labels its mpls_label table holds.

``EsxmppRouteSource``: the esxmpp XMPP server acting as a route server (the
test controls which routes it sends), named as such.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esxmpp.dialect import Notification, Request
from esxmpp.server import ServerSession, XmppServer
from softswitch import api
from softswitch.engine import SoftEngine

REPO = Path(__file__).resolve().parents[2]
COMPILED = (REPO / "p4src/build/esvpn.p4info.txtpb", REPO / "p4src/build/esvpn.json")


def write_sized_program(directory: Path, sizes: Mapping[str, int]) -> tuple[Path, Path]:
    """The compiled program with the tables named (by alias) resized."""
    directory.mkdir(parents=True, exist_ok=True)
    text = COMPILED[0].read_text()
    bmv2 = json.loads(COMPILED[1].read_text())
    for alias, size in sizes.items():
        pat = re.compile(r'(alias: "' + re.escape(alias) + r'"\n(?:.*\n)*?  size: )\d+')
        text, n = pat.subn(rf"\g<1>{size}", text, count=1)
        assert n == 1, f"no table {alias} in the P4Info"
        tables = [
            t
            for pipe in bmv2["pipelines"]
            for t in pipe["tables"]
            if t["name"].split(".")[-1] == alias
        ]
        assert len(tables) == 1, f"no table {alias} in the bmv2 JSON"
        tables[0]["max_size"] = size
    p4info, js = directory / "esvpn.p4info.txtpb", directory / "esvpn.json"
    p4info.write_text(text)
    js.write_text(json.dumps(bmv2))
    return p4info, js


class ObservedSoftEngine(SoftEngine):
    """softswitch.engine.SoftEngine recording its state-changing calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self._labels: dict[int, int] = {}  # mpls_label entry handle -> label

    @property
    def labels(self) -> set[int]:
        """The labels the mpls_label table holds now."""
        return set(self._labels.values())

    def load(self, bmv2_json: Mapping[str, Any]) -> None:
        self.calls.append(("load",))
        super().load(bmv2_json)
        self._labels.clear()

    def table_add(
        self, table: str, key: api.Key, target: api.EntryTarget, priority: int = 0
    ) -> int:
        self.calls.append(("table_add", table, key, target, priority))
        handle = super().table_add(table, key, target, priority)
        if table.endswith(".mpls_label") and isinstance(key[0], api.Exact):
            self._labels[handle] = key[0].value
        return handle

    def fast_writer(
        self, table: str, action: str, key_widths: Sequence[int], arg_widths: Sequence[int]
    ) -> api.FastWriter | None:
        return None  # every add and modify goes through table_add/modify, which record it

    def table_modify(self, table: str, handle: int, target: api.EntryTarget) -> None:
        self.calls.append(("table_modify", table, handle, target))
        super().table_modify(table, handle, target)

    def table_delete(self, table: str, handle: int) -> None:
        self.calls.append(("table_delete", table, handle))
        super().table_delete(table, handle)
        if table.endswith(".mpls_label"):
            self._labels.pop(handle, None)

    def table_set_default(self, table: str, action: api.ActionCall) -> None:
        self.calls.append(("table_set_default", table, action))
        super().table_set_default(table, action)

    def member_set(self, profile: str, member_id: int, action: api.ActionCall) -> None:
        self.calls.append(("member_set", profile, member_id, action))
        super().member_set(profile, member_id, action)

    def member_delete(self, profile: str, member_id: int) -> None:
        self.calls.append(("member_delete", profile, member_id))
        super().member_delete(profile, member_id)

    def group_set(self, profile: str, group_id: int, members: Sequence[int]) -> None:
        self.calls.append(("group_set", profile, group_id, tuple(members)))
        super().group_set(profile, group_id, members)

    def group_delete(self, profile: str, group_id: int) -> None:
        self.calls.append(("group_delete", profile, group_id))
        super().group_delete(profile, group_id)

    def mc_group_set(self, group_id: int, replicas: Sequence[api.Replica]) -> None:
        self.calls.append(("mc_group_set", group_id, tuple(replicas)))
        super().mc_group_set(group_id, replicas)

    def mc_group_delete(self, group_id: int) -> None:
        self.calls.append(("mc_group_delete", group_id))
        super().mc_group_delete(group_id)

    def table_reset_default(self, table: str) -> None:
        self.calls.append(("table_reset_default", table))
        super().table_reset_default(table)

    def counter_write(self, counter: str, index: int, value: api.CounterValue) -> None:
        self.calls.append(("counter_write", counter, index, value))
        super().counter_write(counter, index, value)

    def direct_counter_write(self, table: str, handle: int, value: api.CounterValue) -> None:
        self.calls.append(("direct_counter_write", table, handle, value))
        super().direct_counter_write(table, handle, value)

    def register_write(self, register: str, index: int, value: int) -> None:
        self.calls.append(("register_write", register, index, value))
        super().register_write(register, index, value)

    def meter_set(
        self, meter: str, index: int, cir: int, cburst: int, pir: int, pburst: int
    ) -> None:
        self.calls.append(("meter_set", meter, index, cir, cburst, pir, pburst))
        super().meter_set(meter, index, cir, cburst, pir, pburst)

    def clone_session_set(self, session_id: int, replicas: Sequence[api.Replica]) -> None:
        self.calls.append(("clone_session_set", session_id, tuple(replicas)))
        super().clone_session_set(session_id, replicas)

    def clone_session_delete(self, session_id: int) -> None:
        self.calls.append(("clone_session_delete", session_id))
        super().clone_session_delete(session_id)


@dataclass
class EsxmppRouteSource:
    """Handler for an esxmpp XmppServer that plays the route server in tests.

    Records every accepted request as (system id hex, request); the test sends
    route notifications itself with :meth:`send`.
    """

    requests: list[tuple[str, Request]] = field(default_factory=list)
    server: XmppServer | None = None
    #: called with each accepted request before it is recorded
    on_request: Callable[[Request], None] | None = None

    def session_opened(self, session: ServerSession, resumed: bool) -> None:
        pass

    def request(self, session: ServerSession, request: Request, changes: Sequence[Request]) -> None:
        if self.on_request is not None:
            self.on_request(request)
        self.requests.append((session.system_id.hex(), request))

    def session_closed(self, session: ServerSession, reason: str) -> None:
        pass

    def state_expired(self, system_id: bytes, changes: Sequence[Request]) -> None:
        pass

    def send(self, system_id: bytes, note: Notification) -> None:
        assert self.server is not None
        s = self.server.session(system_id)
        assert s is not None, "forwarder not connected to the route source"
        s.send(note)
