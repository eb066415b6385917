"""The forwarder agent: end-system sessions -> VRF state -> table entries -> switch.

Data flows one way, each step in one module:

    esxmpp server (end-systems)  --changes-->  control.vrf.VrfState  <--  control.routeservers
                                                    |
                                      control.desired (pure)
                                                    |
                                      control.driver (diff + P4Runtime writes)

This module wires them, keeps the state file, runs the expiry timer and
serves the operator interface (loopback HTTP: JSON under /v1/, Prometheus
text at /metrics). ``esvpn-agent --config agent.toml``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from control import tables as T
from control.config import AgentConfig, ConfigError, load_config
from control.desired import (
    NexthopIds,
    desired_steps,
    interface_entries,
    label_entry,
    source_entry,
)
from control.driver import SwitchDriver
from control.p4rt import (
    ActionProfileGroup,
    ActionProfileMember,
    Entity,
    Exact,
    P4RuntimeError,
    TableEntry,
)
from control.punt import PuntHandler, program_meters, punt_entities
from control.punt import serve as serve_punts
from control.routeservers import RouteServers
from control.vrf import Export, LocalTarget, Steps, VrfState, export_key
from esxmpp import httpserve
from esxmpp.dialect import (
    Associate,
    DialectError,
    Dissociate,
    Publish,
    Request,
    Subscribe,
    Unsubscribe,
    format_system_id,
)
from esxmpp.looplag import LoopLag
from esxmpp.quota import RateLimits
from esxmpp.server import ServerSession, XmppServer
from esxmpp.tasks import SHUTDOWN_DEADLINE, cancel_and_wait, exit_watchdog

log = logging.getLogger("control.agent")


class Agent:
    def __init__(self, cfg: AgentConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.state = self._new_state()
        self.ids = NexthopIds(hold=cfg.timers.stale)
        self.driver = SwitchDriver(
            cfg.switch,
            self._desired,
            cfg.timers.coalesce,
            cfg.timers.reconnect,
            on_synced=self._on_synced,
            clock=clock,
            on_inherited=self._inherited,
            after_pipeline=lambda client: program_meters(client, cfg.punt),
        )
        self.punt = PuntHandler(cfg, self.state, clock())
        # a route is advertised only once its label is on the switch: the exports
        # of the desired state being written, each with its mpls_label entry; after
        # a sync, those whose entry the switch holds
        self._pending_exports: dict[Export, Entity] = {}
        self._installed_exports: set[Export] = set()
        self._exports_ready = False  # the switch was synced once: exports are complete
        self.xmpp = XmppServer(cfg.xmpp, self, clock, end_systems=True)
        self.lag = LoopLag()
        self.rs = RouteServers(
            cfg.route_servers,
            self.state,
            self.changed,
            clock,
            cfg.timers.reconnect,
            exports=lambda: self._installed_exports,
            # after a start without state, not before the restart hold ends:
            # the route servers keep what the switch keeps (control.driver)
            ready=lambda: self._exports_ready and self.driver.hold_deadline is None,
        )
        self.requests_refused = 0
        self.requests_accepted = 0
        self.requests_failed = 0  # the handler raised something else than a refusal
        self.switch_refusals = 0  # requests refused because the switch did not take them
        self._rates = RateLimits(cfg.limits.requests_per_second, cfg.limits.request_burst)
        self._sync_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.loop_errors: dict[str, int] = {}  # loop name -> failed iterations
        self._timer_wakeup = asyncio.Event()
        self._save_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._control: asyncio.Server | None = None
        self._saved_json = ""
        self._saved_ids: tuple[int, ...] = ()
        self._loaded = False

    def _new_state(self) -> VrfState:
        cfg = self.cfg
        return VrfState(
            cfg.fabric.infra_address,
            cfg.end_system_ports,
            cfg.timers.stale,
            (cfg.labels.min, cfg.labels.max),
            vpns=cfg.vpns,
            limits=cfg.limits,
        )

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        restored = False
        if self.cfg.state_file is not None and self.cfg.state_file.exists():
            restored = self._restore(self.cfg.state_file)
        self._loaded = True  # from here on, close() saves the state
        if not restored:
            # no record of what the switch holds: keep it forwarding while the
            # end-systems and route servers re-announce (control.driver)
            self.driver.keep_inherited(self.clock() + self.cfg.timers.stale)
        self.driver.start()
        await self.xmpp.start()
        self.rs.start()
        host, port = self.cfg.control
        self._control = await asyncio.start_server(self._http, host, port)
        self._tasks.append(asyncio.create_task(self._timer_loop()))
        self._tasks.append(asyncio.create_task(self._save_loop()))
        self._tasks.append(
            asyncio.create_task(
                serve_punts(lambda: self.driver.client, self.punt, lambda: self.clock())  # noqa: PLW0108 (late-bound clock)
            )
        )
        self._tasks.append(self.lag.start())  # esvpn_loop_lag_* in /metrics
        self.changed()

    @property
    def control_port(self) -> int:
        assert self._control is not None
        return int(self._control.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._control is not None:
            self._control.close()
        await self.xmpp.close()
        await self.rs.close()
        await cancel_and_wait(self._tasks, "agent")
        await self.driver.close()
        if not self._loaded:  # stopped before the state file was read: keep it
            return
        try:
            self.save()
        except Exception:
            self._loop_error("save", f"state file {self.cfg.state_file}: last save failed")

    def changed(self) -> None:
        """The VRF state changed: resync switch and route servers, re-arm timers, save."""
        self.driver.kick()
        self.rs.kick()
        self._timer_wakeup.set()
        self._save_wakeup.set()

    def _desired(self) -> Steps[set[Entity]]:
        ents = yield from desired_steps(  # in steps: control.driver awaits between them
            self.state, self.cfg.fabric, self.ids, self.clock(), self.driver.full_name
        )
        ents |= punt_entities(self.state, self.cfg.vpns, self.driver.full_name)
        labels = {
            key: label_entry(itf, self.state.vrfs[itf.vpn].vrf_id, self.driver.full_name)
            for key, itf in self.state.interfaces.items()
        }
        self._pending_exports = {ex: labels[(ex.system_id, ex.vpn)] for ex in self.state.exports()}
        # ids allocated or released since the last save: saved now, before the
        # driver writes what uses them, so a kill -9 after the switch write
        # finds every id the switch holds in the file. Anything else (routes,
        # addresses: re-announced by their sources) is left to the save loop,
        # which keeps a sync from serializing a large state each time.
        mark = self._ids_mark()
        if mark != self._saved_ids:
            try:
                self.save()
                self._saved_ids = mark
            except OSError as e:
                self._loop_error("save", f"state file {self.cfg.state_file}: {e}", trace=False)
            except Exception:  # a bug in saving must not stop the switch writes
                self._loop_error("save", f"state file {self.cfg.state_file}: save failed")
        self._save_wakeup.set()
        return ents

    def _ids_mark(self) -> tuple[int, ...]:
        pools = (
            self.state.labels,
            self.state.vif_ids,
            self.state.vrf_ids,
            self.ids.member_pool,
            self.ids.nh_pool,
        )
        return tuple(p.changes for p in pools)

    def _on_synced(self) -> None:
        """After a sync (complete or with refused updates): export exactly the
        routes whose label entry the switch holds."""
        done = self.driver.synced_kicks
        waiting = []
        for kicks, fut in self._sync_waiters:
            if kicks <= done:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((kicks, fut))
        self._sync_waiters = waiting
        exports = {ex for ex, ent in self._pending_exports.items() if self.driver.holds(ent)}
        if self._installed_exports != exports or not self._exports_ready:
            self._installed_exports = exports
            self._exports_ready = True
            self.rs.kick()

    # --------------------------------------------------------- persistence
    def _inherited(self, ents: Collection[Entity]) -> None:
        """Started without state: the ids the switch still uses stay held until
        the hold deadline, so no new interface or next hop takes one over
        (a label of an old entry reused for another vif would misdeliver)."""
        until = self.driver.hold_deadline
        if until is None:
            return
        n = self.driver.full_name
        label_t, vif_t = n(T.MPLS_LABEL), n(T.VIF)
        for e in ents:
            if isinstance(e, TableEntry):
                m = e.match.get(T.F_LABEL)
                if e.table == label_t and isinstance(m, Exact):
                    self.state.labels.hold_until(m.value, until)
                elif e.table == vif_t and e.action is not None:
                    self.state.vif_ids.hold_until(e.params.get(T.P_VIF_ID, 0), until)
                    self.state.vrf_ids.hold_until(e.params.get(T.P_VRF_ID, 0), until)
            elif isinstance(e, ActionProfileMember):
                self.ids.member_pool.hold_until(e.member_id, until)
            elif isinstance(e, ActionProfileGroup):
                self.ids.nh_pool.hold_until(e.group_id, until)

    def _restore(self, path: Path) -> bool:
        """Load the state file; a broken one is moved aside (``.bad``) and the
        agent starts empty (the end-systems and route servers re-announce).
        True when the state was restored."""
        try:
            data = json.loads(path.read_text())
            # dry run first, so a bad file cannot leave half a state behind
            scratch = self._new_state()
            scratch.restore(data["vrf"], self.clock())
            NexthopIds().restore(data["nexthops"], self.clock())
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            bad = path.with_suffix(path.suffix + ".bad")
            log.error(
                "state file %s unusable (%s: %s); moved to %s, starting empty",
                path,
                type(e).__name__,
                e,
                bad,
            )
            with contextlib.suppress(OSError):
                os.replace(path, bad)
            return False
        self.state.restore(data["vrf"], self.clock())
        self.ids.restore(data["nexthops"], self.clock())
        log.info("restored state from %s", path)
        return True

    def save(self) -> None:
        if self.cfg.state_file is None:
            return
        now = self.clock()
        text = json.dumps({"vrf": self.state.to_json(now), "nexthops": self.ids.to_json(now)})
        if text == self._saved_json:
            return
        tmp = self.cfg.state_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.cfg.state_file)
        self._saved_json = text

    def _loop_error(self, loop: str, what: str, trace: bool = True) -> None:
        """One iteration of a main loop failed: logged (with the traceback of
        the exception being handled unless ``trace`` is false) and counted
        (``esvpn_loop_errors_total{loop=...}``); the loop goes on."""
        self.loop_errors[loop] = self.loop_errors.get(loop, 0) + 1
        log.error("%s loop: %s", loop, what, exc_info=trace)

    async def _save_loop(self) -> None:
        while True:
            await self._save_wakeup.wait()
            self._save_wakeup.clear()
            await asyncio.sleep(0.05)  # one write per burst of changes
            try:
                self.save()
            except OSError as e:
                self._loop_error("save", f"state file {self.cfg.state_file}: {e}", trace=False)
            except Exception:
                self._loop_error("save", f"state file {self.cfg.state_file}: save failed")
                # retried on the next change, and at the latest in a second
                self._save_wakeup_later(1.0)

    def _save_wakeup_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._save_wakeup.set)

    # ---------------------------------------------------------------- timers
    async def _timer_loop(self) -> None:
        while True:
            self._timer_wakeup.clear()
            deadlines = [
                d for d in (self.state.next_deadline(), self.driver.hold_deadline) if d is not None
            ]
            timeout = max(0.0, min(deadlines) - self.clock()) if deadlines else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._timer_wakeup.wait()
            try:
                hold = self.driver.hold_deadline
                if hold is not None and hold <= self.clock():
                    log.info("restart hold over: entries nobody re-announced are removed")
                    self.driver.end_hold()
                    self.rs.kick()  # now the route servers may drop them too
                removed = self.state.expire(self.clock())
            except Exception:
                self._loop_error("timer", "expiry failed")
                await asyncio.sleep(1.0)  # not a busy loop on a past deadline
                continue
            if removed:
                log.info("stale state removed: %s", ", ".join(removed))
                self.changed()

    # ------------------------------------------------- esxmpp server handler
    def session_opened(self, session: ServerSession, resumed: bool) -> None:
        log.info(
            "end-system %s connected from %s%s",
            session.jid,
            session.peer,
            " (state resumed)" if resumed else "",
        )

    async def request(
        self, session: ServerSession, request: Request, changes: Sequence[Request]
    ) -> None:
        """Apply an end-system's request; answered (by returning) only once the
        switch holds what it adds, refused (DialectError, state undone) when
        the switch refuses it or does not answer within limits.switch_answer."""
        sid = session.system_id
        try:
            adds = isinstance(request, Subscribe | Publish | Associate)
            if not self._rates.take(sid, self.clock()) and adds:
                lim = self.cfg.limits
                raise DialectError(
                    "resource-constraint",
                    f"more than {lim.request_burst} requests in a row or "
                    f"{lim.requests_per_second:g}/s (limits.request_burst, "
                    "limits.requests_per_second)",
                )
            self.state.end_system(sid, changes, self.clock())
            if changes:
                self.changed()
            new = self._new_entities(sid, changes)
            if new:
                await self._switch_answer(sid, changes, new)
        except DialectError as e:
            self.requests_refused += 1
            log.warning("end-system %s: refused %s: %s", session.jid, request, e)
            raise
        except Exception:
            # refused to the end-system as internal-server-error by esxmpp.server
            self.requests_failed += 1
            raise
        self.requests_accepted += 1
        if changes:
            log.info("end-system %s: %s", session.jid, request)

    def _new_entities(self, sid: bytes, changes: Sequence[Request]) -> list[Entity]:
        """Entries the switch must take for ``changes`` (already applied) that
        it does not hold yet: a new vif's, a new address's anti-spoofing entry."""
        n = self.driver.full_name
        ents: list[Entity] = []
        for ch in changes:
            if isinstance(ch, Subscribe):
                itf = self.state.interface(sid, ch.node)
                if itf is not None:
                    ents += interface_entries(itf, self.state.vrfs[ch.node].vrf_id, n)
            elif isinstance(ch, Associate):
                itf = self.state.interface(sid, ch.collection)
                entry = self.state.published.get(sid, {}).get(ch.node)
                if itf is not None and entry is not None:
                    ents.append(source_entry(itf, entry.prefix, n))
        return [e for e in ents if not self.driver.holds(e)]

    async def _switch_answer(
        self, sid: bytes, changes: Sequence[Request], ents: list[Entity]
    ) -> None:
        """Wait until the switch holds ``ents``; when it refuses one (e.g. a
        full table) or does not answer in time, undo ``changes`` and refuse."""
        deadline = self.clock() + self.cfg.limits.switch_answer
        kicks_at = self.driver.kicks  # the changes were kicked: a sync covering this has them
        problem = ""
        while True:
            pending = [e for e in ents if not self.driver.holds(e)]
            if not pending:
                return
            if self.driver.synced_kicks >= kicks_at:
                refused = [r for e in pending if (r := self.driver.refusal(e)) is not None]
                if refused:
                    problem = f"the switch refused it: {refused[0]}"
                    break
            left = deadline - self.clock()
            if left <= 0:
                problem = (
                    f"the switch did not take it within {self.cfg.limits.switch_answer:g} s "
                    f"(limits.switch_answer){'' if self.driver.connected else ': not connected'}"
                )
                break
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._sync_waiters.append((max(kicks_at, self.driver.synced_kicks + 1), fut))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, left)
        self.switch_refusals += 1
        self.state.end_system(sid, _undo(changes), self.clock())
        self.changed()
        raise DialectError("resource-constraint", problem)

    def session_closed(self, session: ServerSession, reason: str) -> None:
        log.info("end-system %s disconnected: %s", session.jid, reason)

    def state_expired(self, system_id: bytes, changes: Sequence[Request]) -> None:
        log.info("end-system %s: retention over, withdrawing", format_system_id(system_id))
        try:
            self.state.end_system(system_id, changes, self.clock())
        except DialectError as e:  # pragma: no cover - withdrawals are always accepted
            log.error("withdrawal of %s failed: %s", format_system_id(system_id), e)
        self.changed()

    # ------------------------------------------------------ operator views
    def view_sessions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for s in self.xmpp.sessions():
            out.append(
                {
                    "kind": "end-system",
                    "system_id": format_system_id(s.system_id),
                    "jid": s.jid,
                    "peer": s.peer,
                    "subscriptions": dict(s.state.subscriptions),
                    "published": len(s.state.published),
                }
            )
        for rs in self.rs.servers:
            out.append(
                {
                    "kind": "route-server",
                    "server": rs.name,
                    "connected": rs.connected,
                    "primary": self.rs.primary is rs,
                    "subscriptions": sorted(rs.subs),
                    "published": len(rs.sent),
                    "last_error": rs.last_error,
                }
            )
        out.append(
            {
                "kind": "switch",
                "address": self.cfg.switch.address,
                "connected": self.driver.connected,
                "installed": len(self.driver.installed),
                "update_errors": self.driver.stats.update_errors,
            }
        )
        return out

    def view_vrfs(self) -> list[dict[str, Any]]:
        return [
            {
                "vpn": name,
                "vrf_id": v.vrf_id,
                "interfaces": len(self.state.interfaces_of(name)),
                "routes": len(self.state.selected_routes(name)),
                "received": len(self.state.remote.get(name, {})),
            }
            for name, v in sorted(self.state.vrfs.items())
        ]

    def view_interfaces(self) -> list[dict[str, Any]]:
        return [
            {
                "system_id": format_system_id(i.system_id),
                "vpn": i.vpn,
                "vlan": i.vlan,
                "port": i.port,
                "vif_id": i.vif_id,
                "label": i.label,
                "addresses": [str(p) for p in sorted(i.addresses, key=str)],
                "unconfirmed": i.unconfirmed,
            }
            for _, i in sorted(self.state.interfaces.items())
        ]

    def view_routes(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for vpn in sorted(self.state.vrfs):
            for prefix, targets in sorted(
                self.state.selected_routes(vpn).items(), key=lambda kv: str(kv[0])
            ):
                hops = sorted(
                    f"local vif {t.vif_id}"
                    if isinstance(t, LocalTarget)
                    else f"{t.nexthop} label {t.label}"
                    for t in targets
                )
                out.append(
                    {"vpn": vpn, "prefix": str(prefix), "source": "route-server", "nexthops": hops}
                )
        for ex in sorted(self.state.exports(), key=export_key):
            out.append(
                {
                    "vpn": ex.vpn,
                    "prefix": str(ex.prefix),
                    "source": "exported",
                    "nexthops": [f"{self.state.infra} label {ex.label} version {ex.version}"],
                }
            )
        return out

    def view_labels(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "label": i.label,
                "state": "in use",
                "system_id": format_system_id(i.system_id),
                "vpn": i.vpn,
                "vlan": i.vlan,
            }
            for i in sorted(self.state.interfaces.values(), key=lambda i: i.label)
        ]
        now = self.clock()
        for label, until in sorted(self.state.labels.held(now).items()):
            out.append({"label": label, "state": f"held {until - now:.0f}s"})
        return out

    async def view_counters(self) -> list[dict[str, Any]]:
        client = self.driver.client
        if client is None or not client.connected:
            raise P4RuntimeError("switch not connected")
        rx = await client.read_counters(T.C_VIF_RX)
        tx = await client.read_counters(T.C_VIF_TX)
        out: list[dict[str, Any]] = []
        for i in sorted(self.state.interfaces.values(), key=lambda i: i.vif_id):
            r, t = rx.get(i.vif_id), tx.get(i.vif_id)
            out.append(
                {
                    "vif_id": i.vif_id,
                    "system_id": format_system_id(i.system_id),
                    "vpn": i.vpn,
                    "vlan": i.vlan,
                    "rx_packets": r.packets if r else 0,
                    "rx_bytes": r.bytes if r else 0,
                    "tx_packets": t.packets if t else 0,
                    "tx_bytes": t.bytes if t else 0,
                }
            )
        return out

    async def view_diff(self) -> dict[str, Any]:
        batches = await self.driver.diff()
        return {
            "updates": [{"type": u.type.name, "entity": repr(u.entity)} for b in batches for u in b]
        }

    def metrics(self) -> str:
        """Prometheus text exposition (prometheus_client) of the agent's state."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self._metric_families))
        return generate_latest(registry).decode()

    def _metric_families(self) -> Iterator[Metric]:
        st = self.driver.stats
        gauges = [
            (
                "esvpn_end_system_sessions",
                "end-system XMPP sessions bound",
                len(self.xmpp.sessions()),
            ),
            ("esvpn_vrfs", "VRFs on the switch", len(self.state.vrfs)),
            (
                "esvpn_interfaces",
                "end-system virtual interfaces (vifs)",
                len(self.state.interfaces),
            ),
            (
                "esvpn_exported_routes",
                "routes exported to the route servers",
                len(self.state.exports()),
            ),
            (
                "esvpn_received_routes",
                "routes received from the primary route server",
                sum(len(t) for t in self.state.remote.values()),
            ),
            (
                "esvpn_route_servers_connected",
                "route-server sessions up",
                sum(rs.connected for rs in self.rs.servers),
            ),
            (
                "esvpn_switch_connected",
                "1 when we are the switch's primary controller",
                int(self.driver.connected),
            ),
            (
                "esvpn_switch_installed_entities",
                "entities the agent holds on the switch",
                len(self.driver.installed),
            ),
            (
                "esvpn_switch_held_deletes",
                "deletes held back until the stale deadline after a restart without state",
                st.held_deletes,
            ),
        ]
        counters = [
            ("esvpn_switch_connects_total", "P4Runtime (re)connections to the switch", st.connects),
            (
                "esvpn_switch_pipeline_commits_total",
                "pipelines pushed to the switch",
                st.pipeline_commits,
            ),
            ("esvpn_switch_write_requests_total", "P4Runtime write requests sent", st.writes),
            ("esvpn_switch_updates_total", "P4Runtime updates sent", st.updates),
            (
                "esvpn_switch_update_errors_total",
                "P4Runtime updates the switch refused",
                st.update_errors,
            ),
            (
                "esvpn_end_system_requests_accepted_total",
                "end-system XMPP requests accepted",
                self.requests_accepted,
            ),
            (
                "esvpn_end_system_requests_refused_total",
                "end-system XMPP requests refused",
                self.requests_refused,
            ),
            (
                "esvpn_end_system_requests_failed_total",
                "end-system requests that failed in the agent (a bug, logged)",
                self.requests_failed,
            ),
            (
                "esvpn_end_system_switch_refusals_total",
                "end-system requests refused because the switch refused or did not take them",
                self.switch_refusals,
            ),
            (
                "esvpn_route_server_routes_refused_total",
                "routes from the route servers refused (a next hop no forwarder can have)",
                self.state.refused_routes,
            ),
            ("esvpn_switch_driver_errors_total", "switch driver loop errors", st.errors),
            (
                "esvpn_route_server_refusals_total",
                "requests the route servers refused",
                sum(rs.errors for rs in self.rs.servers),
            ),
            (
                "esvpn_route_server_already_withdrawn_total",
                "withdrawals answered item-not-found (already done at the route server)",
                sum(rs.already_withdrawn for rs in self.rs.servers),
            ),
            (
                "esvpn_route_server_conflicts_total",
                "route-server sessions replaced by a newer one (conflict)",
                sum(rs.conflicts for rs in self.rs.servers),
            ),
        ]
        for name, help_, value in gauges:
            yield GaugeMetricFamily(name, help_, value=value)
        for name, help_, value in counters:
            yield CounterMetricFamily(name, help_, value=value)
        loops = {"save": 0, "timer": 0, "control": 0, "routeserver_sync": 0, **self.loop_errors}
        loops["routeserver_sync"] += self.rs.sync_errors
        loops["routeserver_notification"] = self.rs.notification_errors
        family = CounterMetricFamily(
            "esvpn_loop_errors_total", "failures a main loop logged and survived", labels=["loop"]
        )
        for loop, n in sorted(loops.items()):
            family.add_metric([loop], n)
        yield family
        yield from self.lag.families("esvpn")

    # ------------------------------------------------------------- control HTTP
    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await httpserve.serve_one(reader, writer, self._http_route)

    async def _http_route(self, req: httpserve.Request) -> httpserve.Response:
        status, ctype, body = await self._route(req.path)
        return httpserve.Response(int(status.split()[0]), body, ctype)

    async def _route(self, path: str) -> tuple[str, str, str]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, self.metrics()
        views: dict[str, Callable[[], Any]] = {
            "/v1/sessions": self.view_sessions,
            "/v1/vrfs": self.view_vrfs,
            "/v1/interfaces": self.view_interfaces,
            "/v1/routes": self.view_routes,
            "/v1/labels": self.view_labels,
            "/v1/counters": self.view_counters,
            "/v1/diff": self.view_diff,
        }
        fn = views.get(path)
        if fn is None:
            return "404 Not Found", "application/json", json.dumps({"error": f"no {path}"})
        try:
            res = fn()
            if asyncio.iscoroutine(res):
                res = await res
            body = json.dumps(res)
        except P4RuntimeError as e:
            return "503 Service Unavailable", "application/json", json.dumps({"error": str(e)})
        except Exception as e:  # a bug in one view must not take the control port down
            self._loop_error("control", f"GET {path} failed")
            err = f"{path} failed in the agent: {type(e).__name__}: {e}"
            return "500 Internal Server Error", "application/json", json.dumps({"error": err})
        return "200 OK", "application/json", body


# ---------------------------------------------------------------------- main


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d)


def setup_logging(fmt: str, level: str) -> None:
    h = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        h.setFormatter(JsonFormatter())
    else:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[h], force=True)


async def run(cfg: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agent = Agent(cfg)
    started = asyncio.create_task(agent.start())
    stopped = asyncio.create_task(stop.wait())
    # SIGTERM is honoured while starting too (e.g. a port still busy)
    await asyncio.wait({started, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if started.done() and not stop.is_set():
        started.result()
        log.info("agent running; control on %s:%d", cfg.control[0], agent.control_port)
        await stopped
    exit_watchdog(SHUTDOWN_DEADLINE, "esvpn-agent")
    await cancel_and_wait([started, stopped], "agent start")
    await agent.close()


def _undo(changes: Sequence[Request]) -> list[Request]:
    """The changes that take back what ``changes`` (a subscribe or an
    association, with what came with them) added."""
    out: list[Request] = []
    for ch in reversed(changes):
        if isinstance(ch, Associate):
            out.append(Dissociate(ch.collection, ch.node))
        elif isinstance(ch, Subscribe):
            out.append(Unsubscribe(ch.node))
    return out


class _Families:
    """A prometheus_client collector over a function that yields metric families."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self.collect = families


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="esvpn-agent", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", default="info")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    a = p.parse_args(argv)
    setup_logging(a.log_format, a.log_level)
    try:
        cfg = load_config(a.config)
    except ConfigError as e:
        print(f"esvpn-agent: {a.config}: {e}", file=sys.stderr)
        return 2
    try:
        SwitchDriver.check_files(cfg.switch)
    except ConfigError as e:
        print(f"esvpn-agent: {a.config}: {e}", file=sys.stderr)
        return 2
    if a.check:
        print("config ok")
        return 0
    asyncio.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
