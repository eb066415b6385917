"""Support for the agent system tests (no tests here).

``COMPILED``: the data-plane program compiled by p4c (p4src/build/esvpn.json
and esvpn.p4info.txtpb), what the agent flow tests run on the embedded
target's real engine. ``write_sized_program`` copies it with some tables made
smaller (to make the switch refuse writes for real: RESOURCE_EXHAUSTED).

``ObservedSoftEngine``: the embedded target's engine (softswitch.engine),
unchanged, that also records every call that changes its state (so a test can
assert the switch was not touched), the server's fast writes included, and the
labels its mpls_label table holds.

``EsxmppRouteSource``: the esxmpp XMPP server acting as a route server (the
test controls which routes it sends), named as such.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esxmpp.dialect import EndOfSync, Notification, Request
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


def _recording(name: str) -> Callable[..., Any]:
    """A SoftEngine method that first records (name, *its arguments, with
    defaults filled in and sequences as tuples) in ``self.calls``."""
    method = getattr(SoftEngine, name)
    signature = inspect.signature(method)

    def record(self: ObservedSoftEngine, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = list(bound.arguments.values())[1:]
        self.calls.append((name, *(tuple(a) if isinstance(a, list) else a for a in given)))
        return method(self, *args, **kwargs)

    record.__name__ = name
    return record


class ObservedSoftEngine(SoftEngine):
    """softswitch.engine.SoftEngine recording its state-changing calls. A
    fast write (the P4Runtime server's compiled path) is recorded as the
    table_add or table_modify it stands for, with the api key and target."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self._labels: dict[int, int] = {}  # mpls_label entry handle -> label

    @property
    def labels(self) -> set[int]:
        """The labels the mpls_label table holds now."""
        return set(self._labels.values())

    def before_add(self, table: str, key: api.Key) -> None:
        """Called before every add of a table entry (a hook for subclasses)."""

    def load(self, bmv2_json: Mapping[str, Any]) -> None:
        self.calls.append(("load",))
        super().load(bmv2_json)
        self._labels.clear()

    def table_add(
        self, table: str, key: api.Key, target: api.EntryTarget, priority: int = 0
    ) -> int:
        self.before_add(table, key)
        self.calls.append(("table_add", table, key, target, priority))
        handle = super().table_add(table, key, target, priority)
        self._added(table, key, handle)
        return handle

    def _added(self, table: str, key: api.Key, handle: int) -> None:
        if table.endswith(".mpls_label") and isinstance(key[0], api.Exact):
            self._labels[handle] = key[0].value

    def table_delete(self, table: str, handle: int) -> None:
        self.calls.append(("table_delete", table, handle))
        super().table_delete(table, handle)
        if table.endswith(".mpls_label"):
            self._labels.pop(handle, None)

    def fast_writer(
        self, table: str, action: str, key_widths: Sequence[int], arg_widths: Sequence[int]
    ) -> api.FastWriter | None:
        writer = super().fast_writer(table, action, key_widths, arg_widths)
        return None if writer is None else _ObservedWriter(self, table, action, writer)

    def api_key(self, table: str, ikey: Any, plen: int) -> api.Key:
        """The api key of a fast writer's index key."""
        kinds = self._tables[table].kinds
        values = ikey if isinstance(ikey, tuple) else (ikey,)
        return tuple(
            api.Lpm(v, plen) if kind == "lpm" else api.Exact(v)
            for v, kind in zip(values, kinds, strict=True)
        )


for _name in (
    "table_modify",
    "table_set_default",
    "table_reset_default",
    "member_set",
    "member_delete",
    "group_set",
    "group_delete",
    "mc_group_set",
    "mc_group_delete",
    "clone_session_set",
    "clone_session_delete",
    "counter_write",
    "direct_counter_write",
    "register_write",
    "meter_set",
):
    setattr(ObservedSoftEngine, _name, _recording(_name))


class _ObservedWriter:
    """A fast writer whose adds and modifies the observed engine records."""

    def __init__(
        self, engine: ObservedSoftEngine, table: str, action: str, writer: api.FastWriter
    ) -> None:
        self.engine, self.table, self.action, self.writer = engine, table, action, writer

    def add(self, ikey: Any, plen: int, args: tuple[int, ...]) -> int:
        key = self.engine.api_key(self.table, ikey, plen)
        self.engine.before_add(self.table, key)
        target = api.ActionCall(self.action, args)
        self.engine.calls.append(("table_add", self.table, key, target, 0))
        handle = self.writer.add(ikey, plen, args)
        self.engine._added(self.table, key, handle)
        return handle

    def modify(self, handle: int, args: tuple[int, ...]) -> None:
        target = api.ActionCall(self.action, args)
        self.engine.calls.append(("table_modify", self.table, handle, target))
        self.writer.modify(handle, args)


@dataclass
class EsxmppRouteSource:
    """Handler for an esxmpp XmppServer that plays the route server in tests.

    Records every accepted request as (system id hex, request), except
    EndOfSync (only counted: the agent sends it once the switch was synced,
    before or after its first exports); the test sends
    route notifications itself with :meth:`send`.
    """

    requests: list[tuple[str, Request]] = field(default_factory=list)
    end_of_syncs: int = 0
    server: XmppServer | None = None
    #: called with each accepted request before it is recorded
    on_request: Callable[[Request], None] | None = None

    def session_opened(self, session: ServerSession, resumed: bool) -> None:
        pass

    def request(self, session: ServerSession, request: Request, changes: Sequence[Request]) -> None:
        if isinstance(request, EndOfSync):  # counted, not recorded: it comes at any point
            self.end_of_syncs += 1
            return
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
