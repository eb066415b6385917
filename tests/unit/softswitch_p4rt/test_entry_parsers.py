"""The compiled entry parsers (softswitch.p4rt_wire.compile_entry_parser)
against the general write path they stand in for.

Two devices on the real engine get the same serialized WriteRequests; one
decodes them with the store's compiled parsers, the other without. Every
per-update result (code and message), the entries read back and the engine's
table indexes must be the same, for valid entries (canonical and zero-padded
values) and for every kind of bad entry and byte-level mutation; and the
valid entries must actually take the fast path."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from google.rpc import code_pb2
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2

from softswitch.engine import SoftEngine
from softswitch.p4rt_store import DeviceState
from softswitch.p4rt_wire import (
    ActionSpec,
    FastEntry,
    FieldSpec,
    compile_entry_parser,
    decode_write_request,
    encode_varint,
)

from .p4rt_data import load_config, load_esvpn_config

INSERT = p4runtime_pb2.Update.INSERT
MODIFY = p4runtime_pb2.Update.MODIFY
DELETE = p4runtime_pb2.Update.DELETE
CFG = p4runtime_pb2.SetForwardingPipelineConfigRequest
_MF = p4info_pb2.MatchField
_SCOPE = p4info_pb2.ActionRef


CONFIGS: dict[str, Callable[[], p4runtime_pb2.ForwardingPipelineConfig]] = {
    "p4rt_test": load_config,
    "esvpn": load_esvpn_config,
}

Result = tuple[int, str] | None


class Pair:
    """A device with the compiled parsers and one without, fed alike."""

    def __init__(self, config: p4runtime_pb2.ForwardingPipelineConfig) -> None:
        self.p4info = config.p4info
        self.fast = DeviceState(SoftEngine(), 1)
        self.slow = DeviceState(SoftEngine(), 1)
        for d in (self.fast, self.slow):
            d.set_pipeline(CFG.VERIFY_AND_COMMIT, config)
        assert self.fast.entry_parsers  # the programs have fast tables
        self.fast_taken = 0

    def _apply(self, dev: DeviceState, blob: bytes, fast: bool) -> list[Result] | str:
        try:
            batch = decode_write_request(blob, dev.entry_parsers if fast else None)
        except DecodeError as exc:
            return f"DecodeError {exc}"
        if fast:
            self.fast_taken += sum(type(e) is FastEntry for _, e in batch.updates)
        out: list[Result] = []
        for r in dev.write_entities(batch.updates):
            out.append(None if r is None else (r.code, r.message))
        return out

    def write(self, blob: bytes) -> list[Result] | str:
        got = self._apply(self.fast, blob, True)
        want = self._apply(self.slow, blob, False)
        assert got == want
        return got

    def check_same_state(self) -> None:
        def entries(dev: DeviceState) -> list[bytes]:
            got = dev.read([p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry())])
            return sorted(e.SerializeToString(deterministic=True) for e in got)

        assert entries(self.fast) == entries(self.slow)
        assert engine_tables(self.fast.engine) == engine_tables(self.slow.engine)


def engine_tables(engine: Any) -> dict[str, Any]:
    """What the engine matches on: each table's index, by key."""
    out: dict[str, Any] = {}
    for name, t in engine._tables.items():
        exact = {k: (e.action, e.args, e.priority) for k, e in t.exact.items()}
        lpm = {plen: {k: (e.action, e.args) for k, e in d.items()} for plen, d in t.lpm.items()}
        out[name] = (exact, lpm, sorted(t.lpm_lens, reverse=True) == t.lpm_lens, len(t.entries))
    return out


@pytest.fixture(params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest) -> Pair:
    return Pair(CONFIGS[request.param]())


def fast_tables(p4info: p4info_pb2.P4Info) -> list[p4info_pb2.Table]:
    return [
        t
        for t in p4info.tables
        if t.match_fields
        and not t.implementation_id
        and not t.is_const_table
        and all(m.match_type in (_MF.EXACT, _MF.LPM) for m in t.match_fields)
    ]


class Gen:
    """Random entries of a program's fast tables."""

    def __init__(self, p4info: p4info_pb2.P4Info, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tables = fast_tables(p4info)
        self.actions = {a.preamble.id: a for a in p4info.actions}

    def value(self, bitwidth: int, padded: bool) -> tuple[int, bytes]:
        v = self.rng.choice([0, 1, (1 << bitwidth) - 1, self.rng.getrandbits(bitwidth)])
        n = (bitwidth + 7) // 8 if padded else max(1, (v.bit_length() + 7) // 8)
        return v, v.to_bytes(n, "big")

    def entry(self, t: p4info_pb2.Table | None = None, padded: bool = False) -> Any:
        t = t or self.rng.choice(self.tables)
        te = p4runtime_pb2.TableEntry(table_id=t.preamble.id)
        for m in t.match_fields:
            fm = te.match.add(field_id=m.id)
            if m.match_type == _MF.EXACT:
                fm.exact.value = self.value(m.bitwidth, padded)[1]
            else:
                plen = self.rng.choice([1, m.bitwidth, self.rng.randint(1, m.bitwidth)])
                v, _ = self.value(m.bitwidth, padded)
                v &= ((1 << m.bitwidth) - 1) ^ ((1 << (m.bitwidth - plen)) - 1)
                n = (m.bitwidth + 7) // 8 if padded else max(1, (v.bit_length() + 7) // 8)
                fm.lpm.value = v.to_bytes(n, "big")
                fm.lpm.prefix_len = plen
        refs = [a for a in t.action_refs if a.scope != _SCOPE.DEFAULT_ONLY]
        action = self.actions[self.rng.choice(refs).id]
        te.action.action.action_id = action.preamble.id
        for p in action.params:
            te.action.action.params.add(param_id=p.id, value=self.value(p.bitwidth, padded)[1])
        return te


def key_of(te: p4runtime_pb2.TableEntry) -> Any:
    return te.table_id, tuple(
        (m.field_id, int.from_bytes(m.exact.value or m.lpm.value, "big"), m.lpm.prefix_len)
        for m in te.match
    )


def request(*updates: tuple[int, p4runtime_pb2.TableEntry]) -> bytes:
    req = p4runtime_pb2.WriteRequest(device_id=1)
    req.election_id.low = 1
    for utype, te in updates:
        req.updates.add(type=utype).entity.table_entry.CopyFrom(te)
    return req.SerializeToString()


def test_valid_entries_take_the_fast_path_with_the_same_outcome(pair: Pair) -> None:
    gen = Gen(pair.p4info, seed=1)
    batch = [gen.entry(padded=i % 2 == 1) for i in range(400)]
    results = pair.write(request(*((INSERT, te) for te in batch)))
    assert isinstance(results, list)
    assert pair.fast_taken == len(batch)
    # random keys repeat (small tables): ALREADY_EXISTS, decided by the general path
    first: dict[Any, int] = {}
    for i, te in enumerate(batch):
        first.setdefault(key_of(te), i)
    assert [i for i, r in enumerate(results) if r is None] == sorted(first.values())
    assert {r[1].split(":")[-1] for r in results if r is not None} == {" entry already exists"}
    pair.check_same_state()
    # modify and delete what the fast path stored, then insert it again
    mods = [(MODIFY, gen.entry(t)) for t in gen.tables]
    pair.write(request(*((MODIFY, te) for te in batch[:50]), *mods))
    pair.write(request(*((DELETE, te) for te in batch[50:100])))
    pair.check_same_state()
    pair.write(request(*((INSERT, te) for te in batch[:120])))
    pair.check_same_state()


def bad_entries(
    gen: Gen, t: p4info_pb2.Table, action: p4info_pb2.Action, serial: Iterator[int]
) -> Iterator[p4runtime_pb2.TableEntry]:
    """One-mistake variants of a valid entry of t with this action, each with
    a key of its own (an existing key would be refused before the mistake)."""
    base = gen.entry(t)
    base.action.action.action_id = action.preamble.id
    del base.action.action.params[:]
    for p in action.params:
        base.action.action.params.add(param_id=p.id, value=gen.value(p.bitwidth, False)[1])
    first = t.match_fields[0]

    def variant(fn: Callable[[p4runtime_pb2.TableEntry], None]) -> p4runtime_pb2.TableEntry:
        te = p4runtime_pb2.TableEntry()
        te.CopyFrom(base)
        value = next(serial).to_bytes((first.bitwidth + 7) // 8, "big")
        if first.match_type == _MF.EXACT:
            te.match[0].exact.value = value
        else:
            te.match[0].lpm.value, te.match[0].lpm.prefix_len = value, first.bitwidth
        fn(te)
        return te

    for i, m in enumerate(t.match_fields):
        nbytes = (m.bitwidth + 7) // 8

        def put(te: p4runtime_pb2.TableEntry, value: bytes, i: int = i) -> None:
            fm = te.match[i]
            (fm.exact if fm.WhichOneof("field_match_type") == "exact" else fm.lpm).value = value

        yield variant(lambda te, put=put, n=nbytes: put(te, b"\x01" + bytes(n)))  # too long
        yield variant(lambda te, put=put: put(te, b""))  # empty
        if m.bitwidth % 8:
            yield variant(
                lambda te, put=put, m=m: put(
                    te, (1 << m.bitwidth).to_bytes((m.bitwidth + 7) // 8, "big")
                )
            )  # one bit too wide
        yield variant(lambda te, i=i: te.match[i].__setattr__("field_id", 99))
        yield variant(lambda te, i=i: te.match.pop(i))
        if m.match_type == _MF.LPM:
            yield variant(lambda te, i=i: te.match[i].lpm.__setattr__("prefix_len", 0))
            yield variant(
                lambda te, i=i, m=m: te.match[i].lpm.__setattr__("prefix_len", m.bitwidth + 1)
            )
            yield variant(
                lambda te, i=i, m=m: (
                    te.match[i].lpm.__setattr__("prefix_len", 1),
                    te.match[i].lpm.__setattr__("value", b"\x01"),
                )
            )
        else:  # the same field as lpm
            yield variant(
                lambda te, i=i: (
                    te.match[i].lpm.__setattr__("value", te.match[i].exact.value),
                    te.match[i].lpm.__setattr__("prefix_len", 1),
                )
            )
    if len(t.match_fields) > 1:  # fields out of P4Info order (valid: the general path)
        yield variant(lambda te: te.match.insert(0, te.match.pop()))
        yield variant(lambda te: te.match.append(te.match[0]))  # given twice
    yield variant(lambda te: te.__setattr__("priority", 5))
    yield variant(lambda te: te.__setattr__("controller_metadata", 5))  # valid
    yield variant(lambda te: te.__setattr__("metadata", b"cookie"))  # valid
    yield variant(lambda te: te.__setattr__("is_default_action", True))
    yield variant(lambda te: te.action.action.__setattr__("action_id", 12345))
    yield variant(lambda te: te.ClearField("action"))
    yield variant(lambda te: te.action.__setattr__("action_profile_member_id", 1))
    for a in t.action_refs:
        if a.scope == _SCOPE.DEFAULT_ONLY:
            yield variant(
                lambda te, a=a: (
                    te.action.action.__setattr__("action_id", a.id),
                    te.action.action.ClearField("params"),
                )
            )
    if action.params:
        yield variant(lambda te: te.action.action.params.pop())
        yield variant(lambda te: te.action.action.params.append(te.action.action.params[0]))
        yield variant(lambda te: te.action.action.params[0].__setattr__("param_id", 99))
        yield variant(lambda te: te.action.action.params[0].__setattr__("value", b""))
        p = action.params[0]
        yield variant(
            lambda te, p=p: te.action.action.params[0].__setattr__(
                "value", b"\x01" + bytes((p.bitwidth + 7) // 8)
            )
        )
        for j, p in enumerate(action.params):
            if p.bitwidth % 8:  # one bit too wide
                yield variant(
                    lambda te, j=j, p=p: te.action.action.params[j].__setattr__(
                        "value", (1 << p.bitwidth).to_bytes((p.bitwidth + 7) // 8, "big")
                    )
                )
        if len(action.params) > 1:  # params out of order (valid: the general path)
            yield variant(
                lambda te: te.action.action.params.insert(0, te.action.action.params.pop())
            )
    else:
        yield variant(lambda te: te.action.action.params.add(param_id=1, value=b"\x01"))


def test_bad_entries_get_the_general_paths_errors(pair: Pair) -> None:
    gen = Gen(pair.p4info, seed=2)
    errors: set[str] = set()
    for t in gen.tables:
        serial = iter(range(1, 1 << t.match_fields[0].bitwidth))  # the first field's values
        for ref in t.action_refs:
            if ref.scope == _SCOPE.DEFAULT_ONLY:
                continue
            bad = list(bad_entries(gen, t, gen.actions[ref.id], serial))
            results = pair.write(request(*((INSERT, te) for te in bad)))
            assert isinstance(results, list) and len(results) == len(bad)
            errors |= {r[1] for r in results if r is not None}
    pair.check_same_state()
    # every kind of mistake reached the check that reports it
    for kind in (
        "unknown match field id 99",
        "given twice",
        "exact match field is missing",
        "bytes does not fit in",
        "does not fit in 9 bits",
        "empty bytestring",
        "is a exact field, got lpm",
        "prefix length 0 is a don't-care",
        "exceeds 32 bits",
        "has bits set beyond /1",
        "priority must be 0",
        "default entry: only MODIFY is allowed",
        "entry has no action",
        "has no action profile; give a direct action",
        "missing",
        "takes 0 params, got 1",
    ):
        assert any(kind in m for m in errors), kind
    if any(r.scope == _SCOPE.DEFAULT_ONLY for t in gen.tables for r in t.action_refs):
        assert any("is default-only" in m for m in errors)


def test_full_table_and_existing_keys_are_decided_by_the_general_path(pair: Pair) -> None:
    gen = Gen(pair.p4info, seed=3)
    t = min(gen.tables, key=lambda t: t.size)
    assert 2 ** sum(m.bitwidth for m in t.match_fields) > t.size + 3
    keys: dict[bytes, p4runtime_pb2.TableEntry] = {}
    while len(keys) < t.size + 3:
        te = gen.entry(t)
        keys.setdefault(b"".join(m.SerializeToString() for m in te.match), te)
    batch = list(keys.values())
    batch[5:5] = batch[:5]  # five keys again, before the table is full
    results = pair.write(request(*((INSERT, te) for te in batch)))
    assert isinstance(results, list)
    assert [r is None for r in results].count(False) == 5 + 3
    pair.check_same_state()


def test_byte_mutations_decode_and_write_alike(pair: Pair) -> None:
    gen = Gen(pair.p4info, seed=4)
    rng = random.Random(5)
    for _ in range(300):
        blob = bytearray(
            request(*((INSERT, gen.entry(padded=rng.random() < 0.5)) for _ in range(3)))
        )
        for _ in range(rng.choice([1, 1, 2, 3])):
            i = rng.randrange(len(blob))
            blob[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, blob[i] ^ 1, rng.randrange(256)])
        if rng.random() < 0.2:
            del blob[rng.randrange(len(blob))]
        pair.write(bytes(blob))
    assert pair.fast_taken > 0
    pair.check_same_state()


def test_the_parser_reads_only_its_entry() -> None:
    """A parser given the bytes of an entry with more after it (the next
    update) accepts exactly the entry and no byte beyond."""
    parser = compile_entry_parser(
        "t",
        "plan",
        [FieldSpec(1, "exact", 9), FieldSpec(2, "lpm", 128)],
        [ActionSpec(7, "a", ((1, 16),), None)],  # parsing writes nothing
    )
    assert parser is not None
    te = p4runtime_pb2.TableEntry(table_id=0x02000001)
    te.match.add(field_id=1).exact.value = b"\x01\x00"
    te.match.add(field_id=2).lpm.value = bytes(15) + b"\x80"
    te.match[1].lpm.prefix_len = 128  # a two-byte varint
    te.action.action.action_id = 7
    te.action.action.params.add(param_id=1, value=b"\x00\x05")
    wire = te.SerializeToString()
    tid = len(b"\x08" + encode_varint(te.table_id))
    got = parser(wire + b"\x1a\x00", tid, 0, len(wire))
    assert got is not None
    assert got.full_key == ((1, (256,)), (2, (128, 128)), (-1, (0,)))
    assert (got.ikey, got.plen, got.args, got.wire) == ((256, 128), 128, (5,), wire)
    for end in range(tid, len(wire)):  # every truncation is refused, nothing read past it
        assert parser(wire[:end] + wire[end:], tid, 0, end) is None


def test_read_back_of_a_fast_entry_is_canonical() -> None:
    pair = Pair(load_config())
    gen = Gen(pair.p4info, seed=6)
    l2 = next(t for t in gen.tables if t.preamble.name.endswith(".l2"))
    te = gen.entry(l2, padded=True)
    te.match[0].exact.value = bytes(5) + b"\x07"
    assert pair.write(request((INSERT, te))) == [None]
    assert pair.fast_taken == 1
    want = p4runtime_pb2.TableEntry(table_id=l2.preamble.id)
    (got,) = pair.fast.read([p4runtime_pb2.Entity(table_entry=want)])
    assert got.table_entry.match[0].exact.value == b"\x07"
    pair.check_same_state()


def test_programs_tables_that_have_parsers() -> None:
    """Which tables of our program get a compiled parser (the rest, const or
    with a profile, use the general path)."""
    dev = DeviceState(SoftEngine(), 1)
    cfg = load_esvpn_config()
    dev.set_pipeline(CFG.VERIFY_AND_COMMIT, cfg)
    by_prefix = {b"\x08" + encode_varint(t.preamble.id): t.preamble.name for t in cfg.p4info.tables}
    names = sorted(by_prefix[p].rsplit(".", 1)[-1] for p in dev.entry_parsers)
    assert names == [
        "dhcp_trap",
        "fabric_port",
        "fabric_vlan",
        "flood",
        "ipv4_route",
        "ipv4_source",
        "ipv6_route",
        "ipv6_source",
        "mpls_label",
        "replica",
        "tunnel_peer",
        "underlay",
        "vif",
        "vrf_peer",
    ]


def test_a_new_pipeline_invalidates_what_was_decoded_before() -> None:
    dev = DeviceState(SoftEngine(), 1)
    dev.set_pipeline(CFG.VERIFY_AND_COMMIT, load_config())
    gen = Gen(dev.index.p4info, seed=7)
    blob = request(*((INSERT, gen.entry()) for _ in range(5)))
    batch = decode_write_request(blob, dev.entry_parsers)
    assert all(type(e) is FastEntry for _, e in batch.updates)
    dev.set_pipeline(CFG.VERIFY_AND_COMMIT, load_config())  # same program, state reset
    results = dev.write_entities(batch.updates)
    assert results.count(None) == len({e.full_key for _, e in batch.updates})
    other = DeviceState(SoftEngine(), 1)
    other.set_pipeline(CFG.VERIFY_AND_COMMIT, load_config())
    other.write_entities(decode_write_request(blob).updates)
    assert engine_tables(dev.engine) == engine_tables(other.engine)


def test_an_entity_length_of_two_bytes_is_not_taken_for_one() -> None:
    """An Update whose entity length byte has its high bit set is a longer
    varint: the fast dispatch must not read it as a one-byte length."""
    parser = compile_entry_parser(
        "t", "plan", [FieldSpec(1, "exact", 512)], [ActionSpec(0x01000007, "a", ((1, 512),), None)]
    )
    assert parser is not None
    te = p4runtime_pb2.TableEntry(table_id=0x02000001)
    te.match.add(field_id=1).exact.value = b"\x01" * 64
    te.action.action.action_id = 0x01000007
    te.action.action.params.add(param_id=1, value=b"\x02" * 34)
    wire = te.SerializeToString()
    assert len(wire) == 126
    update = b"\x08\x01\x12\x80\x12\x7e" + wire  # protobuf reads 0x80 0x12 as the length
    blob = b"\x08\x01\x22" + encode_varint(len(update)) + update
    prefix = b"\x08" + encode_varint(te.table_id)
    for parsers in (None, {prefix: parser}):
        with pytest.raises(DecodeError):
            decode_write_request(blob, parsers)
    te.action.action.params[0].value = b"\x02" * 10  # a shorter one, well framed, is taken
    good = request((INSERT, te))
    ((update_type, got),) = decode_write_request(good, {prefix: parser}).updates
    assert (update_type, type(got)) == (INSERT, FastEntry)


def test_an_lpm_field_narrower_in_the_p4info_than_in_the_json_is_not_compiled() -> None:
    """A prefix length means something else under another width: such a
    table goes the general way (whose engine check refuses the entry)."""
    config = load_config()
    route = next(t for t in config.p4info.tables if t.preamble.name.endswith(".route"))
    route.match_fields[0].bitwidth = 24  # the JSON says 32
    pair = Pair(config)
    assert b"\x08" + encode_varint(route.preamble.id) not in pair.fast.entry_parsers
    te = p4runtime_pb2.TableEntry(table_id=route.preamble.id)
    te.match.add(field_id=1).lpm.value, te.match[0].lpm.prefix_len = b"\x01\x00\x00", 8
    te.action.action.action_id = next(
        a.id for a in route.action_refs if pair.fast.index.actions[a.id].name.endswith("drop")
    )
    assert pair.write(request((INSERT, te))) == [
        (
            code_pb2.INTERNAL,
            "engine: table 'IngressImpl.route' key field 0: value has bits outside the prefix",
        )
    ]


def test_failed_updates_keep_no_traceback() -> None:
    """A result's traceback would tie the write's frame, and the request,
    into a cycle that only the cyclic GC (frozen after big batches) frees."""
    pair = Pair(load_config())
    gen = Gen(pair.p4info, seed=9)
    te = gen.entry()
    batch = decode_write_request(request((INSERT, te), (INSERT, te)), pair.fast.entry_parsers)
    first, second = pair.fast.write_entities(batch.updates)
    assert first is None and second is not None and second.__traceback__ is None
