"""The embedded P4 target's packet engine: executes p4c's bmv2 JSON (v1model).

Semantics follow bmv2's simple_switch (targets/simple_switch/simple_switch.cpp
and src/bm_sim). At load time the JSON is compiled into Python closures over
one flat list of ints per packet (the PHV): every header field, every header's
validity bit, and a few per-packet registers (clone/resubmit/recirculate flags,
packet length...) have a fixed slot. Nothing walks the JSON per packet. The
per-packet path (parser, pipelines with their tables and actions, checksums,
deparser) is then generated as Python source over those slots and compiled
once (``softswitch.engine_gen``), calling a closure only for what has no
generated form.

Anything in the JSON this engine does not implement raises
``UnsupportedConstruct`` naming it when the program is loaded: varbit fields,
parser value sets, header union stacks, digests (learn_lists), extern
instances, idle timeout, deparser primitives, hash algorithms without a
Python equivalent (xxh64, toeplitz, random). ``assert``/``assume`` and
``log_msg`` are accepted as no-ops (bmv2 would abort on a failed assert).

Beyond ``softswitch.api.Engine``:

* direct meters are configured with ``meter_set(meter, entry_handle, ...)``;
  unconfigured meters (direct or not) color everything green, as in bmv2;
* outputs come in the order the packets leave egress: clones of a frame
  before the frame itself, replicas by rid (first seen) then port;
* one frame may cause at most MAX_REINJECT resubmit/recirculate passes.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from softswitch.api import (
    ActionCall,
    CounterValue,
    EngineError,
    EntryTarget,
    Exact,
    FastWriter,
    GroupRef,
    Key,
    Lpm,
    MemberRef,
    Optional,
    Output,
    Range,
    Replica,
    Ternary,
)

PHV = list[int]
Args = Sequence[int]
Expr = Callable[[PHV, Args], int]
HdrExpr = Callable[[PHV, Args], int]  # returns a header id
Setter = Callable[[PHV, Args, int], None]
Prim = Callable[[PHV, Args], None]

DROP_PORT = 511

# standard_metadata.instance_type values (simple_switch.cpp)
PKT_INSTANCE_TYPE_NORMAL = 0
PKT_INSTANCE_TYPE_INGRESS_CLONE = 1
PKT_INSTANCE_TYPE_EGRESS_CLONE = 2
PKT_INSTANCE_TYPE_COALESCED = 3
PKT_INSTANCE_TYPE_RECIRC = 4
PKT_INSTANCE_TYPE_REPLICATION = 5
PKT_INSTANCE_TYPE_RESUBMIT = 6

#: Resubmit/recirculate rounds one frame may cause before it is dropped
#: (bmv2 has no limit; a daemon must not loop forever on one frame).
MAX_REINJECT = 32

_CORE_ERRORS = {
    "NoError": 0,
    "PacketTooShort": 1,
    "NoMatch": 2,
    "StackOutOfBounds": 3,
    "HeaderTooShort": 4,
    "ParserTimeout": 5,
    "ParserInvalidArgument": 6,
}


class _ParserError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _hexint(s: str) -> int:
    s = s.strip()
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    v = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
    return -v if neg else v


def _signed(v: int, width: int) -> int:
    v &= (1 << width) - 1
    return v - (1 << width) if v >> (width - 1) else v


def _trunc_div(a: int, b: int) -> int:
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _trunc_mod(a: int, b: int) -> int:
    if b == 0:
        return 0
    return a - b * _trunc_div(a, b)


# --------------------------------------------------------------------------
# Program layout
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Header:
    name: str
    hid: int
    valid: int  # slot of the validity bit
    metadata: bool
    names: list[str]
    slots: list[int]
    widths: list[int]
    signed: list[bool]
    nbits: int
    nbytes: int
    union: int = -1  # header_union id or -1
    # (slot, shift from LSB, mask, signed width or 0) for extraction
    unpack: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Stack:
    name: str
    headers: list[int]  # header ids
    count_slot: int  # "next index" of the stack


@dataclass(slots=True)
class _Member:
    handle: int
    action: int
    args: tuple[int, ...]


@dataclass(slots=True)
class _Profile:
    name: str
    selector: Callable[[PHV], int] | None
    members: dict[int, _Member] = field(default_factory=dict)  # by member_id
    groups: dict[int, list[int]] = field(default_factory=dict)  # group id -> member ids
    next_handle: int = 0
    free_handles: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Entry:
    handle: int
    priority: int
    seq: int
    target: EntryTarget | None  # None: a direct action added by a fast adder
    action: int  # action index, -1 for member/group refs
    args: tuple[int, ...]
    packets: int = 0
    bytes: int = 0
    # ternary matching: concatenated value/mask, or per-field ranges
    tvalue: int = 0
    tmask: int = 0
    ranges: tuple[tuple[int, int], ...] = ()
    ikey: Any = None  # the key it is indexed under (exact/lpm dict, ternary dup set)
    plen: int = 0


@dataclass(slots=True)
class _Action:
    name: str
    index: int
    widths: list[int]
    run: Prim


class _Meters:
    def __init__(self, name: str, size: int, is_packets: bool, clock: Callable[[], float]) -> None:
        self.name = name
        self.size = size
        self.is_packets = is_packets
        self.cells: dict[int, list[list[float]]] = {}
        self.clock = clock
        self.t0 = clock()

    def configure(self, index: int, cir: int, cburst: int, pir: int, pburst: int) -> None:
        # bmv2 keeps rates sorted by increasing rate, red (PIR) checked first
        self.cells[index] = [
            [pir / 1e6, float(pburst), float(pburst), 0.0, 2.0],
            [cir / 1e6, float(cburst), float(cburst), 0.0, 1.0],
        ]

    def execute(self, index: int, length: int) -> int:
        rates = self.cells.get(index)
        if rates is None:
            return 0
        micros = int((self.clock() - self.t0) * 1e6)
        size = 1 if self.is_packets else length
        for rate in rates:
            since_init = float(int(micros * rate[0]))
            new = since_init - rate[3]
            rate[3] = since_init
            rate[2] = min(rate[2] + new, rate[1])
            if rate[2] < size:
                return int(rate[4])
            rate[2] -= size
        return 0


class _Table:
    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: dict[int, _Entry] = {}
        self.next_handle = 0
        self.seq = 0
        self.kinds: list[str] = []
        self.widths: list[int] = []
        self.getter: Callable[[PHV], Any] = lambda phv: ()
        self.mode = "exact"  # exact | lpm | ternary | keyless
        self.exact: dict[Any, _Entry] = {}
        self.lpm: dict[int, dict[Any, _Entry]] = {}
        self.lpm_lens: list[int] = []
        self.lpm_width = 0
        self.ternary: list[_Entry] = []  # by priority (highest first), then age
        self.ternary_keys: set[Any] = set()
        self.has_range = False
        self.action_ids: set[int] = set()
        self.default_action = -1
        self.default_args: tuple[int, ...] = ()
        self.json_default: tuple[int, tuple[int, ...]] = (-1, ())
        self.default_const = False
        self.profile: _Profile | None = None
        self.direct_counter: str | None = None
        self.direct_meter_slot = -1
        self.const_entries = False
        self.max_size = 0
        # node linking
        self.next_by_action: list[Any] = []
        self.hit_next: Any = None
        self.miss_next: Any = None
        self.use_hit_miss = False

    def check_room(self) -> None:
        if self.max_size and len(self.entries) >= self.max_size:
            raise EngineError(f"table {self.name!r} is full ({self.max_size} entries)")

    def index_exact(self, e: _Entry, ikey: Any, plen: int = 0) -> None:
        """Index an entry of an exact table under ikey: the value of a
        one-field key, else the tuple of values."""
        if ikey in self.exact:
            raise EngineError(f"table {self.name!r}: an entry with this key exists")
        self.exact[ikey] = e
        e.ikey = ikey

    def index_lpm(self, e: _Entry, ikey: Any, plen: int) -> None:
        """Index an entry of an lpm table: ikey is the tuple of values (the
        lpm one masked to its prefix), plen the prefix length."""
        d = self.lpm.get(plen)
        if d is None:
            d = self.lpm[plen] = {}
            self.lpm_lens = sorted(self.lpm, reverse=True)
        elif ikey in d:
            raise EngineError(f"table {self.name!r}: an entry with this key exists")
        d[ikey] = e
        e.ikey, e.plen = ikey, plen

    def register(self, e: _Entry) -> int:
        """Record an indexed entry under its handle; returns the handle."""
        self.entries[e.handle] = e
        self.next_handle += 1
        self.seq += 1
        return e.handle


class _FastWriter:
    """api.FastWriter of one table and action index."""

    __slots__ = ("_action", "_index", "_table")

    def __init__(self, t: _Table, action: int) -> None:
        self._table = t
        self._action = action
        self._index = t.index_exact if t.mode == "exact" else t.index_lpm

    def add(self, ikey: Any, plen: int, args: tuple[int, ...]) -> int:
        t = self._table
        t.check_room()
        entry = _Entry(t.next_handle, 0, t.seq, None, self._action, args)
        self._index(entry, ikey, plen)
        return t.register(entry)

    def modify(self, handle: int, args: tuple[int, ...]) -> None:
        e = self._table.entries.get(handle)
        if e is None:
            raise EngineError(f"table {self._table.name!r} has no entry {handle}")
        e.action, e.args, e.target = self._action, args, None


@dataclass(slots=True)
class _Pkt:
    """A packet in flight: its PHV and the bytes after the parsed headers."""

    phv: PHV
    payload: bytes
    frame: bytes  # the frame as received (for I2E clone and resubmit)


class SoftEngine:
    """bmv2 simple_switch semantics over compiled closures and generated code."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, seed: int = 0, generate: bool = True
    ) -> None:
        """``generate=False`` runs the closures only (no generated code): the
        reference the generated code must match, for differential tests."""
        self._generate = generate
        self._clock = clock
        self._t0 = clock()
        self._rng = random.Random(seed)
        self._loaded = False
        self._reset_program()

    # ------------------------------------------------------------------ load
    def _reset_program(self) -> None:
        self._headers: list[_Header] = []
        self._hdr_by_name: dict[str, _Header] = {}
        self._stacks: dict[str, _Stack] = {}
        self._unions: dict[str, list[int]] = {}
        self._template: PHV = []
        self._nslots = 0
        self._actions: list[_Action] = []
        self._action_by_name: dict[str, list[int]] = {}
        self._tables: dict[str, _Table] = {}
        self._profiles: dict[str, _Profile] = {}
        self._counters: dict[str, list[list[int]]] = {}
        self._direct_counters: dict[str, str] = {}  # counter name -> table
        self._registers: dict[str, tuple[list[int], int]] = {}
        self._meters: dict[str, _Meters] = {}
        self._calcs: dict[str, Callable[[PHV, bytes], int]] = {}
        self._field_lists: dict[int, list[int]] = {}
        self._errors: dict[str, int] = dict(_CORE_ERRORS)
        self._no_error = 0
        self._mc_groups: dict[int, list[tuple[int, int]]] = {}
        self._clone_sessions: dict[int, list[tuple[int, int]]] = {}
        self._parse: Callable[[PHV, bytes], int] = lambda phv, data: 0
        self._verify_cksums: list[Callable[[PHV, bytes], bool]] = []
        self._update_cksums: list[Callable[[PHV, bytes], None]] = []
        self._deparse_order: list[_Header] = []
        self._deparse_fns: list[tuple[int, Callable[[PHV], bytes]]] = []
        # the generated forms of _deparse and of the checksum loop in _run_parser
        self._deparse_fn: Callable[[PHV, bytes], bytes] = self._deparse
        self._first_fn: Callable[[int, bytes, list[tuple[PHV, bytes]], Output], None] = self._first
        self._verify_fn: Callable[[PHV, bytes], int] = self._verify
        self._ingress: Any = None
        self._egress: Any = None
        self._slots = _Slots()
        self._meta_slots: list[int] = []
        # bmv2 sets egress_spec to drop_port + 1 before egress, truncated to
        # the field's width (0 for v1model's bit<9>)
        self._egress_spec_init = DROP_PORT + 1
        self._rid_mask = 0xFFFF

    def load(self, bmv2_json: Mapping[str, Any]) -> None:
        """Replace the running program; all state is reset (see api.Engine)."""
        from softswitch.engine_compile import _Compiler

        old = self.__dict__.copy()
        self._reset_program()
        try:
            _Compiler(self, bmv2_json).compile()
        except EngineError:  # UnsupportedConstruct included
            self.__dict__.update(old)
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            self.__dict__.update(old)
            raise EngineError(f"malformed bmv2 JSON: {type(exc).__name__}: {exc}") from exc
        self._loaded = True

    # ----------------------------------------------------------- lookups
    def _table(self, name: str) -> _Table:
        t = self._tables.get(name)
        if t is None:
            raise EngineError(f"no table named {name!r}")
        return t

    def _action_index(self, name: str, allowed: set[int] | None) -> int:
        cands = self._action_by_name.get(name)
        if not cands:
            raise EngineError(f"no action named {name!r}")
        # p4c may emit several actions of one name (e.g. NoAction): pick the
        # one this table lists.
        for idx in cands:
            if allowed is None or idx in allowed:
                return idx
        raise EngineError(f"action {name!r} is not an action of this table")

    def _action_call(
        self, call: ActionCall, allowed: set[int] | None
    ) -> tuple[int, tuple[int, ...]]:
        idx = self._action_index(call.action, allowed)
        act = self._actions[idx]
        if len(call.args) != len(act.widths):
            raise EngineError(
                f"action {call.action!r} takes {len(act.widths)} arguments, got {len(call.args)}"
            )
        for i, (a, w) in enumerate(zip(call.args, act.widths, strict=True)):
            if a < 0 or a >> w:
                raise EngineError(f"action {call.action!r} argument {i} does not fit in {w} bits")
        return idx, tuple(call.args)

    # ----------------------------------------------------------- tables
    def table_add(self, table: str, key: Key, target: EntryTarget, priority: int = 0) -> int:
        t = self._table(table)
        if t.mode == "keyless":
            raise EngineError(f"table {table!r} has no key; set its default action instead")
        t.check_room()
        norm = self._normalize_key(t, key)
        action, args = self._resolve_target(t, target)
        entry = _Entry(t.next_handle, priority, t.seq, target, action, args)
        self._index_entry(t, entry, norm)
        return t.register(entry)

    def fast_writer(
        self, table: str, action: str, key_widths: Sequence[int], arg_widths: Sequence[int]
    ) -> FastWriter | None:
        """See api.Engine.fast_writer: None where the table (not exact or
        lpm, or with a profile), the action or the caller's widths do not
        allow one."""
        t = self._tables.get(table)
        if t is None or t.mode not in ("exact", "lpm") or t.profile is not None:
            return None
        # exact values the caller checked against narrower widths fit; an lpm
        # prefix means something else under another width
        if len(key_widths) != len(t.widths) or any(
            w > tw or (kind == "lpm" and w != tw)
            for w, tw, kind in zip(key_widths, t.widths, t.kinds, strict=True)
        ):
            return None
        try:
            idx = self._action_index(action, t.action_ids)
        except EngineError:
            return None
        widths = self._actions[idx].widths
        if len(arg_widths) != len(widths) or any(
            w > aw for w, aw in zip(arg_widths, widths, strict=True)
        ):
            return None
        return _FastWriter(t, idx)

    def _resolve_target(self, t: _Table, target: EntryTarget) -> tuple[int, tuple[int, ...]]:
        if isinstance(target, ActionCall):
            if t.profile is not None:
                raise EngineError(
                    f"table {t.name!r} uses an action profile: give a member or group"
                )
            return self._action_call(target, t.action_ids)
        if t.profile is None:
            raise EngineError(f"table {t.name!r} has no action profile")
        if isinstance(target, MemberRef):
            if target.member_id not in t.profile.members:
                raise EngineError(f"no member {target.member_id} in {t.profile.name!r}")
        else:
            if t.profile.selector is None:
                raise EngineError(f"{t.profile.name!r} is not an action selector")
            if target.group_id not in t.profile.groups:
                raise EngineError(f"no group {target.group_id} in {t.profile.name!r}")
        return -1, ()

    def _normalize_key(self, t: _Table, key: Key) -> tuple[Any, ...]:
        if len(key) != len(t.kinds):
            raise EngineError(f"table {t.name!r} has {len(t.kinds)} key fields, got {len(key)}")
        out: list[Any] = []
        for i, (m, kind, w) in enumerate(zip(key, t.kinds, t.widths, strict=True)):
            full = (1 << w) - 1
            where = f"table {t.name!r} key field {i}"
            if kind == "exact":
                if not isinstance(m, Exact):
                    raise EngineError(f"{where}: exact match needs Exact")
                if m.value < 0 or m.value > full:
                    raise EngineError(f"{where}: value does not fit in {w} bits")
                out.append((m.value, full))
            elif kind == "lpm":
                if m is None:
                    out.append((0, 0))
                    continue
                if not isinstance(m, Lpm):
                    raise EngineError(f"{where}: lpm match needs Lpm")
                if not 0 <= m.prefix_len <= w or m.value < 0 or m.value > full:
                    raise EngineError(f"{where}: bad prefix {m.value}/{m.prefix_len}")
                mask = full ^ ((1 << (w - m.prefix_len)) - 1)
                if m.value & ~mask:
                    raise EngineError(f"{where}: value has bits outside the prefix")
                out.append((m.value, mask))
            elif kind in ("ternary", "optional"):
                if m is None:
                    out.append((0, 0))
                elif kind == "ternary" and isinstance(m, Ternary):
                    if m.mask < 0 or m.mask > full or m.value < 0 or m.value > full:
                        raise EngineError(f"{where}: value/mask do not fit in {w} bits")
                    if m.value & ~m.mask:
                        raise EngineError(f"{where}: value has bits outside the mask")
                    out.append((m.value, m.mask))
                elif kind == "optional" and isinstance(m, Optional | Exact):
                    if m.value < 0 or m.value > full:
                        raise EngineError(f"{where}: value does not fit in {w} bits")
                    out.append((m.value, full))
                else:
                    raise EngineError(f"{where}: {kind} match needs {kind.capitalize()}")
            elif kind == "range":
                if m is None:
                    out.append(("r", 0, full))
                elif isinstance(m, Range):
                    if not 0 <= m.low <= m.high <= full:
                        raise EngineError(f"{where}: bad range {m.low}..{m.high}")
                    out.append(("r", m.low, m.high))
                else:
                    raise EngineError(f"{where}: range match needs Range")
            else:  # pragma: no cover - refused at load
                raise EngineError(f"{where}: unsupported match kind {kind}")
        return tuple(out)

    def _index_entry(self, t: _Table, e: _Entry, norm: tuple[Any, ...]) -> None:
        if t.mode == "exact":
            k: Any = tuple(v for v, _ in norm)
            t.index_exact(e, k[0] if len(k) == 1 else k)
        elif t.mode == "lpm":
            plen = 0
            vals = []
            for (v, m), kind in zip(norm, t.kinds, strict=True):
                vals.append(v)
                if kind == "lpm":
                    plen = m.bit_count()
            t.index_lpm(e, tuple(vals), plen)
        else:
            tv = tm = 0
            ranges: list[tuple[int, int]] = []
            for part, w in zip(norm, t.widths, strict=True):
                if part[0] == "r":
                    ranges.append((part[1], part[2]))
                    tv <<= w
                    tm <<= w
                else:
                    tv = (tv << w) | part[0]
                    tm = (tm << w) | part[1]
                    ranges.append((0, -1))
            e.tvalue, e.tmask = tv, tm
            e.ranges = tuple(ranges) if t.has_range else ()
            dup = (tv, tm, e.ranges, e.priority)
            if dup in t.ternary_keys:
                raise EngineError(f"table {t.name!r}: an entry with this key exists")
            t.ternary_keys.add(dup)
            e.ikey = dup
            bisect.insort(t.ternary, e, key=_ternary_order)

    def table_modify(self, table: str, handle: int, target: EntryTarget) -> None:
        t = self._table(table)
        e = t.entries.get(handle)
        if e is None:
            raise EngineError(f"table {table!r} has no entry {handle}")
        e.action, e.args = self._resolve_target(t, target)
        e.target = target

    def table_delete(self, table: str, handle: int) -> None:
        t = self._table(table)
        e = t.entries.pop(handle, None)
        if e is None:
            raise EngineError(f"table {table!r} has no entry {handle}")
        if t.mode == "exact":
            del t.exact[e.ikey]
        elif t.mode == "lpm":
            d = t.lpm[e.plen]
            del d[e.ikey]
            if not d:
                del t.lpm[e.plen]
                t.lpm_lens = sorted(t.lpm, reverse=True)
        else:
            t.ternary_keys.discard(e.ikey)
            i = bisect.bisect_left(t.ternary, _ternary_order(e), key=_ternary_order)
            while t.ternary[i] is not e:
                i += 1
            del t.ternary[i]

    def table_set_default(self, table: str, action: ActionCall) -> None:
        t = self._table(table)
        if t.default_const:
            raise EngineError(f"table {table!r} has a const default action")
        t.default_action, t.default_args = self._action_call(action, t.action_ids)

    def table_reset_default(self, table: str) -> None:
        t = self._table(table)
        t.default_action, t.default_args = t.json_default

    # ------------------------------------------------- profiles / selectors
    def _profile(self, name: str) -> _Profile:
        p = self._profiles.get(name)
        if p is None:
            raise EngineError(f"no action profile named {name!r}")
        return p

    def member_set(self, profile: str, member_id: int, action: ActionCall) -> None:
        p = self._profile(profile)
        allowed: set[int] = set()
        for t in self._tables.values():
            if t.profile is p:
                allowed |= t.action_ids
        idx, args = self._action_call(action, allowed)
        old = p.members.get(member_id)
        if old is not None:
            old.action, old.args = idx, args
            return
        if p.free_handles:
            handle = min(p.free_handles)
            p.free_handles.remove(handle)
        else:
            handle = p.next_handle
            p.next_handle += 1
        p.members[member_id] = _Member(handle, idx, args)
        for gid, mids in p.groups.items():
            p.groups[gid] = self._sorted_members(p, mids)

    def member_delete(self, profile: str, member_id: int) -> None:
        p = self._profile(profile)
        m = p.members.get(member_id)
        if m is None:
            raise EngineError(f"no member {member_id} in {profile!r}")
        for gid, mids in p.groups.items():
            if member_id in mids:
                raise EngineError(f"member {member_id} is still in group {gid}")
        for t in self._tables.values():
            if t.profile is p:
                for e in t.entries.values():
                    if isinstance(e.target, MemberRef) and e.target.member_id == member_id:
                        raise EngineError(f"member {member_id} is used by table {t.name!r}")
        del p.members[member_id]
        p.free_handles.append(m.handle)

    @staticmethod
    def _sorted_members(p: _Profile, mids: Sequence[int]) -> list[int]:
        # bmv2 keeps a group's members in a set of member handles: the
        # selector picks the (hash % size)-th smallest handle.
        return sorted(mids, key=lambda mid: p.members[mid].handle)

    def group_set(self, profile: str, group_id: int, members: Sequence[int]) -> None:
        p = self._profile(profile)
        if p.selector is None:
            raise EngineError(f"{profile!r} is not an action selector")
        for mid in members:
            if mid not in p.members:
                raise EngineError(f"no member {mid} in {profile!r}")
        p.groups[group_id] = self._sorted_members(p, members)

    def group_delete(self, profile: str, group_id: int) -> None:
        p = self._profile(profile)
        if group_id not in p.groups:
            raise EngineError(f"no group {group_id} in {profile!r}")
        for t in self._tables.values():
            if t.profile is p:
                for e in t.entries.values():
                    if isinstance(e.target, GroupRef) and e.target.group_id == group_id:
                        raise EngineError(f"group {group_id} is used by table {t.name!r}")
        del p.groups[group_id]

    # ----------------------------------------------------------- stateful
    def _counter(self, name: str, index: int) -> list[int]:
        cells = self._counters.get(name)
        if cells is None:
            raise EngineError(f"no indirect counter named {name!r}")
        if not 0 <= index < len(cells):
            raise EngineError(f"counter {name!r} index {index} out of range 0..{len(cells) - 1}")
        return cells[index]

    def counter_read(self, counter: str, index: int) -> CounterValue:
        c = self._counter(counter, index)
        return CounterValue(c[0], c[1])

    def counter_write(self, counter: str, index: int, value: CounterValue) -> None:
        c = self._counter(counter, index)
        c[0], c[1] = value.packets, value.bytes

    def _direct_entry(self, table: str, handle: int) -> _Entry:
        t = self._table(table)
        if t.direct_counter is None:
            raise EngineError(f"table {table!r} has no direct counter")
        e = t.entries.get(handle)
        if e is None:
            raise EngineError(f"table {table!r} has no entry {handle}")
        return e

    def direct_counter_read(self, table: str, handle: int) -> CounterValue:
        e = self._direct_entry(table, handle)
        return CounterValue(e.packets, e.bytes)

    def direct_counter_write(self, table: str, handle: int, value: CounterValue) -> None:
        e = self._direct_entry(table, handle)
        e.packets, e.bytes = value.packets, value.bytes

    def _register(self, name: str, index: int) -> tuple[list[int], int]:
        r = self._registers.get(name)
        if r is None:
            raise EngineError(f"no register named {name!r}")
        if not 0 <= index < len(r[0]):
            raise EngineError(f"register {name!r} index {index} out of range 0..{len(r[0]) - 1}")
        return r

    def register_read(self, register: str, index: int) -> int:
        cells, width = self._register(register, index)
        return cells[index] & ((1 << width) - 1)

    def register_write(self, register: str, index: int, value: int) -> None:
        cells, width = self._register(register, index)
        if value < 0 or value >> width:
            raise EngineError(f"register {register!r}: value does not fit in {width} bits")
        cells[index] = value

    def meter_set(
        self, meter: str, index: int, cir: int, cburst: int, pir: int, pburst: int
    ) -> None:
        m = self._meters.get(meter)
        if m is None:
            raise EngineError(f"no meter named {meter!r}")
        if not 0 <= index < m.size:
            raise EngineError(f"meter {meter!r} index {index} out of range 0..{m.size - 1}")
        if min(cir, cburst, pir, pburst) < 0 or cir > pir:
            raise EngineError(f"meter {meter!r}: rates must be >= 0 with cir <= pir")
        m.configure(index, cir, cburst, pir, pburst)

    # ------------------------------------------------------------ PRE
    @staticmethod
    def _pre_order(replicas: Sequence[Replica]) -> list[tuple[int, int]]:
        # bmv2's PRE: one L1 node per rid (in creation order), each with a
        # port bitmap walked in increasing port order.
        by_rid: dict[int, set[int]] = {}
        for r in replicas:
            if not 0 <= r.egress_port < DROP_PORT:
                raise EngineError(f"replica port {r.egress_port} out of range")
            if not 0 <= r.rid < 1 << 16:
                raise EngineError(f"replica rid {r.rid} out of range 0..65535")
            by_rid.setdefault(r.rid, set()).add(r.egress_port)
        return [(port, rid) for rid, ports in by_rid.items() for port in sorted(ports)]

    def mc_group_set(self, group_id: int, replicas: Sequence[Replica]) -> None:
        if not 0 < group_id < 1 << 16:
            raise EngineError(f"multicast group id {group_id} out of range 1..65535")
        self._mc_groups[group_id] = self._pre_order(replicas)

    def mc_group_delete(self, group_id: int) -> None:
        if self._mc_groups.pop(group_id, None) is None:
            raise EngineError(f"no multicast group {group_id}")

    def clone_session_set(self, session_id: int, replicas: Sequence[Replica]) -> None:
        if not 0 <= session_id < 1 << 15:
            raise EngineError(f"clone session id {session_id} out of range")
        self._clone_sessions[session_id] = self._pre_order(replicas)

    def clone_session_delete(self, session_id: int) -> None:
        if self._clone_sessions.pop(session_id, None) is None:
            raise EngineError(f"no clone session {session_id}")

    # ------------------------------------------------------------ packets
    def process(self, ingress_port: int, frame: bytes) -> Output:
        """Run one frame through parser, pipelines, PRE and deparser."""
        if not self._loaded:
            return []
        if not 0 <= ingress_port < DROP_PORT:
            raise EngineError(f"ingress port {ingress_port} out of range 0..510")
        out: Output = []
        inputs: list[tuple[PHV, bytes]] = []
        self._first_fn(ingress_port, bytes(frame), inputs, out)
        rounds = 1
        while inputs:
            phv, data = inputs.pop()
            rounds += 1
            if rounds > MAX_REINJECT:
                break
            self._ingress_one(phv, data, inputs, out)
        return out

    def _first(
        self, ingress_port: int, frame: bytes, inputs: list[tuple[PHV, bytes]], out: Output
    ) -> None:
        """The received frame's pass through ingress (and on to egress); its
        generated form (_first_fn) runs the same steps with the slots inlined,
        handing every case but a plain unicast on to _ingress_one /
        _egress_one from the same state."""
        s = self._slots
        phv = self._template.copy()
        phv[s.ingress_port] = ingress_port
        phv[s.packet_length] = len(frame)
        phv[s.pkt_len_reg] = len(frame)
        phv[s.ingress_length] = len(frame)
        if s.ingress_ts >= 0:
            phv[s.ingress_ts] = self._micros()
        self._ingress_one(phv, frame, inputs, out)

    def _micros(self) -> int:
        """bmv2's get_ts(): microseconds since the switch started (48 bits)."""
        return int((self._clock() - self._t0) * 1e6) & 0xFFFFFFFFFFFF

    def _run_parser(self, phv: PHV, data: bytes) -> bytes:
        s = self._slots
        consumed = 0
        try:
            consumed = self._parse(phv, data)
            err = self._no_error
        except _ParserError as exc:
            err = exc.code
            consumed = phv[s.parsed]
        payload = data[consumed:]
        cerr = self._verify_fn(phv, payload)
        if s.parser_error >= 0:
            phv[s.parser_error] = err
        if s.checksum_error >= 0:
            phv[s.checksum_error] = cerr
        return payload

    def _verify(self, phv: PHV, payload: bytes) -> int:
        cerr = 0
        for verify in self._verify_cksums:
            if not verify(phv, payload):
                cerr = 1
        return cerr

    def _ingress_one(
        self,
        phv: PHV,
        data: bytes,
        inputs: list[tuple[PHV, bytes]],
        out: Output,
        parsed: tuple[bytes, int] | None = None,
    ) -> None:
        """Parser and ingress pipeline, then clone, resubmit, multicast, drop
        or egress; ``parsed`` (payload, ingress size): the first two are done."""
        s = self._slots
        if parsed is None:
            ingress_size = phv[s.pkt_len_reg]
            payload = self._run_parser(phv, data)
            node = self._ingress  # each node returns the next; exit ends the pipeline
            ex = s.exit
            while node is not None and not phv[ex]:
                node = node(phv)
            phv[ex] = 0
        else:
            payload, ingress_size = parsed
        egress_spec = phv[s.egress_spec]
        mgid = phv[s.mcast_grp] if s.mcast_grp >= 0 else 0
        clone = phv[s.clone_session]
        if clone:
            fl = phv[s.clone_fl]
            phv[s.clone_session] = 0
            phv[s.clone_fl] = 0
            session = self._clone_sessions.get(clone & 0xFFFF)
            if session is not None:
                cp = self._template.copy()
                cp[s.ingress_port] = phv[s.ingress_port]
                cp[s.pkt_len_reg] = ingress_size
                cp[s.ingress_length] = phv[s.ingress_length]
                cpayload = self._run_parser(cp, data)
                # bmv2 resets the copy's metadata after parsing it
                for i in self._meta_slots:
                    cp[i] = self._template[i]
                cp[s.pkt_len_reg] = ingress_size
                cp[s.ingress_length] = phv[s.ingress_length]
                self._copy_field_list(fl, phv, cp)
                cp[s.instance_type] = PKT_INSTANCE_TYPE_INGRESS_CLONE
                self._replicate(cp, cpayload, session, inputs, out)
        resubmit = phv[s.resubmit]
        if resubmit:
            cp = self._template.copy()
            self._copy_field_list(resubmit, phv, cp)
            cp[s.instance_type] = PKT_INSTANCE_TYPE_RESUBMIT
            cp[s.pkt_len_reg] = ingress_size
            cp[s.packet_length] = ingress_size
            cp[s.ingress_length] = phv[s.ingress_length]
            inputs.append((cp, data))
            return
        if mgid:
            phv[s.instance_type] = PKT_INSTANCE_TYPE_REPLICATION
            group = self._mc_groups.get(mgid)
            if group is not None:
                self._replicate(phv, payload, group, inputs, out)
            return
        if egress_spec == DROP_PORT:
            return
        phv[s.instance_type] = PKT_INSTANCE_TYPE_NORMAL
        self._egress_one(egress_spec, phv, payload, inputs, out)

    def _replicate(
        self,
        phv: PHV,
        payload: bytes,
        replicas: list[tuple[int, int]],
        inputs: list[tuple[PHV, bytes]],
        out: Output,
    ) -> None:
        s = self._slots
        for port, rid in replicas:
            phv[s.egress_rid] = rid & self._rid_mask
            cp = phv.copy()
            cp[s.clone_session] = cp[s.clone_fl] = cp[s.resubmit] = cp[s.recirc] = 0
            self._egress_one(port, cp, payload, inputs, out)

    def _egress_one(
        self,
        port: int,
        phv: PHV,
        payload: bytes,
        inputs: list[tuple[PHV, bytes]],
        out: Output,
        done: bool = False,
    ) -> None:
        """Egress pipeline, then clone, drop, deparse, recirculate or send;
        ``done``: the pipeline has run."""
        s = self._slots
        if not done:
            phv[s.egress_port] = port
            phv[s.egress_spec] = self._egress_spec_init
            phv[s.packet_length] = phv[s.pkt_len_reg]
            if s.egress_ts >= 0:
                phv[s.egress_ts] = self._micros()
            node = self._egress
            ex = s.exit
            while node is not None and not phv[ex]:
                node = node(phv)
            phv[ex] = 0
        clone = phv[s.clone_session]
        if clone:
            fl = phv[s.clone_fl]
            phv[s.clone_session] = 0
            phv[s.clone_fl] = 0
            session = self._clone_sessions.get(clone & 0xFFFF)
            if session is not None:
                cp = phv.copy()
                for i in self._meta_slots:
                    cp[i] = self._template[i]
                self._copy_field_list(fl, phv, cp)
                cp[s.instance_type] = PKT_INSTANCE_TYPE_EGRESS_CLONE
                cp[s.pkt_len_reg] = phv[s.pkt_len_reg]
                cp[s.ingress_length] = phv[s.ingress_length]
                self._replicate(cp, payload, session, inputs, out)
        if phv[s.egress_spec] == DROP_PORT:
            return
        frame = self._deparse_fn(phv, payload)
        recirc = phv[s.recirc]
        if recirc:
            cp = self._template.copy()
            self._copy_field_list(recirc, phv, cp)
            cp[s.instance_type] = PKT_INSTANCE_TYPE_RECIRC
            cp[s.pkt_len_reg] = cp[s.packet_length] = cp[s.ingress_length] = len(frame)
            inputs.append((cp, frame))
            return
        trunc = phv[s.truncate]
        if trunc and trunc < len(frame):
            frame = frame[:trunc]
        out.append((port, frame))

    def _copy_field_list(self, fl_id: int, src: PHV, dst: PHV) -> None:
        for i in self._field_lists.get(fl_id, ()):
            dst[i] = src[i]

    def _deparse(self, phv: PHV, payload: bytes) -> bytes:
        for update in self._update_cksums:
            update(phv, payload)
        parts = [pack(phv) for valid, pack in self._deparse_fns if phv[valid]]
        parts.append(payload)
        return b"".join(parts)


def _ternary_order(e: _Entry) -> tuple[int, int]:
    return (-e.priority, e.seq)


@dataclass(slots=True)
class _Slots:
    """PHV slots of the metadata simple_switch itself reads and writes."""

    ingress_port: int = -1
    egress_spec: int = -1
    egress_port: int = -1
    instance_type: int = -1
    packet_length: int = -1
    mcast_grp: int = -1
    egress_rid: int = -1
    parser_error: int = -1
    checksum_error: int = -1
    # per-packet registers (not P4 fields)
    exit: int = -1
    clone_session: int = -1
    clone_fl: int = -1
    resubmit: int = -1
    recirc: int = -1
    pkt_len_reg: int = -1
    ingress_length: int = -1
    ingress_ts: int = -1  # ingress/egress_global_timestamp (microseconds)
    egress_ts: int = -1
    truncate: int = -1
    parsed: int = -1
