"""Compiles p4c's bmv2 JSON into the closures ``SoftEngine`` runs.

Each JSON construct maps to bmv2 code (src/bm_sim, targets/simple_switch);
what has no mapping here raises UnsupportedConstruct naming it. Everything is
compiled to closures first (so refusals do not depend on code generation);
then ``engine_gen`` turns actions, the parser, the pipelines and the
checksum/deparse step into generated source, with those closures as the
fallback for the shapes it does not generate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from softswitch import engine_hash
from softswitch.api import (
    ActionCall,
    EngineError,
    Exact,
    FieldMatch,
    Lpm,
    Optional,
    Range,
    Ternary,
    UnsupportedConstruct,
)
from softswitch.engine import (
    DROP_PORT,
    PHV,
    PKT_INSTANCE_TYPE_NORMAL,
    Args,
    Expr,
    HdrExpr,
    Prim,
    Setter,
    _Action,
    _Header,
    _hexint,
    _Meters,
    _ParserError,
    _Profile,
    _signed,
    _Slots,
    _Stack,
    _Table,
    _trunc_div,
    _trunc_mod,
)
from softswitch.engine_gen import (
    GEN_LIMITS,
    ArgLits,
    ParseState,
    SourceGen,
    generate_parser,
    generate_pipeline,
)

if TYPE_CHECKING:
    from softswitch.engine import SoftEngine

_TOP_KEYS = {
    "header_types",
    "headers",
    "header_stacks",
    "header_union_types",
    "header_unions",
    "header_union_stacks",
    "field_lists",
    "errors",
    "enums",
    "parsers",
    "parse_vsets",
    "deparsers",
    "meter_arrays",
    "counter_arrays",
    "register_arrays",
    "calculations",
    "learn_lists",
    "actions",
    "pipelines",
    "checksums",
    "force_arith",
    "extern_instances",
    "field_aliases",
    "program",
    "__meta__",
}

_NOOP_PRIMS = {"no_op", "log_msg", "assert", "assume"}

ParseOp = Callable[[PHV, bytes, int], int]


def _refuse(what: str) -> UnsupportedConstruct:
    return UnsupportedConstruct(f"unsupported bmv2 JSON construct: {what}")


def _store(slot: int, width: int, signed: bool) -> Setter:
    mask = (1 << width) - 1
    if signed:

        def set_signed(phv: PHV, a: Args, v: int) -> None:
            v &= mask
            phv[slot] = v - (1 << width) if v >> (width - 1) else v

        return set_signed

    def set_unsigned(phv: PHV, a: Args, v: int) -> None:
        phv[slot] = v & mask

    return set_unsigned


class _Compiler:
    def __init__(self, eng: SoftEngine, j: Mapping[str, Any]) -> None:
        self.e = eng
        self.j = j
        self.slot_width: list[int] = []
        self.slot_signed: list[bool] = []
        self.template: PHV = []
        self.fields: dict[tuple[str, str], int] = {}
        self.aliases: dict[str, tuple[str, str]] = {}
        self.union_of: dict[int, list[int]] = {}  # hid -> other members' valid slots
        self.calc_payload: set[str] = set()
        self.gen = SourceGen(self)
        self.generate = eng._generate  # False: closures only (SoftEngine(generate=False))
        self.has_exit = False  # an exit primitive anywhere: pipelines check after tables
        # what engine_gen needs: per action (without jumps) its primitives and
        # closures; per conditional its JSON; per table its next-node list
        self.action_parts: dict[int, tuple[list[Any], list[Prim]]] = {}
        self.conds: dict[str, Mapping[str, Any]] = {}
        self.table_hm: dict[str, tuple[_Table, list[Any]]] = {}
        self.table_keys: dict[str, list[tuple[int, int]]] = {}  # (slot, mask) per key
        self.table_meter: dict[str, tuple[_Meters, Setter]] = {}
        self.parse_info: dict[str, ParseState] = {}
        self.calc_parts: dict[
            str, tuple[Callable[[bytes], int], Callable[[PHV, bytes], bytes]]
        ] = {}
        self.calc_csum16: dict[str, Callable[[PHV, bytes], int]] = {}  # csum16 without bytes
        self.gen_extract: dict[int, list[str]] = {}  # id(extract closure) -> statements
        self._keep: list[Any] = []  # keeps those closures (and their ids) alive

    # ------------------------------------------------------------- layout
    def _new_slot(self, width: int, signed: bool = False, init: int = 0) -> int:
        self.slot_width.append(width)
        self.slot_signed.append(signed)
        self.template.append(init)
        return len(self.template) - 1

    def compile(self) -> None:
        j = self.j
        if not isinstance(j, Mapping):
            raise EngineError("bmv2 JSON must be an object")
        for k in j:
            if k not in _TOP_KEYS and not k.startswith("__"):
                raise _refuse(f"top-level key {k!r}")
        for k in ("header_union_stacks", "parse_vsets", "learn_lists", "extern_instances"):
            if j.get(k):
                raise _refuse(f"{k} ({', '.join(x.get('name', '?') for x in j[k])})")
        self._layout()
        self._slots()
        for name, code in j.get("errors", []):
            self.e._errors[name] = code
        self.e._no_error = self.e._errors["NoError"]
        for fl in j.get("field_lists", []):
            self.e._field_lists[fl["id"]] = [
                self._elem_slot(x, "field list") for x in fl["elements"]
            ]
        for c in j.get("calculations", []):
            self.e._calcs[c["name"]] = self._calculation(c["name"], c["algo"], c["input"])
        self._stateful()
        self.e._actions = [self._action(a, i) for i, a in enumerate(j.get("actions", []))]
        self.runs = [a.run for a in self.e._actions]  # one list for all generated tables
        self.e._action_by_name = {}
        self.action_by_id: dict[int, int] = {}
        for i, a in enumerate(j.get("actions", [])):
            self.e._action_by_name.setdefault(a["name"], []).append(i)
            self.action_by_id[a["id"]] = i
        self._parser()
        self._deparser()
        self._checksums()
        self._pipelines()
        self.e._template = self.template
        if self.generate:
            with contextlib.suppress(*GEN_LIMITS):  # else SoftEngine._first
                self._gen_first()

    def _gen_first(self) -> None:
        """SoftEngine._first with _ingress_one, _run_parser and _egress_one
        inline, slots as constants: the received frame's pass; anything but
        a plain unicast (clone, resubmit, multicast, recirculate) continues
        in the engine's _ingress_one / _egress_one after their pipelines."""
        e, s, g = self.e, self.s, self.gen
        micros = g.const(e._micros, "micros")

        def run(pipe: Any) -> list[str]:
            return [
                f"    node = {g.const(pipe, 'pipe')}",
                f"    while node is not None and not phv[{s.exit}]:",
                "        node = node(phv)",
                f"    phv[{s.exit}] = 0",
            ]

        mgid = f" or phv[{s.mcast_grp}]" if s.mcast_grp >= 0 else ""
        lines = [
            "def first(port, frame, inputs, out):",
            f"    phv = {g.const(e._template, 'template')}.copy()",
            "    n = len(frame)",
            f"    phv[{s.ingress_port}] = port",
            f"    phv[{s.packet_length}] = n",
            f"    phv[{s.pkt_len_reg}] = n",
            f"    phv[{s.ingress_length}] = n",
            *([f"    phv[{s.ingress_ts}] = {micros}()"] if s.ingress_ts >= 0 else []),
            f"    ingress_size = phv[{s.pkt_len_reg}]",
            "    try:",
            f"        consumed = {g.const(e._parse, 'parse')}(phv, frame)",
            f"        err = {e._no_error}",
            "    except _ParserError as exc:",
            "        err = exc.code",
            f"        consumed = phv[{s.parsed}]",
            "    payload = frame[consumed:]",
            f"    cerr = {g.const(e._verify_fn, 'verify')}(phv, payload)",
            *([f"    phv[{s.parser_error}] = err"] if s.parser_error >= 0 else []),
            *([f"    phv[{s.checksum_error}] = cerr"] if s.checksum_error >= 0 else []),
            *run(e._ingress),
            f"    if phv[{s.clone_session}] or phv[{s.resubmit}]{mgid}:",
            f"        {g.const(e._ingress_one, 'ingress_one')}"
            "(phv, frame, inputs, out, (payload, ingress_size))",
            "        return",
            f"    es = phv[{s.egress_spec}]",
            f"    if es == {DROP_PORT}:",
            "        return",
            f"    phv[{s.instance_type}] = {PKT_INSTANCE_TYPE_NORMAL}",
            f"    phv[{s.egress_port}] = es",
            f"    phv[{s.egress_spec}] = {e._egress_spec_init}",
            f"    phv[{s.packet_length}] = phv[{s.pkt_len_reg}]",
            *([f"    phv[{s.egress_ts}] = {micros}()"] if s.egress_ts >= 0 else []),
            *run(e._egress),
            f"    if phv[{s.clone_session}] or phv[{s.recirc}]:",
            f"        {g.const(e._egress_one, 'egress_one')}(es, phv, payload, inputs, out, True)",
            "        return",
            f"    if phv[{s.egress_spec}] == {DROP_PORT}:",
            "        return",
            f"    frame = {g.const(e._deparse_fn, 'deparse')}(phv, payload)",
            f"    trunc = phv[{s.truncate}]",
            "    if trunc and trunc < len(frame):",
            "        frame = frame[:trunc]",
            "    out.append((es, frame))",
        ]
        e._first_fn = g.compile("\n".join(lines) + "\n", "first", "first pass")

    def _layout(self) -> None:
        j = self.j
        types = {t["name"]: t for t in j.get("header_types", [])}
        e = self.e
        for h in j.get("headers", []):
            ht = types[h["header_type"]]
            meta = bool(h.get("metadata", False))
            valid = self._new_slot(1, init=1 if meta else 0)
            hdr = _Header(h["name"], len(e._headers), valid, meta, [], [], [], [], 0, 0)
            for f in ht["fields"]:
                fname, width = f[0], f[1]
                signed = bool(f[2]) if len(f) > 2 else False
                if not isinstance(width, int):
                    raise _refuse(f"varbit field {h['name']}.{fname}")
                if len(f) > 3 and f[3]:
                    raise _refuse(f"saturating field {h['name']}.{fname}")
                hdr.names.append(fname)
                hdr.slots.append(self._new_slot(width, signed))
                hdr.widths.append(width)
                hdr.signed.append(signed)
                self.fields[(h["name"], fname)] = hdr.slots[-1]
            self.fields[(h["name"], "$valid$")] = valid
            hdr.nbits = sum(hdr.widths)
            hdr.nbytes = (hdr.nbits + 7) // 8
            if not meta and hdr.nbits % 8:
                raise _refuse(f"header {h['name']} of {hdr.nbits} bits (not whole bytes)")
            shift = 0
            for slot, w, s in reversed(list(zip(hdr.slots, hdr.widths, hdr.signed, strict=True))):
                hdr.unpack.append((slot, shift, (1 << w) - 1, w if s else 0))
                shift += w
            e._headers.append(hdr)
            e._hdr_by_name[hdr.name] = hdr
        for st in j.get("header_stacks", []):
            hids = [e._hdr_by_name[self._hname(x)].hid for x in st["header_ids"]]
            e._stacks[st["name"]] = _Stack(st["name"], hids, self._new_slot(32))
        for u in j.get("header_unions", []):
            hids = [e._hdr_by_name[self._hname(x)].hid for x in u["header_ids"]]
            e._unions[u["name"]] = hids
            for hid in hids:
                e._headers[hid].union = len(e._unions) - 1
                self.union_of[hid] = [e._headers[o].valid for o in hids if o != hid]
        for alias, target in j.get("field_aliases", []):
            self.aliases[alias] = (target[0], target[1])

    def _hname(self, x: Any) -> str:
        if isinstance(x, int):
            for h in self.j["headers"]:
                if h["id"] == x:
                    return str(h["name"])
            raise EngineError(f"unknown header id {x}")
        return str(x)

    def _slots(self) -> None:
        s = _Slots()

        def sm(name: str, required: bool = True) -> int:
            slot = self.fields.get(("standard_metadata", name))
            if slot is None:
                for alias in (f"intrinsic_metadata.{name}", f"queueing_metadata.{name}"):
                    if alias in self.aliases:
                        slot = self.fields.get(self.aliases[alias])
            if slot is None:
                return self._new_slot(32) if required else -1
            return slot

        s.ingress_port = sm("ingress_port")
        s.egress_spec = sm("egress_spec")
        s.egress_port = sm("egress_port")
        s.instance_type = sm("instance_type")
        s.packet_length = sm("packet_length")
        # simple_switch reads these two as intrinsic_metadata.* (p4c aliases
        # them to standard_metadata; P4-14 programs declare the header)
        s.mcast_grp = self.fields.get(("intrinsic_metadata", "mcast_grp"), sm("mcast_grp", False))
        s.egress_rid = self.fields.get(("intrinsic_metadata", "egress_rid"), sm("egress_rid"))
        s.parser_error = sm("parser_error", False)
        s.checksum_error = sm("checksum_error", False)
        for name in ("exit", "clone_session", "clone_fl", "resubmit", "recirc"):
            setattr(s, name, self._new_slot(64))
        s.pkt_len_reg = self._new_slot(64)
        s.ingress_length = self._new_slot(64)
        s.ingress_ts = self.fields.get(
            ("intrinsic_metadata", "ingress_global_timestamp"),
            sm("ingress_global_timestamp", False),
        )
        s.egress_ts = self.fields.get(
            ("intrinsic_metadata", "egress_global_timestamp"), sm("egress_global_timestamp", False)
        )
        s.truncate = self._new_slot(64)
        s.parsed = self._new_slot(64)
        self.s = s
        self.e._slots = s
        self.e._egress_spec_init = (DROP_PORT + 1) & ((1 << self.slot_width[s.egress_spec]) - 1)
        self.e._rid_mask = (1 << self.slot_width[s.egress_rid]) - 1
        meta: list[int] = []
        for h in self.e._headers:
            if h.metadata:
                meta.extend(h.slots)
        self.e._meta_slots = meta

    # ------------------------------------------------------------- refs
    def _field_slot(self, hname: str, fname: str) -> int:
        slot = self.fields.get((hname, fname))
        if slot is None:
            alias = self.aliases.get(f"{hname}.{fname}")
            if alias is not None:
                slot = self.fields.get(alias)
        if slot is None:
            raise EngineError(f"unknown field {hname}.{fname}")
        return slot

    def _elem_slot(self, x: Mapping[str, Any], where: str) -> int:
        if x["type"] != "field":
            raise _refuse(f"{x['type']} element in {where}")
        return self._field_slot(x["value"][0], x["value"][1])

    def _header(self, name: str) -> _Header:
        h = self.e._hdr_by_name.get(name)
        if h is None:
            raise EngineError(f"unknown header {name}")
        return h

    def _stack(self, name: str) -> _Stack:
        st = self.e._stacks.get(name)
        if st is None:
            raise EngineError(f"unknown header stack {name}")
        return st

    # -------------------------------------------------------- expressions
    def expr(self, j: Any) -> Expr:
        if j is None:
            raise EngineError("missing expression")
        t = j["type"]
        v = j["value"]
        if t == "field":
            slot = self._field_slot(v[0], v[1])
            return lambda phv, a: phv[slot]
        if t == "hexstr":
            c = _hexint(v)
            return lambda phv, a: c
        if t == "bool":
            b = int(bool(v))
            return lambda phv, a: b
        if t in ("local", "runtime_data"):
            i = int(v)
            return lambda phv, a: a[i]
        if t == "expression":
            if "op" not in v:  # primitive parameter wrapping an expression
                return self.expr(v)
            return self._op(v)
        if t == "register":
            cells, _width = self.e._registers[v[0]]
            idx = self.expr(v[1])
            n = len(cells)

            def reg(phv: PHV, a: Args) -> int:
                i = idx(phv, a)
                return cells[i] if 0 <= i < n else 0

            return reg
        if t == "stack_field":
            st = self._stack(v[0])
            off = self.e._headers[st.headers[0]].names.index(v[1])
            slots = [self.e._headers[h].slots[off] for h in st.headers]
            cs = st.count_slot
            return lambda phv, a: phv[slots[max(phv[cs] - 1, 0)]]
        raise _refuse(f"expression type {t!r}")

    def hexpr(self, j: Any) -> tuple[int, HdrExpr | None]:
        """A header-valued expression: (static header id, -1 if dynamic), fn."""
        t = j["type"]
        v = j["value"]
        if t == "header":
            return self._header(v).hid, None
        if t == "expression":
            op = v["op"]
            if op in ("dereference_header_stack", "dereference_stack"):
                st = self._stack(v["left"]["value"])
                hids = st.headers
                idx = self.expr(v["right"])
                last = len(hids) - 1
                return -1, lambda phv, a: hids[min(max(idx(phv, a), 0), last)]
            if op == "access_union_header":
                ut, uf = self.uexpr(v["left"])
                k = int(v["right"])
                if uf is None:
                    return self.e._unions[ut][k], None
                return -1, lambda phv, a: self.e._unions[uf(phv, a)][k]  # pragma: no cover
            if op == "?":
                cond = self.expr(v["cond"])
                lh, lf = self.hexpr(v["left"])
                rh, rf = self.hexpr(v["right"])
                lfn = lf or (lambda phv, a: lh)
                rfn = rf or (lambda phv, a: rh)
                return -1, lambda phv, a: lfn(phv, a) if cond(phv, a) else rfn(phv, a)
        if t == "stack_header":  # not emitted by current p4c
            raise _refuse("stack_header reference")
        raise _refuse(f"header expression {t!r} {v.get('op') if isinstance(v, dict) else ''}")

    def uexpr(self, j: Any) -> tuple[str, Callable[[PHV, Args], str] | None]:
        if j["type"] == "header_union":
            if j["value"] not in self.e._unions:
                raise EngineError(f"unknown header union {j['value']}")
            return j["value"], None
        raise _refuse(f"header union expression {j['type']!r}")

    def _kind(self, j: Any) -> str:
        t = j["type"]
        if t == "header":
            return "header"
        if t == "header_union":
            return "union"
        if t == "expression" and j["value"]["op"] in (
            "dereference_header_stack",
            "dereference_stack",
            "access_union_header",
        ):
            return "header"
        return "data"

    def _valid_of(self, j: Any) -> Expr:
        hid, hf = self.hexpr(j)
        if hf is None:
            vs = self.e._headers[hid].valid
            return lambda phv, a: phv[vs]
        valids = [h.valid for h in self.e._headers]
        return lambda phv, a: phv[valids[hf(phv, a)]]

    def _hdr_equal(self, lj: Any, rj: Any) -> Expr:
        lh, lf = self.hexpr(lj)
        rh, rf = self.hexpr(rj)
        hs = self.e._headers
        lfn = lf or (lambda phv, a: lh)
        rfn = rf or (lambda phv, a: rh)

        def eq(phv: PHV, a: Args) -> int:
            x, y = hs[lfn(phv, a)], hs[rfn(phv, a)]
            if phv[x.valid] != phv[y.valid]:
                return 0
            if not phv[x.valid]:
                return 1
            return int(all(phv[p] == phv[q] for p, q in zip(x.slots, y.slots, strict=False)))

        return eq

    def _op(self, v: Mapping[str, Any]) -> Expr:
        op = v["op"]
        lj: Any = v.get("left")
        rj: Any = v.get("right")
        if op == "?":
            c, lt, rt = self.expr(v["cond"]), self.expr(lj), self.expr(rj)
            return lambda phv, a: lt(phv, a) if c(phv, a) else rt(phv, a)
        if op == "valid":
            return self._valid_of(rj)
        if op == "valid_union":
            un, _ = self.uexpr(rj)
            slots = [self.e._headers[h].valid for h in self.e._unions[un]]
            return lambda phv, a: int(any(phv[s] for s in slots))
        if op == "access_field":
            off = int(rj)
            hid, hf = self.hexpr(lj)
            if hf is None:
                slot = self.e._headers[hid].slots[off]
                return lambda phv, a: phv[slot]
            table = [h.slots[off] if off < len(h.slots) else 0 for h in self.e._headers]
            return lambda phv, a: phv[table[hf(phv, a)]]
        if op in ("last_stack_index", "size_stack"):
            cs = self._stack(rj["value"]).count_slot
            if op == "size_stack":
                return lambda phv, a: phv[cs]
            return lambda phv, a: phv[cs] - 1
        if op in ("==", "!=") and lj is not None and self._kind(lj) != "data":
            if self._kind(lj) == "union":
                raise _refuse("comparison of header unions")
            eq = self._hdr_equal(lj, rj)
            if op == "==":
                return eq
            return lambda phv, a: 1 - eq(phv, a)
        if op in ("dereference_header_stack", "dereference_stack", "access_union_header"):
            raise _refuse(f"{op} used as a value")
        r = self.expr(rj)
        if op == "not":
            return lambda phv, a: int(not r(phv, a))
        if op == "~":
            return lambda phv, a: ~r(phv, a)
        if op == "d2b":
            return lambda phv, a: int(r(phv, a) != 0)
        if op == "b2d":
            return lambda phv, a: int(bool(r(phv, a)))
        if lj is None:
            if op == "-":
                return lambda phv, a: -r(phv, a)
            if op == "+":
                return r
            raise _refuse(f"unary operator {op!r}")
        le = self.expr(lj)
        binops: dict[str, Expr] = {
            "+": lambda phv, a: le(phv, a) + r(phv, a),
            "-": lambda phv, a: le(phv, a) - r(phv, a),
            "*": lambda phv, a: le(phv, a) * r(phv, a),
            "/": lambda phv, a: _trunc_div(le(phv, a), r(phv, a)),
            "%": lambda phv, a: _trunc_mod(le(phv, a), r(phv, a)),
            "<<": lambda phv, a: le(phv, a) << r(phv, a),
            ">>": lambda phv, a: le(phv, a) >> r(phv, a),
            "&": lambda phv, a: le(phv, a) & r(phv, a),
            "|": lambda phv, a: le(phv, a) | r(phv, a),
            "^": lambda phv, a: le(phv, a) ^ r(phv, a),
            "==": lambda phv, a: int(le(phv, a) == r(phv, a)),
            "!=": lambda phv, a: int(le(phv, a) != r(phv, a)),
            ">": lambda phv, a: int(le(phv, a) > r(phv, a)),
            "<": lambda phv, a: int(le(phv, a) < r(phv, a)),
            ">=": lambda phv, a: int(le(phv, a) >= r(phv, a)),
            "<=": lambda phv, a: int(le(phv, a) <= r(phv, a)),
            "and": lambda phv, a: int(bool(le(phv, a)) and bool(r(phv, a))),
            "or": lambda phv, a: int(bool(le(phv, a)) or bool(r(phv, a))),
            "two_comp_mod": lambda phv, a: _signed(le(phv, a), r(phv, a)),
            "usat_cast": lambda phv, a: _usat(le(phv, a), r(phv, a)),
            "sat_cast": lambda phv, a: _sat(le(phv, a), r(phv, a)),
        }
        fn = binops.get(op)
        if fn is None:
            raise _refuse(f"expression operator {op!r}")
        if op == "&" and rj["type"] == "hexstr" and lj["type"] == "field":
            # the most common p4c shape: (field & mask)
            slot = self._field_slot(*lj["value"])
            m = _hexint(rj["value"])
            return lambda phv, a: phv[slot] & m
        return fn

    # ------------------------------------------------------------ lvalues
    def setter(self, j: Any) -> Setter:
        t = j["type"]
        v = j["value"]
        if t == "field":
            slot = self._field_slot(v[0], v[1])
            return _store(slot, self.slot_width[slot], self.slot_signed[slot])
        if t == "stack_field":
            st = self._stack(v[0])
            off = self.e._headers[st.headers[0]].names.index(v[1])
            stores = [self._fstore(h, off) for h in st.headers]
            cs = st.count_slot
            return lambda phv, a, x: stores[max(phv[cs] - 1, 0)](phv, a, x)
        if t == "expression" and v.get("op") == "access_field":
            off = int(v["right"])
            hid, hf = self.hexpr(v["left"])
            if hf is None:
                return self._fstore(hid, off)
            stores2 = [
                self._fstore(h.hid, off) if off < len(h.slots) else None for h in self.e._headers
            ]

            def dyn(phv: PHV, a: Args, x: int) -> None:
                s = stores2[hf(phv, a)]
                if s is not None:
                    s(phv, a, x)

            return dyn
        raise _refuse(f"assignment target {t!r}")

    def _fstore(self, hid: int, off: int) -> Setter:
        slot = self.e._headers[hid].slots[off]
        return _store(slot, self.slot_width[slot], self.slot_signed[slot])

    # ------------------------------------------------------------ hashing
    def _calculation(
        self, name: str, algo: str, inputs: Sequence[Any]
    ) -> Callable[[PHV, bytes], int]:
        fn = engine_hash.get_hash(algo)
        if fn is None:
            raise _refuse(f"hash algorithm {algo!r} (calculation {name})")
        build = self._buf_builder(inputs, name)
        self.calc_parts[name] = (fn, build)
        if fn is engine_hash.csum16 and self.generate:
            with contextlib.suppress(*GEN_LIMITS):  # else the bytes and csum16
                self.calc_csum16[name] = self._buf_builder(inputs, name, csum=True)
        return lambda phv, payload: fn(build(phv, payload))

    def _buf_builder(
        self, inputs: Sequence[Any], name: str, csum: bool = False
    ) -> Callable[[PHV, bytes], Any]:
        # bmv2 BufBuilder: fields packed bit by bit; fields of invalid headers
        # are skipped; whole headers only when valid; payload appended.
        # csum: instead of the bytes, engine_hash.csum16 of them, computed
        # from the fields (the buffer's value modulo 0xffff, 2**16 being 1).
        parts: list[tuple[int, Any, int]] = []  # (kind, a, b)
        with_payload = False
        valid_of: dict[int, int] = {}
        for h in self.e._headers:
            for s in h.slots:
                valid_of[s] = h.valid
        for x in inputs:
            t = x["type"]
            if t == "field":
                slot = self._field_slot(x["value"][0], x["value"][1])
                parts.append((0, (valid_of.get(slot, -1), slot), self.slot_width[slot]))
            elif t == "hexstr":
                w = int(x["bitwidth"])
                parts.append((1, _hexint(x["value"]) & ((1 << w) - 1), w))
            elif t == "header":
                h = self._header(x["value"])
                parts.append((2, h, h.nbits))
            elif t == "payload":
                with_payload = True
                self.calc_payload.add(name)
            else:
                raise _refuse(f"{t} input in calculation {name}")

        # Generated code: fields of one header share one validity test;
        # unsigned fields are stored masked already (signed ones are masked).
        lines = ["def build(phv, payload):", "    acc = 0", "    n = 0"]
        i = 0
        while i < len(parts):
            kind, a, w = parts[i]
            if kind == 1:
                if csum:  # acc stays congruent to the buffer's value, and 0 iff it is
                    lines.append(f"    acc = (acc << {w % 16}) + {a}")
                else:
                    lines.append(f"    acc = (acc << {w}) | {a}")
                lines.append(f"    n += {w}")
                i += 1
                continue
            if kind == 2:
                terms = [(sl, fw) for sl, fw in zip(a.slots, a.widths, strict=True)]
                vs = a.valid
                i += 1
            else:
                vs = a[0]
                terms = []
                while i < len(parts) and parts[i][0] == 0 and parts[i][1][0] == vs:
                    terms.append((parts[i][1][1], parts[i][2]))
                    i += 1
            expr = "acc"
            total = sum(fw for _, fw in terms)
            below = total  # bits of the block after the current field
            sums: list[str] = []
            for sl, fw in terms:
                val = f"(phv[{sl}] & {(1 << fw) - 1})" if self.slot_signed[sl] else f"phv[{sl}]"
                expr = f"(({expr}) << {fw}) | {val}"
                below -= fw
                sums.append(f"({val} << {below % 16})" if below % 16 else val)
            if csum:
                expr = f"(acc << {total % 16}) + " + " + ".join(sums) if sums else "acc"
            ind = "    "
            if vs >= 0 and not self.template[vs]:
                lines.append(f"    if phv[{vs}]:")
                ind = "        "
            lines.append(f"{ind}acc = {expr}")
            lines.append(f"{ind}n += {total}")
        lines.append("    pad = -n % 8")
        if csum:
            lines += ["    acc <<= pad", "    nb = (n + pad) >> 3"]
            if with_payload:
                lines += [
                    "    acc = (acc << (len(payload) & 1) * 8) + int.from_bytes(payload, 'big')",
                    "    nb += len(payload)",
                ]
            lines += [
                "    if nb & 1:",  # csum16 pads an odd buffer with a zero byte
                "        acc <<= 8",
                "    r = acc % 65535",
                "    if r == 0 and acc:",
                "        r = 65535",
                "    return ~r & 65535",
            ]
            csum16: Callable[[PHV, bytes], int] = _gen("\n".join(lines), "build", {})
            return csum16
        tail = " + payload" if with_payload else ""
        lines.append(f"    return (acc << pad).to_bytes((n + pad) >> 3, 'big'){tail}")
        build: Callable[[PHV, bytes], bytes] = _gen("\n".join(lines), "build", {})
        return build

    # ------------------------------------------------------- stateful
    def _stateful(self) -> None:
        e = self.e
        for c in self.j.get("counter_arrays", []):
            if c.get("is_direct"):
                e._direct_counters[c["name"]] = c["binding"]
            else:
                e._counters[c["name"]] = [[0, 0] for _ in range(int(c["size"]))]
        for r in self.j.get("register_arrays", []):
            e._registers[r["name"]] = ([0] * int(r["size"]), int(r["bitwidth"]))
        for m in self.j.get("meter_arrays", []):
            if m.get("type") not in ("packets", "bytes"):
                raise _refuse(f"meter type {m.get('type')!r} ({m['name']})")
            if int(m.get("rate_count", 2)) != 2:
                raise _refuse(f"meter {m['name']} with rate_count {m.get('rate_count')}")
            size = 1 << 62 if m.get("is_direct") else int(m["size"])
            e._meters[m["name"]] = _Meters(m["name"], size, m["type"] == "packets", e._clock)

    # ------------------------------------------------------------ actions
    def _action(self, a: Mapping[str, Any], index: int) -> _Action:
        widths = [int(r["bitwidth"]) for r in a.get("runtime_data", [])]
        prims = a.get("primitives", [])
        compiled: list[tuple[str, Any]] = []
        has_jump = False
        for p in prims:
            op = p["op"]
            if op in ("_jump", "_jump_if_zero"):
                has_jump = True
                params = p["parameters"]
                if op == "_jump":
                    compiled.append(("j", int(_hexint(params[0]["value"]))))
                else:
                    compiled.append(("jz", (self.expr(params[0]), _hexint(params[1]["value"]))))
            else:
                compiled.append(("p", self.primitive(p, a["name"])))
        run: Prim
        if has_jump:
            prog = compiled

            def run_jumps(phv: PHV, args: Args) -> None:
                pc = 0
                n = len(prog)
                while pc < n:
                    kind, x = prog[pc]
                    if kind == "p":
                        x(phv, args)
                        pc += 1
                    elif kind == "j":
                        pc = x
                    else:
                        pc = x[1] if x[0](phv, args) == 0 else pc + 1

            run = run_jumps
        else:
            fns = [x for _, x in compiled]
            self.action_parts[index] = (list(prims), fns)
            run = _noop
            if fns and not self.generate:
                run = fns[0] if len(fns) == 1 else _run_all(fns)
            elif fns:
                try:
                    run = self.gen.action(a["name"], prims, fns)
                except GEN_LIMITS:
                    del self.action_parts[index]
                    run = _run_all(fns)
        return _Action(a["name"], index, widths, run)

    def _hdr_target(self, pj: Any) -> tuple[int, HdrExpr | None]:
        return self.hexpr(pj)

    def _set_valid_fn(self, hid: int) -> Callable[[PHV], None]:
        h = self.e._headers[hid]
        vs = h.valid
        others = self.union_of.get(hid, [])
        if not others:

            def setv(phv: PHV) -> None:
                phv[vs] = 1

            return setv

        def setv_union(phv: PHV) -> None:
            phv[vs] = 1
            for o in others:
                phv[o] = 0

        return setv_union

    def primitive(self, p: Mapping[str, Any], where: str) -> Prim:
        op = p["op"]
        ps = p.get("parameters", [])
        s = self.s
        hs = self.e._headers
        if op in _NOOP_PRIMS:
            return _noop
        if op in {"assign", "modify_field"}:
            if ps[0]["type"] in ("header",):
                return self._assign_header(ps[0], ps[1])
            st_fn = self.setter(ps[0])
            src = self.expr(ps[1])
            if ps[1]["type"] == "field" and ps[0]["type"] == "field":
                d = self._field_slot(*ps[0]["value"])
                sslot = self._field_slot(*ps[1]["value"])
                if self.slot_width[d] >= self.slot_width[sslot] and not (
                    self.slot_signed[d] or self.slot_signed[sslot]
                ):

                    def copy(phv: PHV, a: Args) -> None:
                        phv[d] = phv[sslot]

                    return copy
            if ps[1]["type"] == "runtime_data" and ps[0]["type"] == "field":
                d = self._field_slot(*ps[0]["value"])
                i = int(ps[1]["value"])
                if not self.slot_signed[d]:
                    m = (1 << self.slot_width[d]) - 1

                    def set_arg(phv: PHV, a: Args) -> None:
                        phv[d] = a[i] & m

                    return set_arg
            return lambda phv, a: st_fn(phv, a, src(phv, a))
        if op in ("assign_header", "copy_header"):
            return self._assign_header(ps[0], ps[1])
        if op == "assign_union":
            du, _ = self.uexpr(ps[0])
            su, _ = self.uexpr(ps[1])
            copies = [
                self._assign_header(
                    {"type": "header", "value": hs[dh].name},
                    {"type": "header", "value": hs[sh].name},
                )
                for dh, sh in zip(self.e._unions[du], self.e._unions[su], strict=True)
            ]
            ucopies = copies

            def copy_union(phv: PHV, a: Args) -> None:
                for c in ucopies:
                    c(phv, a)

            return copy_union
        if op == "assign_header_stack":
            dstack = self._stack(ps[0]["value"])
            srcs = self._stack(ps[1]["value"])
            copies = [
                self._assign_header(
                    {"type": "header", "value": hs[dh].name},
                    {"type": "header", "value": hs[sh].name},
                )
                for dh, sh in zip(dstack.headers, srcs.headers, strict=True)
            ]
            dc, sc = dstack.count_slot, srcs.count_slot

            def copy_stack(phv: PHV, a: Args) -> None:
                for c in copies:
                    c(phv, a)
                phv[dc] = phv[sc]

            return copy_stack
        if op in ("add_header", "remove_header"):
            hid, hf = self.hexpr(ps[0])
            lr = s.pkt_len_reg
            hids = [hid] if hf is None else list(range(len(hs)))
            setvs = {h: self._set_valid_fn(h) for h in hids}
            get = hf or (lambda phv, a: hid)
            if op == "add_header":

                def add_header(phv: PHV, a: Args) -> None:
                    h = hs[get(phv, a)]
                    if not phv[h.valid]:
                        for slot in h.slots:
                            phv[slot] = 0
                        setvs[h.hid](phv)
                        phv[lr] += h.nbytes

                return add_header

            def remove_header(phv: PHV, a: Args) -> None:
                h = hs[get(phv, a)]
                if phv[h.valid]:
                    phv[h.valid] = 0
                    phv[lr] -= h.nbytes

            return remove_header
        if op in ("mark_to_drop", "drop"):
            es, mg = s.egress_spec, s.mcast_grp

            def mark_to_drop(phv: PHV, a: Args) -> None:
                phv[es] = DROP_PORT
                if mg >= 0:
                    phv[mg] = 0

            return mark_to_drop
        if op == "exit":
            ex = s.exit
            self.has_exit = True

            def do_exit(phv: PHV, a: Args) -> None:
                phv[ex] = 1

            return do_exit
        if op in ("clone_ingress_pkt_to_egress", "clone_egress_pkt_to_egress"):
            sess = self.expr(ps[0])
            fl = self.expr(ps[1]) if len(ps) > 1 else (lambda phv, a: 0)
            cs, cf = s.clone_session, s.clone_fl

            def clone(phv: PHV, a: Args) -> None:
                phv[cs] = (sess(phv, a) & 0xFFFF) | 0x10000
                phv[cf] = fl(phv, a)

            return clone
        if op in ("resubmit", "recirculate"):
            fl = self.expr(ps[0]) if ps else (lambda phv, a: 0)
            slot = s.resubmit if op == "resubmit" else s.recirc

            def flag(phv: PHV, a: Args) -> None:
                phv[slot] = fl(phv, a)

            return flag
        if op == "truncate":
            ln = self.expr(ps[0])
            ts = s.truncate

            def truncate(phv: PHV, a: Args) -> None:
                phv[ts] = ln(phv, a)

            return truncate
        if op == "modify_field_with_hash_based_offset":
            dst = self.setter(ps[0])
            base = self.expr(ps[1])
            cname = ps[2]["value"]
            calc = self.e._calcs.get(cname)
            if calc is None:
                raise EngineError(f"unknown calculation {cname}")
            if cname in self.calc_payload:
                raise _refuse(f"hash over the payload in an action ({cname})")
            size = self.expr(ps[3])

            def hash_offset(phv: PHV, a: Args) -> None:
                sz = size(phv, a) or 1
                dst(phv, a, calc(phv, b"") % sz + base(phv, a))

            return hash_offset
        if op == "modify_field_rng_uniform":
            dst = self.setter(ps[0])
            lo, hi = self.expr(ps[1]), self.expr(ps[2])
            rng = self.e._rng

            def rng_uniform(phv: PHV, a: Args) -> None:
                low, high = lo(phv, a), hi(phv, a)
                dst(phv, a, rng.randint(low, high) if high >= low else low)

            return rng_uniform
        if op == "count":
            ccells = self.e._counters.get(ps[0]["value"])
            if ccells is None:
                raise EngineError(f"unknown counter {ps[0]['value']}")
            cidx = self.expr(ps[1])
            il = s.ingress_length
            cc = ccells

            def count(phv: PHV, a: Args) -> None:
                i = cidx(phv, a)
                if 0 <= i < len(cc):
                    c = cc[i]
                    c[0] += 1
                    c[1] += phv[il]

            return count
        if op == "execute_meter":
            meter = self.e._meters[ps[0]["value"]]
            idx = self.expr(ps[1])
            dst = self.setter(ps[2])
            il = s.ingress_length

            def execute_meter(phv: PHV, a: Args) -> None:
                i = idx(phv, a)
                if 0 <= i < meter.size:
                    dst(phv, a, meter.execute(i, phv[il]))

            return execute_meter
        if op == "register_read":
            dst = self.setter(ps[0])
            cells, _w = self.e._registers[ps[1]["value"]]
            idx = self.expr(ps[2])

            def register_read(phv: PHV, a: Args) -> None:
                i = idx(phv, a)
                if 0 <= i < len(cells):
                    dst(phv, a, cells[i])

            return register_read
        if op == "register_write":
            cells, w = self.e._registers[ps[0]["value"]]
            idx = self.expr(ps[1])
            src = self.expr(ps[2])
            m = (1 << w) - 1

            def register_write(phv: PHV, a: Args) -> None:
                i = idx(phv, a)
                if 0 <= i < len(cells):
                    cells[i] = src(phv, a) & m

            return register_write
        if op in ("push", "pop"):
            stk = self._stack(ps[0]["value"])
            n = self.expr(ps[1])
            elems = [hs[h] for h in stk.headers]
            cs = stk.count_slot
            nelems = len(elems)

            def move(phv: PHV, to: _Header, frm: _Header) -> None:
                phv[to.valid] = phv[frm.valid]
                for ds, ss in zip(to.slots, frm.slots, strict=True):
                    phv[ds] = phv[ss]

            if op == "push":

                def push(phv: PHV, a: Args) -> None:
                    k = min(n(phv, a), nelems)
                    for i in range(nelems - 1, k - 1, -1):
                        move(phv, elems[i], elems[i - k])
                    for i in range(k):
                        phv[elems[i].valid] = 0
                    phv[cs] = min(phv[cs] + k, nelems)

                return push

            def pop(phv: PHV, a: Args) -> None:
                k = min(n(phv, a), nelems)
                for i in range(nelems - k):
                    move(phv, elems[i], elems[i + k])
                for i in range(nelems - k, nelems):
                    phv[elems[i].valid] = 0
                phv[cs] = max(phv[cs] - k, 0)

            return pop
        raise _refuse(f"primitive {op!r} (in {where})")

    def _assign_header(self, dj: Any, sj: Any) -> Prim:
        dh, df = self.hexpr(dj)
        sh, sf = self.hexpr(sj)
        hs = self.e._headers
        dget = df or (lambda phv, a: dh)
        sget = sf or (lambda phv, a: sh)
        setvs = {h.hid: self._set_valid_fn(h.hid) for h in hs}

        def assign_header(phv: PHV, a: Args) -> None:
            d, src = hs[dget(phv, a)], hs[sget(phv, a)]
            if phv[src.valid]:
                for ds, ss in zip(d.slots, src.slots, strict=True):
                    phv[ds] = phv[ss]
                setvs[d.hid](phv)
            else:
                phv[d.valid] = 0

        return assign_header

    # ------------------------------------------------------------ parser
    def _parser(self) -> None:
        parsers = self.j.get("parsers", [])
        if not parsers:
            return
        if len(parsers) > 1:
            raise _refuse("more than one parser")
        pj = parsers[0]
        states: dict[str, list[Any]] = {}  # name -> [ops, select]
        for st in pj["parse_states"]:
            states[st["name"]] = [None, None]
        for st in pj["parse_states"]:
            ops = [self._parse_op(o) for o in st.get("parser_ops", [])]
            states[st["name"]][0] = ops
            states[st["name"]][1] = self._transitions(st, states)
            self.parse_info[st["name"]].ops = [
                self._parse_op_src(o, op)
                for o, op in zip(st.get("parser_ops", []), ops, strict=True)
            ]
        init = states[pj["init_state"]] if pj.get("init_state") else None
        parsed = self.s.parsed
        if init is not None and self.generate:
            try:
                self.e._parse = generate_parser(self.gen, pj["init_state"], self.parse_info, parsed)
                return
            except GEN_LIMITS:
                pass  # the closure parser below

        def parse(phv: PHV, data: bytes) -> int:
            off = 0
            st = init
            try:
                while st is not None:
                    for op in st[0]:
                        off = op(phv, data, off)
                    st = st[1](phv, data, off)
            except _ParserError:
                phv[parsed] = off
                raise
            return off

        self.e._parse = parse

    def _parse_op_src(self, o: Mapping[str, Any], op: ParseOp) -> list[str] | ParseOp:
        """A parser op's statements for generate_parser, or its closure."""
        if not self.generate:
            return op
        lines = self.gen_extract.get(id(op))
        if lines is None:
            try:
                lines = self.gen.parse_op(o, self._errors_short())
            except GEN_LIMITS:
                lines = None
        return op if lines is None else lines

    def _extract_body(self, h: _Header) -> list[str]:
        """Extracting h at off into the PHV, as statements leaving the end in
        _end: one int.from_bytes, then one shift and mask per field with the
        constants inlined."""
        lines = [
            f"_end = off + {h.nbytes}",
            "if _end > len(data):",
            f"    raise _ParserError({self._errors_short()})",
            "_v = int.from_bytes(data[off:_end], 'big')",
        ]
        for slot, shift, mask, sw in h.unpack:
            # _v < 2**(8 * nbytes): the topmost field needs no mask
            top = shift + mask.bit_length() == 8 * h.nbytes
            x = (
                f"_v >> {shift}"
                if top
                else f"(_v >> {shift}) & {mask}"
                if shift
                else f"_v & {mask}"
            )
            if sw:
                lines.append(f"_x = {x}")
                lines.append(f"phv[{slot}] = _x - {1 << sw} if _x >> {sw - 1} else _x")
            else:
                lines.append(f"phv[{slot}] = {x}")
        lines.append(f"phv[{h.valid}] = 1")
        lines.extend(f"phv[{o}] = 0" for o in self.union_of.get(h.hid, []))
        return lines

    def _extract_fn(self, h: _Header) -> ParseOp:
        body = self._extract_body(h)
        src = "def extract(phv, data, off):\n" + "".join(f"    {x}\n" for x in body)
        fn: ParseOp = _gen(src + "    return _end\n", "extract", {"_ParserError": _ParserError})
        # a generated parser runs the statements in place (off advanced last)
        self.gen_extract[id(fn)] = [*body, "off = _end"]
        self._keep.append(fn)
        return fn

    def _errors_short(self) -> int:
        return self.e._errors["PacketTooShort"]

    def _parse_op(self, o: Mapping[str, Any]) -> ParseOp:
        op = o["op"]
        ps = o.get("parameters", [])
        errors = self.e._errors
        if op == "extract":
            t, v = ps[0]["type"], ps[0]["value"]
            if t == "regular":
                return self._extract_fn(self._header(v))
            if t == "stack":
                st = self._stack(v)
                fns = [self._extract_fn(self.e._headers[h]) for h in st.headers]
                cs = st.count_slot
                oob = errors["StackOutOfBounds"]

                def extract_stack(phv: PHV, data: bytes, off: int) -> int:
                    i = phv[cs]
                    if i >= len(fns):
                        raise _ParserError(oob)
                    off = fns[i](phv, data, off)
                    phv[cs] = i + 1
                    return off

                return extract_stack
            raise _refuse(f"extract of {t}")
        if op == "set":
            dst = self.setter(ps[0])
            src = ps[1]
            if src["type"] == "lookahead":
                boff, bw = int(src["value"][0]), int(src["value"][1])
                nb = (boff + bw + 7) // 8
                short = errors["PacketTooShort"]

                def set_lookahead(phv: PHV, data: bytes, off: int) -> int:
                    if len(data) - off < nb:
                        raise _ParserError(short)
                    dst(phv, (), _peek(data, off, boff, bw))
                    return off

                return set_lookahead
            val = self.expr(src)

            def set_op(phv: PHV, data: bytes, off: int) -> int:
                dst(phv, (), val(phv, ()))
                return off

            return set_op
        if op == "verify":
            cond = self.expr(ps[0])
            err = self.expr(ps[1])

            def verify(phv: PHV, data: bytes, off: int) -> int:
                if not cond(phv, ()):
                    raise _ParserError(err(phv, ()))
                return off

            return verify
        if op == "primitive":
            prim = self.primitive(ps[0], "parser")

            def prim_op(phv: PHV, data: bytes, off: int) -> int:
                prim(phv, ())
                return off

            return prim_op
        if op in ("shift", "advance"):
            if op == "shift":
                shift_bits = _hexint(ps[0]["value"]) * 8

                def nbits_fn(phv: PHV, a: Args) -> int:
                    return shift_bits

            else:
                nbits_fn = self.expr(ps[0])  # type: ignore[assignment]
            short = errors["PacketTooShort"]
            inval = errors.get("ParserInvalidArgument", 6)

            def advance(phv: PHV, data: bytes, off: int) -> int:
                nbits = nbits_fn(phv, ())
                if nbits % 8:
                    raise _ParserError(inval)
                end = off + nbits // 8
                if end > len(data):
                    raise _ParserError(short)
                return end

            return advance
        raise _refuse(f"parser op {op!r}")

    def _transitions(
        self, st: Mapping[str, Any], states: dict[str, list[Any]]
    ) -> Callable[[PHV, bytes, int], Any]:
        keyparts: list[Callable[[PHV, bytes, int], int]] = []
        keysrc: list[str] = []  # the same key parts as generated source
        widths: list[int] = []
        for k in st.get("transition_key", []):
            t, v = k["type"], k["value"]
            if t == "field":
                slot = self._field_slot(v[0], v[1])
                w = self.slot_width[slot]
                m = (1 << w) - 1
                keyparts.append(_kp_field(slot, m))
                keysrc.append(f"(phv[{slot}] & {m})")
            elif t == "stack_field":
                ex = self.expr(k)
                first = self.e._headers[self._stack(v[0]).headers[0]]
                w = first.widths[first.names.index(v[1])]
                m = (1 << w) - 1
                keyparts.append(_kp_expr(ex, m))
                keysrc.append(f"{self.gen.const(keyparts[-1], 'kp')}(phv, data, off)")
            elif t == "lookahead":
                boff, w = int(v[0]), int(v[1])
                keyparts.append(_kp_lookahead(boff, w))
                keysrc.append(f"{self.gen.const(_peek, 'peek')}(data, off, {boff}, {w})")
            else:
                raise _refuse(f"parser transition key {t!r}")
            widths.append(((w + 7) // 8) * 8)
        cases: list[tuple[int, int, Any]] = []
        case_names: list[tuple[int, int, str | None]] = []
        default: Any = None
        default_name: str | None = None
        for tr in st.get("transitions", []):
            t = tr.get("type", "hexstr")
            nxt = states[tr["next_state"]] if tr.get("next_state") else None
            nname = tr["next_state"] if tr.get("next_state") else None
            if t == "default" or tr.get("value") == "default":
                default = nxt
                default_name = nname
                break
            if t != "hexstr":
                raise _refuse(f"parser transition type {t!r}")
            val = _hexint(tr["value"])
            mask = _hexint(tr["mask"]) if tr.get("mask") else (1 << sum(widths)) - 1
            cases.append((val & mask, mask, nxt))
            case_names.append((val & mask, mask, nname))
        self.parse_info[st["name"]] = ParseState(
            [], keysrc if keyparts and cases else [], widths, case_names, default_name
        )
        if not keyparts or not cases:
            return lambda phv, data, off: default
        if len(keyparts) == 1:
            kp = keyparts[0]

            def select1(phv: PHV, data: bytes, off: int) -> Any:
                key = kp(phv, data, off)
                for val, mask, nxt in cases:
                    if key & mask == val:
                        return nxt
                return default

            return select1
        parts = list(zip(keyparts, widths, strict=True))

        def select(phv: PHV, data: bytes, off: int) -> Any:
            key = 0
            for fn, w in parts:
                key = (key << w) | fn(phv, data, off)
            for val, mask, nxt in cases:
                if key & mask == val:
                    return nxt
            return default

        return select

    # ------------------------------------------------------ deparser/cksums
    def _deparser(self) -> None:
        deps = self.j.get("deparsers", [])
        if len(deps) > 1:
            raise _refuse("more than one deparser")
        if deps:
            if deps[0].get("primitives"):
                raise _refuse("deparser primitives")
            self.e._deparse_order = [self._header(self._hname(n)) for n in deps[0]["order"]]
            self.e._deparse_fns = [(h.valid, self._pack_fn(h)) for h in self.e._deparse_order]

    def _pack_src(self, h: _Header) -> str:
        """The bytes of h from its fields, as a Python expression."""
        expr = ""  # (0 << w) | x is x
        for sl, fw in zip(h.slots, h.widths, strict=True):
            val = f"(phv[{sl}] & {(1 << fw) - 1})" if self.slot_signed[sl] else f"phv[{sl}]"
            expr = f"(({expr}) << {fw}) | {val}" if expr else val
        return f"({expr or 0}).to_bytes({h.nbytes}, 'big')"

    def _pack_fn(self, h: _Header) -> Callable[[PHV], bytes]:
        src = f"def pack(phv):\n    return {self._pack_src(h)}"
        fn: Callable[[PHV], bytes] = _gen(src, "pack", {})
        return fn

    def _calc_src(self, calc: str) -> str:
        g = self.gen
        direct = self.calc_csum16.get(calc)
        if direct is not None:
            return f"{g.const(direct, 'csum16')}(phv, payload)"
        fn, build = self.calc_parts[calc]
        return f"{g.const(fn, 'hash')}({g.const(build, 'build')}(phv, payload))"

    def _gen_deparse(self, updates: list[tuple[Any, int, str]]) -> None:
        """Checksum updates, then the valid headers packed in deparser order
        and the payload, as one generated function (_deparse's steps)."""
        g = self.gen
        lines = ["def deparse(phv, payload):"]
        for cond, tslot, calc in updates:
            value = self._calc_src(calc)
            ind = "    "
            if cond is not None:
                lines.append(f"    if {g.truth(cond)}:")
                ind = "        "
            lines.extend(ind + x for x in g._store(tslot, value))
        lines.append("    out = []")
        for h in self.e._deparse_order:
            lines.append(f"    if phv[{h.valid}]:")
            lines.append(f"        out.append({self._pack_src(h)})")
        lines.append("    out.append(payload)")
        lines.append("    return b''.join(out)")
        self.e._deparse_fn = g.compile("\n".join(lines) + "\n", "deparse", "deparse")

    def _gen_verify(self, verifies: list[tuple[Any, int, str]]) -> None:
        """The checksum verifications as one generated function returning the
        checksum_error bit (every one evaluated, in order, as _run_parser did)."""
        g = self.gen
        lines = ["def verify(phv, payload):", "    cerr = 0"]
        for cond, tslot, calc in verifies:
            tm = (1 << self.slot_width[tslot]) - 1
            value = self._calc_src(calc)
            ind = "    "
            if cond is not None:
                lines.append(f"    if {g.truth(cond)}:")
                ind = "        "
            lines.append(f"{ind}if not {value} == phv[{tslot}] & {tm}:")
            lines.append(f"{ind}    cerr = 1")
        lines.append("    return cerr")
        self.e._verify_fn = g.compile("\n".join(lines) + "\n", "verify", "verify checksums")

    def _checksums(self) -> None:
        verifies: list[tuple[Any, int, str]] = []  # (if_cond JSON or None, target, calc)
        updates: list[tuple[Any, int, str]] = []
        for c in self.j.get("checksums", []):
            if c.get("type", "generic") != "generic":
                raise _refuse(f"checksum type {c.get('type')!r} ({c['name']})")
            calc = self.e._calcs[c["calculation"]]
            tslot = self._field_slot(c["target"][0], c["target"][1])
            cond = self.expr(c["if_cond"]) if c.get("if_cond") else (lambda phv, a: 1)
            gen = (c["if_cond"] if c.get("if_cond") else None, tslot, c["calculation"])
            if c.get("verify", True):
                verifies.append(gen)

                def verify(
                    phv: PHV,
                    payload: bytes,
                    calc: Any = calc,
                    cond: Expr = cond,
                    t: int = tslot,
                    tm: int = (1 << self.slot_width[tslot]) - 1,
                ) -> bool:
                    if not cond(phv, ()):
                        return True
                    return bool(calc(phv, payload) == phv[t] & tm)

                self.e._verify_cksums.append(verify)
            if c.get("update", True):
                updates.append(gen)
                store = _store(tslot, self.slot_width[tslot], self.slot_signed[tslot])

                def update(
                    phv: PHV,
                    payload: bytes,
                    calc: Any = calc,
                    cond: Expr = cond,
                    store: Any = store,
                ) -> None:
                    if cond(phv, ()):
                        store(phv, (), calc(phv, payload))

                self.e._update_cksums.append(update)
        if self.generate:
            with contextlib.suppress(*GEN_LIMITS):  # else SoftEngine._verify, _deparse
                self._gen_verify(verifies)
                self._gen_deparse(updates)

    # ------------------------------------------------------------ pipelines
    def _pipelines(self) -> None:
        pipes = {p["name"]: p for p in self.j.get("pipelines", [])}
        for name in pipes:
            if name not in ("ingress", "egress"):
                raise _refuse(f"pipeline {name!r}")
        nodes: dict[str, Any] = {}
        links: list[Callable[[], None]] = []
        for p in pipes.values():
            if p.get("action_calls"):
                raise _refuse("pipeline action_calls")
            for ap in p.get("action_profiles", []):
                self._profile(ap)
            for t in p.get("tables", []):
                nodes[t["name"]] = self._table(t, nodes, links)
            for c in p.get("conditionals", []):
                nodes[c["name"]] = self._conditional(c, nodes, links)
        for link in links:
            link()
        for pname, attr in (("ingress", "_ingress"), ("egress", "_egress")):
            p = pipes.get(pname)
            init = p.get("init_table") if p else None
            if not init or not self.generate:
                setattr(self.e, attr, nodes[init] if init else None)
                continue
            try:
                first = generate_pipeline(
                    self.gen,
                    nodes,
                    init,
                    self.conds,
                    self.table_hm,
                    self._table_code,
                    self.has_exit,
                    f"{pname} pipeline",
                    pname[0],
                )
            except GEN_LIMITS:
                first = nodes[init]  # the closures, node by node
            setattr(self.e, attr, first)

    def _table_code(self, t: _Table, hm: list[Any]) -> tuple[list[str], list[Any]] | None:
        runs = self.runs

        def body(act: int, ar: ArgLits) -> list[str] | None:
            parts = self.action_parts.get(act)
            return None if parts is None else self.gen.action_body(parts[0], parts[1], ar)

        resolve = None
        prof = t.profile
        if prof is not None:

            def resolve(phv: PHV, e: Any) -> Any:  # hit's member choice; None: miss
                tgt = e.target
                if hasattr(tgt, "member_id"):
                    return prof.members[tgt.member_id]
                grp = prof.groups.get(tgt.group_id)
                if not grp or prof.selector is None:
                    return None
                return prof.members[grp[prof.selector(phv) % len(grp)]]

        return self.gen.table(
            t,
            hm,
            self.table_keys.get(t.name, []),
            runs,
            body,
            self.table_meter.get(t.name),
            resolve,
            self.s.ingress_length,
        )

    def _profile(self, ap: Mapping[str, Any]) -> None:
        sel = ap.get("selector")
        selector: Callable[[PHV], int] | None = None
        if sel is not None:
            fn = engine_hash.get_hash(sel["algo"])
            if fn is None:
                raise _refuse(f"hash algorithm {sel['algo']!r} (selector {ap['name']})")
            build = self._buf_builder(sel["input"], ap["name"])
            selector = lambda phv: fn(build(phv, b"")) & 0xFFFFFFFF  # noqa: E731
        self.e._profiles[ap["name"]] = _Profile(ap["name"], selector)

    def _conditional(
        self, c: Mapping[str, Any], nodes: dict[str, Any], links: list[Callable[[], None]]
    ) -> Any:
        cond = self.expr(c["expression"])
        self.conds[c["name"]] = c
        nxt: list[Any] = [None, None]

        def link() -> None:
            nxt[0] = nodes[c["true_next"]] if c.get("true_next") else None
            nxt[1] = nodes[c["false_next"]] if c.get("false_next") else None

        links.append(link)

        def conditional(phv: PHV) -> Any:
            return nxt[0] if cond(phv, ()) else nxt[1]

        return conditional

    def _key_getter(self, t: _Table, keys: Sequence[Any]) -> None:
        getters: list[Callable[[PHV], int]] = []
        for k in keys:
            mt = k["match_type"]
            tgt = k["target"]
            if mt == "valid":
                slot = self._header(tgt if isinstance(tgt, str) else tgt[0]).valid
                w = 1
                mt = "exact"
            else:
                slot = self._field_slot(tgt[0], tgt[1])
                w = self.slot_width[slot]
            if mt not in ("exact", "lpm", "ternary", "range", "optional"):
                raise _refuse(f"match type {mt!r} (table {t.name})")
            m = (1 << w) - 1
            if k.get("mask"):
                m &= _hexint(k["mask"])
            t.kinds.append(mt)
            t.widths.append(w)
            getters.append(_getter(slot, m))
            self.table_keys.setdefault(t.name, []).append((slot, m))
        if not keys:
            t.mode = "keyless"
            return
        lpm_count = t.kinds.count("lpm")
        if all(k == "exact" for k in t.kinds):
            t.mode = "exact"
        elif lpm_count == 1 and all(k in ("exact", "lpm") for k in t.kinds):
            t.mode = "lpm"
        else:
            t.mode = "ternary"
            t.has_range = "range" in t.kinds
        if len(getters) == 1 and t.mode == "exact":
            t.getter = getters[0]
        elif t.mode == "ternary" and not t.has_range:
            gw = list(zip(getters, t.widths, strict=True))

            def concat(phv: PHV) -> int:
                v = 0
                for g, w in gw:
                    v = (v << w) | g(phv)
                return v

            t.getter = concat
        else:
            gs = tuple(getters)
            t.getter = lambda phv: tuple(g(phv) for g in gs)

    def _table(
        self, tj: Mapping[str, Any], nodes: dict[str, Any], links: list[Callable[[], None]]
    ) -> Any:
        e = self.e
        t = _Table(tj["name"])
        e._tables[t.name] = t
        if tj.get("support_timeout"):
            raise _refuse(f"idle timeout (table {t.name})")
        ttype = tj.get("type", "simple")
        if ttype in ("indirect", "indirect_ws"):
            t.profile = e._profiles[tj["action_profile"]]
        elif ttype != "simple":
            raise _refuse(f"table type {ttype!r} ({t.name})")
        t.max_size = int(tj.get("max_size", 0) or 0)
        self._key_getter(t, tj.get("key", []))
        names = list(tj.get("actions", []))
        if "action_ids" in tj:
            ids = [self.action_by_id[i] for i in tj["action_ids"]]
        else:  # JSON from older compilers: actions by name only
            ids = [e._action_by_name[n][0] for n in names]
        t.action_ids = set(ids)
        if tj.get("with_counters"):
            for cname, binding in e._direct_counters.items():
                if binding == t.name:
                    t.direct_counter = cname
            if t.direct_counter is None:
                t.direct_counter = t.name
        meter_name = tj.get("direct_meters")
        meter: _Meters | None = None
        mstore = None
        if meter_name:
            meter = e._meters[meter_name]
            mj = next(m for m in self.j["meter_arrays"] if m["name"] == meter_name)
            rt = mj["result_target"]
            mstore = self.setter({"type": "field", "value": rt})
            self.table_meter[t.name] = (meter, mstore)
        de = tj.get("default_entry")
        if de is not None:
            aidx = self.action_by_id[de["action_id"]]
            args = tuple(_hexint(x) for x in de.get("action_data", []))
            if len(args) != len(e._actions[aidx].widths):
                raise EngineError(f"table {t.name}: default action data does not match its action")
            t.json_default = (aidx, args)
            t.default_const = bool(de.get("action_const"))
        t.default_action, t.default_args = t.json_default
        for ent in tj.get("entries", []) or []:
            key = tuple(
                self._const_match(m, w) for m, w in zip(ent["match_key"], t.widths, strict=True)
            )
            ae = ent["action_entry"]
            call = ActionCall(
                e._actions[self.action_by_id[ae["action_id"]]].name,
                tuple(_hexint(x) for x in ae.get("action_data", [])),
            )
            # bmv2: lower priority value wins; the engine: higher wins
            e.table_add(t.name, key, call, -int(ent.get("priority", 0)))
        t.const_entries = bool(tj.get("entries"))

        next_tables = tj.get("next_tables", {})
        base_default = tj.get("base_default_next")
        t.use_hit_miss = "__HIT__" in next_tables or "__MISS__" in next_tables
        nba: list[Any] = [None] * len(e._actions)
        t.next_by_action = nba
        hm: list[Any] = [None, None, None]  # hit, miss, base default

        def link() -> None:
            def node(n: str | None) -> Any:
                return nodes[n] if n else None

            hm[2] = node(base_default)
            for aname, aidx in zip(names, ids, strict=True):
                nba[aidx] = node(next_tables.get(aname, base_default))
            for i in range(len(nba)):
                if i not in t.action_ids:
                    nba[i] = hm[2]
            if t.use_hit_miss:
                hm[0] = node(next_tables.get("__HIT__", base_default))
                hm[1] = node(next_tables.get("__MISS__", base_default))

        links.append(link)
        self.table_hm[t.name] = (t, hm)
        return self._apply_fn(t, hm, meter, mstore)

    def _const_match(self, m: Mapping[str, Any], w: int) -> FieldMatch | None:
        mt = m["match_type"]
        if mt in {"exact", "valid"}:
            return Exact(_hexint(m["key"]))
        if mt == "lpm":
            plen = int(m["prefix_length"])
            return Lpm(_hexint(m["key"]), plen) if plen else None
        if mt == "ternary":
            mask = _hexint(m["mask"])
            return Ternary(_hexint(m["key"]) & mask, mask) if mask else None
        if mt == "optional":
            mask = _hexint(m.get("mask", "0x0") or "0x0") if "mask" in m else (1 << w) - 1
            return Optional(_hexint(m["key"])) if mask else None
        if mt == "range":
            return Range(_hexint(m["start"]), _hexint(m["end"]))
        raise _refuse(f"const entry match type {mt!r}")

    def _apply_fn(
        self, t: _Table, hm: list[Any], meter: _Meters | None, mstore: Setter | None
    ) -> Any:
        actions = self.e._actions
        runs = [a.run for a in actions]
        nba = t.next_by_action
        getter = t.getter
        il = self.s.ingress_length
        counted = t.direct_counter is not None
        use_hm = t.use_hit_miss
        prof = t.profile

        def miss(phv: PHV) -> Any:
            act = t.default_action
            if act >= 0:
                runs[act](phv, t.default_args)
            if use_hm:
                return hm[1]
            return nba[act] if act >= 0 else hm[2]

        def hit(phv: PHV, e: Any) -> Any:
            if counted:
                e.packets += 1
                e.bytes += phv[il]
            if meter is not None and mstore is not None:
                mstore(phv, (), meter.execute(e.handle, phv[il]))
            act = e.action
            args = e.args
            if act < 0 and prof is not None:
                tgt = e.target
                if hasattr(tgt, "member_id"):
                    mem = prof.members[tgt.member_id]
                else:
                    grp = prof.groups.get(tgt.group_id)
                    if not grp or prof.selector is None:
                        return miss(phv)
                    mem = prof.members[grp[prof.selector(phv) % len(grp)]]
                act, args = mem.action, mem.args
            runs[act](phv, args)
            return hm[0] if use_hm else nba[act]

        if t.mode == "keyless":
            return miss
        if t.mode == "exact":
            exact = t.exact

            def apply_exact(phv: PHV) -> Any:
                e = exact.get(getter(phv))
                if e is None:
                    return miss(phv)
                return hit(phv, e)

            return apply_exact
        if t.mode == "lpm":
            pos = t.kinds.index("lpm")
            w = t.widths[pos]
            lpm = t.lpm
            full = (1 << w) - 1

            def apply_lpm(phv: PHV) -> Any:
                key = list(getter(phv))
                v = key[pos]
                for plen in t.lpm_lens:
                    key[pos] = v & (full ^ ((1 << (w - plen)) - 1))
                    e = lpm[plen].get(tuple(key))
                    if e is not None:
                        return hit(phv, e)
                return miss(phv)

            return apply_lpm
        entries = t.ternary
        if not t.has_range:

            def apply_ternary(phv: PHV) -> Any:
                k = getter(phv)
                for e in entries:
                    if k & e.tmask == e.tvalue:
                        return hit(phv, e)
                return miss(phv)

            return apply_ternary
        widths = t.widths

        def apply_range(phv: PHV) -> Any:
            vals = getter(phv)
            k = 0
            for v, w in zip(vals, widths, strict=True):
                k = (k << w) | v
            for e in entries:
                if k & e.tmask == e.tvalue and all(
                    lo <= v <= hi for v, (lo, hi) in zip(vals, e.ranges, strict=True) if hi >= 0
                ):
                    return hit(phv, e)
            return miss(phv)

        return apply_range


def _noop(phv: PHV, a: Args) -> None:
    return None


def _run_all(fns: Sequence[Prim]) -> Prim:
    def run_all(phv: PHV, args: Args) -> None:
        for f in fns:
            f(phv, args)

    return run_all


def _usat(v: int, w: int) -> int:
    return max(0, min(v, (1 << w) - 1))


def _sat(v: int, w: int) -> int:
    return max(-(1 << (w - 1)), min(v, (1 << (w - 1)) - 1))


def _peek(data: bytes, off: int, boff: int, bw: int) -> int:
    """bw bits at bit offset boff from byte off (zeros past the end)."""
    start = off + boff // 8
    nb = (boff % 8 + bw + 7) // 8
    chunk = data[start : start + nb]
    if len(chunk) < nb:
        chunk = chunk + bytes(nb - len(chunk))
    v = int.from_bytes(chunk, "big")
    return (v >> (nb * 8 - boff % 8 - bw)) & ((1 << bw) - 1)


KeyPart = Callable[[PHV, bytes, int], int]


def _kp_field(slot: int, m: int) -> KeyPart:
    return lambda phv, data, off: phv[slot] & m


def _kp_expr(ex: Expr, m: int) -> KeyPart:
    return lambda phv, data, off: ex(phv, ()) & m


def _kp_lookahead(boff: int, w: int) -> KeyPart:
    return lambda phv, data, off: _peek(data, off, boff, w)


def _getter(slot: int, m: int) -> Callable[[PHV], int]:
    return lambda phv: phv[slot] & m


def _gen(src: str, name: str, env: dict[str, Any]) -> Any:
    """Compile generated straight-line code (built from ints only)."""
    ns = dict(env)
    exec(compile(src, f"<softswitch {name}>", "exec"), ns)
    return ns[name]
