"""control.vrf / control.labels: VRF state driven by end-system and route-server events."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from control.labels import ExhaustedError, IdPool
from control.vrf import Export, LocalTarget, RemoteTarget, VrfState
from esxmpp.dialect import (
    Associate,
    DialectError,
    Dissociate,
    Publish,
    Retract,
    RouteEntry,
    Subscribe,
    Unsubscribe,
)

INFRA = ipaddress.IPv4Address("192.0.2.1")
REMOTE = ipaddress.IPv4Address("192.0.2.2")
SYS_A = bytes.fromhex("0a0000000001")
SYS_B = bytes.fromhex("0a0000000002")
SYS_X = bytes.fromhex("0a00000000ff")  # no port configured
NODE_A5 = "0a0000000001:10.1.1.5/32"
NODE_A6 = "0a0000000001:10.1.1.6/32"


def net(s: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(s)


def entry(prefix: str, nh: str = "0.0.0.0", label: int = 16, version: int = 0) -> RouteEntry:
    return RouteEntry(net(prefix), ipaddress.ip_address(nh), label, version)


def make() -> VrfState:
    return VrfState(INFRA, {SYS_A: 3, SYS_B: 4}, stale=60.0, label_range=(16, 20))


def attach(st: VrfState, sid: bytes = SYS_A, vpn: str = "red", vlan: int = 10) -> None:
    st.end_system(sid, [Subscribe(vpn, vlan)], 0.0)


def publish(st: VrfState, node: str, vpn: str = "red", version: int = 1) -> None:
    prefix = node.split(":", 1)[1]
    st.end_system(SYS_A, [Publish(node, entry(prefix, version=version))], 0.0)
    st.end_system(SYS_A, [Associate(vpn, node)], 0.0)


def snapshot(
    st: VrfState,
) -> tuple[dict[str, Any], frozenset[int], frozenset[int], frozenset[int]]:
    return (st.to_json(0.0), st.labels.in_use, st.vif_ids.in_use, st.vrf_ids.in_use)


# ------------------------------------------------------------------ labels


def test_pool_never_reuses_in_use_or_held() -> None:
    p = IdPool(16, 18, hold=10.0, name="label")
    assert [p.allocate(0), p.allocate(0), p.allocate(0)] == [16, 17, 18]
    with pytest.raises(ExhaustedError, match=r"no free label in 16\.\.18"):
        p.allocate(0)
    p.release(17, now=5.0)
    with pytest.raises(ExhaustedError):
        p.allocate(14.9)  # still held
    assert p.allocate(15.0) == 17


def test_pool_next_fit() -> None:
    p = IdPool(1, 10)
    a = p.allocate(0)
    p.release(a, 0)
    assert p.allocate(0) == 2  # the freed id is the last to come back


def test_pool_hold_and_pointer_survive_save_and_restore() -> None:
    p = IdPool(16, 18, hold=10.0, name="label")
    assert [p.allocate(0), p.allocate(0)] == [16, 17]
    p.release(16, now=2.0)  # held until 12.0
    saved = p.to_json(4.0)
    assert saved == {"next": 18, "held": [[16, 8]]}
    # a new process, another clock origin (monotonic clocks restart)
    q = IdPool(16, 18, hold=10.0, name="label")
    q.reserve(17)
    q.restore_json(saved, 1000.0)
    assert q.held(1000.0) == {16: 1008.0}
    assert q.allocate(1000.0) == 18  # next-fit pointer kept
    with pytest.raises(ExhaustedError, match=r"no free label in 16\.\.18"):
        q.allocate(1007.9)  # 16 is still held: not handed out again
    assert q.allocate(1008.0) == 16  # the hold ran out on the new clock


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"next": 19, "held": []}, "label pool: next 19 outside 16..18"),
        ({"next": "16", "held": []}, "label pool: next '16' outside 16..18"),
        ({"next": 16, "held": [[15, 1]]}, "label pool: held 15 outside 16..18"),
        ({"next": 16, "held": [[17, 1]]}, "label pool: 17 both in use and held"),
        ({"next": 16, "held": [[16, -1]]}, "label pool: hold of 16 is -1"),
    ],
)
def test_pool_restore_refuses_bad_data_and_changes_nothing(
    data: dict[str, object], message: str
) -> None:
    p = IdPool(16, 18, hold=10.0, name="label")
    p.reserve(17)
    with pytest.raises(ValueError) as exc:
        p.restore_json(data, 0.0)
    assert str(exc.value) == message
    assert p.held(0.0) == {}
    assert p.allocate(0.0) == 16


def test_state_file_keeps_label_vif_and_vrf_hold_downs() -> None:
    st = make()
    attach(st)  # label 16, vif 1, vrf 1
    attach(st, SYS_B, "blue", 30)  # label 17, vif 2, vrf 2
    st.end_system(SYS_B, [Unsubscribe("blue")], 5.0)  # 17, 2, 2 held until 65.0
    saved = st.to_json(5.0)
    assert saved["pools"] == {
        "label": {"next": 18, "held": [[17, 60]]},
        "vif_id": {"next": 3, "held": [[2, 60]]},
        "vrf_id": {"next": 3, "held": [[2, 60]]},
    }
    new = make()
    new.restore(saved, 0.0)  # restarted; held until 60.0 on the new clock
    new.end_system(SYS_B, [Subscribe("blue", 30)], 1.0)
    itf = new.interface(SYS_B, "blue")
    assert itf is not None
    assert (itf.label, itf.vif_id, new.vrfs["blue"].vrf_id) == (18, 3, 3)
    # labels 16..20: 16 and 18 in use, 17 held -> 19, 20, then exhausted until 17's hold ends
    new.end_system(SYS_B, [Subscribe("green", 31)], 1.0)
    new.end_system(SYS_B, [Subscribe("white", 32)], 1.0)
    with pytest.raises(DialectError) as exc:
        new.end_system(SYS_B, [Subscribe("black", 33)], 59.9)
    assert str(exc.value) == "resource-constraint: no free label in 16..20"
    new.end_system(SYS_B, [Subscribe("black", 33)], 60.0)
    assert new.interface(SYS_B, "black").label == 17  # type: ignore[union-attr]


# ------------------------------------------------------------- end-systems


def test_subscribe_creates_interface_with_label() -> None:
    st = make()
    attach(st)
    itf = st.interface(SYS_A, "red")
    assert itf is not None
    assert (itf.port, itf.vlan, itf.vif_id, itf.label, itf.mac) == (3, 10, 1, 16, 0x0A0000000001)
    assert st.vrfs["red"].vrf_id == 1
    assert st.subscribed_vpns() == {"red"}
    assert st.exports() == set()


def test_publish_associate_exports_with_label_and_version() -> None:
    st = make()
    attach(st)
    publish(st, NODE_A5, version=7)
    assert st.exports() == {Export(SYS_A, "red", net("10.1.1.5/32"), 16, 7)}
    # a newer version of the same node is re-exported
    st.end_system(SYS_A, [Publish(NODE_A5, entry("10.1.1.5/32", version=8))], 0.0)
    assert st.exports() == {Export(SYS_A, "red", net("10.1.1.5/32"), 16, 8)}


@pytest.mark.parametrize(
    ("sid", "req", "condition", "text"),
    [
        (SYS_A, Subscribe("red", None), "bad-request", "option vpn#vlan_id is required"),
        (SYS_X, Subscribe("red", 10), "forbidden", "system 0a00000000ff has no end-system port"),
        (SYS_A, Subscribe("blue", 10), "conflict", "vlan 10 is already used by VPN 'red'"),
        (SYS_A, Subscribe("red", 11), "conflict", "already subscribed to VPN 'red' with vlan 10"),
        (SYS_A, Associate("blue", NODE_A5), "item-not-found", "not subscribed to VPN 'blue'"),
        (SYS_A, Associate("red", NODE_A6), "item-not-found", "is not published"),
        (
            SYS_A,
            Publish(NODE_A6, entry("10.1.1.7/32")),
            "bad-request",
            "names prefix 10.1.1.6/32 but the entry has 10.1.1.7/32",
        ),
    ],
)
def test_bad_requests_are_refused_without_state_change(
    sid: bytes, req: object, condition: str, text: str
) -> None:
    st = make()
    attach(st)
    publish(st, NODE_A5)
    before = snapshot(st)
    gen = st.generation
    with pytest.raises(DialectError) as exc:
        st.end_system(sid, [req], 1.0)  # type: ignore[list-item]
    assert exc.value.condition == condition
    assert text in exc.value.text
    assert snapshot(st) == before
    assert st.generation == gen


def test_same_address_in_two_vpns_of_one_system_is_refused() -> None:
    st = make()
    attach(st)
    attach(st, vpn="blue", vlan=20)
    publish(st, NODE_A5)
    with pytest.raises(DialectError, match="already an address of this system in VPN 'red'"):
        st.end_system(SYS_A, [Associate("blue", NODE_A5)], 0.0)


def test_labels_exhausted_is_resource_constraint_and_nothing_leaks() -> None:
    st = VrfState(INFRA, {SYS_A: 3}, label_range=(16, 16))
    attach(st)
    before = snapshot(st)
    with pytest.raises(DialectError) as exc:
        st.end_system(SYS_A, [Subscribe("blue", 20)], 0.0)
    assert exc.value.condition == "resource-constraint"
    assert snapshot(st) == before


def test_unsubscribe_and_retract_undo_exactly() -> None:
    st = make()
    empty = snapshot(st)
    attach(st)
    publish(st, NODE_A5)
    st.end_system(SYS_A, [Dissociate("red", NODE_A5), Retract(NODE_A5)], 1.0)
    assert st.exports() == set()
    assert st.published == {}
    st.end_system(SYS_A, [Unsubscribe("red")], 2.0)
    assert st.interfaces == {} and st.vrfs == {} and st.remote == {}
    after = st.to_json(2.0)
    assert after["pools"] == {
        "label": {"next": 17, "held": [[16, 60]]},
        "vif_id": {"next": 2, "held": [[1, 60]]},
        "vrf_id": {"next": 2, "held": [[1, 60]]},
    }
    del after["pools"]
    assert after == {k: v for k, v in empty[0].items() if k != "pools"}
    assert st.labels.in_use == frozenset()
    # the label is held for the stale time, then reusable
    assert st.labels.held(2.0) == {16: 62.0}


# ------------------------------------------------------------ route server


def test_local_routes_need_to_come_back_from_the_route_server() -> None:
    st = make()
    attach(st)
    publish(st, NODE_A5)
    assert st.selected_routes("red") == {}  # §5: not installed by itself
    st.routes_update("red", [("10.1.1.5/32", entry("10.1.1.5/32", "192.0.2.1", 16))], 0.0)
    assert st.selected_routes("red") == {
        net("10.1.1.5/32"): frozenset({LocalTarget(1, 3, 10, 0x0A0000000001)})
    }
    # our own address with a label that is not a local interface: nothing
    st.routes_update("red", [("10.1.1.5/32", entry("10.1.1.5/32", "192.0.2.1", 99))], 0.0)
    assert st.selected_routes("red") == {}


def test_ecmp_and_versions() -> None:
    st = make()
    attach(st)
    st.routes_update(
        "red",
        [
            ("a", entry("10.2.0.0/16", "192.0.2.2", 100, version=1)),
            ("b", entry("10.2.0.0/16", "192.0.2.3", 200, version=1)),
        ],
        0.0,
    )
    assert st.selected_routes("red") == {
        net("10.2.0.0/16"): frozenset(
            {RemoteTarget(REMOTE, 100), RemoteTarget(ipaddress.IPv4Address("192.0.2.3"), 200)}
        )
    }
    st.routes_update("red", [("c", entry("10.2.0.0/16", "192.0.2.4", 300, version=2))], 0.0)
    assert st.selected_routes("red") == {
        net("10.2.0.0/16"): frozenset({RemoteTarget(ipaddress.IPv4Address("192.0.2.4"), 300)})
    }
    st.routes_retract("red", ["c"])
    assert len(st.selected_routes("red")[net("10.2.0.0/16")]) == 2


def test_routes_for_unsubscribed_vpn_ignored() -> None:
    st = make()
    st.routes_update("red", [("a", entry("10.2.0.0/16", "192.0.2.2", 100))], 0.0)
    assert st.remote == {}


def test_stale_routes_kept_then_withdrawn() -> None:
    st = make()
    attach(st)
    st.routes_update("red", [("a", entry("10.2.0.0/16", "192.0.2.2", 100))], 0.0)
    st.routes_stale(10.0)
    assert st.next_deadline() == 70.0
    assert st.expire(69.9) == []
    assert len(st.selected_routes("red")) == 1
    assert st.expire(70.0) == ["route red a"]
    assert st.selected_routes("red") == {}


def test_resent_routes_survive_end_of_rib_sweep() -> None:
    st = make()
    attach(st)
    st.routes_update(
        "red",
        [
            ("a", entry("10.2.0.0/16", "192.0.2.2", 100)),
            ("b", entry("10.3.0.0/16", "192.0.2.2", 101)),
        ],
        0.0,
    )
    st.routes_stale(5.0)
    st.routes_update("red", [("a", entry("10.2.0.0/16", "192.0.2.2", 100))], 6.0)
    st.end_of_rib("red")
    assert list(st.remote["red"]) == ["a"]
    assert st.next_deadline() is None


# -------------------------------------------------------------- persistence


def test_restore_keeps_everything_until_reannounced() -> None:
    st = make()
    attach(st)
    attach(st, SYS_B, "red", 30)
    publish(st, NODE_A5)
    st.routes_update("red", [("a", entry("10.2.0.0/16", "192.0.2.2", 100))], 0.0)
    saved = st.to_json(0.0)

    new = make()
    new.restore(saved, 100.0)
    assert new.to_json(100.0) == saved
    assert new.exports() == st.exports()
    assert new.selected_routes("red") == st.selected_routes("red")
    # system A comes back and re-announces; system B does not
    new.end_system(SYS_A, [Subscribe("red", 10)], 101.0)
    new.end_system(SYS_A, [Publish(NODE_A5, entry("10.1.1.5/32", version=1))], 101.0)
    new.end_system(SYS_A, [Associate("red", NODE_A5)], 101.0)
    new.routes_update("red", [("a", entry("10.2.0.0/16", "192.0.2.2", 100))], 101.0)
    assert new.next_deadline() == 160.0
    assert new.expire(160.0) == ["interface 0a0000000002 red"]
    assert list(new.published[SYS_A]) == [NODE_A5]
    assert {k[0] for k in new.interfaces} == {SYS_A}
    assert new.exports() == st.exports()
    # labels stay those the remote side knows
    assert new.interface(SYS_A, "red").label == st.interface(SYS_A, "red").label  # type: ignore[union-attr]


def test_restored_publication_not_republished_expires() -> None:
    st = make()
    attach(st)
    publish(st, NODE_A5)
    st.end_system(SYS_A, [Publish(NODE_A6, entry("10.1.1.6/32"))], 0.0)
    new = make()
    new.restore(st.to_json(0.0), 0.0)
    new.end_system(SYS_A, [Subscribe("red", 10)], 1.0)
    new.end_system(SYS_A, [Publish(NODE_A5, entry("10.1.1.5/32", version=1))], 1.0)
    new.end_system(SYS_A, [Associate("red", NODE_A5)], 1.0)
    assert new.expire(60.0) == ["published 0a0000000001:10.1.1.6/32"]
    assert list(new.published[SYS_A]) == [NODE_A5]
    assert new.next_deadline() is None
