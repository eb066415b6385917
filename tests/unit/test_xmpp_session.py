"""Session semantics without sockets: retention, resume, duplicates, stateful checks."""

from __future__ import annotations

import ipaddress as ip

import pytest

from esxmpp import dialect as d
from esxmpp.session import Expired, Opened, SessionTable

SID = bytes.fromhex("01020304abcd")
OTHER = bytes.fromhex("0a0b0c0d0e0f")
NODE = "01020304abcd:10.1.1.1/32"


def entry(version: int = 1, label: int = 10000) -> d.RouteEntry:
    return d.RouteEntry(ip.ip_network("10.1.1.1/32"), ip.ip_address("192.0.2.1"), label, version)


def advertised(t: SessionTable) -> None:
    assert t.apply(SID, d.Subscribe("v", 10)) == [d.Subscribe("v", 10)]
    assert t.apply(SID, d.Publish(NODE, entry())) == [d.Publish(NODE, entry())]
    assert t.apply(SID, d.Associate("v", NODE)) == [d.Associate("v", NODE)]


def test_state_kept_for_retention_then_withdrawn_in_order() -> None:
    t = SessionTable(retention=60.0)
    assert t.open(SID, "k1", 100.0) == Opened(resumed=False)
    advertised(t)
    t.close(SID, "k1", 200.0)
    assert t.next_deadline() == 260.0
    assert t.expire(259.9) == []
    assert t.expire(260.0) == [
        Expired(SID, (d.Dissociate("v", NODE), d.Retract(NODE), d.Unsubscribe("v")))
    ]
    assert t.state(SID) is None
    assert t.next_deadline() is None


def test_reconnect_within_retention_takes_state_back_without_withdrawal() -> None:
    t = SessionTable(retention=60.0)
    t.open(SID, "k1", 0.0)
    advertised(t)
    t.close(SID, "k1", 10.0)
    assert t.open(SID, "k2", 69.0) == Opened(resumed=True)
    assert t.expire(1000.0) == []
    st = t.state(SID)
    assert st is not None
    assert st.subscriptions == {"v": 10}
    assert st.members("v") == [NODE]
    # re-advertising the same thing is a no-op
    assert t.apply(SID, d.Subscribe("v", 10)) == []
    assert t.apply(SID, d.Publish(NODE, entry())) == []
    assert t.apply(SID, d.Associate("v", NODE)) == []


def test_empty_state_is_dropped_at_close() -> None:
    t = SessionTable()
    t.open(SID, "k1", 0.0)
    t.close(SID, "k1", 1.0)
    assert t.state(SID) is None
    assert t.next_deadline() is None


def test_takeover_and_refuse() -> None:
    t = SessionTable(duplicate="takeover")
    t.open(SID, "k1", 0.0)
    advertised(t)
    assert t.open(SID, "k2", 1.0) == Opened(resumed=True, replaced="k1")
    t.close(SID, "k1", 2.0)  # the replaced session closing must not start retention
    assert t.live(SID) == "k2"
    assert t.next_deadline() is None
    r = SessionTable(duplicate="refuse")
    r.open(SID, "k1", 0.0)
    with pytest.raises(d.DialectError) as info:
        r.open(SID, "k2", 1.0)
    assert (info.value.condition, info.value.text) == (
        "conflict",
        "system id 01020304abcd already has a session",
    )


def test_unsubscribe_and_retract_imply_dissociation() -> None:
    t = SessionTable()
    t.open(SID, "k", 0.0)
    advertised(t)
    assert t.plan(SID, d.Retract(NODE)) == [d.Dissociate("v", NODE), d.Retract(NODE)]
    assert t.apply(SID, d.Unsubscribe("v")) == [d.Dissociate("v", NODE), d.Unsubscribe("v")]
    st = t.state(SID)
    assert st is not None and st.associations == {} and NODE in st.published
    assert t.apply(SID, d.Retract(NODE)) == [d.Retract(NODE)]


@pytest.mark.parametrize(
    ("req", "condition", "text"),
    [
        (d.Associate("w", NODE), "item-not-found", "not subscribed to VPN 'w'"),
        (
            d.Associate("v", "01020304abcd:10.9.9.9/32"),
            "item-not-found",
            "node '01020304abcd:10.9.9.9/32' is not published",
        ),
        (d.Unsubscribe("w"), "item-not-found", "not subscribed to VPN 'w'"),
        (
            d.Retract("01020304abcd:10.9.9.9/32"),
            "item-not-found",
            "node '01020304abcd:10.9.9.9/32' is not published",
        ),
        (d.Dissociate("w", NODE), "item-not-found", f"node '{NODE}' is not in VPN 'w'"),
        (
            d.Publish(NODE, entry(version=0)),
            "not-acceptable",
            f"node '{NODE}': version 0 is older than 1",
        ),
        (
            d.Publish("0a0b0c0d0e0f:10.1.1.1/32", entry()),
            "not-authorized",
            "node '0a0b0c0d0e0f:10.1.1.1/32' belongs to system 0a0b0c0d0e0f, not 01020304abcd",
        ),
        (d.Subscribe("w", 10), "conflict", "vlan 10 is already used by VPN 'v'"),
    ],
)
def test_stateful_errors_lose_nothing(req: d.Request, condition: str, text: str) -> None:
    t = SessionTable()
    t.open(SID, "k", 0.0)
    advertised(t)
    before = t.state(SID)
    assert before is not None
    snapshot = (dict(before.subscriptions), dict(before.published), dict(before.associations))
    with pytest.raises(d.DialectError) as info:
        t.apply(SID, req)
    assert (info.value.condition, info.value.text) == (condition, text)
    after = t.state(SID)
    assert after is not None
    assert (after.subscriptions, after.published, after.associations) == snapshot


def test_newer_version_replaces_and_relay_mode_allows_foreign_nodes() -> None:
    t = SessionTable(own_nodes_only=False)
    t.open(OTHER, "k", 0.0)
    t.apply(OTHER, d.Subscribe("v"))
    assert t.apply(OTHER, d.Publish(NODE, entry())) == [d.Publish(NODE, entry())]
    newer = entry(version=2, label=10001)
    assert t.apply(OTHER, d.Publish(NODE, newer)) == [d.Publish(NODE, newer)]
    assert t.apply(OTHER, d.Subscribe("v", 20)) == [d.Subscribe("v", 20)]


def test_request_without_session_is_refused() -> None:
    with pytest.raises(d.DialectError, match="no session"):
        SessionTable().plan(SID, d.Subscribe("v"))


def test_resumed_session_end_of_sync_withdraws_what_was_not_advertised_again() -> None:
    node2 = "01020304abcd:10.1.1.2/32"
    e2 = d.RouteEntry(ip.ip_network("10.1.1.2/32"), ip.ip_address("192.0.2.1"), 10001, 1)
    t = SessionTable(retention=60.0)
    t.open(SID, "k1", 0.0)
    advertised(t)
    t.apply(SID, d.Subscribe("w", 20))
    t.apply(SID, d.Publish(node2, e2))
    t.apply(SID, d.Associate("v", node2))
    t.apply(SID, d.Associate("w", NODE))
    # a fresh session has nothing to withdraw
    assert t.plan(SID, d.EndOfSync()) == []
    t.close(SID, "k1", 1.0)
    assert t.open(SID, "k2", 2.0) == Opened(resumed=True)
    # the new session holds v, NODE in v only, and not node2 nor w
    assert t.apply(SID, d.Subscribe("v", 10)) == []
    assert t.apply(SID, d.Publish(NODE, entry())) == []
    assert t.apply(SID, d.Associate("v", NODE)) == []
    assert t.apply(SID, d.EndOfSync()) == [
        d.Dissociate("w", NODE),
        d.Dissociate("v", node2),
        d.Retract(node2),
        d.Unsubscribe("w"),
    ]
    st = t.state(SID)
    assert st is not None
    assert (st.subscriptions, st.published, st.associations) == (
        {"v": 10},
        {NODE: entry()},
        {NODE: {"v"}},
    )
    # once per resumption: a second end of sync changes nothing
    assert t.apply(SID, d.EndOfSync()) == []


def test_takeover_resyncs_too() -> None:
    t = SessionTable(retention=60.0)
    t.open(SID, "k1", 0.0)
    advertised(t)
    assert t.open(SID, "k2", 1.0) == Opened(resumed=True, replaced="k1")
    assert t.apply(SID, d.EndOfSync()) == [
        d.Dissociate("v", NODE),
        d.Retract(NODE),
        d.Unsubscribe("v"),
    ]
    assert t.state(SID) is not None and t.state(SID).empty()  # type: ignore[union-attr]
