"""Python source for the engine's per-packet path, compiled once at load.

``engine_compile`` builds a closure for every construct (and refuses what it
cannot run); this module turns the common shapes into generated Python
source instead, so a packet runs straight-line code over ``phv[slot]``
rather than a tree of nested closure calls:

* an expression becomes one Python expression over ``phv[...]`` slots and
  ``a[i]`` action data, with the closures' exact semantics (no masking where
  the closures do none, ``int(...)``-valued booleans, truncating ``/`` and
  ``%``, ``two_comp_mod`` and saturating casts through the same helpers);
  in an ``if`` it is rendered as a Python truth value instead of 0/1;
* an action becomes one ``def`` of straight-line statements;
* a pipeline becomes a few functions of nested ``if``s: conditionals inline,
  exact/lpm/keyless tables applied in place (key expression, dict lookup,
  action bodies inlined per action index), other tables called as their
  closure, the next node chosen by branching on the outcome, joins recovered
  from post-dominators so shared tails are emitted once. The engine's loop
  still drives them (a function returns the next one to run, or None), and
  ``exit`` is checked after every table when the program can exit;
* the parser becomes one function (states inline, joins and loops through
  a dispatch loop); checksum verification and the deparser one each.

Anything without a generated form is called as its closure, held as a
named constant of the generated code; nothing here refuses a construct
(the closures were compiled first and refused it already).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from softswitch.engine import (
    DROP_PORT,
    PHV,
    Prim,
    _hexint,
    _ParserError,
    _signed,
    _trunc_div,
    _trunc_mod,
)

if TYPE_CHECKING:
    from softswitch.engine import _Table
    from softswitch.engine_compile import _Compiler

#: What generating or compiling source can raise where the closures work
#: (Python's limits on nesting and recursion): the caller keeps the closures.
GEN_LIMITS = (SyntaxError, RecursionError)

_SLOT = re.compile(r"phv\[\d+\]")
_ARITH = {"+", "-", "*", "<<", ">>", "&", "|", "^"}
_CMP = {"==", "!=", ">", "<", ">=", "<="}
_HELPERS = {"/": "_trunc_div", "%": "_trunc_mod", "two_comp_mod": "_signed"}
_NOOPS = {"no_op", "log_msg", "assert", "assume"}


class ArgLits:
    """Where generated code finds action data: the variable (or global)
    ``name`` holding the tuple, its values when known at load, and the
    widths its values are known to fit (entry and member data, which
    SoftEngine._action_call checked; not a JSON default's)."""

    def __init__(
        self, name: str, vals: tuple[int, ...] | None = None, widths: list[int] | None = None
    ) -> None:
        self.name = name
        self.vals = vals
        self.widths = widths


_ACTION_ARGS = ArgLits("a")

#: Deepest indentation of generated pipeline code (Python allows 100 levels).
_MAX_DEPTH = 40
#: Deepest expression generated as source (each level adds up to two
#: parentheses); deeper subexpressions call their closure.
_MAX_NESTING = 60


class SourceGen:
    def __init__(self, c: _Compiler) -> None:
        from softswitch.engine_compile import _sat, _usat

        self.c = c
        self.env: dict[str, Any] = {
            "_trunc_div": _trunc_div,
            "_trunc_mod": _trunc_mod,
            "_signed": _signed,
            "_usat": _usat,
            "_sat": _sat,
            "_ParserError": _ParserError,
            "a": (),  # conditionals and parser code run with no action data
        }
        self._names: dict[int, str] = {}
        self._nesting = 0

    def const(self, obj: Any, prefix: str) -> str:
        """A name the generated code reads ``obj`` by (a global of its module)."""
        name = self._names.get(id(obj))
        if name is None:
            name = f"_{prefix}{len(self._names)}"
            self.env[name] = obj
            self._names[id(obj)] = name
        return name

    def compile(self, src: str, name: str, where: str) -> Any:
        exec(compile(src, f"<softswitch {where}>", "exec"), self.env)
        return self.env.pop(name)

    # ---------------------------------------------------------- expressions
    def _fallback(self, j: Any, ar: ArgLits) -> str:
        return f"{self.const(self.c.expr(j), 'x')}(phv, {ar.name})"

    def _arg(self, i: int, ar: ArgLits) -> str:
        vals = ar.vals
        if vals is not None and 0 <= i < len(vals):
            return f"({vals[i]})"
        return f"{ar.name}[{i}]"

    def lit(self, j: Any, ar: ArgLits) -> int | None:
        """The value of a constant operand (literal, or inlined action data)."""
        t = j["type"]
        if t == "hexstr":
            return _hexint(j["value"])
        if t == "bool":
            return int(bool(j["value"]))
        if t in ("local", "runtime_data") and ar.vals is not None:
            i = int(j["value"])
            if 0 <= i < len(ar.vals):
                return ar.vals[i]
        if t == "expression" and "op" not in j["value"]:
            return self.lit(j["value"], ar)
        return None

    def fits(self, j: Any, ar: ArgLits, m: int) -> bool:
        """The value is in 0..m (m all ones) whatever the operands hold, so
        masking it with m changes nothing."""
        k = self.lit(j, ar)
        if k is not None:
            return 0 <= k <= m
        if j["type"] in ("local", "runtime_data") and ar.widths is not None:
            i = int(j["value"])
            return 0 <= i < len(ar.widths) and (1 << ar.widths[i]) - 1 <= m
        if j["type"] != "expression":
            return False
        v = j["value"]
        if "op" not in v:
            return self.fits(v, ar, m)
        op = v["op"]
        if op in _CMP or op in ("and", "or", "not", "d2b", "b2d"):
            return m >= 1  # 0 or 1
        lj: Any = v.get("left")
        rj: Any = v.get("right")
        if lj is None or rj is None:
            return False
        if op == "&":  # x & y lies in 0..y for any x when y >= 0
            return self.fits(lj, ar, m) or self.fits(rj, ar, m)
        if op in ("|", "^"):
            return self.fits(lj, ar, m) and self.fits(rj, ar, m)
        if op == ">>":
            return self.fits(lj, ar, m)
        if op == "?":
            return self.fits(lj, ar, m) and self.fits(rj, ar, m)
        return False

    def value(self, j: Any, ar: ArgLits = _ACTION_ARGS) -> str:
        """A Python expression with the closure's int value (always a primary)."""
        return self._src(j, ar, False)

    def truth(self, j: Any, ar: ArgLits = _ACTION_ARGS) -> str:
        """A Python expression true exactly when the closure's value is nonzero."""
        return self._src(j, ar, True)

    def _src(self, j: Any, ar: ArgLits, truth: bool) -> str:
        if self._nesting >= _MAX_NESTING:  # Python's parser allows 200 parentheses
            return self._fallback(j, ar)
        self._nesting += 1
        try:
            return self._src1(j, ar, truth)
        finally:
            self._nesting -= 1

    def _src1(self, j: Any, ar: ArgLits, truth: bool) -> str:
        t = j["type"]
        v = j["value"]
        if t == "field":
            return f"phv[{self.c._field_slot(v[0], v[1])}]"
        if t == "hexstr":
            return f"({_hexint(v)})"
        if t == "bool":
            if truth:
                return "True" if v else "False"
            return "1" if v else "0"
        if t in ("local", "runtime_data"):
            return self._arg(int(v), ar)
        if t == "expression":
            if "op" not in v:
                return self._src(v, ar, truth)
            return self._op(j, v, ar, truth)
        return self._fallback(j, ar)

    def _op(self, j: Any, v: Mapping[str, Any], ar: ArgLits, truth: bool) -> str:
        c = self.c
        op = v["op"]
        lj: Any = v.get("left")
        rj: Any = v.get("right")

        def as_value(cond: str) -> str:
            return cond if truth else f"(1 if {cond} else 0)"

        if op == "?":
            cond = self.truth(v["cond"], ar)
            return f"({self._src(lj, ar, truth)} if {cond} else {self._src(rj, ar, truth)})"
        if op == "valid":
            hid, hf = c.hexpr(rj)
            if hf is None:
                return f"phv[{c.e._headers[hid].valid}]"
            return self._fallback(j, ar)
        if op == "valid_union":
            un, _ = c.uexpr(rj)
            slots = [c.e._headers[h].valid for h in c.e._unions[un]]
            if not slots:
                return "False" if truth else "0"
            return as_value("(" + " or ".join(f"phv[{s}]" for s in slots) + ")")
        if op == "access_field":
            hid, hf = c.hexpr(lj)
            if hf is None:
                return f"phv[{c.e._headers[hid].slots[int(rj)]}]"
            return self._fallback(j, ar)
        if op in ("last_stack_index", "size_stack"):
            cs = c._stack(rj["value"]).count_slot
            return f"phv[{cs}]" if op == "size_stack" else f"(phv[{cs}] - 1)"
        if op in ("==", "!=") and lj is not None and c._kind(lj) != "data":
            return self._fallback(j, ar)  # header (in)equality
        if op == "not":
            r = self.truth(rj, ar)
            return f"(not {r})" if truth else f"(0 if {r} else 1)"
        if op in ("d2b", "b2d"):
            return as_value(self.truth(rj, ar))
        if op == "~":
            return f"(~{self.value(rj, ar)})"
        if lj is None:
            if op == "-":
                return f"(-{self.value(rj, ar)})"
            if op == "+":
                return self._src(rj, ar, truth)
            return self._fallback(j, ar)
        if op in ("and", "or"):
            return as_value(f"({self.truth(lj, ar)} {op} {self.truth(rj, ar)})")
        if op in _ARITH:
            return f"({self.value(lj, ar)} {op} {self.value(rj, ar)})"
        if op in _CMP:
            return as_value(f"({self.value(lj, ar)} {op} {self.value(rj, ar)})")
        helper = _HELPERS.get(op) or {"usat_cast": "_usat", "sat_cast": "_sat"}.get(op)
        if helper is not None:
            return f"{helper}({self.value(lj, ar)}, {self.value(rj, ar)})"
        return self._fallback(j, ar)

    # ----------------------------------------------------------- statements
    def _store(self, slot: int, x: str) -> list[str]:
        """``phv[slot] = x`` with engine_compile._store's masking."""
        w = self.c.slot_width[slot]
        m = (1 << w) - 1
        if not self.c.slot_signed[slot]:
            return [f"phv[{slot}] = {x} & {m}"]
        return [f"_v = {x} & {m}", f"phv[{slot}] = _v - {1 << w} if _v >> {w - 1} else _v"]

    def assign_field(self, d: int, src: Any, ar: ArgLits) -> list[str]:
        """``phv[d] = src`` through engine_compile._store (constants folded,
        no mask where the value cannot have other bits)."""
        c = self.c
        k = self.lit(src, ar)
        w = c.slot_width[d]
        if k is not None and w > 0:
            return [f"phv[{d}] = {_signed(k, w) if c.slot_signed[d] else k & ((1 << w) - 1)}"]
        if not c.slot_signed[d] and self.fits(src, ar, (1 << w) - 1):
            return [f"phv[{d}] = {self.value(src, ar)}"]
        return self._store(d, self.value(src, ar))

    def parse_op(self, o: Mapping[str, Any], short: int) -> list[str] | None:
        """Statements for a parser op other than extract (None: call its
        closure); ``short`` is the PacketTooShort error code."""
        c = self.c
        op = o["op"]
        ps = o.get("parameters", [])
        if op == "set" and ps[0]["type"] == "field":
            d = c._field_slot(*ps[0]["value"])
            src = ps[1]
            if src["type"] != "lookahead":
                return self.assign_field(d, src, _ACTION_ARGS)
            boff, bw = int(src["value"][0]), int(src["value"][1])
            nb = (boff + bw + 7) // 8
            first, r = boff // 8, boff % 8
            shift = (nb - first) * 8 - r - bw  # _peek's, the bytes being there
            out = [
                f"if len(data) - off < {nb}:",
                f"    raise _ParserError({short})",
                f"_x = (int.from_bytes(data[off + {first}:off + {nb}], 'big') >> {shift})"
                f" & {(1 << bw) - 1}",
            ]
            w = c.slot_width[d]
            if c.slot_signed[d] or (1 << bw) - 1 > (1 << w) - 1:
                return out + self._store(d, "_x")
            return [*out, f"phv[{d}] = _x"]
        if op == "verify":
            return [
                f"if not {self.truth(ps[0])}:",
                f"    raise _ParserError({self.value(ps[1])})",
            ]
        return None

    def _set_valid(self, hid: int) -> list[str]:
        h = self.c.e._headers[hid]
        return [f"phv[{h.valid}] = 1"] + [f"phv[{o}] = 0" for o in self.c.union_of.get(hid, [])]

    def primitive(self, p: Mapping[str, Any], closure: Prim, ar: ArgLits) -> list[str]:
        """Statements doing what ``closure`` (the compiled primitive) does."""
        c = self.c
        op = p["op"]
        ps = p.get("parameters", [])
        s = c.s
        hs = c.e._headers
        fallback = [f"{self.const(closure, 'p')}(phv, {ar.name})"]
        if op in _NOOPS:
            return []
        if op in ("assign", "modify_field") and ps[0]["type"] == "header":
            return self._assign_header(ps[0], ps[1]) or fallback
        if op in ("assign", "modify_field") and ps[0]["type"] == "field":
            d = c._field_slot(*ps[0]["value"])
            src = ps[1]
            if src["type"] == "field":
                sslot = c._field_slot(*src["value"])
                if c.slot_width[d] >= c.slot_width[sslot] and not (
                    c.slot_signed[d] or c.slot_signed[sslot]
                ):
                    return [f"phv[{d}] = phv[{sslot}]"]  # the closure's copy
            return self.assign_field(d, src, ar)
        if op in ("assign_header", "copy_header"):
            return self._assign_header(ps[0], ps[1]) or fallback
        if op in ("add_header", "remove_header"):
            hid, hf = c.hexpr(ps[0])
            if hf is not None:
                return fallback
            h = hs[hid]
            lr = s.pkt_len_reg
            if op == "remove_header":
                return [
                    f"if phv[{h.valid}]:",
                    f"    phv[{h.valid}] = 0",
                    f"    phv[{lr}] -= {h.nbytes}",
                ]
            return [
                f"if not phv[{h.valid}]:",
                *(f"    phv[{slot}] = 0" for slot in h.slots),
                *("    " + x for x in self._set_valid(hid)),
                f"    phv[{lr}] += {h.nbytes}",
            ]
        if op in ("mark_to_drop", "drop"):
            out = [f"phv[{s.egress_spec}] = {DROP_PORT}"]
            if s.mcast_grp >= 0:
                out.append(f"phv[{s.mcast_grp}] = 0")
            return out
        if op == "exit":
            return [f"phv[{s.exit}] = 1"]
        if op == "count":
            cells = c.e._counters[ps[0]["value"]]
            return [
                f"_i = {self.value(ps[1], ar)}",
                f"if 0 <= _i < {len(cells)}:",
                f"    _c = {self.const(cells, 'cnt')}[_i]",
                "    _c[0] += 1",
                f"    _c[1] += phv[{s.ingress_length}]",
            ]
        return fallback

    def _assign_header(self, dj: Any, sj: Any) -> list[str] | None:
        dh, df = self.c.hexpr(dj)
        sh, sf = self.c.hexpr(sj)
        if df is not None or sf is not None:
            return None
        d, src = self.c.e._headers[dh], self.c.e._headers[sh]
        if len(d.slots) != len(src.slots):
            return None  # the closure's zip(strict=True) raises per packet
        return [
            f"if phv[{src.valid}]:",
            *(f"    phv[{ds}] = phv[{ss}]" for ds, ss in zip(d.slots, src.slots, strict=True)),
            *("    " + x for x in self._set_valid(d.hid)),
            "else:",
            f"    phv[{d.valid}] = 0",
        ]

    def action_body(
        self, prims: Sequence[Mapping[str, Any]], closures: Sequence[Prim], ar: ArgLits
    ) -> list[str]:
        per = [self.primitive(p, fn, ar) for p, fn in zip(prims, closures, strict=True)]
        for i, p in enumerate(prims):
            if p["op"] == "add_header" and per[i] and per[i][0].startswith("if not phv["):
                dead = self._overwritten(prims, per, i)
                if dead:
                    per[i] = [x for x in per[i] if x.split(" = ")[0].strip() not in dead]
        return [x for lines in per for x in lines]

    def _overwritten(
        self, prims: Sequence[Mapping[str, Any]], per: list[list[str]], i: int
    ) -> set[str]:
        """The ``phv[slot]`` of the header prims[i] adds whose zeroing is dead:
        the statements right after it assign them before anything could read
        them (field assignments without closure calls; the scan stops at the
        first other primitive or at a read of a still-zeroed field)."""
        hid, _ = self.c.hexpr(prims[i]["parameters"][0])
        pending = {f"phv[{s}]" for s in self.c.e._headers[hid].slots}
        dead: set[str] = set()
        for p, lines in zip(prims[i + 1 :], per[i + 1 :], strict=True):
            if p["op"] not in ("assign", "modify_field") or p["parameters"][0]["type"] != "field":
                break
            if any("(phv, " in x for x in lines):
                break  # a closure may read anything
            target = lines[-1].split(" = ")[0]
            reads = {m for x in lines for m in _SLOT.findall(x.split(" = ", 1)[1])}
            if reads & pending:
                break
            if target in pending:
                pending.discard(target)
                dead.add(target)
        return dead

    def action(
        self, name: str, prims: Sequence[Mapping[str, Any]], closures: Sequence[Prim]
    ) -> Prim:
        body = self.action_body(prims, closures, _ACTION_ARGS) or ["pass"]
        src = "def action(phv, a):\n" + "".join(f"    {x}\n" for x in body)
        fn: Prim = self.compile(src, "action", f"action {name}")
        return fn

    # --------------------------------------------------------------- tables
    def table(
        self,
        t: _Table,
        hm: Sequence[Any],
        keys: Sequence[tuple[int, int]],
        runs: Sequence[Prim],
        body: Callable[[int, ArgLits], list[str] | None],
        meter: tuple[Any, Any] | None,
        resolve: Callable[[Any, Any], Any] | None,
        il: int,
    ) -> tuple[list[str], list[Any]] | None:
        """Statements applying an exact, lpm or keyless table as the
        engine_compile apply closure does, and the next-node closures they
        may lead to; with more than one, ``_s`` is left holding the index of
        the one taken. None: call the closure instead.

        ``hm``: [hit, miss, base default] next closures; ``keys``: (slot,
        mask) per key field; ``body``: an action's statements for the given
        action data (None: call it); ``meter``: (direct meter, result store);
        ``resolve``: action profile member of an entry (None: group miss).
        """
        if t.mode not in ("exact", "lpm", "keyless"):
            return None
        nba = t.next_by_action
        use_hm = t.use_hit_miss
        keyless = t.mode == "keyless"
        by_action = [*(nba[i] for i in sorted(t.action_ids)), hm[2]]
        if t.default_const:
            dact = t.default_action
            miss_next = [hm[1] if use_hm else (nba[dact] if dact >= 0 else hm[2])]
        else:
            miss_next = [hm[1]] if use_hm else by_action
        hit_next = [] if keyless else ([hm[0]] if use_hm else by_action)
        succ: list[Any] = []
        for o in hit_next + miss_next:
            if not any(o is x for x in succ):
                succ.append(o)
        multi = len(succ) > 1

        def sidx(o: Any) -> int:
            return next(i for i, x in enumerate(succ) if x is o)

        def set_s(x: str | int) -> list[str]:
            return [f"_s = {x}"] if multi else []

        def by_act() -> str:  # _s for the action index in _x (-1: base default)
            return f"{self.const([sidx(o) for o in nba] + [sidx(hm[2])], 'sidx')}[_x]"

        tn = self.const(t, "T")
        rn = self.const(runs, "runs")

        def run(act: int, ar: ArgLits) -> list[str]:
            b = body(act, ar)
            return b if b is not None else [f"{rn}[{act}](phv, {ar.name})"]

        def indent(lines: list[str]) -> list[str]:
            return ["    " + x for x in lines] or ["    pass"]

        def dispatch(
            next_of: Callable[[int], list[str]], other: list[str], checked: bool
        ) -> list[str]:
            """Run action _x with data _a (checked: an entry's or member's, known
            to fit the action's parameter widths): the table's actions inline,
            any other (a member of a shared profile) called; then the lines
            next_of(act) or ``other`` give."""
            out: list[str] = []
            for k, act in enumerate(sorted(t.action_ids)):
                widths = self.c.e._actions[act].widths if checked else None
                out.append(f"{'if' if k == 0 else 'elif'} _x == {act}:")
                out += indent(run(act, ArgLits("_a", None, widths)) + next_of(act))
            tail = [f"{rn}[_x](phv, _a)", *other]
            return [*out, "else:", *indent(tail)] if out else tail

        if t.default_const:
            dargs = t.default_args
            miss = run(dact, ArgLits(self.const(dargs, "args"), dargs)) if dact >= 0 else []
            miss += set_s(sidx(miss_next[0]))
        else:
            miss = [
                f"_x = {tn}.default_action",
                "if _x >= 0:",
                *indent([f"_a = {tn}.default_args", *dispatch(lambda act: [], [], False)]),
                *set_s(sidx(hm[1]) if use_hm else by_act()),
            ]
        if keyless:
            return miss, succ
        if t.mode == "exact":
            parts = [f"(phv[{sl}] & {m})" for sl, m in keys]
            key = parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"
            lookup = [f"_e = {self.const(t.exact, 'exact')}.get({key})"]
        else:
            pos = t.kinds.index("lpm")
            w = t.widths[pos]
            full = (1 << w) - 1
            pm = self.const([full ^ ((1 << (w - n)) - 1) for n in range(w + 1)], "plen")
            lookup = [f"_k{i} = phv[{sl}] & {m}" for i, (sl, m) in enumerate(keys)]
            parts = [f"_k{i} & {pm}[_p]" if i == pos else f"_k{i}" for i in range(len(keys))]
            tup = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
            lookup += [
                "_e = None",
                f"for _p in {tn}.lpm_lens:",
                f"    _e = {self.const(t.lpm, 'lpm')}[_p].get({tup})",
                "    if _e is not None:",
                "        break",
            ]
        hit: list[str] = []
        if t.direct_counter is not None:
            hit += ["_e.packets += 1", f"_e.bytes += phv[{il}]"]
        if meter is not None:
            mstore, mname = self.const(meter[1], "mstore"), self.const(meter[0], "meter")
            hit.append(f"{mstore}(phv, (), {mname}.execute(_e.handle, phv[{il}]))")
        hit += ["_x = _e.action", "_a = _e.args"]
        run_hit = dispatch(
            lambda act: set_s(sidx(hm[0] if use_hm else nba[act])),
            set_s(sidx(hm[0]) if use_hm else by_act()),
            True,
        )
        if t.profile is not None and resolve is not None:
            hit += [
                "if _x < 0:",
                f"    _m = {self.const(resolve, 'resolve')}(phv, _e)",
                "    if _m is not None:",
                "        _x = _m.action",
                "        _a = _m.args",
                "if _x < 0:",
                *indent(miss),
                "else:",
                *indent(run_hit),
            ]
        else:
            hit += run_hit
        return [*lookup, "if _e is None:", *indent(miss), "else:", *indent(hit)], succ


_END = None  # the end of a pipeline, as a node name


class _Node:
    """A pipeline node as the generator sees it."""

    def __init__(self, name: str, fn: Any) -> None:
        self.name = name
        self.fn = fn  # the closure engine_compile made (returns the next closure)
        self.cond: Any = None  # conditional: its expression
        self.table: _Table | None = None
        self.inline: list[str] | None = None  # table: statements instead of calling fn
        self.succ: list[str | None] = []  # successor names, in branch order
        self.succ_fn: list[Any] = []  # tables: the next-node closures for them


def generate_pipeline(
    gen: SourceGen,
    nodes: Mapping[str, Any],
    init: str,
    conds: Mapping[str, Mapping[str, Any]],
    tables: Mapping[str, tuple[_Table, list[Any]]],
    table_code: Callable[[_Table, list[Any]], tuple[list[str], list[Any]] | None],
    check_exit: bool,
    where: str,
    prefix: str,
) -> Any:
    """One generated function per pipeline root, the init node's returned.

    ``tables`` maps a table node to its _Table and [hit, miss, base default]
    next closures; ``table_code`` gives a table's statements and successors
    (SourceGen.table), None to call its closure.
    """
    name_of = {id(fn): n for n, fn in nodes.items()}
    graph: dict[str, _Node] = {}

    def node(n: str) -> _Node:
        g = graph.get(n)
        if g is not None:
            return g
        g = _Node(n, nodes[n])
        graph[n] = g
        if n in conds:
            cj = conds[n]
            g.cond = cj["expression"]
            g.succ = [cj.get("true_next") or _END, cj.get("false_next") or _END]
            return g
        t, hm = tables[n]
        g.table = t
        nba = t.next_by_action
        if t.use_hit_miss:
            outs = [hm[0], hm[1]]
        else:
            outs = [nba[i] for i in sorted(t.action_ids)] + [hm[2]]
        code = table_code(t, hm)
        if code is not None:
            g.inline, outs = code
        for o in outs:
            if not any(o is x for x in g.succ_fn):
                g.succ_fn.append(o)
                g.succ.append(_END if o is None else name_of[id(o)])
        return g

    # reachable nodes, topological order (a cycle: keep the closures)
    order: list[str] = []
    state: dict[str, int] = {}
    stack: list[tuple[str, int]] = [(init, 0)]
    while stack:
        n, i = stack.pop()
        g = node(n)
        if i == 0:
            if state.get(n) == 2:
                continue
            if state.get(n) == 1:
                return nodes[init]
            state[n] = 1
        if i < len(g.succ):
            stack.append((n, i + 1))
            s = g.succ[i]
            if s is not _END:
                if state.get(s) == 1:
                    return nodes[init]
                if state.get(s) != 2:
                    stack.append((s, 0))
        else:
            state[n] = 2
            order.append(n)
    # post-dominators (the DAG's nodes in reverse topological order = order)
    pdom: dict[str | None, frozenset[str | None]] = {_END: frozenset([_END])}
    for n in order:
        sets = [pdom[s] for s in graph[n].succ]
        pdom[n] = frozenset.intersection(*sets) | {n}
    ipdom: dict[str, str | None] = {}
    for n in order:
        ps = pdom[n] - {n}
        ipdom[n] = max(ps, key=lambda x: len(pdom[x]))

    roots: dict[str, str] = {}
    pending: list[str] = []

    def root(n: str) -> str:
        r = roots.get(n)
        if r is None:
            r = roots[n] = f"_{prefix}{len(roots)}"
            pending.append(n)
        return r

    def emit(x: str | None, stop: str | None, depth: int, out: list[str], seen: set[str]) -> None:
        ind = "    " * depth
        start = len(out)
        while x != stop:
            if x is _END:
                out.append(f"{ind}return None")
                break
            if x in seen or depth > _MAX_DEPTH:
                out.append(f"{ind}return {root(x)}")
                break
            seen.add(x)
            g = graph[x]
            j = ipdom[x]
            if g.cond is not None:
                cond = gen.truth(g.cond)
                t, f = g.succ
                if f == j:
                    out.append(f"{ind}if {cond}:")
                    emit(t, j, depth + 1, out, seen)
                elif t == j:
                    out.append(f"{ind}if not {cond}:")
                    emit(f, j, depth + 1, out, seen)
                else:
                    out.append(f"{ind}if {cond}:")
                    emit(t, j, depth + 1, out, seen)
                    out.append(f"{ind}else:")
                    emit(f, j, depth + 1, out, seen)
                x = j
                continue
            if g.inline is not None:
                out.extend(ind + s for s in g.inline)
            elif len(g.succ) == 1:
                out.append(f"{ind}{gen.const(g.fn, 't')}(phv)")
            else:
                out.append(f"{ind}_n = {gen.const(g.fn, 't')}(phv)")
            if check_exit:
                out.append(f"{ind}if phv[{gen.c.s.exit}]:")
                out.append(f"{ind}    return None")
            if len(g.succ) == 1:
                x = g.succ[0]
                continue
            last = len(g.succ) - 1
            for k, (s, o) in enumerate(zip(g.succ, g.succ_fn, strict=True)):
                if g.inline is not None:  # _s is the index of the successor
                    test = f"_s == {k}"
                    if k == last:
                        out.append(f"{ind}else:")
                        emit(s, j, depth + 1, out, seen)
                        break
                else:
                    test = "_n is None" if o is None else f"_n is {gen.const(o, 'o')}"
                out.append(f"{ind}{'if' if k == 0 else 'elif'} {test}:")
                emit(s, j, depth + 1, out, seen)
            if g.inline is None:
                out.append(f"{ind}else:")
                out.append(f"{ind}    return _n")
            x = j
        if len(out) == start:
            out.append(f"{ind}pass")

    first = root(init)
    src: list[str] = []
    while pending:
        n = pending.pop()
        src.append(f"def {roots[n]}(phv):")
        emit(n, _END, 1, src, set())
    exec(compile("\n".join(src) + "\n", f"<softswitch {where}>", "exec"), gen.env)
    return gen.env[first]


class ParseState:
    """A parser state as the generator sees it: its ops (statements, or the
    op closure to call as ``off = op(phv, data, off)``), its select key parts
    as source (none: always the default), their byte-rounded widths, the
    (value, mask, next) cases and the default next state (None: accept)."""

    def __init__(
        self,
        ops: list[Any],
        keys: list[str],
        widths: list[int],
        cases: list[tuple[int, int, str | None]],
        default: str | None,
    ) -> None:
        self.ops = ops
        self.keys = keys
        self.widths = widths
        self.cases = cases
        self.default = default


def generate_parser(
    gen: SourceGen, init: str, states: Mapping[str, ParseState], parsed_slot: int
) -> Callable[[PHV, bytes], int]:
    """The parser as one function: states reached from one place inline,
    the others (joins, loops) as branches of a dispatch loop on ``st``; a
    _ParserError leaves the offset after the last op that completed in
    phv[parsed_slot], as the closure parser does."""
    indeg: dict[str, int] = {init: 1}
    todo = [init]
    while todo:
        n = todo.pop()
        st = states[n]
        nexts = [c[2] for i, c in enumerate(st.cases) if not i or c[2] != st.cases[i - 1][2]]
        for x in [*(nexts if st.keys else []), st.default]:
            if x is not None:
                indeg[x] = indeg.get(x, 0) + 1
                if indeg[x] == 1:
                    todo.append(x)
    roots: dict[str, int] = {}
    pending: list[str] = []

    def root(n: str) -> int:
        if n not in roots:
            roots[n] = len(roots)
            pending.append(n)
        return roots[n]

    def goto(n: str | None, depth: int, out: list[str], seen: set[str]) -> None:
        ind = "    " * depth
        if n is None:
            out.append(f"{ind}return off")
        elif n in roots or indeg[n] > 1 or n in seen or depth > _MAX_DEPTH:
            out.append(f"{ind}st = {root(n)}")
            out.append(f"{ind}continue")
        else:
            body(n, depth, out, seen)

    def body(n: str, depth: int, out: list[str], seen: set[str]) -> None:
        seen.add(n)
        ind = "    " * depth
        st = states[n]
        for op in st.ops:
            if isinstance(op, list):
                out.extend(ind + x for x in op)
            else:
                out.append(f"{ind}off = {gen.const(op, 'pop')}(phv, data, off)")
        if not st.keys:
            goto(st.default, depth, out, seen)
            return
        key = st.keys[0]
        for k, w in zip(st.keys[1:], st.widths[1:], strict=True):
            key = f"(({key} << {w}) | {k})"
        out.append(f"{ind}_key = {key}")
        full = (1 << sum(st.widths)) - 1
        # first match wins; neighbouring cases with one next state share a branch
        groups: list[tuple[list[str], str | None]] = []
        for val, mask, nxt in st.cases:
            test = f"_key == {val}" if mask == full else f"(_key & {mask}) == {val}"
            if groups and groups[-1][1] == nxt:
                groups[-1][0].append(test)
            else:
                groups.append(([test], nxt))
        for i, (tests, nxt) in enumerate(groups):
            out.append(f"{ind}{'if' if i == 0 else 'elif'} {' or '.join(tests)}:")
            goto(nxt, depth + 1, out, seen)
        out.append(f"{ind}else:")
        goto(st.default, depth + 1, out, seen)

    root(init)
    chain: list[str] = []
    while pending:
        n = pending.pop(0)
        chain.append(f"            {'if' if roots[n] == 0 else 'elif'} st == {roots[n]}:")
        body(n, 4, chain, set())
    src = [
        "def parse(phv, data):",
        "    off = 0",
        "    st = 0",
        "    try:",
        "        while True:",
        *chain,
        "    except _ParserError:",
        f"        phv[{parsed_slot}] = off",
        "        raise",
    ]
    fn: Callable[[PHV, bytes], int] = gen.compile("\n".join(src) + "\n", "parse", "parser")
    return fn
