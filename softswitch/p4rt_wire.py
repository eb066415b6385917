"""Fast decoding of P4Runtime WriteRequests, and the plain table-entry form.

The pure-Python protobuf runtime this project is pinned to (protobuf 3.20,
needed by the p4runtime 1.4 generated code) parses a table entry in ~190 µs;
batched writes of thousands of entries would spend nearly all their time
there. This module decodes the wire format of a WriteRequest directly into
plain Python values for the common case — table entries — and hands every
other entity over as a protobuf message parsed from its own bytes. Anything
unusual (unknown fields, repeated singular messages, groups) makes it fall
back to the protobuf parser for the whole request, so the result is always
what protobuf would have produced.

`RawTableEntry` is also the store's canonical form of a table entry
(`raw_from_proto` / `raw_to_proto` convert).

For the bulk of a batch — direct-action entries of exact and lpm tables, in
the field order protobuf serializers emit — the store compiles one parser
per table (`compile_entry_parser`) that decodes and checks an entry in one
pass and hands the store a `FastEntry` (for an INSERT, MODIFY or DELETE);
whatever such a parser does not accept is decoded the general way, so
errors always come from the general path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from p4.v1 import p4runtime_pb2

#: (field_id, kind, a, b, prefix_len): exact (value, b"", 0), lpm (value, b"", plen),
#: ternary (value, mask, 0), range (low, high, 0), optional (value, b"", 0).
RawMatch = tuple[int, str, bytes, bytes, int]


@dataclass(slots=True)
class RawTableEntry:
    table_id: int = 0
    matches: list[RawMatch] = field(default_factory=list)
    action_kind: str = ""  # "", "action", "member", "group", "action_set"
    action_id: int = 0
    params: list[tuple[int, bytes]] = field(default_factory=list)
    ref_id: int = 0  # member or group id
    priority: int = 0
    controller_metadata: int = 0
    metadata: bytes = b""
    is_default_action: bool = False
    idle_timeout_ns: int = 0
    counter_data: tuple[int, int] | None = None  # (bytes, packets)
    unsupported: str = ""  # first field present that the server does not support
    is_const: bool = False
    other_match_field: int = 0  # a field id given with an 'other' match
    #: one-shot action profile programming: (action id, params, weight, watch_port)
    action_set: list[tuple[int, list[tuple[int, bytes]], int, bytes]] = field(default_factory=list)

    def has_match(self) -> bool:
        return bool(self.matches) or bool(self.other_match_field)


_MATCH_KINDS = ("exact", "ternary", "lpm", "range", "optional")


def raw_from_proto(te: p4runtime_pb2.TableEntry) -> RawTableEntry:
    raw = RawTableEntry(
        table_id=te.table_id,
        priority=te.priority,
        controller_metadata=te.controller_metadata,
        metadata=te.metadata,
        is_default_action=te.is_default_action,
        idle_timeout_ns=te.idle_timeout_ns,
        is_const=te.is_const,
    )
    for fm in te.match:
        kind = fm.WhichOneof("field_match_type")
        if kind == "exact":
            raw.matches.append((fm.field_id, kind, fm.exact.value, b"", 0))
        elif kind == "lpm":
            raw.matches.append((fm.field_id, kind, fm.lpm.value, b"", fm.lpm.prefix_len))
        elif kind == "ternary":
            raw.matches.append((fm.field_id, kind, fm.ternary.value, fm.ternary.mask, 0))
        elif kind == "range":
            raw.matches.append((fm.field_id, kind, fm.range.low, fm.range.high, 0))
        elif kind == "optional":
            raw.matches.append((fm.field_id, kind, fm.optional.value, b"", 0))
        else:
            raw.matches.append((fm.field_id, kind or "", b"", b"", 0))
    kind = te.action.WhichOneof("type") if te.HasField("action") else None
    if kind == "action":
        raw.action_kind = "action"
        raw.action_id = te.action.action.action_id
        raw.params = [(p.param_id, p.value) for p in te.action.action.params]
    elif kind == "action_profile_member_id":
        raw.action_kind, raw.ref_id = "member", te.action.action_profile_member_id
    elif kind == "action_profile_group_id":
        raw.action_kind, raw.ref_id = "group", te.action.action_profile_group_id
    elif kind == "action_profile_action_set":
        raw.action_kind = "action_set"
        raw.action_set = [
            (
                a.action.action_id,
                [(p.param_id, p.value) for p in a.action.params],
                a.weight,
                a.watch_port,
            )
            for a in te.action.action_profile_action_set.action_profile_actions
        ]
    if te.HasField("counter_data"):
        raw.counter_data = (te.counter_data.byte_count, te.counter_data.packet_count)
    for name in ("meter_config", "meter_counter_data", "time_since_last_hit"):
        if te.HasField(name):
            raw.unsupported = raw.unsupported or name
    return raw


def raw_to_proto(raw: RawTableEntry) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(
        table_id=raw.table_id,
        priority=raw.priority,
        controller_metadata=raw.controller_metadata,
        metadata=raw.metadata,
        is_default_action=raw.is_default_action,
        is_const=raw.is_const,
    )
    for fid, kind, a, b, plen in raw.matches:
        fm = te.match.add(field_id=fid)
        if kind == "exact":
            fm.exact.value = a
        elif kind == "lpm":
            fm.lpm.value = a
            fm.lpm.prefix_len = plen
        elif kind == "ternary":
            fm.ternary.value = a
            fm.ternary.mask = b
        elif kind == "range":
            fm.range.low = a
            fm.range.high = b
        elif kind == "optional":
            fm.optional.value = a
    if raw.action_kind == "action":
        te.action.action.action_id = raw.action_id
        for pid, value in raw.params:
            te.action.action.params.add(param_id=pid, value=value)
    elif raw.action_kind == "member":
        te.action.action_profile_member_id = raw.ref_id
    elif raw.action_kind == "group":
        te.action.action_profile_group_id = raw.ref_id
    elif raw.action_kind == "action_set":
        aset = te.action.action_profile_action_set
        for action_id, params, weight, watch_port in raw.action_set:
            a = aset.action_profile_actions.add(weight=weight)
            if watch_port:
                a.watch_port = watch_port
            a.action.action_id = action_id
            for pid, value in params:
                a.action.params.add(param_id=pid, value=value)
    return te


# --- wire decoding ---------------------------------------------------------------


class _Fallback(Exception):
    """Something the fast path does not handle: use protobuf."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Fallback


def _skip(buf: bytes, pos: int, wt: int) -> int:
    if wt == 0:
        return _varint(buf, pos)[1]
    if wt == 1:
        return pos + 8
    if wt == 2:
        n, pos = _varint(buf, pos)
        return pos + n
    if wt == 5:
        return pos + 4
    raise _Fallback


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _int64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & 0x8000000000000000 else v


def _two_bytes(buf: bytes, pos: int, end: int) -> tuple[bytes, bytes, int]:
    """A message of (1: bytes a, 2: bytes b | varint b); returns the pieces."""
    a = b = b""
    bi = 0
    while pos < end:
        key = buf[pos]
        pos += 1
        if key in {0x0A, 0x12}:  # 1 or 2, length-delimited
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos)
            if key == 0x0A:
                a = buf[pos : pos + n]
            else:
                b = buf[pos : pos + n]
            pos += n
        elif key == 0x10:  # 2, varint (LPM prefix_len)
            bi, pos = _varint(buf, pos)
        else:
            raise _Fallback
    if pos != end:
        raise _Fallback
    return a, b, bi


_MATCH_BY_TAG = {0x12: "exact", 0x1A: "ternary", 0x22: "lpm", 0x32: "range", 0x3A: "optional"}


def _field_match(buf: bytes, pos: int, end: int) -> RawMatch:
    # The common form, an exact match with one-byte field id and lengths:
    # 08 <fid> 12 <n> 0A <len> <value>; the general loop below handles the rest.
    if end - pos >= 6 and buf[pos] == 0x08 and buf[pos + 2] == 0x12:
        fid = buf[pos + 1]
        n = buf[pos + 3]
        if fid < 0x80 and n < 0x80 and pos + 4 + n == end and buf[pos + 4] == 0x0A:
            ln = buf[pos + 5]
            if ln < 0x80 and pos + 6 + ln == end:
                return (fid, "exact", buf[pos + 6 : end], b"", 0)
    fid = 0
    kind = ""
    a = b = b""
    plen = 0
    while pos < end:
        key = buf[pos]
        pos += 1
        if key == 0x08:  # 1: field_id
            fid = buf[pos]
            if fid < 0x80:
                pos += 1
            else:
                fid, pos = _varint(buf, pos)
        else:
            k = _MATCH_BY_TAG.get(key)
            if k is None or kind:
                raise _Fallback
            kind = k
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos)
            a, b, plen = _two_bytes(buf, pos, pos + n)
            pos += n
    if pos != end or not kind:
        raise _Fallback
    if kind == "lpm":
        return (fid, kind, a, b"", _int32(plen))
    if kind in {"exact", "optional"}:
        return (fid, kind, a, b"", 0)
    return (fid, kind, a, b, 0)


def _param(buf: bytes, pos: int, end: int) -> tuple[int, bytes]:
    # The common form: 10 <pid> 1A <len> <value>, all one-byte varints.
    if end - pos >= 4 and buf[pos] == 0x10 and buf[pos + 2] == 0x1A:
        pid = buf[pos + 1]
        ln = buf[pos + 3]
        if pid < 0x80 and ln < 0x80 and pos + 4 + ln == end:
            return pid, buf[pos + 4 : end]
    pid = 0
    value = b""
    while pos < end:
        key = buf[pos]
        pos += 1
        if key == 0x10:  # 2: param_id
            pid = buf[pos]
            if pid < 0x80:
                pos += 1
            else:
                pid, pos = _varint(buf, pos)
        elif key == 0x1A:  # 3: value
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos)
            value = buf[pos : pos + n]
            pos += n
        else:
            raise _Fallback
    if pos != end:
        raise _Fallback
    return pid, value


def _table_action(buf: bytes, pos: int, end: int, raw: RawTableEntry) -> None:
    seen = False
    while pos < end:
        key = buf[pos]
        pos += 1
        if seen:
            raise _Fallback
        seen = True
        if key == 0x0A:  # 1: action
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos)
            aend = pos + n
            raw.action_kind = "action"
            params = raw.params
            while pos < aend:
                k2 = buf[pos]
                pos += 1
                if k2 == 0x08:
                    aid = buf[pos]
                    if aid < 0x80:
                        raw.action_id = aid
                        pos += 1
                    else:
                        raw.action_id, pos = _varint(buf, pos)
                elif k2 == 0x22:
                    n2 = buf[pos]
                    if n2 < 0x80:
                        pos += 1
                    else:
                        n2, pos = _varint(buf, pos)
                    params.append(_param(buf, pos, pos + n2))
                    pos += n2
                else:
                    raise _Fallback
            if pos != aend:
                raise _Fallback
        elif key == 0x10:
            raw.action_kind = "member"
            raw.ref_id, pos = _varint(buf, pos)
        elif key == 0x18:
            raw.action_kind = "group"
            raw.ref_id, pos = _varint(buf, pos)
        else:
            raise _Fallback
    if pos != end:
        raise _Fallback


def _table_entry(buf: bytes, pos: int, end: int) -> RawTableEntry:
    raw = RawTableEntry()
    matches = raw.matches
    has_action = False
    while pos < end:
        key = buf[pos]
        pos += 1
        if key >= 0x80:
            raise _Fallback  # field numbers >= 16: not in TableEntry's fast path
        num, wt = key >> 3, key & 7
        if wt == 2:
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos)
            sub_end = pos + n
            if num == 2:
                matches.append(_field_match(buf, pos, sub_end))
            elif num == 3 and not has_action:
                has_action = True
                _table_action(buf, pos, sub_end, raw)
            elif num == 11:
                raw.metadata = buf[pos:sub_end]
            else:
                raise _Fallback  # counter_data, meters, action sets: protobuf path
            pos = sub_end
        elif wt == 0:
            v, pos = _varint(buf, pos)
            if num == 1:
                raw.table_id = v
            elif num == 4:
                raw.priority = _int32(v)
            elif num == 5:
                raw.controller_metadata = v
            elif num == 8:
                raw.is_default_action = bool(v)
            elif num == 9:
                raw.idle_timeout_ns = _int64(v)
            elif num == 13:
                raw.is_const = bool(v)
            else:
                raise _Fallback
        else:
            raise _Fallback
    if pos != end:
        raise _Fallback
    return raw


def decode_table_entry(data: bytes) -> RawTableEntry:
    """A serialized TableEntry as a RawTableEntry (what the store keeps)."""
    try:
        return _table_entry(data, 0, len(data))
    except (_Fallback, IndexError):
        return raw_from_proto(p4runtime_pb2.TableEntry.FromString(data))


@dataclass(slots=True)
class WriteBatch:
    device_id: int = 0
    role: str = ""
    election_id: int = 0
    atomicity: int = 0
    #: (update type, FastEntry or RawTableEntry for table entries /
    #: p4runtime_pb2.Entity otherwise)
    updates: list[tuple[int, Any]] = field(default_factory=list)


def _update(
    buf: bytes, pos: int, end: int, parsers: Mapping[bytes, EntryParser] | None
) -> tuple[int, Any]:
    if parsers and end - pos > 11 and buf[pos] == 0x08 and buf[pos + 2] == 0x12:
        # The common form, 08 <type> 12 <n> 12 <n-2> <table entry>, with
        # one-byte lengths, to the compiled parser of its table if it has one
        n = buf[pos + 3]
        if (
            n < 0x80
            and buf[pos + 1] < 0x80
            and pos + 4 + n == end
            and buf[pos + 4] == 0x12
            and buf[pos + 5] == n - 2
            and (parser := parsers.get(buf[pos + 6 : pos + 11]))
        ):
            fast = parser(buf, pos + 11, pos + 6, end)
            if fast is not None:
                return buf[pos + 1], fast
    utype = 0
    entity: Any = None
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        if key == 0x08:
            utype, pos = _varint(buf, pos)
        elif key == 0x12 and entity is None:
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos)
            sub_end = pos + n
            if n and buf[pos] == 0x12:  # Entity.table_entry, alone?
                k, p2 = _varint(buf, pos + 1)
                if p2 + k == sub_end:
                    try:
                        entity = _table_entry(buf, p2, sub_end)
                    except _Fallback:  # e.g. counter data or meters: protobuf below
                        entity = None
            if entity is None:
                entity = p4runtime_pb2.Entity.FromString(buf[pos:sub_end])
                if entity.WhichOneof("entity") == "table_entry":
                    entity = raw_from_proto(entity.table_entry)
            pos = sub_end
        else:
            raise _Fallback
    if pos != end:
        raise _Fallback
    if entity is None:
        entity = p4runtime_pb2.Entity()
    return utype, entity


def _decode_fast(buf: bytes, parsers: Mapping[bytes, EntryParser] | None = None) -> WriteBatch:
    batch = WriteBatch()
    pos = 0
    end = len(buf)
    seen_eid = False
    updates = batch.updates
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        if key == 0x22:  # the updates, most of a request: first
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos)
            updates.append(_update(buf, pos, pos + n, parsers))
            pos += n
        elif key == 0x08:
            batch.device_id, pos = _varint(buf, pos)
        elif key == 0x10:
            _, pos = _varint(buf, pos)  # role_id (deprecated)
        elif key == 0x1A and not seen_eid:
            seen_eid = True
            n, pos = _varint(buf, pos)
            sub_end = pos + n
            high = low = 0
            while pos < sub_end:
                k, pos = _varint(buf, pos)
                if k == 0x08:
                    high, pos = _varint(buf, pos)
                elif k == 0x10:
                    low, pos = _varint(buf, pos)
                else:
                    raise _Fallback
            if pos != sub_end:
                raise _Fallback
            batch.election_id = (high << 64) | low
        elif key == 0x28:
            batch.atomicity, pos = _varint(buf, pos)
        elif key == 0x32:
            n, pos = _varint(buf, pos)
            batch.role = buf[pos : pos + n].decode("utf-8")
            pos += n
        else:
            raise _Fallback
    if pos != end:
        raise _Fallback
    return batch


def batch_from_proto(req: p4runtime_pb2.WriteRequest) -> WriteBatch:
    batch = WriteBatch(
        device_id=req.device_id,
        role=req.role,
        election_id=(req.election_id.high << 64) | req.election_id.low,
        atomicity=req.atomicity,
    )
    for u in req.updates:
        if u.entity.WhichOneof("entity") == "table_entry":
            batch.updates.append((u.type, raw_from_proto(u.entity.table_entry)))
        else:
            batch.updates.append((u.type, u.entity))
    return batch


def count_updates(data: bytes) -> int:
    """The number of updates in a serialized WriteRequest, without decoding
    them (a scan of its top-level fields): what a server checks against its
    limit before doing any work per update. Stops at the first malformed
    field; decode_write_request reports that one."""
    count = 0
    pos = 0
    end = len(data)
    try:
        while pos < end:
            key, pos = _varint(data, pos)
            if key == 0x22:
                count += 1
            pos = _skip(data, pos, key & 7)
    except (_Fallback, IndexError):
        pass
    return count


def decode_write_request(
    data: bytes, parsers: Mapping[bytes, EntryParser] | None = None
) -> WriteBatch:
    """Decode a serialized WriteRequest; raises google.protobuf DecodeError if malformed.

    ``parsers`` (from the store, by `table_entry_prefix`) turn the entries
    they accept into `FastEntry`s. P4RuntimeServer.Write calls this with the cyclic GC
    off (decoding allocates many objects and creates no cycles)."""
    try:
        return _decode_fast(data, parsers)
    except (_Fallback, IndexError, UnicodeDecodeError):
        pass
    except Exception:  # protobuf rejecting an entity slice: decide on the whole request
        pass
    return batch_from_proto(p4runtime_pb2.WriteRequest.FromString(data))


# --- compiled entry parsers -----------------------------------------------------


@dataclass(frozen=True)
class ActionSpec:
    action_id: int
    name: str
    params: tuple[tuple[int, int], ...]  # (param id, bitwidth) in P4Info order
    writer: Any  # the api.FastWriter of the table and action


class FastEntry(NamedTuple):
    """A table entry its table's compiled parser decoded and checked: what
    the store needs to insert, modify or delete it without the general path."""

    plan: Any  # the store's object the parser was compiled for
    full_key: tuple[tuple[int, tuple[int, ...]], ...]  # the store's canonical key
    ikey: Any  # the engine's index key (api.Engine.fast_writer)
    plen: int
    action: ActionSpec
    args: tuple[int, ...]
    wire: bytes  # the TableEntry as sent (its values maybe zero-padded)


@dataclass(frozen=True)
class FieldSpec:
    field_id: int
    kind: str  # "exact" or "lpm"
    bitwidth: int


#: parser(buf, pos, start, end): the TableEntry is buf[start:end] and its
#: table_id ends at pos; None when the entry is not of the parser's shape.
EntryParser = Callable[[bytes, int, int, int], FastEntry | None]


def table_entry_prefix(table_id: int) -> bytes | None:
    """The bytes a TableEntry of this table starts with, 08 <table id>, by
    which decode_write_request finds a table's parser; None for an id
    whose varint is not 4 bytes (P4Runtime table ids, 0x02 in their top
    byte, all have 4-byte varints)."""
    prefix = b"\x08" + encode_varint(table_id)
    return prefix if len(prefix) == 5 else None


#: widest field or param the compiled parsers take (lengths stay one-byte varints)
_FAST_MAX_BYTES = 64


def encode_varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def compile_entry_parser(
    name: str, plan: Any, fields: Sequence[FieldSpec], actions: Sequence[ActionSpec]
) -> EntryParser | None:
    """Generate the parser of one table's common entry: its match fields in
    P4Info order, each once, then a direct action of ``actions`` with its
    params in order, all values within their widths (canonical or padded
    with zero bytes up to the width); nothing else (priority, metadata, counter data...). The
    parser checks what the store's general path checks for such an entry
    and returns None for anything else. ``fields``: all exact, or exact
    and one lpm. None if the table's shape has no compiled form."""
    lpm = [f for f in fields if f.kind == "lpm"]
    if not fields or len(lpm) > 1 or any(f.kind not in ("exact", "lpm") for f in fields):
        return None
    if len({f.field_id for f in fields}) != len(fields) or not actions:
        return None
    widths = [f.bitwidth for f in fields] + [bw for a in actions for _, bw in a.params]
    if any(not 0 < bw <= _FAST_MAX_BYTES * 8 for bw in widths):
        return None
    consts: dict[str, Any] = {
        "_PLAN": plan,
        "_new": tuple.__new__,
        "_FI": FastEntry,
        "_int": int.from_bytes,
    }
    lines = ["def parse(buf, pos, start, end):", " try:"]
    emit = lines.append

    def value(var: str, at: str, bitwidth: int) -> None:
        # the value of length l at `at`, within its width
        emit(f"  {var} = _int(buf[{at}:{at} + l], 'big')")
        if bitwidth % 8:
            emit(f"  if {var} >> {bitwidth}: return None")

    for i, f in enumerate(fields):
        nbytes = (f.bitwidth + 7) >> 3
        fid = encode_varint(f.field_id)
        if f.kind == "exact":
            # 12 <n> 08 <fid> 12 <m> 0A <l> <value>: one header per length l
            k = 7 + len(fid)
            consts[f"_H{i}"] = (
                b"",
                *(
                    bytes([0x12, n + 5 + len(fid), 0x08]) + fid + bytes([0x12, n + 2, 0x0A, n])
                    for n in range(1, nbytes + 1)
                ),
            )
            emit(f"  l = buf[pos + {k - 1}]")
            emit(f"  if l > {nbytes} or buf[pos:pos + {k}] != _H{i}[l]: return None")
            value(f"x{i}", f"pos + {k}", f.bitwidth)
            emit(f"  pos += {k} + l")
        else:
            # 12 <n> 08 <fid> 22 <m> 0A <l> <value> 10 <prefix_len>
            consts[f"_F{i}"] = b"\x08" + fid + b"\x22"
            lf = len(fid) + 2
            emit("  n = buf[pos + 1]")
            emit(f"  if buf[pos] != 0x12 or buf[pos + 2:pos + {2 + lf}] != _F{i}: return None")
            emit(f"  q = pos + {2 + lf}")
            emit("  m = buf[q]")
            emit(f"  if n != m + {lf + 1} or buf[q + 1] != 0x0A: return None")
            emit("  l = buf[q + 2]")
            emit(f"  if not 0 < l <= {nbytes}: return None")
            value(f"x{i}", "q + 3", f.bitwidth)
            emit("  r = q + 3 + l")
            emit("  if buf[r] != 0x10: return None")
            emit("  pl = buf[r + 1]")
            emit("  if pl < 0x80: r += 2")
            emit("  elif buf[r + 2] == 1: r += 3")
            emit("  else: return None")
            emit(f"  if r != q + 1 + m or not 0 < pl <= {f.bitwidth}: return None")
            emit(f"  if x{i} & ((1 << ({f.bitwidth} - pl)) - 1): return None")
            emit("  pos = r")
    by_id = sorted(range(len(fields)), key=lambda i: fields[i].field_id)
    key = ", ".join(
        f"({fields[i].field_id}, (x{i}, pl))"
        if fields[i].kind == "lpm"
        else f"({fields[i].field_id}, (x{i},))"
        for i in by_id
    )
    full_key = f"({key}, (-1, (0,)))"
    xs = ", ".join(f"x{i}" for i in range(len(fields)))
    if lpm:
        ikey, plen = f"({xs},)", "pl"
    else:
        ikey, plen = (xs if len(fields) == 1 else f"({xs})"), "0"
    # 1A <n> 0A <n-2> 08 <action id> (22 <k> 10 <pid> 1A <l> <value>)*
    emit("  n = buf[pos + 1]")
    emit("  if buf[pos] != 0x1A or n >= 0x80 or pos + 2 + n != end: return None")
    emit("  if buf[pos + 2] != 0x0A or buf[pos + 3] != n - 2: return None")
    emit("  pos += 4")
    for a_i, a in enumerate(actions):
        aid = b"\x08" + encode_varint(a.action_id)
        consts[f"_A{a_i}"] = aid
        consts[f"_ACT{a_i}"] = a
        emit(f"  {'if' if a_i == 0 else 'elif'} buf[pos:pos + {len(aid)}] == _A{a_i}:")
        emit(f"   pos += {len(aid)}")
        for j, (pid_, bw) in enumerate(a.params):
            nbytes = (bw + 7) >> 3
            pid = encode_varint(pid_)
            k = 5 + len(pid)
            consts[f"_P{a_i}_{j}"] = (
                b"",
                *(
                    bytes([0x22, n + 3 + len(pid), 0x10]) + pid + bytes([0x1A, n])
                    for n in range(1, nbytes + 1)
                ),
            )
            emit(f"   l = buf[pos + {k - 1}]")
            emit(f"   if l > {nbytes} or buf[pos:pos + {k}] != _P{a_i}_{j}[l]: return None")
            emit(f"   y{j} = _int(buf[pos + {k}:pos + {k} + l], 'big')")
            if bw % 8:
                emit(f"   if y{j} >> {bw}: return None")
            emit(f"   pos += {k} + l")
        args = "".join(f"y{j}, " for j in range(len(a.params)))
        emit("   if pos != end: return None")
        emit(
            f"   return _new(_FI, (_PLAN, {full_key}, {ikey}, {plen}, _ACT{a_i}, "
            f"({args}), buf[start:end]))"
        )
    emit("  return None")
    emit(" except IndexError:")
    emit("  return None")
    namespace = dict(consts)
    exec(compile("\n".join(lines), f"<entry parser of {name}>", "exec"), namespace)
    parser: EntryParser = namespace["parse"]
    return parser


# --- table entry encoding --------------------------------------------------------

#: FieldMatch's field for each match kind (its tag byte, length-delimited)
_MATCH_TAG = {kind: bytes([tag]) for tag, kind in _MATCH_BY_TAG.items()}


def _delimited(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (bytes([n]) if n < 0x80 else encode_varint(n)) + payload


def _bytes_field(tag: bytes, value: bytes) -> bytes:
    """A proto3 bytes field: absent when empty."""
    return _delimited(tag, value) if value else b""


def _varint_field(tag: bytes, value: int) -> bytes:
    """A proto3 unsigned varint field: absent when zero."""
    return tag + encode_varint(value) if value else b""


def encode_table_entry(raw: RawTableEntry, counter_data: bytes | None = None) -> bytes | None:
    """The bytes protobuf serializes for raw_to_proto(raw), with
    ``counter_data`` (a serialized CounterData) set if given, without
    building the message (the pure-Python runtime takes ~100 µs per
    entry); None for what it does not cover (one-shot action sets,
    negative priorities, an idle timeout), which the caller serializes
    through protobuf."""
    if raw.action_kind == "action_set" or raw.priority < 0 or raw.idle_timeout_ns:
        return None
    out = [_varint_field(b"\x08", raw.table_id)]
    for fid, kind, a, b, plen in raw.matches:
        if kind in ("exact", "optional"):
            body = _bytes_field(b"\x0a", a)
        elif kind == "lpm":
            body = _bytes_field(b"\x0a", a) + _varint_field(b"\x10", plen)
        elif kind in ("ternary", "range"):
            body = _bytes_field(b"\x0a", a) + _bytes_field(b"\x12", b)
        else:
            return None
        out.append(
            _delimited(b"\x12", _varint_field(b"\x08", fid) + _delimited(_MATCH_TAG[kind], body))
        )
    if raw.action_kind == "action":
        action = _varint_field(b"\x08", raw.action_id) + b"".join(
            _delimited(b"\x22", _varint_field(b"\x10", pid) + _bytes_field(b"\x1a", value))
            for pid, value in raw.params
        )
        out.append(_delimited(b"\x1a", _delimited(b"\x0a", action)))
    elif raw.action_kind == "member":
        out.append(_delimited(b"\x1a", b"\x10" + encode_varint(raw.ref_id)))
    elif raw.action_kind == "group":
        out.append(_delimited(b"\x1a", b"\x18" + encode_varint(raw.ref_id)))
    elif raw.action_kind:
        return None
    out.append(_varint_field(b"\x20", raw.priority))
    out.append(_varint_field(b"\x28", raw.controller_metadata))
    if counter_data is not None:
        out.append(_delimited(b"\x3a", counter_data))
    if raw.is_default_action:
        out.append(b"\x40\x01")
    out.append(_bytes_field(b"\x5a", raw.metadata))
    if raw.is_const:
        out.append(b"\x68\x01")
    return b"".join(out)


def table_entry_entity(table_entry: bytes) -> bytes:
    """A serialized Entity holding this serialized TableEntry."""
    return _delimited(b"\x12", table_entry)


def read_response(entities: Sequence[bytes]) -> bytes:
    """A serialized ReadResponse of these serialized Entities."""
    return b"".join(_delimited(b"\x0a", e) for e in entities)
