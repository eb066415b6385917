"""Route-server side of the agent: one esxmpp client per configured route server.

* Every local route (``exports``: the agent passes those whose label is
  already on the switch) is published to every connected route server:
  ``publish`` node '<end-system id>:<prefix>' with (prefix, our infra
  address, label, version), then ``associate`` it with its VPN.
* Each VPN with local interfaces is subscribed at every route server (the
  route server accepts an association only into a VPN the client subscribed
  to), but routes are *applied* from one of them, the primary: the first
  connected one in configuration order. Each server's notifications are kept
  per server, so a failover replays the new primary's table at once.
* Losing the primary marks the installed routes stale: they keep forwarding
  for ``timers.stale`` seconds unless the new primary (re)sends them; an
  EndOfRib from it removes the ones it did not send.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from control.vrf import Export, VrfState
from esxmpp.client import XmppClient
from esxmpp.config import ClientConfig
from esxmpp.dialect import (
    DialectError,
    EndOfRib,
    ItemsEvent,
    Notification,
    RetractEvent,
    RouteEntry,
    item_node_name,
)
from esxmpp.tasks import cancel_and_wait

log = logging.getLogger("control.routeservers")

IN_FLIGHT = 32  # requests outstanding per route server while syncing exports
RECONNECT_CAP = 5.0  # seconds: the longest delay between connection attempts


@dataclass
class RouteServer:
    config: ClientConfig
    client: XmppClient | None = None
    connected: bool = False
    sent: dict[str, tuple[str, RouteEntry]] = field(default_factory=dict)  # node -> (vpn, entry)
    subs: set[str] = field(default_factory=set)
    rib: dict[str, dict[str, RouteEntry]] = field(default_factory=dict)  # vpn -> item -> entry
    eor: set[str] = field(default_factory=set)
    end_of_sync: bool = False  # EndOfSync sent in this session
    connects: int = 0
    attempts: int = 0  # connection attempts (failed ones included)
    conflicts: int = 0  # sessions ended by the route server with <conflict>
    errors: int = 0
    already_withdrawn: int = 0  # withdrawals answered item-not-found (nothing to do)
    last_error: str = ""

    @property
    def name(self) -> str:
        return f"{self.config.host}:{self.config.port}"


class RouteServers:
    def __init__(
        self,
        configs: tuple[ClientConfig, ...],
        state: VrfState,
        changed: Callable[[], None],
        clock: Callable[[], float],
        reconnect: float = 1.0,
        exports: Callable[[], set[Export]] | None = None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.servers = [RouteServer(c) for c in configs]
        self.exports = exports or state.exports
        # exports() is complete (the switch was synced once): only then may a
        # session's EndOfSync make the route server drop what was not re-sent
        self.ready = ready
        self.state = state
        self.changed = changed
        self.clock = clock
        self.reconnect = reconnect
        self.primary: RouteServer | None = None
        self._kick = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sync_errors = 0
        self.notification_errors = 0

    # ---------------------------------------------------------------- api
    def start(self) -> None:
        for rs in self.servers:
            self._tasks.append(asyncio.create_task(self._connect_loop(rs)))
        self._tasks.append(asyncio.create_task(self._sync_loop()))

    async def close(self) -> None:
        await cancel_and_wait(self._tasks, "route servers")
        for rs in self.servers:
            if rs.client is not None:
                await rs.client.close()

    def kick(self) -> None:
        self._idle.clear()
        self._kick.set()

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until every export/subscription change so far was sent."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    # ------------------------------------------------------------ sessions
    def _backoff(self, failures: int) -> float:
        """Delay before the next connection attempt after ``failures`` failed
        ones in a row: ``reconnect`` doubling up to a cap, with jitter (so
        forwarders that lost the same route server do not come back in step)."""
        cap = max(self.reconnect, min(RECONNECT_CAP, 10 * self.reconnect))
        base: float = min(cap, self.reconnect * 2.0 ** max(0, failures - 1))
        return base * random.uniform(0.5, 1.0)

    async def _connect_loop(self, rs: RouteServer) -> None:
        """The one connection attempt in flight to ``rs`` at any time."""
        failures = 0
        while True:
            client = XmppClient(rs.config, functools.partial(self._notification, rs))
            rs.attempts += 1
            try:
                await client.connect()
            except (ConnectionError, OSError, TimeoutError) as e:
                rs.last_error = str(e)
                failures += 1
                log.debug("route server %s: %s", rs.name, e)
                await asyncio.sleep(self._backoff(failures))
                continue
            rs.client, rs.connected = client, True
            rs.connects += 1
            rs.sent.clear()
            rs.subs.clear()
            rs.rib.clear()
            rs.eor.clear()
            rs.end_of_sync = False
            log.info("route server %s: connected", rs.name)
            self._elect()
            self.kick()
            await client.wait_disconnected()
            rs.connected = False
            with contextlib.suppress(Exception):
                await client.close()
            rs.client = None
            if client.stream_error == "conflict":
                # a newer session of our own system id took this one over (a
                # second agent with our identity, or a connection of ours the
                # route server still saw): not answered at once, or two
                # sessions replace each other in a loop
                rs.conflicts += 1
                failures += 1
                rs.last_error = "replaced by a newer session of this system id (conflict)"
                log.warning("route server %s: %s", rs.name, rs.last_error)
            else:
                failures = 0
                log.warning("route server %s: disconnected", rs.name)
            if self.primary is rs:
                self.primary = None
                self.state.routes_stale(self.clock())
                self._elect()
                self.changed()
            await asyncio.sleep(self._backoff(max(1, failures)))

    def _elect(self) -> None:
        if self.primary is not None:
            return
        for rs in self.servers:
            if rs.connected:
                self.primary = rs
                log.info("route server %s: primary", rs.name)
                now = self.clock()
                for vpn, items in rs.rib.items():
                    self.state.routes_update(vpn, items.items(), now)
                for vpn in rs.eor:
                    self.state.end_of_rib(vpn)
                self.changed()
                return

    def _notification(self, rs: RouteServer, note: Notification) -> None:
        try:
            self._apply_notification(rs, note)
        except Exception:  # one bad notification must not stop the others
            self.notification_errors += 1
            log.exception("route server %s: notification %s failed", rs.name, note)

    def _apply_notification(self, rs: RouteServer, note: Notification) -> None:
        primary = self.primary is rs
        now = self.clock()
        if isinstance(note, ItemsEvent):
            rs.rib.setdefault(note.node, {}).update(note.items)
            if primary:
                self.state.routes_update(note.node, note.items, now)
        elif isinstance(note, RetractEvent):
            table = rs.rib.get(note.node, {})
            for i in note.item_ids:
                table.pop(i, None)
            if primary:
                self.state.routes_retract(note.node, note.item_ids)
        elif isinstance(note, EndOfRib):
            vpns = [note.node] if note.node is not None else list(rs.subs)
            rs.eor.update(vpns)
            if primary:
                for v in vpns:
                    self.state.end_of_rib(v)
        if primary:
            self.changed()

    # ----------------------------------------------------------------- sync
    async def _sync_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            for rs in self.servers:
                if rs.connected and rs.client is not None:
                    try:
                        await self._sync(rs, rs.client)
                    except (ConnectionError, TimeoutError, OSError) as e:
                        log.warning("route server %s: %s", rs.name, e)
                    except Exception:  # a bug with one server must not stop the loop
                        self.sync_errors += 1
                        log.exception("route server %s: sync failed", rs.name)
            if not self._kick.is_set():
                self._idle.set()

    async def _request(self, rs: RouteServer, coro: object, withdrawal: str = "") -> bool:
        """Await one request; False (logged, counted) when the route server
        refused it. ``withdrawal`` (what is withdrawn) marks a dissociate,
        retract or unsubscribe: the route server answering ``item-not-found``
        to one no longer has what we withdraw (e.g. it dropped it at our
        EndOfSync, or its retention ran out), which is the state we want."""
        try:
            await coro  # type: ignore[misc]
        except DialectError as e:
            if withdrawal and e.condition == "item-not-found":
                rs.already_withdrawn += 1
                log.info("route server %s: %s already withdrawn (%s)", rs.name, withdrawal, e)
                return True
            rs.errors += 1
            rs.last_error = str(e)
            log.error("route server %s refused: %s", rs.name, e)
            return False
        return True

    async def _send_node(
        self, rs: RouteServer, c: XmppClient, node: str, vpn: str, entry: RouteEntry
    ) -> None:
        """Bring one published node to (vpn, entry); recorded in ``rs.sent`` only
        when the route server accepted all of it (else retried on the next kick)."""
        if vpn not in rs.subs:  # subscription refused or not made yet
            return
        old = rs.sent.get(node)
        if old is not None and old[0] != vpn:  # moved to another VPN
            await self._request(rs, c.dissociate(old[0], node), f"{node} in {old[0]}")
            rs.sent.pop(node, None)
            old = None
        if (old is None or old[1] != entry) and not await self._request(rs, c.publish(node, entry)):
            return
        if old is None and not await self._request(rs, c.associate(vpn, node)):
            return
        if rs.client is c:  # not a session that ended meanwhile (rs.sent is the new one's)
            rs.sent[node] = (vpn, entry)

    async def _sync(self, rs: RouteServer, c: XmppClient) -> None:
        infra = self.state.infra
        want_subs = self.state.subscribed_vpns()
        want: dict[str, tuple[str, RouteEntry]] = {}
        for ex in self.exports():
            node = item_node_name(ex.system_id, ex.prefix)
            want[node] = (ex.vpn, RouteEntry(ex.prefix, infra, ex.label, ex.version))
        for vpn in sorted(want_subs - rs.subs):
            if await self._request(rs, c.subscribe(vpn)) and rs.client is c:
                rs.subs.add(vpn)
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(node: str, vpn: str, entry: RouteEntry) -> None:
            async with sem:
                await self._send_node(rs, c, node, vpn, entry)

        results = await asyncio.gather(
            *(one(n, v, e) for n, (v, e) in sorted(want.items()) if rs.sent.get(n) != (v, e)),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
        for node in sorted(set(rs.sent) - set(want)):
            vpn, _ = rs.sent[node]
            await self._request(rs, c.dissociate(vpn, node), f"{node} in {vpn}")
            await self._request(rs, c.retract(node), node)
            rs.sent.pop(node, None)
        for vpn in sorted(rs.subs - want_subs):
            await self._request(rs, c.unsubscribe(vpn), f"subscription {vpn}")
            rs.subs.discard(vpn)
            rs.rib.pop(vpn, None)
            rs.eor.discard(vpn)
        # everything we hold was sent in this session: the route server drops
        # what an earlier session of ours left there (kept for its retention)
        # and we did not send again
        if (
            not rs.end_of_sync
            and rs.client is c
            and self.ready()
            and await self._request(rs, c.end_of_sync())
        ):
            rs.end_of_sync = True
            log.info("route server %s: end of sync sent", rs.name)
