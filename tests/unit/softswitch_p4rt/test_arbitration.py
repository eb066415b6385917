"""Arbitration: who is primary, and who is told what (spec §5)."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from softswitch.p4rt_arbitration import Arbitration
from softswitch.p4rt_store import P4RTError


def arb(eid: int | None, device: int = 1, role: str = "") -> p4runtime_pb2.MasterArbitrationUpdate:
    m = p4runtime_pb2.MasterArbitrationUpdate(device_id=device)
    if role:
        m.role.name = role
    if eid is not None:
        m.election_id.high = eid >> 64
        m.election_id.low = eid & (2**64 - 1)
    return m


def told(notes):
    return {k: (u.status.code, (u.election_id.high << 64) | u.election_id.low) for k, u in notes}


def test_highest_election_id_is_primary_and_everyone_hears_of_changes() -> None:
    a = Arbitration()
    assert told(a.join("a", arb(5))) == {"a": (code_pb2.OK, 5)}
    # a lower one: only the newcomer hears, as a backup
    assert told(a.join("b", arb(3))) == {"b": (code_pb2.ALREADY_EXISTS, 5)}
    # a higher one takes over: everyone hears
    assert told(a.join("c", arb(1 << 70))) == {
        "a": (code_pb2.ALREADY_EXISTS, 1 << 70),
        "b": (code_pb2.ALREADY_EXISTS, 1 << 70),
        "c": (code_pb2.OK, 1 << 70),
    }
    assert a.is_primary(1, "", 1 << 70) and not a.is_primary(1, "", 5)
    assert a.is_primary_key("c") and not a.is_primary_key("a")
    # the primary leaves: the highest remaining is elected, everyone hears
    assert told(a.leave("c")) == {"a": (code_pb2.OK, 5), "b": (code_pb2.ALREADY_EXISTS, 5)}
    # a backup leaving changes nothing: nobody hears
    assert a.leave("b") == []
    assert a.leave("nobody") == []


def test_duplicate_election_id_is_refused() -> None:
    a = Arbitration()
    a.join("a", arb(5))
    with pytest.raises(P4RTError) as e:
        a.join("b", arb(5))
    assert e.value.code == code_pb2.INVALID_ARGUMENT
    # but the same client may re-send its own, or raise it
    assert told(a.join("a", arb(5))) == {"a": (code_pb2.OK, 5)}
    assert told(a.join("a", arb(9))) == {"a": (code_pb2.OK, 9)}
    assert a.is_primary(1, "", 9)


def test_roles_and_devices_are_separate_elections() -> None:
    a = Arbitration()
    a.join("a", arb(5))
    assert told(a.join("b", arb(5, role="sdn"))) == {"b": (code_pb2.OK, 5)}
    assert told(a.join("c", arb(5, device=2))) == {"c": (code_pb2.OK, 5)}
    assert a.is_primary(1, "sdn", 5) and a.is_primary(2, "", 5)
    assert sorted(a.primaries(1)) == ["a", "b"]
    with pytest.raises(P4RTError):
        a.join("a", arb(6, role="sdn"))  # a stream keeps its role


def test_without_election_id_never_primary() -> None:
    a = Arbitration()
    assert told(a.join("a", arb(None))) == {"a": (code_pb2.NOT_FOUND, 0)}
    assert told(a.join("b", arb(None))) == {"b": (code_pb2.NOT_FOUND, 0)}
    assert not a.is_primary(1, "", 0)
    notes = told(a.join("c", arb(2)))
    assert notes == {
        "a": (code_pb2.ALREADY_EXISTS, 2),
        "b": (code_pb2.ALREADY_EXISTS, 2),
        "c": (code_pb2.OK, 2),
    }
    # the last voter leaves: no primary; the rest hear NOT_FOUND with the highest id seen
    assert told(a.leave("c")) == {"a": (code_pb2.NOT_FOUND, 2), "b": (code_pb2.NOT_FOUND, 2)}
