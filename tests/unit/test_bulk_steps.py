"""Issue 19 bug 5: a 100,000-route burst never holds an event loop in one go.

No timing: the work is counted. The agent's desired state and diff run in
steps of at most control.vrf.STEP items (the driver awaits between steps);
the route server applies BGP inputs at most INGEST_SLICE at a time; the
heap is frozen for the GC every GcFreeze.every long-lived items.
"""

from __future__ import annotations

import gc
import ipaddress
from collections.abc import Generator
from typing import Any

from control.desired import NexthopIds, desired_entities, desired_steps
from control.reconcile import plan, plan_steps
from control.vrf import STEP, RemoteItem, VrfState
from esxmpp.dialect import RouteEntry, Subscribe
from esxmpp.gcfreeze import GcFreeze
from routeserver.rib import BgpPeerUp, BgpRouteAdd
from routeserver.server import INGEST_SLICE, RouteServer
from tests.unit.routeserver.test_rs_rib import PE, cfg
from tests.unit.test_ctl_desired import FABRIC, INFRA, SYS_A

N = 3 * STEP + 17


class CountingItem(RemoteItem):
    """A received route that counts how often its entry is read."""

    reads = 0

    def __getattribute__(self, name: str) -> Any:
        if name == "entry":
            CountingItem.reads += 1
        return super().__getattribute__(name)


def state(count: int) -> VrfState:
    st = VrfState(INFRA, {SYS_A: 3})
    st.end_system(SYS_A, [Subscribe("red", 10)], 0.0)
    for i in range(count):
        p = ipaddress.IPv4Network((0x0A000000 + i, 32))
        e = RouteEntry(p, ipaddress.IPv4Address(0xC0000202 + i % 4), 100 + i % 4, 0)
        st.remote["red"][str(p)] = CountingItem(e)
    return st


def per_step(steps: Generator[None, None, Any], counter: Any) -> tuple[list[int], Any]:
    """Work (``counter()`` increments) done by each step, and the result."""
    work: list[int] = []
    before = counter()
    while True:
        try:
            next(steps)
        except StopIteration as e:
            work.append(counter() - before)
            return work, e.value
        work.append(counter() - before)
        before = counter()


def reads() -> int:
    return CountingItem.reads


def test_selected_routes_run_in_bounded_steps() -> None:
    st = state(N)
    work, got = per_step(st.selected_steps("red"), reads)
    assert max(work) <= STEP and sum(work) == N
    assert len(work) == (2 * N) // STEP + 1  # two passes: newest versions, then targets
    assert got == st.selected_routes("red") and len(got) == N


def test_desired_entities_run_in_bounded_steps() -> None:
    st = state(N)
    steps = desired_steps(st, FABRIC, NexthopIds(), 0.0)
    work, got = per_step(steps, reads)
    assert max(work) <= STEP and sum(work) == N
    # route entries are built in steps too: about 2 N / STEP steps in all
    assert len(work) >= 2 * (N // STEP)
    assert got == desired_entities(st, FABRIC, NexthopIds(), 0.0)


class CountingKey:
    """An entity whose key() calls are counted."""

    calls = 0

    def __init__(self, k: int) -> None:
        self.k = k

    def key(self) -> tuple[Any, ...]:
        CountingKey.calls += 1
        return ("x", self.k)


def test_the_diff_runs_in_bounded_steps() -> None:
    want = [CountingKey(i) for i in range(N)]
    have = [CountingKey(i) for i in range(N // 2, N + N // 2)]
    CountingKey.calls = 0
    work, got = per_step(plan_steps(want, have), lambda: CountingKey.calls)  # type: ignore[arg-type]
    assert max(work) <= STEP and sum(work) == 2 * N
    assert got == plan(want, have)  # type: ignore[arg-type]


def test_route_server_applies_a_bgp_burst_in_slices_in_order() -> None:
    rs = RouteServer(cfg())
    rs._bgp_inputs([BgpPeerUp(PE, 0)])
    count = 3 * INGEST_SLICE + 5

    def add(i: int) -> BgpRouteAdd:
        return BgpRouteAdd(
            PE, "64512:7", ipaddress.IPv4Network((0x0A000000 + i, 32)), 100 + i,
            ipaddress.IPv4Address("192.0.2.7"), frozenset({"64512:100"}),
        )  # fmt: skip

    def applied() -> int:
        return rs.rib.counters.get("BgpRouteAdd", 0)

    rs._bgp_inputs([add(i) for i in range(count)])
    assert applied() == INGEST_SLICE
    rs._bgp_inputs([add(count)])  # behind the backlog: waits its turn
    assert applied() == INGEST_SLICE
    steps = [INGEST_SLICE]
    while rs._backlog:
        before = applied()
        rs.work_step()
        steps.append(applied() - before)
    assert steps == [INGEST_SLICE] * 3 + [6]
    assert rs.rib.show_peers()[0]["routes_in"] == count + 1


def test_gc_freeze_every_so_many_items_and_thaw_when_small() -> None:
    gc.unfreeze()  # another test in this process (the switch's big writes) may have frozen
    now = [0.0]
    g = GcFreeze(every=1000, thaw_below=10**9, check=10.0, clock=lambda: now[0])
    gc.unfreeze()  # what earlier tests' daemons froze
    try:
        g.added(999)
        assert g.freezes == 0 and gc.get_freeze_count() == 0
        g.added(1)
        assert g.freezes == 1 and gc.get_freeze_count() > 0
        assert not g.tick()  # checked at most every 10 s
        now[0] = 10.0
        assert g.tick() and g.thaws == 1 and gc.get_freeze_count() == 0
        g.thaw_below = 1  # a big frozen heap stays frozen
        g.added(1000)
        now[0] = 20.0
        assert not g.tick() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
