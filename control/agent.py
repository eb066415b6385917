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
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from control import tables as T
from control.config import AgentConfig, ConfigError, load_config
from control.desired import NexthopIds, desired_steps, label_entry
from control.driver import SwitchDriver
from control.p4rt import (
    ActionProfileGroup,
    ActionProfileMember,
    Entity,
    Exact,
    P4RuntimeError,
    TableEntry,
)
from control.routeservers import RouteServers
from control.vrf import Export, LocalTarget, Steps, VrfState
from esxmpp.dialect import DialectError, Request, format_system_id
from esxmpp.looplag import LoopLag
from esxmpp.server import ServerSession, XmppServer

log = logging.getLogger("control.agent")


class Agent:
    def __init__(self, cfg: AgentConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.state = VrfState(
            cfg.fabric.infra_address,
            cfg.end_system_ports,
            cfg.timers.stale,
            (cfg.labels.min, cfg.labels.max),
        )
        self.ids = NexthopIds(hold=cfg.timers.stale)
        self.driver = SwitchDriver(
            cfg.switch,
            self._desired,
            cfg.timers.coalesce,
            cfg.timers.reconnect,
            on_synced=self._on_synced,
            clock=clock,
            on_inherited=self._inherited,
        )
        # a route is advertised only once its label is on the switch: the exports
        # of the desired state being written, each with its mpls_label entry; after
        # a sync, those whose entry the switch holds
        self._pending_exports: dict[Export, Entity] = {}
        self._installed_exports: set[Export] = set()
        self.xmpp = XmppServer(cfg.xmpp, self, clock)
        self.lag = LoopLag()
        self.rs = RouteServers(
            cfg.route_servers,
            self.state,
            self.changed,
            clock,
            cfg.timers.reconnect,
            exports=lambda: self._installed_exports,
        )
        self.requests_refused = 0
        self.requests_accepted = 0
        self._timer_wakeup = asyncio.Event()
        self._save_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._control: asyncio.Server | None = None
        self._saved_json = ""
        self._saved_ids: tuple[int, ...] = ()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        restored = False
        if self.cfg.state_file is not None and self.cfg.state_file.exists():
            restored = self._restore(self.cfg.state_file)
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
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.driver.close()
        self.save()

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
        labels = {
            key: label_entry(itf, self.driver.full_name)
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
                log.error("state file %s: %s", self.cfg.state_file, e)
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
        exports = {ex for ex, ent in self._pending_exports.items() if self.driver.holds(ent)}
        if self._installed_exports != exports:
            self._installed_exports = exports
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
            scratch = VrfState(
                self.cfg.fabric.infra_address,
                self.cfg.end_system_ports,
                self.cfg.timers.stale,
                (self.cfg.labels.min, self.cfg.labels.max),
            )
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

    async def _save_loop(self) -> None:
        while True:
            await self._save_wakeup.wait()
            self._save_wakeup.clear()
            await asyncio.sleep(0.05)  # one write per burst of changes
            try:
                self.save()
            except OSError as e:
                log.error("state file %s: %s", self.cfg.state_file, e)

    # ---------------------------------------------------------------- timers
    async def _timer_loop(self) -> None:
        while True:
            self._timer_wakeup.clear()
            deadlines = [
                d for d in (self.state.next_deadline(), self.driver.hold_deadline) if d is not None
            ]
            timeout = max(0.0, min(deadlines) - self.clock()) if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout)
            hold = self.driver.hold_deadline
            if hold is not None and hold <= self.clock():
                log.info("restart hold over: entries nobody re-announced are removed")
                self.driver.end_hold()
            removed = self.state.expire(self.clock())
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

    def request(self, session: ServerSession, request: Request, changes: Sequence[Request]) -> None:
        try:
            self.state.end_system(session.system_id, changes, self.clock())
        except DialectError as e:
            self.requests_refused += 1
            log.warning("end-system %s: refused %s: %s", session.jid, request, e)
            raise
        self.requests_accepted += 1
        if changes:
            log.info("end-system %s: %s", session.jid, request)
            self.changed()

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
        for ex in sorted(self.state.exports()):
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
        st = self.driver.stats
        lines = [
            ("esvpn_end_system_sessions", len(self.xmpp.sessions())),
            ("esvpn_vrfs", len(self.state.vrfs)),
            ("esvpn_interfaces", len(self.state.interfaces)),
            ("esvpn_exported_routes", len(self.state.exports())),
            ("esvpn_received_routes", sum(len(t) for t in self.state.remote.values())),
            ("esvpn_route_servers_connected", sum(rs.connected for rs in self.rs.servers)),
            ("esvpn_switch_connected", int(self.driver.connected)),
            ("esvpn_switch_installed_entities", len(self.driver.installed)),
            ("esvpn_switch_connects_total", st.connects),
            ("esvpn_switch_pipeline_commits_total", st.pipeline_commits),
            ("esvpn_switch_write_requests_total", st.writes),
            ("esvpn_switch_updates_total", st.updates),
            ("esvpn_switch_update_errors_total", st.update_errors),
            ("esvpn_switch_held_deletes", st.held_deletes),
            ("esvpn_end_system_requests_accepted_total", self.requests_accepted),
            ("esvpn_end_system_requests_refused_total", self.requests_refused),
        ]
        out = []
        for name, value in lines:
            kind = "counter" if name.endswith("_total") else "gauge"
            out.append(f"# TYPE {name} {kind}\n{name} {value}\n")
        return "".join(out) + self.lag.metrics("esvpn")

    # ------------------------------------------------------------- control HTTP
    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            status, ctype, body = await self._route(path)
        except (TimeoutError, ConnectionError, UnicodeError):
            writer.close()
            return
        data = body.encode()
        writer.write(
            f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _route(self, path: str) -> tuple[str, str, str]:
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4", self.metrics()
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
        except P4RuntimeError as e:
            return "503 Service Unavailable", "application/json", json.dumps({"error": str(e)})
        return "200 OK", "application/json", json.dumps(res)


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
    agent = Agent(cfg)
    await agent.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("agent running; control on %s:%d", cfg.control[0], agent.control_port)
    await stop.wait()
    await agent.close()


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
