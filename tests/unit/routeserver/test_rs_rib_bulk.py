"""Issue 19 bug 5: bulk RIB work is linear and runs in bounded slices.

No timing: the work is counted (hash calls of the prefixes coalesce touches,
paths handled per slice).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_address

from routeserver.rib import (
    RTC_ROUTES_WAIT,
    WORK_SLICE,
    BgpEndOfRib,
    BgpPeerDown,
    BgpPeerUp,
    BgpRouteAdd,
    BgpRouteDel,
    FwdEndOfRib,
    FwdRoute,
    FwdRoutes,
    FwdWithdraw,
    Output,
    Rib,
    XmppSubscribe,
    XmppUnsubscribe,
    coalesce,
)
from tests.unit.routeserver.test_rs_rib import H1, H2, PE, cfg


class CountingNet(IPv4Network):
    """An IPv4Network that counts how often it is hashed (dict work)."""

    hashes = 0

    def __hash__(self) -> int:
        CountingNet.hashes += 1
        return super().__hash__()


def nets(count: int) -> list[CountingNet]:
    return [CountingNet((0x0A000000 + i, 32)) for i in range(count)]


def coalesce_work(outputs: list[Output]) -> tuple[int, list[Output]]:
    CountingNet.hashes = 0
    merged = coalesce(outputs)
    return CountingNet.hashes, merged


def test_coalesce_of_many_withdrawals_is_linear() -> None:
    def run(count: int) -> int:
        prefixes = nets(count)
        work, merged = coalesce_work([FwdWithdraw(H1, "red", (p,)) for p in prefixes])
        assert merged == [FwdWithdraw(H1, "red", tuple(prefixes))]
        return work

    small, big = run(1000), run(16000)
    assert small > 0
    assert big == 16 * small  # a fixed number of hashes per prefix, whatever the burst


def test_coalesce_of_many_announcements_is_linear() -> None:
    def run(count: int) -> int:
        routes = [(p, ip_address("192.0.2.1"), 16 + i) for i, p in enumerate(nets(count))]
        outs: list[Output] = [FwdRoutes(H1, "red", (FwdRoute(*r),)) for r in routes]
        work, merged = coalesce_work(outs)
        assert merged == [FwdRoutes(H1, "red", tuple(FwdRoute(*r) for r in routes))]
        return work

    small, big = run(1000), run(16000)
    assert big == 16 * small


def loaded_rib(count: int, gr: int) -> Rib:
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(BgpPeerUp(PE, gr), 0)
    for fam in ("vpnv4", "vpnv6"):  # the peer's initial routes are in
        rib.handle(BgpEndOfRib(PE, fam), 0)
    for i in range(count):
        rib.handle(route(i), 0)
    rib.rtc_sent(PE, "64512:100", 0)  # our RTC route acknowledged ...
    rib.expire(RTC_ROUTES_WAIT)  # ... and what it pulls in is in
    return rib


def route(i: int) -> BgpRouteAdd:
    return BgpRouteAdd(
        PE, "64512:7", IPv4Network((0x0A000000 + i, 32)), 100 + i, IPv4Address("192.0.2.7"),
        frozenset({"64512:100"}),
    )  # fmt: skip


def drain(rib: Rib, first: list[Output]) -> tuple[list[Output], int]:
    """Every output of the pending bulk work, and how many slices it took."""
    outs, slices = list(first), 1
    while rib.has_work():
        step = rib.work()
        assert len(step) <= WORK_SLICE  # one withdrawal per path at most, one subscriber
        outs += step
        slices += 1
    return outs, slices


def test_peer_down_without_graceful_restart_withdraws_in_slices() -> None:
    count = 5 * WORK_SLICE + 7
    rib = loaded_rib(count, gr=0)
    first = rib.handle(BgpPeerDown(PE), 1)
    assert len(first) == WORK_SLICE and rib.has_work()
    outs, slices = drain(rib, first)
    assert slices == 6
    assert coalesce(outs) == [FwdWithdraw(H1, "red", tuple(route(i).prefix for i in range(count)))]
    assert rib.table("red") == () and rib.show_peers()[0]["routes_in"] == 0


def test_a_path_re_announced_while_its_sweep_is_pending_stays() -> None:
    count = 3 * WORK_SLICE
    rib = loaded_rib(count, gr=0)
    rib.handle(BgpPeerDown(PE), 1)
    assert rib.has_work()
    rib.handle(BgpPeerUp(PE, 0), 2)
    last = count - 1
    rib.handle(route(last), 2)  # the same path again, in the new session
    drain(rib, [])
    assert [r.prefix for r in rib.table("red")] == [route(last).prefix]
    assert rib.show_peers()[0]["routes_in"] == 1


def test_graceful_restart_marks_and_sweeps_in_slices() -> None:
    count = 4 * WORK_SLICE - 3
    rib = loaded_rib(count, gr=120)
    assert rib.handle(BgpPeerDown(PE), 1) == []
    assert rib.has_work()  # stale marking, in slices
    drain(rib, [])
    assert rib.show_peers()[0]["stale"] == count
    # back, re-sends one route, End-of-RIB: the other stale ones go, in slices
    rib.handle(BgpPeerUp(PE, 120), 2)
    rib.handle(route(5), 2)
    outs, slices = drain(rib, rib.handle(BgpEndOfRib(PE, "vpnv4"), 3))
    assert slices == 4
    assert coalesce(outs) == [
        FwdWithdraw(H1, "red", tuple(route(i).prefix for i in range(count) if i != 5))
    ]
    peer = rib.show_peers()[0]
    assert (peer["stale"], peer["routes_in"]) == (0, 1)
    assert rib.next_deadline() is None


def test_graceful_restart_expiry_sweeps_in_slices() -> None:
    count = 2 * WORK_SLICE + 1
    rib = loaded_rib(count, gr=30)
    rib.handle(BgpPeerDown(PE), 1)
    drain(rib, [])
    assert rib.next_deadline() == 31
    outs, slices = drain(rib, rib.expire(31))
    assert slices == 3
    assert coalesce(outs) == [FwdWithdraw(H1, "red", tuple(route(i).prefix for i in range(count)))]


def test_subscribe_sends_a_big_table_in_slices_then_end_of_rib() -> None:
    count = 3 * WORK_SLICE + 5
    rib = loaded_rib(count, gr=0)
    first = rib.handle(XmppSubscribe(H2, "red"), 1)
    # the first slice only: WORK_SLICE routes, End-of-RIB not yet
    assert [o for o in first if isinstance(o, FwdRoutes)] == [
        FwdRoutes(H2, "red", tuple(fwd(i) for i in range(WORK_SLICE)))
    ]
    assert not any(isinstance(o, FwdEndOfRib) for o in first) and rib.has_work()
    outs, slices = [o for o in first if isinstance(o, FwdRoutes | FwdEndOfRib)], 1
    while rib.has_work():
        step = rib.work()
        assert sum(len(o.routes) for o in step if isinstance(o, FwdRoutes)) <= WORK_SLICE
        outs += step
        slices += 1
    assert slices == 4  # 197 routes, 64 a slice; End-of-RIB with the last 5
    assert coalesce(outs) == [
        FwdRoutes(H2, "red", tuple(fwd(i) for i in range(count))),
        FwdEndOfRib(H2, "red"),
    ]


def test_a_table_dump_sends_what_is_selected_when_its_slice_runs() -> None:
    count = 2 * WORK_SLICE
    rib = loaded_rib(count, gr=0)
    first = rib.handle(XmppSubscribe(H2, "red"), 1)
    # changes before the second slice reach the subscriber at once ...
    late = count - 1
    withdrawn = rib.handle(BgpRouteDel(PE, "64512:7", route(late).prefix), 1)
    assert FwdWithdraw(H2, "red", (route(late).prefix,)) in withdrawn
    # ... and the dump does not send the withdrawn route again
    outs, _ = drain_all(rib)
    assert coalesce([o for o in first + outs if getattr(o, "system_id", "") == H2]) == [
        FwdRoutes(H2, "red", tuple(fwd(i) for i in range(late))),
        FwdEndOfRib(H2, "red"),
    ]


def test_an_unsubscribe_ends_a_pending_table_dump() -> None:
    rib = loaded_rib(3 * WORK_SLICE, gr=0)
    rib.handle(XmppSubscribe(H2, "red"), 1)
    rib.handle(XmppUnsubscribe(H2, "red"), 1)
    outs, _ = drain_all(rib)
    assert [o for o in outs if getattr(o, "system_id", "") == H2] == []


def test_resend_dumps_a_subscribed_table_again() -> None:
    count = WORK_SLICE + 1
    rib = loaded_rib(count, gr=0)
    first = rib.resend(H1, "red")
    assert len(first) == 1 and len(first[0].routes) == WORK_SLICE  # type: ignore[union-attr]
    outs, slices = drain_all(rib)
    assert slices == 1  # the last route and End-of-RIB
    assert coalesce(first + outs) == [
        FwdRoutes(H1, "red", tuple(fwd(i) for i in range(count))),
        FwdEndOfRib(H1, "red"),
    ]
    assert rib.resend(H2, "red") == []  # not subscribed


def fwd(i: int) -> FwdRoute:
    r = route(i)
    return FwdRoute(r.prefix, r.nexthop, r.label)


def drain_all(rib: Rib) -> tuple[list[Output], int]:
    outs: list[Output] = []
    slices = 0
    while rib.has_work():
        outs += rib.work()
        slices += 1
    return outs, slices
