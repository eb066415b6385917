"""P4Runtime entity store of the embedded target: pure and synchronous.

`DeviceState` validates P4Runtime entities against the P4Info, keeps the
canonical copy of everything written (what reads return, and what duplicate
detection looks at) and drives the packet engine through `softswitch.api`.
It knows nothing about gRPC: failures are `P4RTError` carrying a
``google.rpc.Code`` and a precise message; the servicer in
`softswitch.p4runtime` turns them into statuses.

Rules follow the P4Runtime specification (v1.4) and what simple_switch_grpc
(PI) does where the spec leaves room:

* bytestrings: a value of a W-bit field may come canonical (no leading zero
  bytes) or padded to ceil(W/8) bytes; longer strings, empty strings and
  values with bits set beyond W are INVALID_ARGUMENT. Reads return canonical
  bytestrings (zero is ``b"\\x00"``).
* match fields: exact fields are mandatory; a don't-care ternary / range /
  optional / lpm field is omitted (an all-zero mask, a zero prefix length or a
  full range is INVALID_ARGUMENT); lpm values with bits beyond the prefix and
  ternary values with bits outside the mask are INVALID_ARGUMENT.
* priority: > 0 on tables with ternary, range or optional fields, 0 elsewhere.
* INSERT of an existing entity is ALREADY_EXISTS, MODIFY / DELETE of a missing
  one NOT_FOUND; writes to const tables or to a const default action are
  PERMISSION_DENIED; deleting a member or group still referenced is
  FAILED_PRECONDITION; a full table is RESOURCE_EXHAUSTED.
* the device config is the bmv2 JSON text (like simple_switch_grpc).
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.rpc import code_pb2
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2

from softswitch import api
from softswitch.p4rt_wire import (
    ActionSpec,
    EntryParser,
    FastEntry,
    FieldSpec,
    RawMatch,
    RawTableEntry,
    compile_entry_parser,
    decode_table_entry,
    encode_table_entry,
    raw_from_proto,
    raw_to_proto,
    table_entry_entity,
    table_entry_prefix,
)

log = logging.getLogger(__name__)

Code = int  # a google.rpc.Code value

OK = code_pb2.OK
INVALID_ARGUMENT = code_pb2.INVALID_ARGUMENT
NOT_FOUND = code_pb2.NOT_FOUND
ALREADY_EXISTS = code_pb2.ALREADY_EXISTS
PERMISSION_DENIED = code_pb2.PERMISSION_DENIED
FAILED_PRECONDITION = code_pb2.FAILED_PRECONDITION
OUT_OF_RANGE = code_pb2.OUT_OF_RANGE
UNIMPLEMENTED = code_pb2.UNIMPLEMENTED
RESOURCE_EXHAUSTED = code_pb2.RESOURCE_EXHAUSTED
INTERNAL = code_pb2.INTERNAL

_MF = p4info_pb2.MatchField
_MATCH_KIND = {
    _MF.EXACT: "exact",
    _MF.LPM: "lpm",
    _MF.TERNARY: "ternary",
    _MF.RANGE: "range",
    _MF.OPTIONAL: "optional",
}
_SCOPE = p4info_pb2.ActionRef
_UPD = p4runtime_pb2.Update
_CFG = p4runtime_pb2.SetForwardingPipelineConfigRequest
_GETCFG = p4runtime_pb2.GetForwardingPipelineConfigRequest


class P4RTError(Exception):
    """A request the device refuses: a google.rpc code and a message."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _err(code: Code, message: str) -> P4RTError:
    return P4RTError(code, message)


# --- bytestrings ---------------------------------------------------------------


def decode_bytes(data: bytes, bitwidth: int, what: str) -> int:
    """The value of a P4Runtime bytestring for a ``bitwidth``-bit field."""
    if not data:
        raise _err(INVALID_ARGUMENT, f"{what}: empty bytestring")
    nbytes = (bitwidth + 7) // 8
    if len(data) > nbytes:
        raise _err(
            INVALID_ARGUMENT,
            f"{what}: bytestring of {len(data)} bytes does not fit in {bitwidth} bits",
        )
    value = int.from_bytes(data, "big")
    if value >> bitwidth:
        raise _err(INVALID_ARGUMENT, f"{what}: value {value:#x} does not fit in {bitwidth} bits")
    return value


def encode_bytes(value: int) -> bytes:
    """Canonical bytestring (P4Runtime spec §8.4): shortest, zero is one byte."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def canonical_bytes(data: bytes) -> bytes:
    """A non-empty bytestring in canonical form (its leading zero bytes off)."""
    return data if len(data) == 1 or data[0] else encode_bytes(int.from_bytes(data, "big"))


# --- P4Info index --------------------------------------------------------------


@dataclass(frozen=True)
class MatchFieldInfo:
    id: int
    name: str
    bitwidth: int
    match_type: int
    position: int


@dataclass(frozen=True)
class ActionInfo:
    id: int
    name: str
    params: tuple[tuple[int, str, int], ...]  # (id, name, bitwidth) in order
    distinct_ids: bool = True  # no param id appears twice


@dataclass(frozen=True)
class TableInfo:
    id: int
    name: str
    fields: tuple[MatchFieldInfo, ...]
    fields_by_id: Mapping[int, MatchFieldInfo]
    actions: Mapping[int, int]  # action id -> ActionRef scope
    const_default_action_id: int
    implementation_id: int
    direct_counter_id: int
    direct_meter_id: int
    size: int
    is_const: bool
    needs_priority: bool


@dataclass(frozen=True)
class ProfileInfo:
    id: int
    name: str
    table_ids: tuple[int, ...]
    with_selector: bool
    size: int
    max_group_size: int


@dataclass(frozen=True)
class IndexedInfo:
    """A counter, meter or register array."""

    id: int
    name: str
    size: int
    unit: int = 0  # CounterSpec / MeterSpec unit
    bitwidth: int = 0  # registers


@dataclass(frozen=True)
class PacketMetadataInfo:
    name: str
    fields: tuple[tuple[int, str, int], ...]  # (id, name, bitwidth) in header order

    @property
    def header_bits(self) -> int:
        return sum(bw for _, _, bw in self.fields)


class P4InfoIndex:
    """Lookups by id over a P4Info; raises P4RTError for an inconsistent one."""

    def __init__(self, p4info: p4info_pb2.P4Info) -> None:
        self.p4info = p4info
        self.actions: dict[int, ActionInfo] = {}
        for a in p4info.actions:
            self.actions[a.preamble.id] = ActionInfo(
                a.preamble.id,
                a.preamble.name,
                tuple((p.id, p.name, p.bitwidth) for p in a.params),
                len({p.id for p in a.params}) == len(a.params),
            )
        self.direct_counters: dict[int, IndexedInfo] = {}
        direct_counter_of: dict[int, int] = {}
        for dc in p4info.direct_counters:
            self.direct_counters[dc.preamble.id] = IndexedInfo(
                dc.preamble.id, dc.preamble.name, 0, dc.spec.unit
            )
            direct_counter_of[dc.direct_table_id] = dc.preamble.id
        direct_meter_of = {dm.direct_table_id: dm.preamble.id for dm in p4info.direct_meters}
        self.tables: dict[int, TableInfo] = {}
        for t in p4info.tables:
            fields = tuple(
                MatchFieldInfo(mf.id, mf.name, mf.bitwidth, mf.match_type, pos)
                for pos, mf in enumerate(t.match_fields)
            )
            for a in t.action_refs:
                if a.id not in self.actions:
                    raise _err(
                        INVALID_ARGUMENT, f"P4Info: table {t.preamble.name} refers to action {a.id}"
                    )
            self.tables[t.preamble.id] = TableInfo(
                id=t.preamble.id,
                name=t.preamble.name,
                fields=fields,
                fields_by_id={f.id: f for f in fields},
                actions={a.id: a.scope for a in t.action_refs},
                const_default_action_id=t.const_default_action_id,
                implementation_id=t.implementation_id,
                direct_counter_id=direct_counter_of.get(t.preamble.id, 0),
                direct_meter_id=direct_meter_of.get(t.preamble.id, 0),
                size=t.size,
                is_const=t.is_const_table,
                needs_priority=any(
                    f.match_type in (_MF.TERNARY, _MF.RANGE, _MF.OPTIONAL) for f in fields
                ),
            )
        self.profiles: dict[int, ProfileInfo] = {}
        for ap in p4info.action_profiles:
            self.profiles[ap.preamble.id] = ProfileInfo(
                ap.preamble.id,
                ap.preamble.name,
                tuple(ap.table_ids),
                ap.with_selector,
                ap.size,
                ap.max_group_size,
            )
        self.counters = {
            c.preamble.id: IndexedInfo(c.preamble.id, c.preamble.name, c.size, c.spec.unit)
            for c in p4info.counters
        }
        self.meters = {
            m.preamble.id: IndexedInfo(m.preamble.id, m.preamble.name, m.size, m.spec.unit)
            for m in p4info.meters
        }
        self.registers = {
            r.preamble.id: IndexedInfo(
                r.preamble.id, r.preamble.name, r.size, 0, r.type_spec.bitstring.bit.bitwidth
            )
            for r in p4info.registers
        }
        self.packet_metadata: dict[str, PacketMetadataInfo] = {
            c.preamble.name: PacketMetadataInfo(
                c.preamble.name, tuple((m.id, m.name, m.bitwidth) for m in c.metadata)
            )
            for c in p4info.controller_packet_metadata
        }
        self.action_ids_by_name = {a.name: a.id for a in self.actions.values()}

    def table(self, table_id: int) -> TableInfo:
        t = self.tables.get(table_id)
        if t is None:
            raise _err(NOT_FOUND, f"unknown table id {table_id}")
        return t

    def action(self, action_id: int) -> ActionInfo:
        a = self.actions.get(action_id)
        if a is None:
            raise _err(NOT_FOUND, f"unknown action id {action_id}")
        return a

    def profile(self, profile_id: int) -> ProfileInfo:
        p = self.profiles.get(profile_id)
        if p is None:
            raise _err(NOT_FOUND, f"unknown action profile id {profile_id}")
        return p


# --- stored state --------------------------------------------------------------

MatchKey = tuple[tuple[int, tuple[int, ...]], ...]  # ((field id, values...), ...) by field id


class _Entry:
    """A stored table entry: its canonical RawTableEntry, or, for an entry a
    compiled entry parser took, the TableEntry bytes it is decoded from
    when first needed (most entries are never read back)."""

    __slots__ = ("_raw", "_wire", "handle", "oneshot", "refs")

    def __init__(
        self,
        raw: RawTableEntry | None,
        handle: int,
        refs: tuple[tuple[str, int], ...],  # ("member"|"group", id) it references
        wire: bytes = b"",
    ) -> None:
        self._raw = raw
        self._wire = wire
        self.handle = handle
        self.refs = refs
        self.oneshot: _OneShot | None = None

    @property
    def raw(self) -> RawTableEntry:
        if self._raw is None:
            raw = decode_table_entry(self._wire)
            # canonical values (as the general path stores them): the parser
            # took only exact and lpm matches and direct-action params
            raw.matches = [
                (fid, kind, canonical_bytes(a), b, plen) for fid, kind, a, b, plen in raw.matches
            ]
            raw.params = [(pid, canonical_bytes(v)) for pid, v in raw.params]
            self._raw, self._wire = raw, b""
        return self._raw

    @raw.setter
    def raw(self, raw: RawTableEntry) -> None:
        self._raw, self._wire = raw, b""

    def set_wire(self, wire: bytes) -> None:
        """The entry is now this TableEntry (as a compiled parser took it)."""
        self._raw, self._wire = None, wire


@dataclass(frozen=True, eq=False)
class _FastTable:
    """What a table's compiled entry parser hands back to the store."""

    table_id: int
    name: str
    size: int
    pipeline: object = field(repr=False)  # the _Pipeline it was compiled for


@dataclass(frozen=True)
class _OneShot:
    """Engine members (and group) the server made for a one-shot entry."""

    profile: str
    group_id: int | None
    member_ids: tuple[int, ...]


@dataclass
class _Default:
    action: p4runtime_pb2.Action | None  # None: the program's own default
    modified: bool = False


@dataclass
class _Member:
    proto: p4runtime_pb2.ActionProfileMember
    refcount: int = 0


@dataclass
class _Group:
    proto: p4runtime_pb2.ActionProfileGroup
    members: tuple[int, ...]
    refcount: int = 0


@dataclass
class _Pipeline:
    p4info: p4info_pb2.P4Info
    device_config: bytes
    cookie: int
    index: P4InfoIndex
    bmv2: Mapping[str, Any]
    #: (table id, key position) of optional fields p4c compiled as ternary
    optional_as_ternary: frozenset[tuple[int, int]] = frozenset()


@dataclass
class _State:
    entries: dict[int, dict[MatchKey, _Entry]] = field(default_factory=dict)
    defaults: dict[int, _Default] = field(default_factory=dict)
    members: dict[int, dict[int, _Member]] = field(default_factory=dict)
    groups: dict[int, dict[int, _Group]] = field(default_factory=dict)
    meters: dict[tuple[int, int], p4runtime_pb2.MeterConfig] = field(default_factory=dict)
    mc_groups: dict[int, p4runtime_pb2.MulticastGroupEntry] = field(default_factory=dict)
    clone_sessions: dict[int, p4runtime_pb2.CloneSessionEntry] = field(default_factory=dict)


# --- bmv2 JSON helpers ---------------------------------------------------------


def _bmv2_tables(bmv2: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    tables: dict[str, Mapping[str, Any]] = {}
    for pipe in bmv2.get("pipelines", []):
        for t in pipe.get("tables", []):
            tables[t["name"]] = t
    return tables


def _bmv2_action_names(bmv2: Mapping[str, Any]) -> dict[int, str]:
    return {a["id"]: a["name"] for a in bmv2.get("actions", [])}


def _parse_hex(text: str) -> int:
    return int(text, 16) if text.startswith(("0x", "0X")) else int(text)


def parse_device_config(config: bytes) -> Mapping[str, Any]:
    try:
        bmv2 = json.loads(config.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _err(INVALID_ARGUMENT, f"p4_device_config is not bmv2 JSON text: {exc}") from None
    if not isinstance(bmv2, dict) or "pipelines" not in bmv2:
        raise _err(INVALID_ARGUMENT, "p4_device_config: bmv2 JSON without 'pipelines'")
    return bmv2


# --- the device ----------------------------------------------------------------


class DeviceState:
    """Canonical P4Runtime state of one device, in front of the engine."""

    def __init__(self, engine: api.Engine, device_id: int, compiled_parsers: bool = True) -> None:
        """``compiled_parsers=False`` decodes every entry the general way
        (the reference that the compiled entry parsers are measured and
        tested against)."""
        self.engine = engine
        self.device_id = device_id
        self._compiled_parsers = compiled_parsers
        self._pipeline: _Pipeline | None = None
        self._saved: _Pipeline | None = None
        self._state = _State()
        self._parsers: dict[bytes, EntryParser] = {}
        # engine ids for one-shot members/groups: above P4Runtime's uint32 ids
        self._oneshot_next = 1 << 32

    # --- pipeline --------------------------------------------------------------
    @property
    def index(self) -> P4InfoIndex:
        if self._pipeline is None:
            raise _err(FAILED_PRECONDITION, "no forwarding pipeline config set")
        return self._pipeline.index

    @property
    def has_pipeline(self) -> bool:
        return self._pipeline is not None

    def _verify(self, config: p4runtime_pb2.ForwardingPipelineConfig) -> _Pipeline:
        if not config.HasField("p4info"):
            raise _err(INVALID_ARGUMENT, "config.p4info is missing")
        index = P4InfoIndex(config.p4info)
        bmv2 = parse_device_config(config.p4_device_config)
        tables = _bmv2_tables(bmv2)
        for t in index.tables.values():
            if t.name not in tables:
                raise _err(
                    INVALID_ARGUMENT,
                    f"P4Info table {t.name} is not in the bmv2 JSON (p4info/config mismatch)",
                )
        info = p4info_pb2.P4Info()
        info.CopyFrom(config.p4info)
        opt_ternary: set[tuple[int, int]] = set()
        for t in index.tables.values():
            json_keys = tables[t.name].get("key", [])
            if len(json_keys) != len(t.fields):
                raise _err(
                    INVALID_ARGUMENT,
                    f"table {t.name}: {len(t.fields)} match fields in the P4Info, "
                    f"{len(json_keys)} keys in the bmv2 JSON",
                )
            for f, k in zip(t.fields, json_keys, strict=True):
                if f.match_type == _MF.OPTIONAL and k.get("match_type") == "ternary":
                    opt_ternary.add((t.id, f.position))
        return _Pipeline(
            info,
            config.p4_device_config,
            config.cookie.cookie,
            index,
            bmv2,
            frozenset(opt_ternary),
        )

    def _commit(self, pipe: _Pipeline) -> None:
        try:
            self.engine.load(pipe.bmv2)
        except api.UnsupportedConstruct as exc:
            raise _err(INVALID_ARGUMENT, f"device config: {exc}") from None
        except api.EngineError as exc:
            raise _err(INVALID_ARGUMENT, f"device config refused by the engine: {exc}") from None
        self._pipeline = pipe
        self._state = _State()
        self._parsers = self._compile_parsers(pipe)

    def _compile_parsers(self, pipe: _Pipeline) -> dict[bytes, EntryParser]:
        """The compiled entry parsers of the tables whose common entries
        (direct actions, exact and lpm keys) the engine can add cheaply."""
        parsers: dict[bytes, EntryParser] = {}
        kinds = {_MF.EXACT: "exact", _MF.LPM: "lpm"}
        for t in pipe.index.tables.values() if self._compiled_parsers else ():
            if t.is_const or not t.fields or t.implementation_id or t.needs_priority:
                continue
            prefix = table_entry_prefix(t.id)
            if prefix is None or any(f.match_type not in kinds for f in t.fields):
                continue
            fields = [FieldSpec(f.id, kinds[f.match_type], f.bitwidth) for f in t.fields]
            key_widths = [f.bitwidth for f in t.fields]
            actions = []
            for aid, scope in t.actions.items():
                info = pipe.index.actions[aid]
                if scope == _SCOPE.DEFAULT_ONLY or not info.distinct_ids:
                    continue
                arg_widths = [bw for _, _, bw in info.params]
                writer = self.engine.fast_writer(t.name, info.name, key_widths, arg_widths)
                if writer is not None:
                    params = tuple((pid, bw) for pid, _, bw in info.params)
                    actions.append(ActionSpec(aid, info.name, params, writer))
            plan = _FastTable(t.id, t.name, t.size, pipe)
            parser = compile_entry_parser(t.name, plan, fields, actions)
            if parser is not None:
                parsers[prefix] = parser
        return parsers

    @property
    def entry_parsers(self) -> Mapping[bytes, EntryParser]:
        """For `softswitch.p4rt_wire.decode_write_request`."""
        return self._parsers

    def set_pipeline(self, action: int, config: p4runtime_pb2.ForwardingPipelineConfig) -> None:
        if action == _CFG.VERIFY:
            self._verify(config)
        elif action == _CFG.VERIFY_AND_SAVE:
            self._saved = self._verify(config)
        elif action == _CFG.VERIFY_AND_COMMIT:
            self._commit(self._verify(config))
            self._saved = None
        elif action == _CFG.COMMIT:
            if self._saved is None:
                raise _err(FAILED_PRECONDITION, "COMMIT without a config saved by VERIFY_AND_SAVE")
            self._commit(self._saved)
            self._saved = None
        elif action == _CFG.RECONCILE_AND_COMMIT:
            pipe = self._verify(config)
            if self._pipeline is None:
                self._commit(pipe)
            elif (
                pipe.p4info.SerializeToString(deterministic=True)
                == self._pipeline.p4info.SerializeToString(deterministic=True)
                and pipe.device_config == self._pipeline.device_config
            ):
                self._pipeline.cookie = pipe.cookie  # same program: state is kept
            else:
                raise _err(
                    UNIMPLEMENTED,
                    "RECONCILE_AND_COMMIT to a different pipeline; use VERIFY_AND_COMMIT",
                )
        else:
            raise _err(INVALID_ARGUMENT, f"unsupported SetForwardingPipelineConfig action {action}")

    def get_pipeline(self, response_type: int) -> p4runtime_pb2.ForwardingPipelineConfig:
        if self._pipeline is None:
            raise _err(FAILED_PRECONDITION, "no forwarding pipeline config set")
        out = p4runtime_pb2.ForwardingPipelineConfig()
        out.cookie.cookie = self._pipeline.cookie
        if response_type in (_GETCFG.ALL, _GETCFG.P4INFO_AND_COOKIE):
            out.p4info.CopyFrom(self._pipeline.p4info)
        if response_type in (_GETCFG.ALL, _GETCFG.DEVICE_CONFIG_AND_COOKIE):
            out.p4_device_config = self._pipeline.device_config
        if response_type not in (
            _GETCFG.ALL,
            _GETCFG.P4INFO_AND_COOKIE,
            _GETCFG.DEVICE_CONFIG_AND_COOKIE,
            _GETCFG.COOKIE_ONLY,
        ):
            raise _err(INVALID_ARGUMENT, f"unknown response_type {response_type}")
        return out

    # --- write -----------------------------------------------------------------
    def write(self, updates: Sequence[p4runtime_pb2.Update]) -> list[P4RTError | None]:
        """Apply updates in order (CONTINUE_ON_ERROR); one result per update."""
        return self.write_entities(
            [
                (
                    u.type,
                    raw_from_proto(u.entity.table_entry)
                    if u.entity.WhichOneof("entity") == "table_entry"
                    else u.entity,
                )
                for u in updates
            ]
        )

    def write_entities(self, updates: Sequence[tuple[int, Any]]) -> list[P4RTError | None]:
        """Like `write`, with entities as `softswitch.p4rt_wire` decodes them:
        (update type, RawTableEntry or p4runtime_pb2.Entity). The store keeps
        (and canonicalizes in place) the RawTableEntry objects it is given."""
        if self._pipeline is None:
            raise _err(FAILED_PRECONDITION, "no forwarding pipeline config set")
        results: list[P4RTError | None] = []
        # A batch allocates many long-lived objects and creates no cycles; the
        # cyclic GC would rescan the growing store over and over meanwhile.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for utype, given in updates:
                try:
                    entity = given
                    if type(given) is FastEntry:
                        if self._fast_write(utype, given):
                            results.append(None)
                            continue
                        entity = decode_table_entry(given.wire)
                    self.write_one(utype, entity)
                except P4RTError as exc:
                    # kept without its traceback: that would tie this frame
                    # (and the request) into a cycle for the cyclic GC
                    results.append(exc.with_traceback(None))
                except api.EngineError as exc:
                    results.append(_err(INTERNAL, f"engine: {exc}"))
                except Exception as exc:  # a bug must not take the daemon down
                    log.exception("write failed")
                    results.append(_err(INTERNAL, f"internal error: {exc!r}"))
                else:
                    results.append(None)
        finally:
            if gc_was_enabled:
                gc.enable()
        return results

    def _fast_write(self, utype: int, fi: FastEntry) -> bool:
        """Apply what a compiled parser checked; False (nothing done) when
        the general path must decide (a missing or existing key, a full
        table...). The parsers' tables have direct actions only, so their
        entries reference no members, groups or one-shot sets."""
        plan = fi.plan
        if plan.pipeline is not self._pipeline:
            return False
        entries = self._state.entries.get(plan.table_id)
        if entries is None:
            entries = self._state.entries[plan.table_id] = {}
        if utype != _UPD.INSERT:
            existing = entries.get(fi.full_key)
            if existing is None:
                return False
            if utype == _UPD.MODIFY:
                fi.action.writer.modify(existing.handle, fi.args)
                existing.set_wire(fi.wire)
            elif utype == _UPD.DELETE:
                self.engine.table_delete(plan.name, existing.handle)
                del entries[fi.full_key]
            else:
                return False
            return True
        new = _Entry(None, -1, (), fi.wire)
        if entries.setdefault(fi.full_key, new) is not new:
            return False  # the key exists
        if plan.size and len(entries) > plan.size:
            del entries[fi.full_key]
            return False  # full
        try:
            new.handle = fi.action.writer.add(fi.ikey, fi.plen, fi.args)
        except BaseException:
            del entries[fi.full_key]
            raise
        return True

    def write_one(self, utype: int, entity: Any) -> None:
        if utype not in (_UPD.INSERT, _UPD.MODIFY, _UPD.DELETE):
            raise _err(INVALID_ARGUMENT, "update type is UNSPECIFIED")
        if isinstance(entity, RawTableEntry):
            self._write_table_entry(utype, entity)
            return
        kind = entity.WhichOneof("entity")
        if kind is None:
            raise _err(INVALID_ARGUMENT, "update without an entity")
        handler = self._writers.get(kind)
        if handler is None:
            raise _err(UNIMPLEMENTED, f"writing {kind} is not supported")
        handler(self, utype, getattr(entity, kind or ""))

    # --- table entries -----------------------------------------------------------
    def _match_key(
        self, table: TableInfo, entry: RawTableEntry
    ) -> tuple[MatchKey, api.Key, list[RawMatch]]:
        given: dict[int, RawMatch] = {}
        for given_match in entry.matches:
            fid = given_match[0]
            if fid in given:
                raise _err(INVALID_ARGUMENT, f"table {table.name}: match field {fid} given twice")
            if fid not in table.fields_by_id:
                raise _err(INVALID_ARGUMENT, f"table {table.name}: unknown match field id {fid}")
            given[fid] = given_match
        key: list[api.FieldMatch | None] = []
        canon: list[tuple[int, tuple[int, ...]]] = []
        out: list[RawMatch] = []
        for f in table.fields:
            m = given.get(f.id)
            if m is None:
                if f.match_type == _MF.EXACT:
                    raise _err(
                        INVALID_ARGUMENT,
                        f"table {table.name} field {f.name}: exact match field is missing",
                    )
                key.append(None)
                continue
            what = f"table {table.name} field {f.name}"
            _, kind, a, b, plen = m
            expected = _MATCH_KIND.get(f.match_type)
            if expected is None:
                raise _err(UNIMPLEMENTED, f"{what}: match type {f.match_type} not supported")
            if kind != expected:
                raise _err(
                    INVALID_ARGUMENT, f"{what}: is a {expected} field, got {kind or 'other'}"
                )
            bw = f.bitwidth
            if kind == "exact":
                v = int.from_bytes(a, "big")
                if not a or len(a) > (bw + 7) >> 3 or v >> bw:
                    decode_bytes(a, bw, what)  # raises the precise error
                key.append(api.Exact(v))
                canon.append((f.id, (v,)))
                out.append((f.id, kind, canonical_bytes(a), b"", 0))
            elif kind == "lpm":
                v = decode_bytes(a, bw, what)
                if plen <= 0 or plen > bw:
                    if plen == 0:
                        raise _err(
                            INVALID_ARGUMENT,
                            f"{what}: prefix length 0 is a don't-care; omit the field",
                        )
                    raise _err(INVALID_ARGUMENT, f"{what}: prefix length {plen} exceeds {bw} bits")
                if v & ((1 << (bw - plen)) - 1):
                    raise _err(
                        INVALID_ARGUMENT, f"{what}: lpm value {v:#x} has bits set beyond /{plen}"
                    )
                key.append(api.Lpm(v, plen))
                canon.append((f.id, (v, plen)))
                out.append((f.id, kind, encode_bytes(v), b"", plen))
            elif kind == "ternary":
                v = decode_bytes(a, bw, what)
                mask = decode_bytes(b, bw, what + " mask")
                if mask == 0:
                    raise _err(INVALID_ARGUMENT, f"{what}: all-zero mask is a don't-care; omit it")
                if v & ~mask:
                    raise _err(
                        INVALID_ARGUMENT,
                        f"{what}: ternary value {v:#x} has bits outside mask {mask:#x}",
                    )
                key.append(api.Ternary(v, mask))
                canon.append((f.id, (v, mask)))
                out.append((f.id, kind, encode_bytes(v), encode_bytes(mask), 0))
            elif kind == "range":
                lo = decode_bytes(a, bw, what + " low")
                hi = decode_bytes(b, bw, what + " high")
                if lo > hi:
                    raise _err(INVALID_ARGUMENT, f"{what}: range low {lo} > high {hi}")
                if lo == 0 and hi == (1 << bw) - 1:
                    raise _err(INVALID_ARGUMENT, f"{what}: full range is a don't-care; omit it")
                key.append(api.Range(lo, hi))
                canon.append((f.id, (lo, hi)))
                out.append((f.id, kind, encode_bytes(lo), encode_bytes(hi), 0))
            else:
                v = decode_bytes(a, bw, what)
                assert self._pipeline is not None
                if (table.id, f.position) in self._pipeline.optional_as_ternary:
                    key.append(api.Ternary(v, (1 << bw) - 1))  # as PI does for bmv2
                else:
                    key.append(api.Optional(v))
                canon.append((f.id, (v,)))
                out.append((f.id, kind, encode_bytes(v), b"", 0))
        canon.sort()
        return tuple(canon), tuple(key), out

    def _action_call(
        self, action: p4runtime_pb2.Action, allowed: Mapping[int, int] | None, where: str
    ) -> tuple[api.ActionCall, p4runtime_pb2.Action]:
        call, params = self._action_call_raw(
            action.action_id, [(p.param_id, p.value) for p in action.params], allowed, where
        )
        out = p4runtime_pb2.Action(action_id=action.action_id)
        for pid, value in params:
            out.params.add(param_id=pid, value=value)
        return call, out

    def _action_call_raw(
        self,
        action_id: int,
        params: Sequence[tuple[int, bytes]],
        allowed: Mapping[int, int] | None,
        where: str,
    ) -> tuple[api.ActionCall, list[tuple[int, bytes]]]:
        info = self.index.actions.get(action_id)
        if info is None:
            raise _err(INVALID_ARGUMENT, f"{where}: unknown action id {action_id}")
        if allowed is not None and action_id not in allowed:
            raise _err(INVALID_ARGUMENT, f"{where}: action {info.name} is not an action of it")
        if len(params) != len(info.params):
            raise _err(
                INVALID_ARGUMENT,
                f"{where}: action {info.name} takes {len(info.params)} params, got {len(params)}",
            )
        given = dict(params)
        if len(given) != len(params):
            raise _err(INVALID_ARGUMENT, f"{where}: a param of {info.name} is given twice")
        args: list[int] = []
        out: list[tuple[int, bytes]] = []
        for pid, pname, bw in info.params:
            data = given.get(pid)
            if data is None:
                raise _err(INVALID_ARGUMENT, f"{where}: action {info.name} param {pname} missing")
            v = int.from_bytes(data, "big")
            if not data or len(data) > (bw + 7) >> 3 or v >> bw:
                decode_bytes(data, bw, f"{where}: action {info.name} param {pname}")  # raises
            args.append(v)
            out.append((pid, canonical_bytes(data)))
        return api.ActionCall(info.name, tuple(args)), out

    def _table_target(
        self, table: TableInfo, entry: RawTableEntry
    ) -> tuple[api.EntryTarget, tuple[tuple[str, int], ...]]:
        """The engine target of an entry; canonical params are put back in ``entry``."""
        where = f"table {table.name}"
        kind = entry.action_kind
        if not kind:
            raise _err(INVALID_ARGUMENT, f"{where}: entry has no action")
        if table.implementation_id == 0:
            if kind != "action":
                raise _err(
                    INVALID_ARGUMENT, f"{where}: has no action profile; give a direct action"
                )
            if table.actions.get(entry.action_id) == _SCOPE.DEFAULT_ONLY:
                raise _err(INVALID_ARGUMENT, f"{where}: action {entry.action_id} is default-only")
            call, params = self._action_call_raw(
                entry.action_id, entry.params, table.actions, where
            )
            entry.params = params
            return call, ()
        profile = self.index.profile(table.implementation_id)
        if kind == "member":
            mid = entry.ref_id
            if mid not in self._state.members.get(profile.id, {}):
                raise _err(NOT_FOUND, f"{where}: member {mid} of {profile.name} does not exist")
            return api.MemberRef(mid), (("member", mid),)
        if kind == "group":
            if not profile.with_selector:
                raise _err(INVALID_ARGUMENT, f"{where}: {profile.name} is not a selector")
            gid = entry.ref_id
            if gid not in self._state.groups.get(profile.id, {}):
                raise _err(NOT_FOUND, f"{where}: group {gid} of {profile.name} does not exist")
            return api.GroupRef(gid), (("group", gid),)
        if kind == "action":
            raise _err(
                INVALID_ARGUMENT,
                f"{where}: implemented by {profile.name}; give a member or group id",
            )
        raise _err(UNIMPLEMENTED, f"{where}: one-shot action profile programming")

    def _refcount(self, table: TableInfo, refs: tuple[tuple[str, int], ...], delta: int) -> None:
        pid = table.implementation_id
        for kind, rid in refs:
            if kind == "member":
                self._state.members[pid][rid].refcount += delta
            else:
                self._state.groups[pid][rid].refcount += delta

    def _write_table_entry(self, utype: int, entry: RawTableEntry) -> None:
        table = self.index.tables.get(entry.table_id)
        if table is None:
            raise _err(INVALID_ARGUMENT, f"unknown table id {entry.table_id}")
        if entry.is_default_action:
            self._write_default(utype, table, entry)
            return
        if table.is_const:
            raise _err(PERMISSION_DENIED, f"table {table.name} is const")
        if not table.fields:
            raise _err(
                INVALID_ARGUMENT, f"table {table.name} is keyless: only its default entry is set"
            )
        if entry.idle_timeout_ns:
            raise _err(UNIMPLEMENTED, f"table {table.name}: idle timeout is not supported")
        if entry.unsupported:
            raise _err(UNIMPLEMENTED, f"table {table.name}: {entry.unsupported} is not supported")
        canon, key, matches = self._match_key(table, entry)
        if table.needs_priority:
            if entry.priority <= 0:
                raise _err(
                    INVALID_ARGUMENT,
                    f"table {table.name}: entries need a priority > 0 (ternary/range/optional)",
                )
        elif entry.priority != 0:
            raise _err(
                INVALID_ARGUMENT,
                f"table {table.name}: priority must be 0 (no ternary/range/optional field)",
            )
        full_key: MatchKey = (*canon, (-1, (entry.priority,)))
        entries = self._state.entries.setdefault(table.id, {})
        existing = entries.get(full_key)
        if utype == _UPD.DELETE:
            if existing is None:
                raise _err(NOT_FOUND, f"table {table.name}: no such entry")
            self.engine.table_delete(table.name, existing.handle)
            self._refcount(table, existing.refs, -1)
            del entries[full_key]
            if existing.oneshot is not None:
                self._oneshot_delete(existing.oneshot)
            return
        if utype == _UPD.INSERT and existing is not None:
            raise _err(ALREADY_EXISTS, f"table {table.name}: entry already exists")
        if utype == _UPD.MODIFY and existing is None:
            raise _err(NOT_FOUND, f"table {table.name}: no such entry")
        if existing is None and table.size and len(entries) >= table.size:
            raise _err(RESOURCE_EXHAUSTED, f"table {table.name} is full ({table.size})")
        oneshot: _OneShot | None = None
        if entry.action_kind == "action_set":
            target, oneshot = self._oneshot_create(table, entry)
            refs: tuple[tuple[str, int], ...] = ()
        else:
            target, refs = self._table_target(table, entry)
        try:
            new_entry, counter = self._apply_entry(
                table, entries, full_key, existing, entry, key, matches, target, refs
            )
        except BaseException:
            if oneshot is not None:
                self._oneshot_delete(oneshot)
            raise
        if existing is not None and existing.oneshot is not None:
            self._oneshot_delete(existing.oneshot)
        new_entry.oneshot = oneshot
        if counter is not None:
            self.engine.direct_counter_write(table.name, new_entry.handle, counter)

    def _apply_entry(
        self,
        table: TableInfo,
        entries: dict[MatchKey, _Entry],
        full_key: MatchKey,
        existing: _Entry | None,
        entry: RawTableEntry,
        key: api.Key,
        matches: list[RawMatch],
        target: api.EntryTarget,
        refs: tuple[tuple[str, int], ...],
    ) -> tuple[_Entry, api.CounterValue | None]:
        """Validate the rest, then add or modify the entry in the engine and the store."""
        counter = None
        if entry.counter_data is not None:
            if not table.direct_counter_id:
                raise _err(INVALID_ARGUMENT, f"table {table.name}: has no direct counter")
            nbytes, npackets = entry.counter_data
            if nbytes < 0 or npackets < 0:
                raise _err(INVALID_ARGUMENT, f"table {table.name}: negative counter value")
            counter = api.CounterValue(packets=npackets, bytes=nbytes)
        # The store takes over the entry the decoder made, in canonical form.
        stored = entry
        stored.matches = matches
        stored.counter_data = None
        stored.is_const = False
        if existing is None:
            handle = self.engine.table_add(table.name, key, target, entry.priority)
            new = _Entry(stored, handle, refs)
            entries[full_key] = new
        else:
            self.engine.table_modify(table.name, existing.handle, target)
            self._refcount(table, existing.refs, -1)
            existing.raw = stored
            existing.refs = refs
            new = existing
        self._refcount(table, refs, +1)
        return new, counter

    def _oneshot_create(
        self, table: TableInfo, entry: RawTableEntry
    ) -> tuple[api.EntryTarget, _OneShot]:
        """Validate a one-shot action set; make its engine members and group."""
        where = f"table {table.name}"
        if not table.implementation_id:
            raise _err(INVALID_ARGUMENT, f"{where}: has no action profile; give a direct action")
        profile = self.index.profile(table.implementation_id)
        if not entry.action_set:
            raise _err(INVALID_ARGUMENT, f"{where}: empty action set")
        if not profile.with_selector and len(entry.action_set) != 1:
            raise _err(
                INVALID_ARGUMENT, f"{where}: {profile.name} has no selector: give one action"
            )
        calls: list[tuple[api.ActionCall, int]] = []
        canonical: list[tuple[int, list[tuple[int, bytes]], int, bytes]] = []
        for action_id, params, weight, watch_port in entry.action_set:
            if table.actions.get(action_id) == _SCOPE.DEFAULT_ONLY:
                raise _err(INVALID_ARGUMENT, f"{where}: action {action_id} is default-only")
            if weight <= 0:
                raise _err(INVALID_ARGUMENT, f"{where}: action set weight must be > 0")
            call, canon_params = self._action_call_raw(action_id, params, table.actions, where)
            calls.append((call, weight))
            canonical.append((action_id, canon_params, weight, watch_port))
        if profile.max_group_size and sum(w for _, w in calls) > profile.max_group_size:
            raise _err(
                RESOURCE_EXHAUSTED,
                f"{where}: action set weights exceed max group size {profile.max_group_size}",
            )
        entry.action_set = canonical
        member_ids: list[int] = []
        group_id: int | None = None
        try:
            expanded: list[int] = []
            for call, weight in calls:
                mid = self._oneshot_next
                self._oneshot_next += 1
                self.engine.member_set(profile.name, mid, call)
                member_ids.append(mid)
                expanded.extend([mid] * weight)
            if not profile.with_selector:
                return api.MemberRef(member_ids[0]), _OneShot(profile.name, None, (member_ids[0],))
            group_id = self._oneshot_next
            self._oneshot_next += 1
            self.engine.group_set(profile.name, group_id, expanded)
        except BaseException:
            self._oneshot_delete(_OneShot(profile.name, None, tuple(member_ids)))
            raise
        return api.GroupRef(group_id), _OneShot(profile.name, group_id, tuple(member_ids))

    def _oneshot_delete(self, oneshot: _OneShot) -> None:
        try:
            if oneshot.group_id is not None:
                self.engine.group_delete(oneshot.profile, oneshot.group_id)
            for mid in oneshot.member_ids:
                self.engine.member_delete(oneshot.profile, mid)
        except api.EngineError:
            log.exception("cleaning up one-shot members of %s", oneshot.profile)

    def _write_default(self, utype: int, table: TableInfo, entry: RawTableEntry) -> None:
        where = f"table {table.name} default entry"
        if utype != _UPD.MODIFY:
            raise _err(INVALID_ARGUMENT, f"{where}: only MODIFY is allowed")
        if entry.has_match() or entry.priority:
            raise _err(INVALID_ARGUMENT, f"{where}: must have no match and no priority")
        if table.implementation_id:
            raise _err(UNIMPLEMENTED, f"{where}: default entries of action-profile tables")
        if table.const_default_action_id:
            raise _err(PERMISSION_DENIED, f"{where}: the default action is const")
        if not entry.action_kind:
            self.engine.table_reset_default(table.name)
            self._state.defaults[table.id] = _Default(None)
            return
        if entry.action_kind != "action":
            raise _err(INVALID_ARGUMENT, f"{where}: needs a direct action")
        if table.actions.get(entry.action_id) == _SCOPE.TABLE_ONLY:
            raise _err(INVALID_ARGUMENT, f"{where}: action {entry.action_id} is table-only")
        call, params = self._action_call_raw(entry.action_id, entry.params, table.actions, where)
        self.engine.table_set_default(table.name, call)
        proto = p4runtime_pb2.Action(action_id=entry.action_id)
        for pid, value in params:
            proto.params.add(param_id=pid, value=value)
        self._state.defaults[table.id] = _Default(proto, True)

    def _initial_default(self, table: TableInfo) -> p4runtime_pb2.Action | None:
        assert self._pipeline is not None
        t = _bmv2_tables(self._pipeline.bmv2).get(table.name, {})
        de = t.get("default_entry")
        if not de:
            return None
        name = _bmv2_action_names(self._pipeline.bmv2).get(de.get("action_id"))
        aid = self.index.action_ids_by_name.get(name or "")
        if aid is None:
            return None
        out = p4runtime_pb2.Action(action_id=aid)
        for (pid, _, _), data in zip(
            self.index.actions[aid].params, de.get("action_data", []), strict=False
        ):
            out.params.add(param_id=pid, value=encode_bytes(_parse_hex(data)))
        return out

    def _const_entries(self, table: TableInfo) -> list[p4runtime_pb2.TableEntry]:
        """The entries the program declares (``const entries``), from the bmv2 JSON."""
        assert self._pipeline is not None
        t = _bmv2_tables(self._pipeline.bmv2).get(table.name, {})
        names = _bmv2_action_names(self._pipeline.bmv2)
        out: list[p4runtime_pb2.TableEntry] = []
        for e in t.get("entries", []):
            te = p4runtime_pb2.TableEntry(table_id=table.id, is_const=True)
            for f, m in zip(table.fields, e.get("match_key", []), strict=False):
                mt = m.get("match_type")
                key = _parse_hex(m.get("key", "0x0"))
                if mt == "exact":
                    te.match.add(field_id=f.id).exact.value = encode_bytes(key)
                elif mt == "lpm":
                    if m.get("prefix_length", 0):
                        fm = te.match.add(field_id=f.id)
                        fm.lpm.value = encode_bytes(key)
                        fm.lpm.prefix_len = m["prefix_length"]
                elif mt == "ternary":
                    mask = _parse_hex(m.get("mask", "0x0"))
                    if mask:
                        fm = te.match.add(field_id=f.id)
                        fm.ternary.value = encode_bytes(key)
                        fm.ternary.mask = encode_bytes(mask)
                elif mt == "range":
                    lo, hi = _parse_hex(m.get("start", "0x0")), _parse_hex(m.get("end", "0x0"))
                    if not (lo == 0 and hi == (1 << f.bitwidth) - 1):
                        fm = te.match.add(field_id=f.id)
                        fm.range.low = encode_bytes(lo)
                        fm.range.high = encode_bytes(hi)
            if table.needs_priority:
                # bmv2 JSON priorities: lower wins; P4Runtime: higher wins.
                te.priority = max(1, (1 << 24) - int(e.get("priority", 1)))
            act = e.get("action_entry", {})
            aid = self.index.action_ids_by_name.get(names.get(act.get("action_id", -1), ""))
            if aid is not None:
                te.action.action.action_id = aid
                for (pid, _, _), data in zip(
                    self.index.actions[aid].params, act.get("action_data", []), strict=False
                ):
                    te.action.action.params.add(param_id=pid, value=encode_bytes(_parse_hex(data)))
            out.append(te)
        return out

    # --- action profiles -----------------------------------------------------------
    def _write_member(self, utype: int, m: p4runtime_pb2.ActionProfileMember) -> None:
        profile = self.index.profiles.get(m.action_profile_id)
        if profile is None:
            raise _err(INVALID_ARGUMENT, f"unknown action profile id {m.action_profile_id}")
        members = self._state.members.setdefault(profile.id, {})
        existing = members.get(m.member_id)
        where = f"action profile {profile.name} member {m.member_id}"
        if utype == _UPD.DELETE:
            if existing is None:
                raise _err(NOT_FOUND, f"{where}: does not exist")
            if existing.refcount:
                raise _err(
                    FAILED_PRECONDITION,
                    f"{where}: still used by {existing.refcount} group(s)/entries",
                )
            self.engine.member_delete(profile.name, m.member_id)
            del members[m.member_id]
            return
        if utype == _UPD.INSERT and existing is not None:
            raise _err(ALREADY_EXISTS, f"{where}: already exists")
        if utype == _UPD.MODIFY and existing is None:
            raise _err(NOT_FOUND, f"{where}: does not exist")
        allowed: dict[int, int] = {}
        for tid in profile.table_ids:
            t = self.index.tables.get(tid)
            if t is not None:
                allowed.update(t.actions)
        call, proto = self._action_call(m.action, allowed or None, where)
        if existing is None and profile.size and len(members) >= profile.size:
            raise _err(RESOURCE_EXHAUSTED, f"action profile {profile.name} is full")
        self.engine.member_set(profile.name, m.member_id, call)
        stored = p4runtime_pb2.ActionProfileMember(
            action_profile_id=profile.id, member_id=m.member_id
        )
        stored.action.CopyFrom(proto)
        if existing is None:
            members[m.member_id] = _Member(stored)
        else:
            existing.proto = stored

    def _write_group(self, utype: int, g: p4runtime_pb2.ActionProfileGroup) -> None:
        profile = self.index.profiles.get(g.action_profile_id)
        if profile is None:
            raise _err(INVALID_ARGUMENT, f"unknown action profile id {g.action_profile_id}")
        where = f"action profile {profile.name} group {g.group_id}"
        if not profile.with_selector:
            raise _err(INVALID_ARGUMENT, f"{where}: {profile.name} has no selector")
        groups = self._state.groups.setdefault(profile.id, {})
        members = self._state.members.setdefault(profile.id, {})
        existing = groups.get(g.group_id)
        if utype == _UPD.DELETE:
            if existing is None:
                raise _err(NOT_FOUND, f"{where}: does not exist")
            if existing.refcount:
                raise _err(
                    FAILED_PRECONDITION, f"{where}: still used by {existing.refcount} entries"
                )
            self.engine.group_delete(profile.name, g.group_id)
            for mid in set(existing.members):
                members[mid].refcount -= 1
            del groups[g.group_id]
            return
        if utype == _UPD.INSERT and existing is not None:
            raise _err(ALREADY_EXISTS, f"{where}: already exists")
        if utype == _UPD.MODIFY and existing is None:
            raise _err(NOT_FOUND, f"{where}: does not exist")
        max_size = g.max_size if existing is None else existing.proto.max_size
        if profile.max_group_size and g.max_size > profile.max_group_size:
            raise _err(
                INVALID_ARGUMENT,
                f"{where}: max_size {g.max_size} > the profile's {profile.max_group_size}",
            )
        expanded: list[int] = []
        seen: set[int] = set()
        stored = p4runtime_pb2.ActionProfileGroup(
            action_profile_id=profile.id, group_id=g.group_id, max_size=max_size
        )
        for gm in g.members:
            if gm.member_id in seen:
                raise _err(INVALID_ARGUMENT, f"{where}: member {gm.member_id} listed twice")
            seen.add(gm.member_id)
            if gm.member_id not in members:
                raise _err(NOT_FOUND, f"{where}: member {gm.member_id} does not exist")
            if gm.weight < 0:
                raise _err(INVALID_ARGUMENT, f"{where}: negative weight")
            weight = gm.weight or 1
            expanded.extend([gm.member_id] * weight)
            stored.members.add(member_id=gm.member_id, weight=weight)
        if max_size and len(expanded) > max_size:
            raise _err(
                RESOURCE_EXHAUSTED, f"{where}: {len(expanded)} members exceed max_size {max_size}"
            )
        if existing is None and profile.size and len(groups) >= profile.size:
            raise _err(RESOURCE_EXHAUSTED, f"action profile {profile.name}: no room for groups")
        self.engine.group_set(profile.name, g.group_id, expanded)
        for mid in seen:
            members[mid].refcount += 1
        if existing is None:
            groups[g.group_id] = _Group(stored, tuple(expanded))
        else:
            for mid in set(existing.members):
                members[mid].refcount -= 1
            existing.proto = stored
            existing.members = tuple(expanded)

    # --- counters, meters, registers -------------------------------------------------
    @staticmethod
    def _counter_from_proto(
        counter_id: int, data: p4runtime_pb2.CounterData, where: str
    ) -> api.CounterValue:
        if not counter_id:
            raise _err(INVALID_ARGUMENT, f"{where}: has no direct counter")
        if data.byte_count < 0 or data.packet_count < 0:
            raise _err(INVALID_ARGUMENT, f"{where}: negative counter value")
        return api.CounterValue(packets=data.packet_count, bytes=data.byte_count)

    @staticmethod
    def _counter_to_proto(value: api.CounterValue, unit: int) -> p4runtime_pb2.CounterData:
        spec = p4info_pb2.CounterSpec
        out = p4runtime_pb2.CounterData()
        if unit in (spec.BYTES, spec.BOTH, spec.UNSPECIFIED):
            out.byte_count = value.bytes
        if unit in (spec.PACKETS, spec.BOTH, spec.UNSPECIFIED):
            out.packet_count = value.packets
        return out

    def _indices(self, info: IndexedInfo, has_index: bool, index: int, what: str) -> range:
        if not has_index:
            return range(info.size)
        if index < 0 or index >= info.size:
            raise _err(OUT_OF_RANGE, f"{what} {info.name}: index {index} not in [0, {info.size})")
        return range(index, index + 1)

    def _write_counter(self, utype: int, c: p4runtime_pb2.CounterEntry) -> None:
        info = self.index.counters.get(c.counter_id)
        if info is None:
            raise _err(INVALID_ARGUMENT, f"unknown counter id {c.counter_id}")
        if utype != _UPD.MODIFY:
            raise _err(INVALID_ARGUMENT, f"counter {info.name}: only MODIFY is allowed")
        value = self._counter_from_proto(info.id, c.data, f"counter {info.name}")
        for i in self._indices(info, c.HasField("index"), c.index.index, "counter"):
            self.engine.counter_write(info.name, i, value)

    def _find_entry(self, te: p4runtime_pb2.TableEntry, what: str) -> tuple[TableInfo, _Entry]:
        table = self.index.tables.get(te.table_id)
        if table is None:
            raise _err(INVALID_ARGUMENT, f"{what}: unknown table id {te.table_id}")
        canon, _, _ = self._match_key(table, raw_from_proto(te))
        entry = self._state.entries.get(table.id, {}).get((*canon, (-1, (te.priority,))))
        if entry is None:
            raise _err(NOT_FOUND, f"{what}: table {table.name} has no such entry")
        return table, entry

    def _write_direct_counter(self, utype: int, dc: p4runtime_pb2.DirectCounterEntry) -> None:
        if utype != _UPD.MODIFY:
            raise _err(INVALID_ARGUMENT, "direct counter: only MODIFY is allowed")
        table, entry = self._find_entry(dc.table_entry, "direct counter")
        value = self._counter_from_proto(table.direct_counter_id, dc.data, f"table {table.name}")
        self.engine.direct_counter_write(table.name, entry.handle, value)

    def _write_meter(self, utype: int, m: p4runtime_pb2.MeterEntry) -> None:
        info = self.index.meters.get(m.meter_id)
        if info is None:
            raise _err(INVALID_ARGUMENT, f"unknown meter id {m.meter_id}")
        if utype != _UPD.MODIFY:
            raise _err(INVALID_ARGUMENT, f"meter {info.name}: only MODIFY is allowed")
        if not m.HasField("config"):
            raise _err(UNIMPLEMENTED, f"meter {info.name}: resetting a meter config")
        cfg = m.config
        if cfg.cir > cfg.pir or cfg.cir < 0 or cfg.cburst < 0 or cfg.pburst < 0:
            raise _err(INVALID_ARGUMENT, f"meter {info.name}: need 0 <= cir <= pir, bursts >= 0")
        for i in self._indices(info, m.HasField("index"), m.index.index, "meter"):
            self.engine.meter_set(info.name, i, cfg.cir, cfg.cburst, cfg.pir, cfg.pburst)
            stored = p4runtime_pb2.MeterConfig()
            stored.CopyFrom(cfg)
            self._state.meters[(info.id, i)] = stored

    def _write_register(self, utype: int, r: p4runtime_pb2.RegisterEntry) -> None:
        info = self.index.registers.get(r.register_id)
        if info is None:
            raise _err(INVALID_ARGUMENT, f"unknown register id {r.register_id}")
        if utype != _UPD.MODIFY:
            raise _err(INVALID_ARGUMENT, f"register {info.name}: only MODIFY is allowed")
        if r.data.WhichOneof("data") != "bitstring":
            raise _err(INVALID_ARGUMENT, f"register {info.name}: data must be a bitstring")
        value = decode_bytes(r.data.bitstring, info.bitwidth, f"register {info.name}")
        for i in self._indices(info, r.HasField("index"), r.index.index, "register"):
            self.engine.register_write(info.name, i, value)

    # --- packet replication engine -------------------------------------------------
    @staticmethod
    def _replicas(
        replicas: Sequence[p4runtime_pb2.Replica], where: str
    ) -> tuple[list[api.Replica], list[p4runtime_pb2.Replica]]:
        out: list[api.Replica] = []
        protos: list[p4runtime_pb2.Replica] = []
        seen: set[tuple[int, int]] = set()
        for r in replicas:
            kind = r.WhichOneof("port_kind")
            if kind == "port":
                port = decode_bytes(r.port, 32, f"{where} replica port")
            else:
                port = r.egress_port
            if (port, r.instance) in seen:
                raise _err(
                    INVALID_ARGUMENT, f"{where}: replica (port {port}, instance {r.instance}) twice"
                )
            seen.add((port, r.instance))
            out.append(api.Replica(port, r.instance))
            p = p4runtime_pb2.Replica(instance=r.instance)
            if kind == "port":
                p.port = encode_bytes(port)
            else:
                p.egress_port = port
            protos.append(p)
        return out, protos

    def _write_pre(self, utype: int, pre: p4runtime_pb2.PacketReplicationEngineEntry) -> None:
        kind = pre.WhichOneof("type")
        if kind == "multicast_group_entry":
            mg = pre.multicast_group_entry
            gid = mg.multicast_group_id
            where = f"multicast group {gid}"
            if gid == 0:
                raise _err(INVALID_ARGUMENT, "multicast group id 0 is not valid")
            store: dict[int, Any] = self._state.mc_groups
            exists = gid in store
            if utype == _UPD.DELETE:
                if not exists:
                    raise _err(NOT_FOUND, f"{where}: does not exist")
                self.engine.mc_group_delete(gid)
                del store[gid]
                return
            if utype == _UPD.INSERT and exists:
                raise _err(ALREADY_EXISTS, f"{where}: already exists")
            if utype == _UPD.MODIFY and not exists:
                raise _err(NOT_FOUND, f"{where}: does not exist")
            replicas, protos = self._replicas(mg.replicas, where)
            self.engine.mc_group_set(gid, replicas)
            stored = p4runtime_pb2.MulticastGroupEntry(multicast_group_id=gid, metadata=mg.metadata)
            stored.replicas.extend(protos)
            store[gid] = stored
        elif kind == "clone_session_entry":
            cs = pre.clone_session_entry
            sid = cs.session_id
            where = f"clone session {sid}"
            store = self._state.clone_sessions
            exists = sid in store
            if utype == _UPD.DELETE:
                if not exists:
                    raise _err(NOT_FOUND, f"{where}: does not exist")
                self.engine.clone_session_delete(sid)
                del store[sid]
                return
            if utype == _UPD.INSERT and exists:
                raise _err(ALREADY_EXISTS, f"{where}: already exists")
            if utype == _UPD.MODIFY and not exists:
                raise _err(NOT_FOUND, f"{where}: does not exist")
            if cs.packet_length_bytes:
                raise _err(UNIMPLEMENTED, f"{where}: packet truncation")
            replicas, protos = self._replicas(cs.replicas, where)
            self.engine.clone_session_set(sid, replicas)
            stored_cs = p4runtime_pb2.CloneSessionEntry(
                session_id=sid, class_of_service=cs.class_of_service
            )
            stored_cs.replicas.extend(protos)
            store[sid] = stored_cs
        else:
            raise _err(INVALID_ARGUMENT, "empty packet replication engine entry")

    _writers: Mapping[str, Callable[[DeviceState, int, Any], None]] = {
        "table_entry": _write_table_entry,
        "action_profile_member": _write_member,
        "action_profile_group": _write_group,
        "counter_entry": _write_counter,
        "direct_counter_entry": _write_direct_counter,
        "meter_entry": _write_meter,
        "register_entry": _write_register,
        "packet_replication_engine_entry": _write_pre,
    }

    # --- read ----------------------------------------------------------------------
    def read(self, entities: Sequence[p4runtime_pb2.Entity]) -> list[p4runtime_pb2.Entity]:
        """All entities matching the (possibly wildcard) request entities."""
        return [
            p4runtime_pb2.Entity.FromString(e) if isinstance(e, bytes) else e
            for e in self._read(entities)
        ]

    def read_serialized(self, entities: Sequence[p4runtime_pb2.Entity]) -> list[bytes]:
        """Like `read`, each entity serialized (table entries are encoded
        without building protobuf messages)."""
        return [e if isinstance(e, bytes) else e.SerializeToString() for e in self._read(entities)]

    def _read(self, entities: Sequence[p4runtime_pb2.Entity]) -> list[p4runtime_pb2.Entity | bytes]:
        if self._pipeline is None:
            raise _err(FAILED_PRECONDITION, "no forwarding pipeline config set")
        out: list[p4runtime_pb2.Entity | bytes] = []
        for entity in entities:
            kind = entity.WhichOneof("entity")
            if kind is None:
                raise _err(INVALID_ARGUMENT, "read of an empty entity")
            reader = self._readers.get(kind)
            if reader is None:
                raise _err(UNIMPLEMENTED, f"reading {kind} is not supported")
            try:
                out.extend(reader(self, getattr(entity, kind)))
            except api.EngineError as exc:
                raise _err(INTERNAL, f"engine: {exc}") from None
        return out

    def _tables_for(self, table_id: int) -> list[TableInfo]:
        if table_id == 0:
            return list(self.index.tables.values())
        t = self.index.tables.get(table_id)
        if t is None:
            raise _err(INVALID_ARGUMENT, f"unknown table id {table_id}")
        return [t]

    def _stored_entity(self, table: TableInfo, entry: _Entry, want_counter: bool) -> bytes:
        """The serialized Entity of a stored entry (with its direct counter)."""
        counter: bytes | None = None
        if want_counter and table.direct_counter_id:
            value = self.engine.direct_counter_read(table.name, entry.handle)
            unit = self.index.direct_counters[table.direct_counter_id].unit
            counter = self._counter_to_proto(value, unit).SerializeToString()
        te = encode_table_entry(entry.raw, counter)
        if te is None:  # what the encoder leaves to protobuf
            proto = raw_to_proto(entry.raw)
            if counter is not None:
                proto.counter_data.ParseFromString(counter)
            te = proto.SerializeToString()
        return table_entry_entity(te)

    def _read_table_entry(
        self, req: p4runtime_pb2.TableEntry
    ) -> Iterator[p4runtime_pb2.Entity | bytes]:
        want_counter = req.HasField("counter_data")
        for table in self._tables_for(req.table_id):
            if req.is_default_action:
                yield p4runtime_pb2.Entity(table_entry=self._default_entry(table))
                continue
            if table.is_const:
                wanted: MatchKey | None = None
                if len(req.match) or req.priority:
                    canon, _, _ = self._match_key(table, raw_from_proto(req))
                    wanted = (*canon, (-1, (req.priority,)))
                for te in self._const_entries(table):
                    if wanted is not None:
                        canon, _, _ = self._match_key(table, raw_from_proto(te))
                        if (*canon, (-1, (te.priority,))) != wanted:
                            continue
                    yield p4runtime_pb2.Entity(table_entry=te)
                continue
            entries = self._state.entries.get(table.id, {})
            if len(req.match) or req.priority:
                if req.table_id == 0:
                    raise _err(INVALID_ARGUMENT, "a match needs a table id")
                canon, _, _ = self._match_key(table, raw_from_proto(req))
                found = entries.get((*canon, (-1, (req.priority,))))
                if found is not None:
                    yield self._stored_entity(table, found, want_counter)
                continue
            for e in entries.values():
                yield self._stored_entity(table, e, want_counter)

    def _default_entry(self, table: TableInfo) -> p4runtime_pb2.TableEntry:
        te = p4runtime_pb2.TableEntry(table_id=table.id, is_default_action=True)
        d = self._state.defaults.get(table.id)
        action = d.action if d is not None and d.action is not None else None
        if action is None:
            action = self._initial_default(table)
        if action is not None:
            te.action.action.CopyFrom(action)
        return te

    def _read_member(
        self, req: p4runtime_pb2.ActionProfileMember
    ) -> Iterator[p4runtime_pb2.Entity]:
        ids = [req.action_profile_id] if req.action_profile_id else list(self.index.profiles)
        if req.action_profile_id and req.action_profile_id not in self.index.profiles:
            raise _err(INVALID_ARGUMENT, f"unknown action profile id {req.action_profile_id}")
        for pid in ids:
            for mid, m in self._state.members.get(pid, {}).items():
                if req.member_id in (0, mid):
                    yield p4runtime_pb2.Entity(action_profile_member=m.proto)

    def _read_group(self, req: p4runtime_pb2.ActionProfileGroup) -> Iterator[p4runtime_pb2.Entity]:
        ids = [req.action_profile_id] if req.action_profile_id else list(self.index.profiles)
        if req.action_profile_id and req.action_profile_id not in self.index.profiles:
            raise _err(INVALID_ARGUMENT, f"unknown action profile id {req.action_profile_id}")
        for pid in ids:
            for gid, g in self._state.groups.get(pid, {}).items():
                if req.group_id in (0, gid):
                    yield p4runtime_pb2.Entity(action_profile_group=g.proto)

    def _read_counter(self, req: p4runtime_pb2.CounterEntry) -> Iterator[p4runtime_pb2.Entity]:
        if req.counter_id and req.counter_id not in self.index.counters:
            raise _err(INVALID_ARGUMENT, f"unknown counter id {req.counter_id}")
        infos = [self.index.counters[req.counter_id]] if req.counter_id else self.index.counters
        for info in infos.values() if isinstance(infos, dict) else infos:
            for i in self._indices(info, req.HasField("index"), req.index.index, "counter"):
                value = self.engine.counter_read(info.name, i)
                ce = p4runtime_pb2.CounterEntry(counter_id=info.id)
                ce.index.index = i
                ce.data.CopyFrom(self._counter_to_proto(value, info.unit))
                yield p4runtime_pb2.Entity(counter_entry=ce)

    def _read_direct_counter(
        self, req: p4runtime_pb2.DirectCounterEntry
    ) -> Iterator[p4runtime_pb2.Entity]:
        te = req.table_entry
        if len(te.match) or te.priority:
            table, entry = self._find_entry(te, "direct counter")
            found = [(table, entry)]
        else:
            found = [
                (t, e)
                for t in self._tables_for(te.table_id)
                for e in self._state.entries.get(t.id, {}).values()
            ]
        for table, entry in found:
            if not table.direct_counter_id:
                if te.table_id:
                    raise _err(INVALID_ARGUMENT, f"table {table.name} has no direct counter")
                continue
            value = self.engine.direct_counter_read(table.name, entry.handle)
            unit = self.index.direct_counters[table.direct_counter_id].unit
            dce = p4runtime_pb2.DirectCounterEntry(data=self._counter_to_proto(value, unit))
            dce.table_entry.CopyFrom(raw_to_proto(entry.raw))
            yield p4runtime_pb2.Entity(direct_counter_entry=dce)

    def _read_meter(self, req: p4runtime_pb2.MeterEntry) -> Iterator[p4runtime_pb2.Entity]:
        if req.meter_id and req.meter_id not in self.index.meters:
            raise _err(INVALID_ARGUMENT, f"unknown meter id {req.meter_id}")
        infos = [self.index.meters[req.meter_id]] if req.meter_id else self.index.meters.values()
        for info in infos:
            for i in self._indices(info, req.HasField("index"), req.index.index, "meter"):
                me = p4runtime_pb2.MeterEntry(meter_id=info.id)
                me.index.index = i
                cfg = self._state.meters.get((info.id, i))
                if cfg is not None:
                    me.config.CopyFrom(cfg)
                yield p4runtime_pb2.Entity(meter_entry=me)

    def _read_register(self, req: p4runtime_pb2.RegisterEntry) -> Iterator[p4runtime_pb2.Entity]:
        if req.register_id and req.register_id not in self.index.registers:
            raise _err(INVALID_ARGUMENT, f"unknown register id {req.register_id}")
        infos = (
            [self.index.registers[req.register_id]]
            if req.register_id
            else self.index.registers.values()
        )
        for info in infos:
            for i in self._indices(info, req.HasField("index"), req.index.index, "register"):
                re = p4runtime_pb2.RegisterEntry(register_id=info.id)
                re.index.index = i
                re.data.bitstring = encode_bytes(self.engine.register_read(info.name, i))
                yield p4runtime_pb2.Entity(register_entry=re)

    def _read_pre(
        self, req: p4runtime_pb2.PacketReplicationEngineEntry
    ) -> Iterator[p4runtime_pb2.Entity]:
        kind = req.WhichOneof("type")
        if kind == "multicast_group_entry":
            gid = req.multicast_group_entry.multicast_group_id
            for k, mg in sorted(self._state.mc_groups.items()):
                if gid in (0, k):
                    e = p4runtime_pb2.Entity()
                    e.packet_replication_engine_entry.multicast_group_entry.CopyFrom(mg)
                    yield e
        elif kind == "clone_session_entry":
            sid = req.clone_session_entry.session_id
            for k, cs in sorted(self._state.clone_sessions.items()):
                if sid in (0, k):
                    e = p4runtime_pb2.Entity()
                    e.packet_replication_engine_entry.clone_session_entry.CopyFrom(cs)
                    yield e
        else:
            raise _err(INVALID_ARGUMENT, "empty packet replication engine entry")

    _readers: Mapping[str, Callable[[DeviceState, Any], Iterator[p4runtime_pb2.Entity | bytes]]] = {
        "table_entry": _read_table_entry,
        "action_profile_member": _read_member,
        "action_profile_group": _read_group,
        "counter_entry": _read_counter,
        "direct_counter_entry": _read_direct_counter,
        "meter_entry": _read_meter,
        "register_entry": _read_register,
        "packet_replication_engine_entry": _read_pre,
    }

    # --- packet I/O ------------------------------------------------------------------
    def packet_out_frame(self, packet: p4runtime_pb2.PacketOut) -> bytes:
        """The frame to inject on the CPU port: packet_out header + payload."""
        info = self.index.packet_metadata.get("packet_out")
        if info is None:
            if len(packet.metadata):
                raise _err(INVALID_ARGUMENT, "the P4Info has no packet_out metadata")
            return bytes(packet.payload)
        given: dict[int, bytes] = {}
        for m in packet.metadata:
            if m.metadata_id in given:
                raise _err(INVALID_ARGUMENT, f"packet_out metadata {m.metadata_id} given twice")
            given[m.metadata_id] = m.value
        known = {mid for mid, _, _ in info.fields}
        for mid in given:
            if mid not in known:
                raise _err(INVALID_ARGUMENT, f"packet_out: unknown metadata id {mid}")
        header = 0
        for mid, name, bw in info.fields:
            value = decode_bytes(given[mid], bw, f"packet_out {name}") if mid in given else 0
            header = (header << bw) | value
        bits = info.header_bits
        nbytes = (bits + 7) // 8
        header <<= nbytes * 8 - bits
        return header.to_bytes(nbytes, "big") + bytes(packet.payload)

    def packet_in(self, frame: bytes) -> p4runtime_pb2.PacketIn:
        """A frame the engine emitted on the CPU port, as a PacketIn."""
        pin = p4runtime_pb2.PacketIn()
        info = self.index.packet_metadata.get("packet_in")
        if info is None:
            pin.payload = frame
            return pin
        bits = info.header_bits
        nbytes = (bits + 7) // 8
        if len(frame) < nbytes:
            raise _err(INVALID_ARGUMENT, f"frame shorter than the {nbytes}-byte packet_in header")
        header = int.from_bytes(frame[:nbytes], "big") >> (nbytes * 8 - bits)
        shift = bits
        for mid, _, bw in info.fields:
            shift -= bw
            value = (header >> shift) & ((1 << bw) - 1)
            pin.metadata.add(metadata_id=mid, value=encode_bytes(value))
        pin.payload = frame[nbytes:]
        return pin
