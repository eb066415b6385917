"""Support for the agent system tests (no tests here).

``COMPILED``: the data-plane program compiled by p4c (p4src/build/esvpn.json
and esvpn.p4info.txtpb), what the agent flow tests run on the embedded
target's real engine. ``write_sized_program`` copies it with some tables made
smaller (to make the switch refuse writes for real: RESOURCE_EXHAUSTED).

``ObservedSoftEngine``: the embedded target's engine (softswitch.engine),
unchanged, that also records every call that changes its state (so a test can
assert the switch was not touched) and the labels its mpls_label table holds.

``write_stand_in_program``: a P4Info + skeleton bmv2 JSON with the tables,
actions and selector of the program, from before p4c compiled p4src/; only
the CLI tests still use it (with the softswitch's recording fake engine).

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


# table alias -> (keys [(name, bits, match)], actions, selector?)
TABLES: dict[str, tuple[list[tuple[str, int, str]], list[str], bool]] = {
    "fabric_port": ([("ingress_port", 9, "exact")], ["set_fabric_port"], False),
    "fabric_config": ([], ["set_fabric_config"], False),
    "vif": (
        [("ingress_port", 9, "exact"), ("src_mac", 48, "exact"), ("vlan_id", 12, "exact")],
        ["set_vif"],
        False,
    ),
    "ipv4_source": ([("vif_id", 16, "exact"), ("src_addr", 32, "lpm")], ["permit"], False),
    "ipv6_source": ([("vif_id", 16, "exact"), ("src_addr", 128, "lpm")], ["permit"], False),
    "ipv4_route": (
        [("vrf_id", 16, "exact"), ("dst_addr", 32, "lpm")],
        ["set_nexthop", "blackhole"],
        False,
    ),
    "ipv6_route": (
        [("vrf_id", 16, "exact"), ("dst_addr", 128, "lpm")],
        ["set_nexthop", "blackhole"],
        False,
    ),
    "nexthop": ([("nexthop_id", 16, "exact")], ["encap_mpls_gre", "deliver_local"], True),
    "underlay": ([("remote_ipv4", 32, "lpm")], ["set_underlay"], False),
    "tunnel_peer": ([("remote_ipv4", 32, "exact")], ["permit_peer"], False),
    "mpls_label": ([("label", 20, "exact")], ["label_to_vif", "label_to_vrf"], False),
    "flood": ([("vrf_id", 16, "exact"), ("from_fabric", 1, "exact")], ["set_flood_group"], False),
    "replica": ([("egress_rid", 16, "exact")], ["replica_local", "replica_remote"], False),
}
ACTIONS: dict[str, list[tuple[str, int]]] = {
    "NoAction": [],
    "set_fabric_port": [],
    "set_fabric_config": [("my_ipv4", 32), ("mtu", 16)],
    "set_vif": [("vif_id", 16), ("vrf_id", 16)],
    "permit": [],
    "set_nexthop": [("nexthop_id", 16)],
    "blackhole": [],
    "encap_mpls_gre": [("label", 20), ("remote_ipv4", 32)],
    "deliver_local": [("vif_id", 16), ("port", 9), ("vlan_id", 12), ("dst_mac", 48)],
    "set_underlay": [("port", 9), ("src_mac", 48), ("dst_mac", 48), ("vlan_id", 12)],
    "permit_peer": [],
    "label_to_vif": [("vif_id", 16), ("port", 9), ("vlan_id", 12), ("dst_mac", 48)],
    "label_to_vrf": [("vrf_id", 16)],
    "set_flood_group": [("group", 16)],
    "replica_local": [("vif_id", 16), ("vlan_id", 12)],
    "replica_remote": [
        ("label", 20),
        ("remote_ipv4", 32),
        ("src_mac", 48),
        ("dst_mac", 48),
        ("vlan_id", 12),
    ],
}
COUNTERS = {"vif_rx": 4096, "vif_tx": 4096, "ingress_drops": 32, "egress_drops": 32}
PIPE = "IngressPipe"


def _full(name: str) -> str:
    return name if name == "NoAction" else f"{PIPE}.{name}"


def write_stand_in_program(
    directory: Path, sizes: dict[str, int] | None = None
) -> tuple[Path, Path]:
    """P4Info + bmv2 JSON skeleton in ``directory``; ``sizes``: table alias -> size."""
    sizes = sizes or {}
    directory.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    action_ids = {a: 0x01000001 + i for i, a in enumerate(ACTIONS)}
    table_ids = {t: 0x02000001 + i for i, t in enumerate(TABLES)}
    profile_id = 0x11000001
    for t, (keys, acts, sel) in TABLES.items():
        lines.append("tables {")
        lines.append(f'  preamble {{ id: {table_ids[t]} name: "{_full(t)}" alias: "{t}" }}')
        for i, (k, bits, mt) in enumerate(keys, 1):
            lines.append(
                f'  match_fields {{ id: {i} name: "{k}" bitwidth: {bits} '
                f"match_type: {mt.upper()} }}"
            )
        for a in [*acts, "NoAction"]:
            lines.append(f"  action_refs {{ id: {action_ids[a]} }}")
        if sel:
            lines.append(f"  implementation_id: {profile_id}")
        lines.append(f"  size: {sizes.get(t, 65536)}")
        lines.append("}")
    for a, params in ACTIONS.items():
        lines.append("actions {")
        lines.append(f'  preamble {{ id: {action_ids[a]} name: "{_full(a)}" alias: "{a}" }}')
        for i, (p, bits) in enumerate(params, 1):
            lines.append(f'  params {{ id: {i} name: "{p}" bitwidth: {bits} }}')
        lines.append("}")
    lines.append("action_profiles {")
    lines.append(
        f'  preamble {{ id: {profile_id} name: "{PIPE}.nexthop_selector" '
        'alias: "nexthop_selector" }'
    )
    lines.append(f"  table_ids: {table_ids['nexthop']}")
    lines.append("  with_selector: true")
    lines.append("  size: 4096")
    lines.append("  max_group_size: 64")
    lines.append("}")
    for i, (c, size) in enumerate(COUNTERS.items()):
        lines.append("counters {")
        lines.append(f'  preamble {{ id: {0x12000001 + i} name: "{PIPE}.{c}" alias: "{c}" }}')
        lines.append("  spec { unit: BOTH }")
        lines.append(f"  size: {size}")
        lines.append("}")
    p4info = directory / "standin.p4info.txtpb"
    p4info.write_text("\n".join(lines) + "\n")

    bm_actions = [
        {
            "name": _full(a),
            "id": i,
            "runtime_data": [{"name": p, "bitwidth": b} for p, b in params],
            "primitives": [],
        }
        for i, (a, params) in enumerate(ACTIONS.items())
    ]
    aid = {a["name"]: a["id"] for a in bm_actions}
    bm_tables: list[dict[str, Any]] = []
    for i, (t, (keys, acts, sel)) in enumerate(TABLES.items()):
        names = [_full(a) for a in [*acts, "NoAction"]]
        tbl: dict[str, Any] = {
            "name": _full(t),
            "id": i,
            "key": [{"match_type": mt, "name": k, "target": ["meta", k]} for k, _b, mt in keys],
            "match_type": "lpm" if any(mt == "lpm" for *_x, mt in keys) else "exact",
            "type": "indirect_ws" if sel else "simple",
            "max_size": 65536,
            "with_counters": False,
            "support_timeout": False,
            "direct_meters": None,
            "action_ids": [aid[n] for n in names],
            "actions": names,
            "base_default_next": None,
            "next_tables": {},
        }
        if sel:
            tbl["action_profile"] = f"{PIPE}.nexthop_selector"
        else:
            tbl["default_entry"] = {
                "action_id": aid["NoAction"],
                "action_const": False,
                "action_data": [],
                "action_entry_const": False,
            }
        bm_tables.append(tbl)
    bmv2 = {
        "__comment": "stand-in skeleton for the agent system tests (see test_agent_support)",
        "header_types": [],
        "headers": [],
        "parsers": [],
        "deparsers": [],
        "meter_arrays": [],
        "counter_arrays": [
            {"name": f"{PIPE}.{c}", "id": i, "is_direct": False, "size": s}
            for i, (c, s) in enumerate(COUNTERS.items())
        ],
        "register_arrays": [],
        "actions": bm_actions,
        "pipelines": [
            {
                "name": "ingress",
                "id": 0,
                "init_table": None,
                "action_profiles": [
                    {
                        "name": f"{PIPE}.nexthop_selector",
                        "id": 0,
                        "max_size": 4096,
                        "selector": {"algo": "crc16", "input": []},
                    }
                ],
                "tables": bm_tables,
                "conditionals": [],
            },
            {
                "name": "egress",
                "id": 1,
                "init_table": None,
                "action_profiles": [],
                "tables": [],
                "conditionals": [],
            },
        ],
    }
    js = directory / "standin.json"
    js.write_text(json.dumps(bmv2, indent=1))
    return p4info, js


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
