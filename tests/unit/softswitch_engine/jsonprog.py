"""A tiny builder of bmv2 JSON programs in the exact shape p4c-bm2-ss emits.

Tests hand-write minimal programs with it, so every construct under test is
visible in the test itself.
"""

from __future__ import annotations

import copy
from typing import Any

J = dict[str, Any]

STANDARD_METADATA = [
    ["ingress_port", 9, False],
    ["egress_spec", 9, False],
    ["egress_port", 9, False],
    ["instance_type", 32, False],
    ["packet_length", 32, False],
    ["enq_timestamp", 32, False],
    ["enq_qdepth", 19, False],
    ["deq_timedelta", 32, False],
    ["deq_qdepth", 19, False],
    ["ingress_global_timestamp", 48, False],
    ["egress_global_timestamp", 48, False],
    ["mcast_grp", 16, False],
    ["egress_rid", 16, False],
    ["checksum_error", 1, False],
    ["parser_error", 32, False],
    ["priority", 3, False],
    ["_padding", 3, False],
]

ERRORS = [
    ["NoError", 0],
    ["PacketTooShort", 1],
    ["NoMatch", 2],
    ["StackOutOfBounds", 3],
    ["HeaderTooShort", 4],
    ["ParserTimeout", 5],
    ["ParserInvalidArgument", 6],
]


def f(h: str, name: str) -> J:
    return {"type": "field", "value": [h, name]}


def hx(v: int) -> J:
    return {"type": "hexstr", "value": hex(v)}


def rd(i: int) -> J:
    return {"type": "runtime_data", "value": i}


def loc(i: int) -> J:
    return {"type": "local", "value": i}


def hdr(name: str) -> J:
    return {"type": "header", "value": name}


def boolean(v: bool) -> J:
    return {"type": "bool", "value": v}


def op(o: str, left: J | None, right: J | None) -> J:
    return {"type": "expression", "value": {"op": o, "left": left, "right": right}}


def ternop(cond: J, left: J, right: J) -> J:
    return {"type": "expression", "value": {"op": "?", "left": left, "right": right, "cond": cond}}


def expr(e: J) -> J:
    """An expression as a primitive parameter (p4c wraps it once more)."""
    return {"type": "expression", "value": e}


def prim(name: str, *params: J) -> J:
    return {"op": name, "parameters": list(params)}


def assign(dst: J, src: J) -> J:
    return prim("assign", dst, src)


class Program:
    def __init__(self) -> None:
        self.header_types: list[J] = [
            {"name": "scalars_0", "id": 0, "fields": []},
            {"name": "standard_metadata", "id": 1, "fields": copy.deepcopy(STANDARD_METADATA)},
        ]
        self.headers: list[J] = [
            {"name": "scalars", "id": 0, "header_type": "scalars_0", "metadata": True},
            {
                "name": "standard_metadata",
                "id": 1,
                "header_type": "standard_metadata",
                "metadata": True,
            },
        ]
        self.header_stacks: list[J] = []
        self.header_unions: list[J] = []
        self.header_union_types: list[J] = []
        self.states: list[J] = []
        self.deparse_order: list[str] = []
        self.actions: list[J] = []
        self.tables: dict[str, list[J]] = {"ingress": [], "egress": []}
        self.conditionals: dict[str, list[J]] = {"ingress": [], "egress": []}
        self.profiles: list[J] = []
        self.init: dict[str, str | None] = {"ingress": None, "egress": None}
        self.calculations: list[J] = []
        self.checksums: list[J] = []
        self.field_lists: list[J] = []
        self.counters: list[J] = []
        self.registers: list[J] = []
        self.meters: list[J] = []
        self.extra: J = {}

    # --- layout --------------------------------------------------------------
    def scalar(self, name: str, width: int, signed: bool = False) -> None:
        self.header_types[0]["fields"].append([name, width, signed])

    def header_type(self, name: str, fields: list[tuple[str, int]]) -> None:
        self.header_types.append(
            {
                "name": name,
                "id": len(self.header_types),
                "fields": [[n, w, False] for n, w in fields],
            }
        )

    def header(self, name: str, htype: str, metadata: bool = False) -> int:
        self.headers.append(
            {"name": name, "id": len(self.headers), "header_type": htype, "metadata": metadata}
        )
        return len(self.headers) - 1

    def stack(self, name: str, htype: str, size: int) -> None:
        ids = [self.header(f"{name}[{i}]", htype) for i in range(size)]
        self.header_stacks.append(
            {
                "name": name,
                "id": len(self.header_stacks),
                "header_type": htype,
                "size": size,
                "header_ids": ids,
            }
        )

    # --- parser --------------------------------------------------------------
    def state(
        self,
        name: str,
        ops: list[J],
        key: list[J] | None = None,
        transitions: list[tuple[int | None, int | None, str | None]] | None = None,
    ) -> None:
        trs: list[J] = []
        for value, mask, nxt in transitions or [(None, None, None)]:
            if value is None:
                trs.append({"type": "default", "value": None, "mask": None, "next_state": nxt})
            else:
                trs.append(
                    {
                        "type": "hexstr",
                        "value": hex(value),
                        "mask": None if mask is None else hex(mask),
                        "next_state": nxt,
                    }
                )
        self.states.append(
            {
                "name": name,
                "id": len(self.states),
                "parser_ops": ops,
                "transitions": trs,
                "transition_key": key or [],
            }
        )

    @staticmethod
    def extract(h: str) -> J:
        return {"op": "extract", "parameters": [{"type": "regular", "value": h}]}

    # --- actions / tables ------------------------------------------------------
    def action(self, name: str, primitives: list[J], params: list[tuple[str, int]] = ()) -> int:  # type: ignore[assignment]
        aid = len(self.actions)
        self.actions.append(
            {
                "name": name,
                "id": aid,
                "runtime_data": [{"name": n, "bitwidth": w} for n, w in params],
                "primitives": primitives,
            }
        )
        return aid

    def table(
        self,
        pipe: str,
        name: str,
        keys: list[tuple[str, J | str]],
        actions: list[int],
        default: tuple[int, list[int]] | None = None,
        next_tables: dict[str, str | None] | None = None,
        base_next: str | None = None,
        match_type: str | None = None,
        entries: list[J] | None = None,
        **extra: Any,
    ) -> None:
        key_json = []
        for mt, tgt in keys:
            key_json.append(
                {
                    "match_type": mt,
                    "name": str(tgt),
                    "target": tgt["value"] if isinstance(tgt, dict) else tgt,
                    "mask": None,
                }
            )
        names = [self.actions[a]["name"] for a in actions]
        d = default if default is not None else (actions[-1], [])
        t: J = {
            "name": name,
            "id": len(self.tables[pipe]),
            "key": key_json,
            "match_type": match_type or (keys[0][0] if keys else "exact"),
            "type": "simple",
            "max_size": 1024,
            "with_counters": False,
            "support_timeout": False,
            "direct_meters": None,
            "action_ids": actions,
            "actions": names,
            "base_default_next": base_next,
            "next_tables": next_tables
            if next_tables is not None
            else dict.fromkeys(names, base_next),
            "default_entry": {
                "action_id": d[0],
                "action_const": False,
                "action_data": [hex(x) for x in d[1]],
                "action_entry_const": False,
            },
        }
        if entries is not None:
            t["entries"] = entries
        t.update(extra)
        self.tables[pipe].append(t)
        if self.init[pipe] is None:
            self.init[pipe] = name

    def conditional(
        self, pipe: str, name: str, expression: J, true_next: str | None, false_next: str | None
    ) -> None:
        self.conditionals[pipe].append(
            {
                "name": name,
                "id": len(self.conditionals[pipe]),
                "expression": expression,
                "true_next": true_next,
                "false_next": false_next,
            }
        )

    # --- output --------------------------------------------------------------
    def json(self) -> J:
        j: J = {
            "header_types": self.header_types,
            "headers": self.headers,
            "header_stacks": self.header_stacks,
            "header_union_types": self.header_union_types,
            "header_unions": self.header_unions,
            "header_union_stacks": [],
            "field_lists": self.field_lists,
            "errors": ERRORS,
            "enums": [],
            "parsers": [
                {"name": "parser", "id": 0, "init_state": "start", "parse_states": self.states}
            ],
            "parse_vsets": [],
            "deparsers": [
                {"name": "deparser", "id": 0, "order": self.deparse_order, "primitives": []}
            ],
            "meter_arrays": self.meters,
            "counter_arrays": self.counters,
            "register_arrays": self.registers,
            "calculations": self.calculations,
            "learn_lists": [],
            "actions": self.actions,
            "pipelines": [
                {
                    "name": pipe,
                    "id": i,
                    "init_table": self.init[pipe],
                    "tables": self.tables[pipe],
                    "action_profiles": self.profiles if pipe == "ingress" else [],
                    "conditionals": self.conditionals[pipe],
                }
                for i, pipe in enumerate(("ingress", "egress"))
            ],
            "checksums": self.checksums,
            "force_arith": [],
            "extern_instances": [],
            "field_aliases": [
                ["queueing_metadata.enq_timestamp", ["standard_metadata", "enq_timestamp"]],
                ["intrinsic_metadata.mcast_grp", ["standard_metadata", "mcast_grp"]],
                ["intrinsic_metadata.egress_rid", ["standard_metadata", "egress_rid"]],
            ],
            "program": "test.p4",
            "__meta__": {"version": [2, 23], "compiler": "hand-written (p4c-bm2-ss shape)"},
        }
        j.update(self.extra)
        return j


def eth_program() -> Program:
    """ethernet + a test header ``h`` (after EtherType 0x88b5); scalars m16, m8."""
    p = Program()
    p.header_type("ethernet_t", [("dst", 48), ("src", 48), ("type", 16)])
    p.header_type("h_t", [("a", 8), ("b", 8), ("c", 16), ("d", 32)])
    p.header("ethernet", "ethernet_t")
    p.header("h", "h_t")
    p.scalar("m16", 16)
    p.scalar("m8", 8)
    p.state(
        "start",
        [Program.extract("ethernet")],
        key=[f("ethernet", "type")],
        transitions=[(0x88B5, None, "parse_h"), (None, None, None)],
    )
    p.state("parse_h", [Program.extract("h")])
    p.deparse_order = ["ethernet", "h"]
    return p
