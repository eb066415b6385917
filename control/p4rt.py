"""P4Runtime client: the one module of the agent that knows P4Runtime protobufs.

Everything else in ``control/`` (and the packet tests) talks to a switch with
the protobuf-free values defined here. Quick tour::

    info = P4Info.load("p4src/build/esvpn.p4info.txtpb")
    client = await P4RuntimeClient.connect(
        "127.0.0.1:9559", info, device_id=0, election_id=1,
        tls=None,                        # or TlsOptions(root_cert=..., ...)
    )
    await client.wait_primary(timeout=5)  # arbitration: this client is primary
    await client.set_pipeline(Pipeline.load("p4src/build/esvpn.json", info))
    result = await client.write([
        Update(INSERT, TableEntry("IngressPipe.vif",
                                  {"ingress_port": Exact(1), "src_mac": Exact(mac),
                                   "vlan_id": Exact(10)},
                                  "set_vif", {"vif_id": 7, "vrf_id": 2})),
        Update(INSERT, MulticastGroup(5, (Replica(1, 1), Replica(2, 1)))),
    ])
    result.raise_on_error()              # or inspect result.errors per update
    entries = await client.read_table_entries()          # wildcard read
    counters = await client.read_counters("vif_rx")      # {index: CounterValue}
    await client.packet_out(frame, {"egress_port": 3})
    pkt = await client.packet_in(timeout=1.0)            # PacketIn(payload, metadata)
    await client.close()

Names: tables, actions, profiles, counters accept the P4Info full name
(``IngressPipe.classifier.vif``) or its alias (``vif``); values read back use
the full names. Match fields and action params are the P4Info names. Values
are unsigned ints; encoding uses the P4Runtime canonical byte strings.

Entities are frozen, hashable and compare by value, so the desired state and a
switch snapshot can be diffed with set operations; ``entity.key()`` is the
identity P4Runtime uses (table + match + priority, profile + member id...).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import text_format
from google.rpc import code_pb2, status_pb2
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from p4runtime_sh.context import Context, P4Type

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(dict[K, V]):
    """An immutable, hashable mapping (match keys, action params): a dict that
    refuses changes, so it is built at C speed and compares like a dict."""

    __slots__ = ("_h",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        self._h = hash(frozenset(self.items()))

    def __hash__(self) -> int:  # type: ignore[override]
        return self._h

    def _refuse(self, *_a: object, **_k: object) -> None:
        raise TypeError("FrozenMap is immutable")

    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse  # type: ignore[assignment]
    clear = _refuse
    pop = _refuse  # type: ignore[assignment]
    popitem = _refuse  # type: ignore[assignment]
    setdefault = _refuse  # type: ignore[assignment]
    update = _refuse


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Exact:
    value: int


@dataclass(frozen=True, slots=True)
class Lpm:
    value: int
    prefix_len: int


@dataclass(frozen=True, slots=True)
class Ternary:
    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class Range:
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Optional:
    value: int


FieldMatch = Exact | Lpm | Ternary | Range | Optional


def _frozen(m: Mapping[str, Any] | None) -> FrozenMap[str, Any]:
    if type(m) is FrozenMap:
        return m
    return FrozenMap(m or ())


@dataclass(frozen=True)
class TableEntry:
    """A table entry. Exactly one of action / member_id / group_id is set
    (for a selector table use group_id or member_id).

    ``is_default``: the entry is the table's default action (match empty);
    it can only be modified (Update(MODIFY, ...)), never inserted/deleted.
    """

    table: str
    match: Mapping[str, FieldMatch] = field(default_factory=FrozenMap)
    action: str | None = None
    params: Mapping[str, int] = field(default_factory=FrozenMap)
    priority: int = 0
    member_id: int | None = None
    group_id: int | None = None
    is_default: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", _frozen(self.match))
        object.__setattr__(self, "params", _frozen(self.params))

    def key(self) -> tuple[Any, ...]:
        return ("table", self.table, self.match, self.priority, self.is_default)


@dataclass(frozen=True)
class ActionProfileMember:
    profile: str
    member_id: int
    action: str
    params: Mapping[str, int] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))

    def key(self) -> tuple[Any, ...]:
        return ("member", self.profile, self.member_id)


@dataclass(frozen=True, slots=True)
class ActionProfileGroup:
    """members: (member_id, weight) pairs, order-insensitive."""

    profile: str
    group_id: int
    members: frozenset[tuple[int, int]] = frozenset()
    max_size: int = 0

    def key(self) -> tuple[Any, ...]:
        return ("group", self.profile, self.group_id)


@dataclass(frozen=True, slots=True)
class Replica:
    port: int
    instance: int = 0


@dataclass(frozen=True, slots=True)
class MulticastGroup:
    group_id: int
    replicas: frozenset[Replica] = frozenset()

    def key(self) -> tuple[Any, ...]:
        return ("mcast", self.group_id)


Entity = TableEntry | ActionProfileMember | ActionProfileGroup | MulticastGroup


@dataclass(frozen=True, slots=True)
class CounterValue:
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class MeterRate:
    """A meter cell's two-rate three-color config (P4Runtime MeterConfig):
    rates in units per second, bursts in units (packets or bytes, per the
    meter's type)."""

    cir: int
    cburst: int
    pir: int
    pburst: int


@dataclass(frozen=True, slots=True)
class PacketIn:
    payload: bytes
    metadata: Mapping[str, int]


class UpdateType(enum.Enum):
    INSERT = p4runtime_pb2.Update.INSERT
    MODIFY = p4runtime_pb2.Update.MODIFY
    DELETE = p4runtime_pb2.Update.DELETE


INSERT = UpdateType.INSERT
MODIFY = UpdateType.MODIFY
DELETE = UpdateType.DELETE


@dataclass(frozen=True, slots=True)
class Update:
    type: UpdateType
    entity: Entity


@dataclass(frozen=True, slots=True)
class UpdateError:
    """A failed update of a Write: its index in the request and why."""

    index: int
    update: Update
    code: int  # google.rpc.Code
    message: str

    @property
    def code_name(self) -> str:
        return str(code_pb2.Code.Name(self.code))


class P4RuntimeError(Exception):
    """A P4Runtime RPC failed; ``code`` is the grpc status code."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class WriteError(P4RuntimeError):
    def __init__(self, errors: Sequence[UpdateError]) -> None:
        msg = "; ".join(
            f"#{e.index} {e.update.type.name} {e.update.entity}: {e.code_name} {e.message}"
            for e in errors[:5]
        )
        super().__init__(f"{len(errors)} update(s) failed: {msg}")
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class WriteResult:
    count: int
    errors: tuple[UpdateError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_on_error(self) -> None:
        if self.errors:
            raise WriteError(self.errors)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    root_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None  # overrides the TLS name checked


# --------------------------------------------------------------------------- P4Info


def encode_int(value: int, bitwidth: int) -> bytes:
    """P4Runtime canonical byte string: big-endian, no leading zero bytes."""
    if value < 0 or (bitwidth and value >= 1 << bitwidth):
        raise ValueError(f"value {value} does not fit in {bitwidth} bits")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def decode_int(data: bytes) -> int:
    return int.from_bytes(data, "big")


@dataclass(frozen=True, slots=True)
class _Obj:
    id: int
    name: str
    # sub-object name -> (id, bitwidth, match type)
    fields: Mapping[str, tuple[int, int, int]]
    fields_by_id: Mapping[int, tuple[str, int, int]]


# our kinds -> p4runtime-shell's P4Info object types
_KINDS: dict[str, tuple[P4Type, ...]] = {
    "table": (P4Type.table,),
    "action": (P4Type.action,),
    "profile": (P4Type.action_profile,),
    "counter": (P4Type.counter, P4Type.direct_counter),
    "meter": (P4Type.meter,),
    "packet": (P4Type.controller_packet_metadata,),
}


class P4Info:
    """Name <-> id lookups over a P4Info (full names, unique dotted suffixes
    such as ``vif`` for ``SwitchIngress.pipe.classifier.vif``, and aliases).

    Names are resolved by p4runtime-shell's ``Context`` (the same rules as
    its CLI); each resolved object is kept as an ``_Obj`` (ids and widths of
    its fields) for the encoders.
    """

    def __init__(self, info: p4info_pb2.P4Info) -> None:
        self.proto = info
        self.ctx = Context()
        self.ctx.set_p4info(info)
        self._objs: dict[tuple[str, str], _Obj] = {}  # (kind, any name) -> object
        self._by_id: dict[int, _Obj] = {}
        # aliases that are not also a unique suffix (e.g. set by @name)
        self._aliases: dict[tuple[str, str], tuple[P4Type, str]] = {}
        for kind, types in _KINDS.items():
            for t in types:
                for full, obj in self.ctx.get_objs(t):
                    alias = obj.preamble.alias
                    if alias and self.ctx.get_obj(t, alias) is None:
                        self._aliases.setdefault((kind, alias), (t, full))

    @staticmethod
    def _make(obj: Any) -> _Obj:
        kind = obj.DESCRIPTOR.name
        fields: dict[str, tuple[int, int, int]] = {}
        if kind == "Table":
            fields = {f.name: (f.id, f.bitwidth, f.match_type) for f in obj.match_fields}
        elif kind == "Action":
            fields = {p.name: (p.id, p.bitwidth, 0) for p in obj.params}
        elif kind == "ControllerPacketMetadata":
            fields = {m.name: (m.id, m.bitwidth, 0) for m in obj.metadata}
        return _Obj(
            obj.preamble.id,
            obj.preamble.name,
            fields,
            {fid: (name, bw, mt) for name, (fid, bw, mt) in fields.items()},
        )

    def _intern(self, obj: Any) -> _Obj:
        o = self._by_id.get(obj.preamble.id)
        if o is None:
            o = self._by_id[obj.preamble.id] = self._make(obj)
        return o

    @classmethod
    def load(cls, path: str | Path) -> P4Info:
        p = Path(path)
        info = p4info_pb2.P4Info()
        data = p.read_bytes()
        if p.suffix in (".txt", ".txtpb", ".pbtxt"):
            text_format.Parse(data.decode(), info)
        else:
            info.ParseFromString(data)
        return cls(info)

    def get(self, kind: str, name: str) -> _Obj:
        o = self._objs.get((kind, name))
        if o is not None:
            return o
        found = None
        for t in _KINDS.get(kind, ()):
            found = self.ctx.get_obj(t, name)
            if found is not None:
                break
        else:
            alias = self._aliases.get((kind, name))
            if alias is not None:
                found = self.ctx.get_obj(*alias)
        if found is None:
            raise KeyError(f"no {kind} named {name!r} in the P4Info")
        o = self._objs[(kind, name)] = self._intern(found)
        return o

    def names(self, kind: str) -> list[str]:
        return sorted(full for t in _KINDS.get(kind, ()) for full, _obj in self.ctx.get_objs(t))

    def id(self, kind: str, name: str) -> int:
        return self.get(kind, name).id

    def name(self, obj_id: int) -> str:
        return self.by_id(obj_id).name

    def by_id(self, obj_id: int) -> _Obj:
        o = self._by_id.get(obj_id)
        if o is not None:
            return o
        try:
            return self._intern(self.ctx.get_obj_by_id(obj_id))
        except KeyError:
            raise KeyError(f"no P4Info object with id {obj_id}") from None

    def full_name(self, name: str) -> str:
        """Full name of a table, action or action profile given by any of its names."""
        for kind in ("table", "action", "profile"):
            try:
                return self.get(kind, name).name
            except KeyError:
                continue
        raise KeyError(f"no table, action or profile named {name!r} in the P4Info")

    def canonical(self, ent: Entity) -> Entity:
        """``ent`` as a read would return it: full names, don't-care matches
        (LPM prefix 0, ternary mask 0) dropped, groups without max_size."""
        if isinstance(ent, TableEntry):
            if (
                self.get("table", ent.table).name == ent.table
                and (ent.action is None or self.get("action", ent.action).name == ent.action)
                and not any(
                    (type(m) is Lpm and m.prefix_len == 0) or (type(m) is Ternary and m.mask == 0)
                    for m in ent.match.values()
                )
            ):
                return ent
            match = {
                k: m
                for k, m in ent.match.items()
                if not (isinstance(m, Lpm) and m.prefix_len == 0)
                and not (isinstance(m, Ternary) and m.mask == 0)
            }
            return TableEntry(
                self.get("table", ent.table).name,
                match,
                None if ent.action is None else self.get("action", ent.action).name,
                ent.params,
                ent.priority,
                ent.member_id,
                ent.group_id,
                ent.is_default,
            )
        if isinstance(ent, ActionProfileMember):
            return ActionProfileMember(
                self.get("profile", ent.profile).name,
                ent.member_id,
                self.get("action", ent.action).name,
                ent.params,
            )
        if isinstance(ent, ActionProfileGroup):
            return ActionProfileGroup(
                self.get("profile", ent.profile).name, ent.group_id, ent.members, 0
            )
        return ent

    # ------------------------------------------------------------- encode
    def _action_pb(self, action: str, params: Mapping[str, int]) -> p4runtime_pb2.Action:
        a = self.get("action", action)
        if set(params) != set(a.fields):
            raise ValueError(f"action {a.name}: params {sorted(params)} != {sorted(a.fields)}")
        return p4runtime_pb2.Action(
            action_id=a.id,
            params=[
                p4runtime_pb2.Action.Param(param_id=pid, value=encode_int(params[n], bw))
                for n, (pid, bw, _) in a.fields.items()
            ],
        )

    def entity_pb(self, ent: Entity) -> p4runtime_pb2.Entity:
        if isinstance(ent, TableEntry):
            t = self.get("table", ent.table)
            te = p4runtime_pb2.TableEntry(
                table_id=t.id, priority=ent.priority, is_default_action=ent.is_default
            )
            for fname, m in ent.match.items():
                if fname not in t.fields:
                    raise KeyError(f"table {t.name} has no match field {fname!r}")
                fid, bw, _ = t.fields[fname]
                fm = te.match.add(field_id=fid)
                if isinstance(m, Exact):
                    fm.exact.value = encode_int(m.value, bw)
                elif isinstance(m, Lpm):
                    if m.prefix_len == 0:  # don't-care: omitted per spec
                        del te.match[-1]
                        continue
                    fm.lpm.value = encode_int(m.value, bw)
                    fm.lpm.prefix_len = m.prefix_len
                elif isinstance(m, Ternary):
                    fm.ternary.value = encode_int(m.value, bw)
                    fm.ternary.mask = encode_int(m.mask, bw)
                elif isinstance(m, Range):
                    fm.range.low = encode_int(m.low, bw)
                    fm.range.high = encode_int(m.high, bw)
                else:
                    fm.optional.value = encode_int(m.value, bw)
            if ent.action is not None:
                te.action.action.CopyFrom(self._action_pb(ent.action, ent.params))
            elif ent.member_id is not None:
                te.action.action_profile_member_id = ent.member_id
            elif ent.group_id is not None:
                te.action.action_profile_group_id = ent.group_id
            return p4runtime_pb2.Entity(table_entry=te)
        if isinstance(ent, ActionProfileMember):
            return p4runtime_pb2.Entity(
                action_profile_member=p4runtime_pb2.ActionProfileMember(
                    action_profile_id=self.id("profile", ent.profile),
                    member_id=ent.member_id,
                    action=self._action_pb(ent.action, ent.params),
                )
            )
        if isinstance(ent, ActionProfileGroup):
            return p4runtime_pb2.Entity(
                action_profile_group=p4runtime_pb2.ActionProfileGroup(
                    action_profile_id=self.id("profile", ent.profile),
                    group_id=ent.group_id,
                    max_size=ent.max_size,
                    members=[
                        p4runtime_pb2.ActionProfileGroup.Member(member_id=m, weight=w)
                        for m, w in sorted(ent.members)
                    ],
                )
            )
        return p4runtime_pb2.Entity(
            packet_replication_engine_entry=p4runtime_pb2.PacketReplicationEngineEntry(
                multicast_group_entry=p4runtime_pb2.MulticastGroupEntry(
                    multicast_group_id=ent.group_id,
                    replicas=[
                        p4runtime_pb2.Replica(egress_port=r.port, instance=r.instance)
                        for r in sorted(ent.replicas, key=lambda r: (r.port, r.instance))
                    ],
                )
            )
        )

    # ------------------------------------------------------------- decode
    def table_entry_from_wire(self, data: bytes) -> TableEntry:
        """What entity_from_pb gives for an Entity holding this serialized
        TableEntry, read straight from the wire bytes (protobuf's pure-Python
        runtime takes ~300 µs an entry, and the agent reads whole tables
        when it reconciles). Raises WireFallback for anything it does not
        read exactly as protobuf would: then parse with protobuf."""
        table_id = priority = 0
        is_default = False
        matches: list[bytes] = []
        action_b: bytes | None = None
        for key, v in _wire_fields(data):
            if key == 0x08:
                table_id = _as_int(v)
            elif key == 0x12:
                matches.append(_as_bytes(v))
            elif key == 0x1A and action_b is None:
                action_b = _as_bytes(v)
            elif key == 0x20:
                priority = _as_int32(v)
            elif key == 0x40:
                is_default = bool(_as_int(v))
            else:  # fields the typed entry does not carry, or repeated messages
                raise WireFallback
        t = self.by_id(table_id)
        match: dict[str, FieldMatch] = {}
        for fm in matches:
            fid = 0
            kind: bytes | None = None
            for key, v in _wire_fields(fm):
                if key == 0x08:
                    fid = _as_int(v)
                elif kind is None and key in _MATCH_KEYS:
                    kind = _as_bytes(v)
                    mkey = key
                else:
                    raise WireFallback
            if kind is None:
                raise WireFallback
            a, b = _two_parts(kind, 0x10 if mkey == 0x22 else 0x12)
            fname = t.fields_by_id[fid][0]
            if mkey in (0x12, 0x3A) and b is not None:
                raise WireFallback  # Exact and Optional have one field
            if mkey == 0x12:
                match[fname] = Exact(decode_int(_as_bytes(a)))
            elif mkey == 0x22:
                match[fname] = Lpm(decode_int(_as_bytes(a)), _as_int32(b or 0))
            elif mkey == 0x1A:
                match[fname] = Ternary(decode_int(_as_bytes(a)), decode_int(_as_bytes(b)))
            elif mkey == 0x32:
                match[fname] = Range(decode_int(_as_bytes(a)), decode_int(_as_bytes(b)))
            else:
                match[fname] = Optional(decode_int(_as_bytes(a)))
        action: str | None = None
        params: dict[str, int] = {}
        member_id = group_id = None
        if action_b is not None:
            fields = _wire_fields(action_b)
            if len(fields) != 1:  # the oneof unset, or given twice
                raise WireFallback
            ((key, v),) = fields
            if key == 0x0A:
                action, params = self._action_from_wire(_as_bytes(v))
            elif key == 0x10:
                member_id = _as_int(v)
            elif key == 0x18:
                group_id = _as_int(v)
            else:
                raise WireFallback
        return TableEntry(t.name, match, action, params, priority, member_id, group_id, is_default)

    def _action_from_wire(self, data: bytes) -> tuple[str, dict[str, int]]:
        action_id = 0
        given: list[tuple[int, int]] = []
        for key, v in _wire_fields(data):
            if key == 0x08:
                action_id = _as_int(v)
            elif key == 0x22:
                pid = 0
                value = b""
                for k2, v2 in _wire_fields(_as_bytes(v)):
                    if k2 == 0x10:
                        pid = _as_int(v2)
                    elif k2 == 0x1A:
                        value = _as_bytes(v2)
                    else:
                        raise WireFallback
                given.append((pid, decode_int(value)))
            else:
                raise WireFallback
        obj = self.by_id(action_id)
        return obj.name, {obj.fields_by_id[pid][0]: value for pid, value in given}

    def _action_from_pb(self, a: p4runtime_pb2.Action) -> tuple[str, dict[str, int]]:
        obj = self.by_id(a.action_id)
        return obj.name, {obj.fields_by_id[p.param_id][0]: decode_int(p.value) for p in a.params}

    def entity_from_pb(self, e: p4runtime_pb2.Entity) -> Entity | None:
        which = e.WhichOneof("entity")
        if which == "table_entry":
            te = e.table_entry
            t = self.by_id(te.table_id)
            match: dict[str, FieldMatch] = {}
            for fm in te.match:
                fname = t.fields_by_id[fm.field_id][0]
                kind = fm.WhichOneof("field_match_type")
                if kind == "exact":
                    match[fname] = Exact(decode_int(fm.exact.value))
                elif kind == "lpm":
                    match[fname] = Lpm(decode_int(fm.lpm.value), fm.lpm.prefix_len)
                elif kind == "ternary":
                    match[fname] = Ternary(
                        decode_int(fm.ternary.value), decode_int(fm.ternary.mask)
                    )
                elif kind == "range":
                    match[fname] = Range(decode_int(fm.range.low), decode_int(fm.range.high))
                elif kind == "optional":
                    match[fname] = Optional(decode_int(fm.optional.value))
            act = te.action.WhichOneof("type")
            action: str | None = None
            params: dict[str, int] = {}
            member_id = group_id = None
            if act == "action":
                action, params = self._action_from_pb(te.action.action)
            elif act == "action_profile_member_id":
                member_id = te.action.action_profile_member_id
            elif act == "action_profile_group_id":
                group_id = te.action.action_profile_group_id
            return TableEntry(
                t.name,
                match,
                action,
                params,
                te.priority,
                member_id,
                group_id,
                te.is_default_action,
            )
        if which == "action_profile_member":
            m = e.action_profile_member
            action, params = self._action_from_pb(m.action)
            return ActionProfileMember(self.name(m.action_profile_id), m.member_id, action, params)
        if which == "action_profile_group":
            g = e.action_profile_group
            return ActionProfileGroup(
                self.name(g.action_profile_id),
                g.group_id,
                frozenset((m.member_id, m.weight) for m in g.members),
                g.max_size,
            )
        if which == "packet_replication_engine_entry":
            pre = e.packet_replication_engine_entry
            if pre.WhichOneof("type") != "multicast_group_entry":
                return None
            mg = pre.multicast_group_entry
            reps = frozenset(
                Replica(
                    r.egress_port if r.WhichOneof("port_kind") != "port" else decode_int(r.port),
                    r.instance,
                )
                for r in mg.replicas
            )
            return MulticastGroup(mg.multicast_group_id, reps)
        return None

    def wildcard_table_entries(self, table: str | None) -> p4runtime_pb2.Entity:
        te = p4runtime_pb2.TableEntry(table_id=self.id("table", table) if table else 0)
        return p4runtime_pb2.Entity(table_entry=te)


# --------------------------------------------------------------------------- wire decoder
# Reads of whole tables are the other hot path: table entries are read from
# the wire bytes of the ReadResponse (P4Info.table_entry_from_wire), the
# rest parsed by protobuf; tests/unit/test_ctl_p4rt.py checks both agree.


class WireFallback(Exception):
    """Bytes the wire decoder does not read exactly as protobuf: use protobuf."""


_MATCH_KEYS = frozenset({0x12, 0x1A, 0x22, 0x32, 0x3A})  # exact ternary lpm range optional


def _wire_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (key, value) pairs of a message: int for varints, bytes for
    length-delimited fields; WireFallback for other wire types and for
    truncated or overlong input."""
    out: list[tuple[int, int | bytes]] = []
    pos, end = 0, len(buf)
    try:
        while pos < end:
            key, pos = _read_varint(buf, pos)
            wt = key & 7
            if wt == 0:
                v, pos = _read_varint(buf, pos)
                out.append((key, v))
            elif wt == 2:
                n, pos = _read_varint(buf, pos)
                if pos + n > end:
                    raise WireFallback
                out.append((key, buf[pos : pos + n]))
                pos += n
            else:
                raise WireFallback
    except IndexError:
        raise WireFallback from None
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = buf[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 63:
            raise WireFallback


def _as_int(v: int | bytes) -> int:
    """A uint32 (ids) or bool; larger varints are left to protobuf."""
    if type(v) is not int or v >> 32:
        raise WireFallback
    return v


def _as_int32(v: int | bytes) -> int:
    """An int32: below 2**31, or negative sign-extended to 64 bits."""
    if type(v) is not int:
        raise WireFallback
    if v < 1 << 31:
        return v
    if (1 << 64) - (1 << 31) <= v < 1 << 64:
        return v - (1 << 64)
    raise WireFallback


def _as_bytes(v: int | bytes | None) -> bytes:
    if v is None:
        return b""
    if type(v) is not bytes:
        raise WireFallback
    return v


def _two_parts(buf: bytes, second: int) -> tuple[int | bytes | None, int | bytes | None]:
    """Fields 1 (bytes) and ``second`` (key) of a match message, last wins."""
    a = b = None
    for key, v in _wire_fields(buf):
        if key == 0x0A:
            a = v
        elif key == second:
            b = v
        else:
            raise WireFallback
    return a, b


def read_response_entities(data: bytes) -> list[bytes]:
    """The serialized Entities of a serialized ReadResponse."""
    try:
        fields = _wire_fields(data)
        if all(key == 0x0A for key, _ in fields):
            return [_as_bytes(v) for _, v in fields]
    except WireFallback:
        pass
    return [e.SerializeToString() for e in p4runtime_pb2.ReadResponse.FromString(data).entities]


# --------------------------------------------------------------------------- wire encoder
# Writes are the hot path and the protobuf runtime here is pure Python, so
# entities are encoded straight to protobuf wire bytes (field numbers of
# p4runtime.proto v1.4; tests/unit/test_ctl_p4rt.py checks the bytes equal
# SerializeToString of the protobuf path) and cached per entity.


_SMALL = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _u(num: int, v: int) -> bytes:
    """Varint field (omitted when 0, like proto3)."""
    return _varint(num << 3) + _varint(v) if v else b""


def _ld(num: int, data: bytes) -> bytes:
    """Length-delimited field (bytes or sub-message)."""
    return _varint((num << 3) | 2) + _varint(len(data)) + data


class WireEncoder:
    """Entity -> p4.v1.Entity wire bytes, cached (entities are immutable)."""

    def __init__(self, info: P4Info, cache_size: int = 200_000) -> None:
        self.info = info
        self.cache_size = cache_size
        self._cache: dict[Entity, bytes] = {}
        # per action: (name, id field bytes, [(param, param id field bytes, width)])
        self._actions: dict[str, tuple[str, bytes, list[tuple[str, bytes, int]]]] = {}
        # per table: (name, id field bytes, {field: (field id field bytes, width)})
        self._tables: dict[str, tuple[str, bytes, dict[str, tuple[bytes, int]]]] = {}

    def _action(self, action: str, params: Mapping[str, int]) -> bytes:
        a = self._actions.get(action)
        if a is None:
            o = self.info.get("action", action)
            a = self._actions[action] = (
                o.name,
                _u(1, o.id),
                [(n, _u(2, pid), bw) for n, (pid, bw, _) in o.fields.items()],
            )
        name, head, fields = a
        if len(params) != len(fields) or any(n not in params for n, _h, _b in fields):
            want = sorted(n for n, _h, _b in fields)
            raise ValueError(f"action {name}: params {sorted(params)} != {want}")
        parts = [head]
        for n, phead, bw in fields:
            parts.append(_ld(4, phead + _ld(3, encode_int(params[n], bw))))
        return b"".join(parts)

    def _table(self, table: str) -> tuple[str, bytes, dict[str, tuple[bytes, int]]]:
        t = self._tables.get(table)
        if t is None:
            o = self.info.get("table", table)
            t = self._tables[table] = (
                o.name,
                _u(1, o.id),
                {n: (_u(1, fid), bw) for n, (fid, bw, _) in o.fields.items()},
            )
        return t

    def entity(self, ent: Entity) -> bytes:
        b = self._cache.get(ent)
        if b is None:
            b = self._entity(ent)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[ent] = b
        return b

    def _entity(self, ent: Entity) -> bytes:
        if isinstance(ent, TableEntry):
            tname, out, tfields = self._table(ent.table)
            for fname, m in ent.match.items():
                f = tfields.get(fname)
                if f is None:
                    raise KeyError(f"table {tname} has no match field {fname!r}")
                fhead, bw = f
                if type(m) is Exact:
                    body = _ld(2, _ld(1, encode_int(m.value, bw)))
                elif isinstance(m, Lpm):
                    if m.prefix_len == 0:
                        continue
                    body = _ld(4, _ld(1, encode_int(m.value, bw)) + _u(2, m.prefix_len))
                elif isinstance(m, Ternary):
                    body = _ld(3, _ld(1, encode_int(m.value, bw)) + _ld(2, encode_int(m.mask, bw)))
                elif isinstance(m, Range):
                    body = _ld(6, _ld(1, encode_int(m.low, bw)) + _ld(2, encode_int(m.high, bw)))
                else:
                    body = _ld(7, _ld(1, encode_int(m.value, bw)))
                out += _ld(2, fhead + body)
            if ent.action is not None:
                out += _ld(3, _ld(1, self._action(ent.action, ent.params)))
            elif ent.member_id is not None:
                out += _ld(3, _u(2, ent.member_id))
            elif ent.group_id is not None:
                out += _ld(3, _u(3, ent.group_id))
            out += _u(4, ent.priority) + _u(8, int(ent.is_default))
            return _ld(2, out)
        if isinstance(ent, ActionProfileMember):
            body = (
                _u(1, self.info.id("profile", ent.profile))
                + _u(2, ent.member_id)
                + _ld(3, self._action(ent.action, ent.params))
            )
            return _ld(3, body)
        if isinstance(ent, ActionProfileGroup):
            body = _u(1, self.info.id("profile", ent.profile)) + _u(2, ent.group_id)
            for mid, w in sorted(ent.members):
                body += _ld(3, _u(1, mid) + _u(2, w))
            return _ld(4, body + _u(4, ent.max_size))
        reps = b"".join(
            _ld(2, _u(1, r.port) + _u(2, r.instance))
            for r in sorted(ent.replicas, key=lambda r: (r.port, r.instance))
        )
        return _ld(9, _ld(1, _u(1, ent.group_id) + reps))

    def write_request(self, device_id: int, election_id: int, updates: Sequence[Update]) -> bytes:
        """A whole WriteRequest (CONTINUE_ON_ERROR) as wire bytes."""
        election = _u(1, election_id >> 64) + _u(2, election_id & (2**64 - 1))
        parts = [_u(1, device_id), _ld(3, election)]
        for u in updates:
            parts.append(_ld(4, _u(1, u.type.value) + _ld(2, self.entity(u.entity))))
        parts.append(_u(5, p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR))
        return b"".join(parts)


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A compiled program: bmv2 JSON + P4Info, identified by a cookie."""

    p4info: P4Info
    device_config: bytes
    cookie: int

    @classmethod
    def load(cls, bmv2_json: str | Path, p4info: P4Info) -> Pipeline:
        data = Path(bmv2_json).read_bytes()
        json.loads(data)  # fail early on a broken file
        h = hashlib.sha256(data + p4info.proto.SerializeToString(deterministic=True))
        return cls(p4info, data, int.from_bytes(h.digest()[:8], "big"))


# --------------------------------------------------------------------------- client


def _grpc_error_details(err: grpc.aio.AioRpcError) -> list[p4runtime_pb2.Error]:
    """Per-update p4.v1.Error list from a failed Write (trailing metadata)."""
    for k, v in err.trailing_metadata() or ():
        if k == "grpc-status-details-bin" and isinstance(v, bytes):
            st = status_pb2.Status()
            st.ParseFromString(v)
            out = []
            for anyd in st.details:
                pe = p4runtime_pb2.Error()
                if anyd.Unpack(pe):
                    out.append(pe)
            return out
    return []


class P4RuntimeClient:
    """One P4Runtime connection to one device (asyncio, grpc.aio)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        p4info: P4Info,
        device_id: int,
        election_id: int,
        address: str,
    ) -> None:
        self.address = address
        self.p4info = p4info
        self.device_id = device_id
        self.election_id = election_id
        self._channel = channel
        self._stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        self.encoder = WireEncoder(p4info)
        self._write_raw = channel.unary_unary(
            "/p4.v1.P4Runtime/Write",
            request_serializer=None,
            response_deserializer=p4runtime_pb2.WriteResponse.FromString,
        )
        self._read_raw = channel.unary_stream(
            "/p4.v1.P4Runtime/Read",
            request_serializer=p4runtime_pb2.ReadRequest.SerializeToString,
            response_deserializer=None,
        )
        self._out: asyncio.Queue[p4runtime_pb2.StreamMessageRequest | None] = asyncio.Queue()
        self._packets: asyncio.Queue[PacketIn] = asyncio.Queue(maxsize=10000)
        self._primary = asyncio.Event()
        self._arbitrated = asyncio.Event()
        self._stream_done = asyncio.Event()
        self.stream_error: BaseException | None = None
        self.is_primary = False
        #: times this client became primary on this stream (a lost and regained
        #: primary shows as a new term, however quickly it happened)
        self.primary_terms = 0
        self._backup = asyncio.Event()  # set while not primary
        self._backup.set()
        self.primary_election_id: int | None = None
        self._stream_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- connection
    @classmethod
    async def connect(
        cls,
        address: str,
        p4info: P4Info,
        device_id: int = 0,
        election_id: int = 1,
        tls: TlsOptions | None = None,
        timeout: float = 10.0,
    ) -> P4RuntimeClient:
        """Open the channel and the StreamChannel; send our arbitration.

        Returns once the device answered the arbitration (primary or backup);
        raises P4RuntimeError if it does not within ``timeout``.
        """
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", 256 << 20),
            ("grpc.max_send_message_length", 256 << 20),
            # per-update errors come back in the trailers: one Error per update
            ("grpc.max_metadata_size", 64 << 20),
        ]
        if tls is not None:

            def rd(p: Path | None) -> bytes | None:
                return p.read_bytes() if p else None

            creds = grpc.ssl_channel_credentials(rd(tls.root_cert), rd(tls.key), rd(tls.cert))
            if tls.server_name:
                opts.append(("grpc.ssl_target_name_override", tls.server_name))
            channel = grpc.aio.secure_channel(address, creds, options=opts)
        else:
            channel = grpc.aio.insecure_channel(address, options=opts)
        self = cls(channel, p4info, device_id, election_id, address)
        what = "no connection (unreachable, or TLS refused)"
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
            what = "no arbitration answer"
            self._stream_task = asyncio.create_task(self._run_stream())
            self._send_arbitration()
            await asyncio.wait_for(self._wait_arbitrated(), timeout)
        except TimeoutError as e:
            await self.close()
            raise P4RuntimeError(f"{address}: {what} within {timeout}s") from e
        except BaseException:
            await self.close()
            raise
        return self

    async def _wait_arbitrated(self) -> None:
        arb = asyncio.ensure_future(self._arbitrated.wait())
        done = asyncio.ensure_future(self._stream_done.wait())
        try:
            await asyncio.wait({arb, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arb.cancel()
            done.cancel()
        if not self._arbitrated.is_set():
            raise P4RuntimeError(f"{self.address}: stream closed: {self.stream_error}")

    def _election(self) -> p4runtime_pb2.Uint128:
        return p4runtime_pb2.Uint128(
            high=self.election_id >> 64, low=self.election_id & (2**64 - 1)
        )

    def _send_arbitration(self) -> None:
        self._out.put_nowait(
            p4runtime_pb2.StreamMessageRequest(
                arbitration=p4runtime_pb2.MasterArbitrationUpdate(
                    device_id=self.device_id, election_id=self._election()
                )
            )
        )

    async def _requests(self) -> AsyncIterator[p4runtime_pb2.StreamMessageRequest]:
        while True:
            msg = await self._out.get()
            if msg is None:
                return
            yield msg

    async def _run_stream(self) -> None:
        try:
            call = self._stub.StreamChannel(self._requests())
            async for resp in call:
                which = resp.WhichOneof("update")
                if which == "arbitration":
                    arb = resp.arbitration
                    self.primary_election_id = (arb.election_id.high << 64) | arb.election_id.low
                    was_primary = self.is_primary
                    self.is_primary = arb.status.code == code_pb2.OK
                    if self.is_primary:
                        if not was_primary:
                            self.primary_terms += 1
                        self._backup.clear()
                        self._primary.set()
                    else:
                        self._primary.clear()
                        self._backup.set()
                    self._arbitrated.set()
                    log.info(
                        "p4rt %s: %s (primary election id %s)",
                        self.address,
                        "primary" if self.is_primary else "backup",
                        self.primary_election_id,
                    )
                elif which == "packet":
                    md: dict[str, int] = {}
                    with contextlib.suppress(KeyError):
                        obj = self.p4info.get("packet", "packet_in")
                        for m in resp.packet.metadata:
                            md[obj.fields_by_id[m.metadata_id][0]] = decode_int(m.value)
                    with contextlib.suppress(asyncio.QueueFull):
                        self._packets.put_nowait(PacketIn(resp.packet.payload, md))
                elif which == "error":
                    log.warning("p4rt %s: stream error %s", self.address, resp.error)
        except grpc.aio.AioRpcError as e:
            self.stream_error = e
            if e.code() != grpc.StatusCode.CANCELLED:
                log.warning("p4rt %s: stream ended: %s", self.address, e.code())
        except asyncio.CancelledError:
            pass
        finally:
            self.is_primary = False
            self._primary.clear()
            self._backup.set()
            self._stream_done.set()

    @property
    def connected(self) -> bool:
        return not self._stream_done.is_set()

    async def wait_closed(self) -> None:
        """Returns when the stream channel ended (switch gone, or close())."""
        await self._stream_done.wait()

    async def wait_primary(self, timeout: float | None = None) -> None:
        """Wait until this client is primary; raise P4RuntimeError on timeout/stream end."""

        async def _w() -> None:
            p = asyncio.ensure_future(self._primary.wait())
            d = asyncio.ensure_future(self._stream_done.wait())
            try:
                await asyncio.wait({p, d}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                p.cancel()
                d.cancel()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_w(), timeout)
        if not self.is_primary:
            raise P4RuntimeError(
                f"{self.address}: not primary (primary election id {self.primary_election_id})"
            )

    async def wait_not_primary(self) -> None:
        """Returns when this client is not (or no longer) primary, or the stream ended."""
        await self._backup.wait()

    async def close(self) -> None:
        self._out.put_nowait(None)
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stream_task
        await self._channel.close()

    # ------------------------------------------------------------- pipeline
    async def get_pipeline_cookie(self) -> int | None:
        try:
            resp = await self._stub.GetForwardingPipelineConfig(
                p4runtime_pb2.GetForwardingPipelineConfigRequest(
                    device_id=self.device_id,
                    response_type=p4runtime_pb2.GetForwardingPipelineConfigRequest.COOKIE_ONLY,
                )
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:  # no pipeline yet
                return None
            raise P4RuntimeError(f"GetForwardingPipelineConfig: {e.details()}", e.code()) from e
        if not resp.config.HasField("cookie"):
            return None
        return int(resp.config.cookie.cookie)

    async def set_pipeline(self, pipeline: Pipeline, force: bool = False) -> bool:
        """VERIFY_AND_COMMIT the pipeline unless the device already runs the same
        cookie (then only VERIFY, leaving its state untouched). Returns True when
        a new pipeline was committed (the switch state is then empty)."""
        same = not force and await self.get_pipeline_cookie() == pipeline.cookie
        act = p4runtime_pb2.SetForwardingPipelineConfigRequest
        req = act(
            device_id=self.device_id,
            election_id=self._election(),
            action=act.VERIFY if same else act.VERIFY_AND_COMMIT,
            config=p4runtime_pb2.ForwardingPipelineConfig(
                p4info=pipeline.p4info.proto,
                p4_device_config=pipeline.device_config,
                cookie=p4runtime_pb2.ForwardingPipelineConfig.Cookie(cookie=pipeline.cookie),
            ),
        )
        try:
            await self._stub.SetForwardingPipelineConfig(req)
        except grpc.aio.AioRpcError as e:
            raise P4RuntimeError(f"SetForwardingPipelineConfig: {e.details()}", e.code()) from e
        return not same

    # ------------------------------------------------------------- write
    async def write(self, updates: Sequence[Update]) -> WriteResult:
        """One WriteRequest (CONTINUE_ON_ERROR) with all updates; failures are
        returned per update (not raised). Raises P4RuntimeError only for
        errors that are not per-update (not primary, connection lost...)."""
        if not updates:
            return WriteResult(0)
        req = self.encoder.write_request(self.device_id, self.election_id, updates)
        try:
            await self._write_raw(req)
        except grpc.aio.AioRpcError as e:
            details = _grpc_error_details(e)
            if e.code() != grpc.StatusCode.UNKNOWN or len(details) != len(updates):
                raise P4RuntimeError(f"Write: {e.code().name}: {e.details()}", e.code()) from e
            errors = tuple(
                UpdateError(i, updates[i], d.canonical_code, d.message)
                for i, d in enumerate(details)
                if d.canonical_code != code_pb2.OK
            )
            return WriteResult(len(updates), errors)
        return WriteResult(len(updates))

    # ------------------------------------------------------------- read
    async def read(self, entities: Sequence[p4runtime_pb2.Entity]) -> list[p4runtime_pb2.Entity]:
        """Raw read of (wildcard) protobuf entities; prefer the typed readers."""
        req = p4runtime_pb2.ReadRequest(device_id=self.device_id, entities=entities)
        out: list[p4runtime_pb2.Entity] = []
        try:
            async for resp in self._stub.Read(req):
                out.extend(resp.entities)
        except grpc.aio.AioRpcError as e:
            raise P4RuntimeError(f"Read: {e.code().name}: {e.details()}", e.code()) from e
        return out

    async def _read_typed(self, entities: Sequence[p4runtime_pb2.Entity]) -> list[Entity]:
        """A read as typed entities: table entries decoded from the wire
        bytes, the rest (and anything unusual) through protobuf."""
        req = p4runtime_pb2.ReadRequest(device_id=self.device_id, entities=entities)
        out: list[Entity] = []
        try:
            async for resp in self._read_raw(req):
                for blob in read_response_entities(resp):
                    ent = self._entity_from_wire(blob)
                    if ent is not None:
                        out.append(ent)
        except grpc.aio.AioRpcError as e:
            raise P4RuntimeError(f"Read: {e.code().name}: {e.details()}", e.code()) from e
        return out

    def _entity_from_wire(self, blob: bytes) -> Entity | None:
        if blob[:1] == b"\x12":  # Entity.table_entry
            try:
                fields = _wire_fields(blob)
                if len(fields) == 1 and fields[0][0] == 0x12:
                    return self.p4info.table_entry_from_wire(_as_bytes(fields[0][1]))
            except WireFallback:
                pass
        return self.p4info.entity_from_pb(p4runtime_pb2.Entity.FromString(blob))

    async def read_table_entries(self, table: str | None = None) -> list[TableEntry]:
        """All (non-default) entries of one table, or of every table."""
        ents = await self._read_typed([self.p4info.wildcard_table_entries(table)])
        return [e for e in ents if isinstance(e, TableEntry)]

    async def read_default_entry(self, table: str) -> TableEntry:
        te = p4runtime_pb2.TableEntry(
            table_id=self.p4info.id("table", table), is_default_action=True
        )
        ents = await self._read_typed([p4runtime_pb2.Entity(table_entry=te)])
        for e in ents:
            if isinstance(e, TableEntry):
                return e
        raise P4RuntimeError(f"no default entry read back for {table}")

    async def read_profile(
        self, profile: str | None = None
    ) -> tuple[list[ActionProfileMember], list[ActionProfileGroup]]:
        """Members and groups of one action profile/selector, or of all."""
        pid = self.p4info.id("profile", profile) if profile else 0
        ents = await self._read_typed(
            [
                p4runtime_pb2.Entity(
                    action_profile_member=p4runtime_pb2.ActionProfileMember(action_profile_id=pid)
                ),
                p4runtime_pb2.Entity(
                    action_profile_group=p4runtime_pb2.ActionProfileGroup(action_profile_id=pid)
                ),
            ]
        )
        return (
            [e for e in ents if isinstance(e, ActionProfileMember)],
            [e for e in ents if isinstance(e, ActionProfileGroup)],
        )

    async def read_multicast_groups(self) -> list[MulticastGroup]:
        pre = p4runtime_pb2.PacketReplicationEngineEntry(
            multicast_group_entry=p4runtime_pb2.MulticastGroupEntry()
        )
        ents = await self._read_typed([p4runtime_pb2.Entity(packet_replication_engine_entry=pre)])
        return [e for e in ents if isinstance(e, MulticastGroup)]

    async def read_all(self, tables: Iterable[str] | None = None) -> set[Entity]:
        """Snapshot of all table entries, profile members/groups and multicast
        groups (what the agent reconciles against)."""
        pbs: list[p4runtime_pb2.Entity] = []
        if tables is None:
            pbs.append(self.p4info.wildcard_table_entries(None))
        else:
            pbs.extend(self.p4info.wildcard_table_entries(t) for t in tables)
        out: set[Entity] = set(await self._read_typed(pbs))
        # one read per profile: not every target takes a wildcard profile id
        for profile in self.p4info.names("profile"):
            members, groups = await self.read_profile(profile)
            out.update(members)
            out.update(groups)
        out.update(await self.read_multicast_groups())
        return out

    async def read_counters(
        self, counter: str, index: int | None = None
    ) -> dict[int, CounterValue]:
        """Indirect counter cells: one index, or all (wildcard)."""
        ce = p4runtime_pb2.CounterEntry(counter_id=self.p4info.id("counter", counter))
        if index is not None:
            ce.index.index = index
        out: dict[int, CounterValue] = {}
        for pb in await self.read([p4runtime_pb2.Entity(counter_entry=ce)]):
            c = pb.counter_entry
            out[c.index.index] = CounterValue(c.data.packet_count, c.data.byte_count)
        return out

    async def write_meters(self, meter: str, rates: Mapping[int, MeterRate]) -> None:
        """Configure indirect meter cells (MODIFY: a meter cell always exists);
        P4RuntimeError when the switch refuses any."""
        mid = self.p4info.id("meter", meter)
        req = p4runtime_pb2.WriteRequest(
            device_id=self.device_id,
            election_id=self._election(),
            atomicity=p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR,
        )
        for index, r in sorted(rates.items()):
            me = p4runtime_pb2.MeterEntry(meter_id=mid)
            me.index.index = index
            me.config.cir, me.config.cburst = r.cir, r.cburst
            me.config.pir, me.config.pburst = r.pir, r.pburst
            req.updates.add(
                type=p4runtime_pb2.Update.MODIFY, entity=p4runtime_pb2.Entity(meter_entry=me)
            )
        try:
            await self._write_raw(req.SerializeToString())
        except grpc.aio.AioRpcError as e:
            msgs = [d.message for d in _grpc_error_details(e) if d.canonical_code != code_pb2.OK]
            raise P4RuntimeError(
                f"write meter {meter}: {e.code().name}: {'; '.join(msgs) or e.details()}", e.code()
            ) from None

    async def read_meters(self, meter: str) -> dict[int, MeterRate]:
        """The configured cells of an indirect meter (unconfigured ones are absent)."""
        me = p4runtime_pb2.MeterEntry(meter_id=self.p4info.id("meter", meter))
        out: dict[int, MeterRate] = {}
        for pb in await self.read([p4runtime_pb2.Entity(meter_entry=me)]):
            m = pb.meter_entry
            if m.HasField("config"):
                c = m.config
                out[m.index.index] = MeterRate(c.cir, c.cburst, c.pir, c.pburst)
        return out

    # ------------------------------------------------------------- packets
    async def packet_out(self, payload: bytes, metadata: Mapping[str, int]) -> None:
        obj = self.p4info.get("packet", "packet_out")
        po = p4runtime_pb2.PacketOut(payload=payload)
        for name, value in metadata.items():
            mid, bw, _ = obj.fields[name]
            po.metadata.add(metadata_id=mid, value=encode_int(value, bw))
        await self._out.put(p4runtime_pb2.StreamMessageRequest(packet=po))

    def drain_packet_ins(self) -> int:
        """Drop the packet-ins received and not read yet; how many."""
        n = 0
        while not self._packets.empty():
            self._packets.get_nowait()
            n += 1
        return n

    async def packet_in(self, timeout: float | None = None) -> PacketIn:
        """Next packet-in; asyncio.TimeoutError when none arrives in time."""
        return await asyncio.wait_for(self._packets.get(), timeout)
