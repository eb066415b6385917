"""The route server daemon: XMPP (esxmpp) <-> RIB <-> BGP (ExaBGP adapter), plus control.

A thin asyncio shell: the XMPP handler and the ExaBGP adapter turn what they
hear into RIB inputs; the RIB's outputs go to XMPP sessions (event
notifications) and to ExaBGP (acknowledged commands). Bad input from either
side is answered precisely (XMPP iq error / log line and counter) and never
stops the daemon.

Control endpoint (HTTP on ``control.host:control.port``, loopback by default):
``GET /show/sessions|vrfs|routes[?vrf=name]|rtc|peers`` -> JSON,
``GET /show/neighbors[?peer=A]``, ``GET /show/adj-rib-in|adj-rib-out?peer=A[&family=F]``,
``GET /show/route[?prefix=P][&rd=RD][&vpn=V]`` -> JSON, ``GET /metrics`` ->
Prometheus text exposition; actions (POST only): ``POST /clear?peer=A[&mode=M]``
and ``POST /reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from esxmpp import httpserve
from esxmpp.config import ServerConfig
from esxmpp.dialect import (
    LABEL_MIN,
    Associate,
    DialectError,
    Dissociate,
    EndOfRib,
    ItemsEvent,
    Notification,
    Publish,
    Request,
    Retract,
    RetractEvent,
    RouteEntry,
    Subscribe,
    Unsubscribe,
    format_system_id,
    nexthop_problem,
    parse_item_node,
)
from esxmpp.gcfreeze import GcFreeze
from esxmpp.looplag import LoopLag
from esxmpp.quota import RateLimits
from esxmpp.server import ServerSession, XmppServer
from routeserver.config import Config, ConfigError, load
from routeserver.exabgp_adapter import (
    BgpInputError,
    ChannelLost,
    CommandError,
    ExaBgp,
    PeerEvent,
)
from routeserver.rib import (
    BgpAnnounce,
    BgpClear,
    BgpCommandFailed,
    BgpPeerDown,
    BgpRefresh,
    BgpResend,
    BgpRouteAdd,
    BgpRouteDel,
    BgpTeardown,
    BgpWithdraw,
    FwdEndOfRib,
    FwdRoutes,
    FwdWithdraw,
    Input,
    Output,
    Rib,
    RibError,
    RtcAnnounce,
    RtcWithdraw,
    XmppRouteAdd,
    XmppRouteDel,
    XmppSubscribe,
    XmppUnsubscribe,
    as_path_loop,
    check_route,
    coalesce,
)

log = logging.getLogger("routeserver")


class JsonFormatter(logging.Formatter):
    """Structured logs: one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


MAX_ITEMS = 100  # items per notification, so no stanza grows past a client's limit
INGEST_SLICE = 64  # BGP inputs applied in one go at most (the rest: next loop turns)
PACE_BUFFER = 256 << 10  # bytes unsent to a session above which bulk work waits ...
PACE_WAIT = 1.0  # ... at most this long a slice
BGP_WINDOW = 256  # ExaBGP commands written and not yet acknowledged, at most
STOP_TIMEOUT = 3.5  # RouteServer.stop() returns within this (a daemon exits within 5 s)
RouteOutput = BgpAnnounce | BgpWithdraw | RtcAnnounce | RtcWithdraw
BgpOutput = RouteOutput | BgpTeardown | BgpRefresh | BgpResend
_BGP_OUTPUTS = (
    BgpAnnounce, BgpWithdraw, RtcAnnounce, RtcWithdraw, BgpTeardown, BgpRefresh, BgpResend
)  # fmt: skip


class ReloadError(ValueError):
    """A configuration reload refused; nothing changed. The message says why."""


@dataclasses.dataclass
class PeerStatus:
    """What an operator asks of a BGP session beyond the RIB: since when it is in its
    state, how often it was established, the last error and NOTIFICATIONs."""

    since: float  # wall clock of the last change (up or down), or of our start
    established: int = 0  # times the session came up
    last_error: str = ""  # why the session last went down (ExaBGP's reason)
    last_error_at: float | None = None
    notification_in: str = ""  # the last NOTIFICATION received ...
    notification_in_at: float | None = None
    notification_out: str = ""  # ... and sent
    notification_out_at: float | None = None


def to_notifications(out: Output, max_items: int = MAX_ITEMS) -> list[Notification]:
    """Forwarder-side RIB output -> esxmpp notifications of at most ``max_items`` items."""
    match out:
        case FwdRoutes(_, vpn, routes):
            items = []
            for r in routes:
                try:
                    entry = RouteEntry(r.prefix, r.nexthop, r.label, r.version)
                except DialectError as e:  # e.g. a BGP label below 16
                    log.warning("route %s not sent to forwarders: %s", r.prefix, e.text)
                    continue
                items.append((str(r.prefix), entry))
            return [
                ItemsEvent(vpn, tuple(items[i : i + max_items]))
                for i in range(0, len(items), max_items)
            ]
        case FwdWithdraw(_, vpn, prefixes):
            ids = [str(p) for p in prefixes]
            return [
                RetractEvent(vpn, tuple(ids[i : i + max_items]))
                for i in range(0, len(ids), max_items)
            ]
        case FwdEndOfRib(_, vpn):
            return [EndOfRib(vpn)]
    return []


_T = TypeVar("_T")


class ListenError(OSError):
    """One of our own listening sockets cannot be opened; ``strerror`` names it."""


async def _listening(where: str, opening: Awaitable[_T]) -> _T:
    try:
        return await opening
    except OSError as e:
        reason = (os.strerror(e.errno) if e.errno else str(e)).lower()
        raise ListenError(e.errno, f"{where}: cannot listen: {reason}") from e


class RouteServer:
    """One route server instance (see the module docstring)."""

    def __init__(
        self, cfg: Config, xmpp: ServerConfig | None = None, config_path: str | None = None
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path  # what a reload reads (SIGHUP, POST /reload)
        self._reloading = asyncio.Lock()
        self.peer_status: dict[str, PeerStatus] = {
            n.address: PeerStatus(time.time()) for n in cfg.neighbors
        }
        self.rib = Rib(cfg)
        self.started = time.monotonic()
        self.xmpp_config = xmpp or cfg.xmpp
        self.xmpp: XmppServer | None = None
        self.bgp = ExaBgp(cfg, self._bgp_inputs, self._bgp_bad, on_events=self._peer_events)
        self._control: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._work_ready = asyncio.Event()  # the RIB has bulk work left (Rib.work)
        self.lag = LoopLag()
        self.gc = GcFreeze()  # no full GC collection over a big RIB (esxmpp.gcfreeze)
        # BGP outputs not yet written to ExaBGP, and the commands awaiting their answer
        self._bgp_out: deque[BgpOutput] = deque()
        self._backlog: deque[Input] = deque()  # BGP inputs not applied yet (_bgp_inputs)
        self._bgp_ready = asyncio.Event()
        self._inflight: set[asyncio.Future[None]] = set()
        self._bgp_idle = asyncio.Event()  # nothing queued, nothing awaiting an answer
        self._bgp_idle.set()
        self._rates = RateLimits(cfg.limits.requests_per_second, cfg.limits.request_burst)
        self.counters: dict[str, int] = {
            "xmpp_requests": 0,
            "xmpp_refused": 0,
            "xmpp_notifications": 0,
            "xmpp_sessions_opened": 0,
            "xmpp_sessions_refused": 0,
            "bgp_inputs": 0,
            "bgp_commands_refused": 0,
            "exabgp_restarts": 0,
        }
        # BGP input refused, by reason (BgpInputError.reason, "rejected" by the RIB,
        # "reserved-label" for a path no forwarder can use)
        self.bgp_refused: dict[str, int] = dict.fromkeys(
            ("malformed", "rejected", "reserved-label"), 0
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.bgp.start()
        try:
            if self.xmpp_config is not None:
                self.xmpp = XmppServer(self.xmpp_config, self)
                where = f"xmpp port {self.xmpp_config.host}:{self.xmpp_config.port}"
                await _listening(where, self.xmpp.start())
            self._control = await _listening(
                f"control port {self.cfg.control_host}:{self.cfg.control_port}",
                asyncio.start_server(
                    self._http, self.cfg.control_host, self.cfg.control_port, reuse_address=True
                ),
            )
        except BaseException:
            if self.xmpp is not None:
                await self.xmpp.close()
            await self.bgp.stop()
            raise
        self.start_tasks()
        log.info("route server %s started", self.cfg.router_id)

    def start_tasks(self, supervise: bool = True) -> None:
        """The timer, the BGP sender and (unless told not to) the ExaBGP supervisor."""
        self._timer = asyncio.create_task(self._timer_loop())
        self._sender = asyncio.create_task(self._send_loop())
        self._worker = asyncio.create_task(self._work_loop())
        self.lag.start()
        self.gc.start()
        if supervise:
            self._supervisor = asyncio.create_task(self._supervise())

    @property
    def control_port(self) -> int:
        assert self._control is not None
        return int(self._control.sockets[0].getsockname()[1])

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout``) until every queued BGP output has been answered."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bgp_idle.wait(), timeout)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop within ``timeout`` seconds whatever state we are in.

        Queued BGP outputs get a short flush; then every task is cancelled
        (one that ignores its cancellation is abandoned, not awaited), both
        listeners close at once, and ExaBGP (terminated, killed after a
        grace) and the XMPP server are stopped side by side, bounded by the
        deadline: whatever is left then is abandoned and ExaBGP killed.
        """
        deadline = time.monotonic() + timeout
        if self._sender is not None and not self._sender.done():
            await self.flush(min(1.0, timeout / 4))
        self.lag.stop()
        tasks = [
            t for t in (self._supervisor, self._sender, self._timer, self._worker) if t is not None
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=0.5)
            for task in stuck:
                log.error("shutdown: task %s ignores its cancellation; abandoned", task)
        if self._control is not None:
            self._control.close()
        parts = [asyncio.create_task(self.bgp.stop(grace=min(2.0, timeout / 2)))]
        if self.xmpp is not None:
            parts.append(asyncio.create_task(self.xmpp.close()))
        _, late = await asyncio.wait(parts, timeout=max(0.1, deadline - time.monotonic()))
        if late:
            log.error("shutdown: %d part(s) did not finish in time; abandoned", len(late))
            for task in late:
                task.cancel()
            self.bgp.kill()

    async def _supervise(self) -> None:
        """Restart ExaBGP when it dies and replay what the RIB advertises.

        Its sessions went down with it: each peer goes down (graceful-restart
        rules keep its paths as stale until it re-sends them and End-of-RIB).
        """
        while True:
            await self.bgp.exited.wait()
            self.counters["exabgp_restarts"] += 1
            log.error("ExaBGP is gone; restarting it")
            self._bgp_inputs([BgpPeerDown(a) for a in self.rib.up_peers()])
            await self.bgp.stop()
            while True:
                # the RIB it replays is state kept over the restart (RFC 4724 R bit)
                bgp = ExaBgp(
                    self.cfg,
                    self._bgp_inputs,
                    self._bgp_bad,
                    restarted=True,
                    on_events=self._peer_events,
                )
                try:
                    await bgp.start()
                    break
                except (OSError, RuntimeError) as e:
                    log.error("ExaBGP restart failed: %s; retrying in 1 s", e)
                    await asyncio.sleep(1.0)
            self.bgp = bgp
            # the RIB's adj-RIB-out is the truth: what was queued for the old
            # speaker is in it (or was withdrawn from it) already
            self._bgp_out.clear()
            if not self._inflight:
                self._bgp_idle.set()
            self._queue(self.rib.replay())
            log.info("ExaBGP restarted; advertisements replayed")

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.rib.next_deadline()
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._emit(self.rib.expire(time.monotonic()))

    # ------------------------------------------------------------- plumbing

    def feed(self, inputs: Sequence[Input]) -> None:
        """Apply RIB inputs and carry out the outputs.

        A RibError propagates; the outputs of the inputs before it are carried out.
        """
        now = time.monotonic()
        outputs: list[Output] = []
        try:
            for ev in inputs:
                outputs += self.rib.handle(ev, now)
        finally:
            self._emit(outputs)
            self._wake.set()
            self.gc.added(len(inputs))

    async def _work_loop(self) -> None:
        """Carry out the RIB's bulk work (sweeps, stale marking) a slice at a time,
        yielding to the loop between slices."""
        while True:
            await self._work_ready.wait()
            self._work_ready.clear()
            while self._backlog or self.rib.has_work():
                self.work_step()
                await asyncio.sleep(0)
                await self._paced()
            self.gc.tick()  # a big withdrawal done: thaw a heap that became small

    async def _paced(self, timeout: float = PACE_WAIT) -> None:
        """Bulk work waits (up to ``timeout``) while a session has more than
        PACE_BUFFER bytes unsent, as long as that session reads: a table of
        100,000 routes is not queued at once (encrypting a big backlog holds
        the loop, and the buffer limit drops a slow client); a forwarder that
        stops reading holds the bulk work ``timeout`` at most a slice."""
        if self.xmpp is None:
            return
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            unsent = max((s.write_buffer for s in self.xmpp.sessions() if s.is_open), default=0)
            if unsent <= PACE_BUFFER:
                return
            if last >= 0 and unsent < last:
                deadline = time.monotonic() + timeout  # it reads: wait on
            last = unsent
            await asyncio.sleep(0.005)

    def work_step(self) -> None:
        """One slice of pending work: BGP inputs waiting in the backlog (at most
        INGEST_SLICE), then the RIB's bulk jobs (at most WORK_SLICE paths)."""
        if self._backlog:
            self._ingest()
        if self.rib.has_work():
            try:
                self._emit(self.rib.work())
            except Exception:  # a bug in one slice must not stop the rest
                log.exception("RIB bulk work failed")
            self._wake.set()

    def _emit(self, outputs: list[Output]) -> None:
        if self.rib.has_work():
            self._work_ready.set()
        bgp: list[Output] = []
        for out in coalesce(outputs):
            if isinstance(out, FwdRoutes | FwdWithdraw | FwdEndOfRib):
                self._notify(out)
            else:
                bgp.append(out)
        self._queue(bgp)

    def _queue(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, _BGP_OUTPUTS):
                if isinstance(out, BgpTeardown) and out.reason:
                    log.warning(
                        "BGP peer %s: ending the session (Cease subcode %d): %s",
                        out.peer, out.subcode, out.reason,
                    )  # fmt: skip
                self._bgp_out.append(out)
        if self._bgp_out:
            self._bgp_idle.clear()
            self._bgp_ready.set()

    async def _send_loop(self) -> None:
        """Write queued BGP outputs to ExaBGP in order, at most BGP_WINDOW unanswered.

        Every command's answer is awaited (:meth:`_answered`); the writer is
        drained after each batch, so a slow ExaBGP slows us instead of
        growing a buffer.
        """
        while True:
            await self._bgp_ready.wait()
            self._bgp_ready.clear()
            while self._bgp_out:
                while len(self._inflight) >= BGP_WINDOW:
                    await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                bgp = self.bgp
                while self._bgp_out and len(self._inflight) < BGP_WINDOW:
                    out = self._bgp_out.popleft()
                    fut = bgp.send(out)
                    self._inflight.add(fut)
                    fut.add_done_callback(functools.partial(self._answered, out))
                await bgp.drain()

    def _answered(self, out: BgpOutput, fut: asyncio.Future[None]) -> None:
        """One command answered: a refusal is reconciled in the RIB (and retried)."""
        self._inflight.discard(fut)
        if not self._inflight and not self._bgp_out:
            self._bgp_idle.set()
        if fut.cancelled():
            return
        err = fut.exception()
        if err is None and isinstance(out, RtcAnnounce):
            # End-of-RIB to forwarders waits for the routes it pulls in, from now
            self.rib.rtc_sent(out.peer, out.target, time.monotonic())
            self._wake.set()
        if err is None or isinstance(err, ChannelLost):
            return  # done, or ExaBGP is gone: the supervisor replays the RIB
        if isinstance(out, BgpTeardown | BgpRefresh | BgpResend):
            log.error("ExaBGP refused %s (not retried)", out)
            return
        if isinstance(err, CommandError):
            self.counters["bgp_commands_refused"] += 1
            log.error("ExaBGP refused %s; it will be retried", out)
            self._emit(self.rib.handle(BgpCommandFailed(out), time.monotonic()))
            self._wake.set()

    def _notify(self, out: FwdRoutes | FwdWithdraw | FwdEndOfRib) -> None:
        if self.xmpp is None:
            return
        sess = self.xmpp.session(bytes.fromhex(out.system_id))
        if sess is None or not sess.bound:
            return
        for note in to_notifications(out):
            sess.send(note)
            self.counters["xmpp_notifications"] += 1

    def _refused(self, reason: str, n: int = 1) -> None:
        self.bgp_refused[reason] = self.bgp_refused.get(reason, 0) + n

    def _bgp_inputs(self, inputs: list[Input]) -> None:
        """BGP inputs from the adapter, applied in order, at most :data:`INGEST_SLICE`
        now: the rest waits in a backlog the work loop applies a slice at a time
        (a big UPDATE, or many queued behind a slow one, never holds the loop)."""
        self._backlog.extend(inputs)
        if len(self._backlog) == len(inputs):  # nothing was waiting: start now
            self._ingest()
        if self._backlog:
            self._work_ready.set()

    def _ingest(self, budget: int = INGEST_SLICE) -> None:
        """Apply up to ``budget`` inputs of the BGP backlog."""
        n = min(budget, len(self._backlog))
        self._apply_bgp([self._backlog.popleft() for _ in range(n)])

    def _apply_bgp(self, inputs: list[Input]) -> None:
        now = time.monotonic()
        outputs: list[Output] = []
        reserved: list[BgpRouteAdd] = []
        for given in inputs:
            self.counters["bgp_inputs"] += 1
            ev = given
            if isinstance(ev, BgpRouteAdd) and ev.label < LABEL_MIN:
                reserved.append(ev)
            if isinstance(ev, BgpRouteAdd) and as_path_loop(ev, self.cfg.asn):
                self._refused("as-path-loop")
                log.warning(
                    "BGP peer %s: %s:%s ignored, our AS %d is in its AS_PATH %s (RFC 4271 9.1.2)",
                    ev.peer, ev.rd, ev.prefix, self.cfg.asn, list(ev.attrs.as_path),
                )  # fmt: skip
            elif isinstance(ev, BgpRouteAdd) and (problem := nexthop_problem(ev.nexthop)):
                # treat-as-withdraw (RFC 7606): no forwarder may tunnel to it
                self._refused("bad-nexthop")
                log.warning("BGP peer %s: %s:%s refused: %s", ev.peer, ev.rd, ev.prefix, problem)
                ev = BgpRouteDel(ev.peer, ev.rd, ev.prefix)
            try:
                outputs += self.rib.handle(ev, now)
            except RibError as e:
                self._refused("rejected")
                log.warning("BGP input refused: %s (%s)", e, ev)
            except Exception:  # a bug on one input must not stop the others
                self._refused("internal-error")
                log.exception("BGP input %s failed", ev)
        if reserved:
            self._refused("reserved-label", len(reserved))
            first = reserved[0]
            log.warning(
                "BGP peer %s: %d path(s) with a reserved label (< %d) unused, e.g. %s:%s label %d",
                first.peer, len(reserved), LABEL_MIN, first.rd, first.prefix, first.label,
            )  # fmt: skip
        self._emit(outputs)
        self._wake.set()
        self.gc.added(len(inputs))

    def _bgp_bad(self, err: BgpInputError) -> None:
        self._refused(err.reason)
        log.warning("bad BGP message ignored (%s): %s", err.reason, err)

    # ------------------------------------------------ esxmpp.server.Handler

    def _not_forwarder(self, system_id: bytes) -> str | None:
        """Why ``system_id`` may not act as a forwarder here (None: it may)."""
        sid = format_system_id(system_id)
        if self.cfg.is_forwarder(sid):
            return None
        return f"system {sid} is not a forwarder of this route server (xmpp.forwarders)"

    def session_opened(self, session: ServerSession, resumed: bool) -> None:
        refusal = self._not_forwarder(session.system_id)
        if refusal is not None:
            # a certificate from the CA is not enough: end-systems have them too
            self.counters["xmpp_sessions_refused"] += 1
            log.warning("xmpp session %s from %s refused: %s", session.jid, session.peer, refusal)
            session.close("not-authorized", refusal)
            return
        log.info("xmpp session %s from %s (resumed=%s)", session.jid, session.peer, resumed)
        self.counters["xmpp_sessions_opened"] += 1
        if resumed:
            # each table again, then End-of-RIB: bulk jobs of the RIB, in slices
            sid = format_system_id(session.system_id)
            outputs: list[Output] = []
            for vpn in sorted(session.state.subscriptions):
                try:
                    outputs += self.rib.resend(sid, vpn)
                except RibError:
                    continue
            self._emit(outputs)

    def session_closed(self, session: ServerSession, reason: str) -> None:
        log.info("xmpp session %s closed: %s (state kept for retention)", session.jid, reason)

    def request(self, session: ServerSession, request: Request, changes: Sequence[Request]) -> None:
        self.counters["xmpp_requests"] += 1
        try:
            self._authorize(session, request, changes)
            self._apply_changes(session.system_id, changes, session)
        except DialectError:
            self.counters["xmpp_refused"] += 1
            raise

    def _authorize(
        self, session: ServerSession, request: Request, changes: Sequence[Request]
    ) -> None:
        """Refuse a request of a system that is not a forwarder, and one that
        adds beyond the forwarder's quotas ([limits]); withdrawals always pass."""
        refusal = self._not_forwarder(session.system_id)
        if refusal is not None:
            raise DialectError("not-authorized", refusal)
        lim = self.cfg.limits
        sid = format_system_id(session.system_id)
        adds = isinstance(request, Subscribe | Publish | Associate)
        if not self._rates.take(session.system_id, time.monotonic()) and adds:
            raise DialectError(
                "resource-constraint",
                f"forwarder {sid}: more than {lim.request_burst} requests in a row or "
                f"{lim.requests_per_second:g}/s (limits.request_burst, "
                "limits.requests_per_second)",
            )
        st = session.state
        new_nodes = {c.node for c in changes if isinstance(c, Publish)} - set(st.published)
        if new_nodes and len(st.published) + len(new_nodes) > lim.routes_per_forwarder:
            raise DialectError(
                "resource-constraint",
                f"forwarder {sid} already publishes {len(st.published)} routes "
                f"(limits.routes_per_forwarder = {lim.routes_per_forwarder})",
            )
        new_vpns = {c.node for c in changes if isinstance(c, Subscribe)} - set(st.subscriptions)
        if new_vpns and len(st.subscriptions) + len(new_vpns) > lim.vpns_per_forwarder:
            raise DialectError(
                "resource-constraint",
                f"forwarder {sid} is already subscribed to {len(st.subscriptions)} VPNs "
                f"(limits.vpns_per_forwarder = {lim.vpns_per_forwarder})",
            )

    def state_expired(self, system_id: bytes, changes: Sequence[Request]) -> None:
        log.info("xmpp state of %s expired: withdrawing", system_id.hex())
        try:
            self._apply_changes(system_id, changes, None)
        except DialectError as e:
            log.error("withdrawal of %s failed: %s", system_id.hex(), e)

    def _apply_changes(
        self, system_id: bytes, changes: Sequence[Request], session: ServerSession | None
    ) -> None:
        sid = format_system_id(system_id)
        state = session.state if session is not None else None
        inputs: list[XmppSubscribe | XmppUnsubscribe | XmppRouteAdd | XmppRouteDel] = []
        for ch in changes:
            match ch:
                case Subscribe(vpn, _):
                    inputs.append(XmppSubscribe(sid, vpn))
                case Unsubscribe(vpn):
                    inputs.append(XmppUnsubscribe(sid, vpn))
                case Associate(vpn, node):
                    entry = None if state is None else state.published.get(node)
                    if entry is None:
                        raise DialectError("item-not-found", f"node {node!r} is not published")
                    inputs.append(_add(sid, vpn, node, entry))
                case Dissociate(vpn, node):
                    owner, prefix = parse_item_node(node)
                    inputs.append(XmppRouteDel(sid, vpn, prefix, format_system_id(owner)))
                case Publish(node, entry):
                    try:
                        check_route(entry.prefix, entry.nexthop)
                    except RibError as e:
                        raise DialectError("not-acceptable", str(e)) from None
                    problem = nexthop_problem(entry.nexthop)
                    if problem is not None:
                        raise DialectError("not-acceptable", f"node {node!r}: {problem}")
                    vpns = set() if state is None else state.associations.get(node, set())
                    inputs.extend(_add(sid, v, node, entry) for v in sorted(vpns))
                case Retract():
                    pass
        # refuse before anything changes: every VPN must map to a VRF
        for ev in inputs:
            try:
                self.rib.vrf_of(ev.system_id, ev.vpn)
            except RibError as e:
                raise DialectError("item-not-found", str(e)) from None
        try:
            self.feed(inputs)
        except RibError as e:
            raise DialectError("not-acceptable", str(e)) from None

    # ------------------------------------------------------------- control

    def _peer_events(self, events: list[PeerEvent]) -> None:
        """Session events from the adapter, for ``show neighbors``."""
        now = time.time()
        for ev in events:
            st = self.peer_status.setdefault(ev.peer, PeerStatus(now))
            if ev.kind == "up":
                st.since, st.established = now, st.established + 1
            elif ev.kind == "down":
                st.since, st.last_error, st.last_error_at = now, ev.detail, now
            elif ev.kind == "notification" and ev.sent:
                st.notification_out, st.notification_out_at = ev.detail, now
            elif ev.kind == "notification":
                st.notification_in, st.notification_in_at = ev.detail, now

    async def show_neighbors(self, peer: str | None = None) -> list[dict[str, Any]]:
        """Every configured peer (or one): the RIB's view (families, prefixes and
        updates per family), our session record (uptime, last error and
        NOTIFICATIONs) and ExaBGP's (FSM state, capabilities, messages by type)."""
        try:
            exa: dict[str, dict[str, Any]] | None = await self.bgp.neighbors()
        except (CommandError, TimeoutError) as e:
            log.warning("show neighbors: ExaBGP did not answer: %s", e)
            exa = None
        now = time.time()
        out: list[dict[str, Any]] = []
        for n in self.rib.show_neighbors():
            addr = str(n["address"])
            if peer is not None and addr != peer:
                continue
            st = self.peer_status.setdefault(addr, PeerStatus(now))
            x = None if exa is None else exa.get(addr)
            info: dict[str, Any] = {
                "address": addr,
                "asn": n["asn"],
                "type": n["type"],
                "state": str(x["fsm"]).lower() if x else ("established" if n["up"] else "down"),
                "up": n["up"],
                "uptime" if n["up"] else "downtime": round(now - st.since, 1),
                "established": st.established,
                "capabilities": sorted(x.get("capabilities", [])) if x and n["up"] else [],
                "families": n["families"],
                "configured_families": n["configured_families"],
                "rtc_filter": n["rtc_filter"],
                "graceful_restart": n["graceful_restart"],
                "max_prefixes": n["max_prefixes"],
                "last_error": st.last_error,
                "notification_in": st.notification_in,
                "notification_out": st.notification_out,
                "messages_in": dict(x["messages"]["received"]) if x else {},
                "messages_out": dict(x["messages"]["sent"]) if x else {},
                "prefixes_in": n["prefixes_in"],
                "prefixes_out": n["prefixes_out"],
                "updates_in": n["updates_in"],
                "updates_out": n["updates_out"],
                "stale": n["stale"],
            }
            out.append(info)
        if peer is not None and not out:
            raise KeyError(peer)
        return out

    def clear(self, peer: str, mode: str = "hard") -> list[str]:
        """An operator's clear of one peer (:class:`BgpClear`); RibError if refused.
        Returns the actions queued, as text."""
        outputs = self.rib.handle(BgpClear(peer, mode), time.monotonic())
        log.info("clear %s of BGP peer %s by the operator", mode, peer)
        self._emit(outputs)
        actions = []
        for o in outputs:
            if isinstance(o, BgpTeardown):
                actions.append(f"NOTIFICATION Cease subcode {o.subcode}")
            elif isinstance(o, BgpRefresh):
                actions.append(f"ROUTE-REFRESH {o.family}")
            elif isinstance(o, BgpResend):
                actions.append("adj-RIB-out sent again")
        return actions

    async def reload(self) -> dict[str, Any]:
        """Read the configuration file again and apply what changed (neighbors,
        VRFs, forwarders, quotas) without touching unaffected sessions.

        ReloadError (nothing changed) for a file that does not load or a change
        that needs a restart (``[server]``, ``[xmpp]`` but ``forwarders``,
        ``[control]``, ``[bgp] graceful_restart`` and ``exabgp``).
        """
        if self.config_path is None:
            raise ReloadError("started without a configuration file: nothing to reload")
        async with self._reloading:
            try:
                new = load(self.config_path)
            except ConfigError as e:
                raise ReloadError(str(e)) from None
            old = self.cfg
            for key, what in (
                ("log_level", "server.log_level"),
                ("control_host", "control.host"),
                ("control_port", "control.port"),
                ("graceful_restart", "bgp.graceful_restart"),
                ("exabgp_python", "bgp.exabgp"),
                ("xmpp", "xmpp"),
            ):
                if getattr(new, key) != getattr(old, key):
                    raise ReloadError(f"{what}: cannot change on reload (restart the daemon)")
            try:
                outputs = self.rib.reconfigure(new)
            except RibError as e:
                raise ReloadError(str(e)) from None
            self.cfg = new
            self._rates = RateLimits(new.limits.requests_per_second, new.limits.request_burst)
            old_n = {n.address: n for n in old.neighbors}
            new_n = {n.address: n for n in new.neighbors}
            old_v = {v.name: v for v in old.vrfs}
            new_v = {v.name: v for v in new.vrfs}
            for a in new_n.keys() - old_n.keys():
                self.peer_status[a] = PeerStatus(time.time())
            for a in old_n.keys() - new_n.keys():
                self.peer_status.pop(a, None)
            self._emit(outputs)
            self._wake.set()
            await self.bgp.reload(new)
            summary = {
                "neighbors": _diff(old_n, new_n),
                "vrfs": _diff(old_v, new_v),
            }
            log.info("configuration reloaded from %s: %s", self.config_path, summary)
            return summary

    def show(self, what: str, query: dict[str, str]) -> Any:
        if what == "sessions":
            if self.xmpp is None:
                return []
            return [
                {
                    "system_id": s.system_id.hex(),
                    "jid": s.jid,
                    "peer": s.peer,
                    "mechanism": s.mechanism,
                    "subscriptions": sorted(s.state.subscriptions),
                    "published": len(s.state.published),
                }
                for s in self.xmpp.sessions()
            ]
        if what == "vrfs":
            return self.rib.show_vrfs()
        if what == "routes":
            return self.rib.show_routes(query.get("vrf"))
        if what == "rtc":
            return self.rib.show_rtc()
        if what == "peers":
            return self.rib.show_peers()
        if what in ("adj-rib-in", "adj-rib-out"):
            peer = query.get("peer")
            if not peer:
                raise RibError(f"{what}: peer=ADDRESS is required")
            family = query.get("family") or None
            if what == "adj-rib-in":
                return self.rib.adj_rib_in(peer, family)
            return self.rib.adj_rib_out(peer, family)
        if what == "route":
            return self.rib.lookup(
                query.get("prefix") or None, query.get("rd") or None, query.get("vpn") or None
            )
        raise KeyError(what)

    def metrics(self) -> str:
        """Prometheus text exposition (prometheus_client) of the route server's state."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self._metric_families))
        return generate_latest(registry).decode()

    def _metric_families(self) -> Iterator[Metric]:
        p = "esvpn_rs_"
        entries = GaugeMetricFamily(p + "rib_entries", "RIB sizes by kind", labels=["kind"])
        for k, v in sorted(self.rib.sizes().items()):
            entries.add_metric([k], v)
        yield entries
        inputs = CounterMetricFamily(
            p + "rib_inputs", "RIB inputs (and notable events) by type", labels=["type"]
        )
        for k, v in sorted(self.rib.counters.items()):
            inputs.add_metric([k], v)
        yield inputs
        for k, v in sorted(self.counters.items()):
            yield CounterMetricFamily(p + k, _COUNTER_HELP.get(k, k.replace("_", " ")), value=v)
        refused = CounterMetricFamily(
            p + "bgp_refused", "BGP input refused or not used, by reason", labels=["reason"]
        )
        for k, v in sorted(self.bgp_refused.items()):
            refused.add_metric([k], v)
        yield refused
        yield CounterMetricFamily(
            p + "bgp_commands", "ExaBGP commands sent", value=self.bgp.commands_sent
        )
        yield CounterMetricFamily(
            p + "bgp_command_errors",
            "ExaBGP commands answered 'error' (by this ExaBGP child)",
            value=self.bgp.commands_failed,
        )
        yield GaugeMetricFamily(
            p + "bgp_commands_pending",
            "BGP outputs queued or awaiting ExaBGP's answer",
            value=len(self._bgp_out) + len(self._inflight),
        )
        up = GaugeMetricFamily(
            p + "bgp_peer_up", "1 when the BGP session is established", labels=["peer"]
        )
        for peer in self.rib.show_peers():
            up.add_metric([str(peer["address"])], 1 if peer["up"] else 0)
        yield up
        yield from self._peer_families(p)
        yield from self._vrf_families(p)
        yield GaugeMetricFamily(
            p + "xmpp_sessions",
            "bound XMPP sessions (forwarders)",
            value=len(self.xmpp.sessions()) if self.xmpp else 0,
        )
        yield GaugeMetricFamily(
            p + "uptime_seconds", "seconds since start", value=time.monotonic() - self.started
        )
        yield from self.lag.families("esvpn_rs")

    def _peer_families(self, p: str) -> Iterator[Metric]:
        """Per BGP peer and family: prefixes in adj-RIB-in / adj-RIB-out, route
        updates received and sent; per peer: sessions established."""
        labels = ["peer", "family"]
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "prefixes_in": GaugeMetricFamily(
                p + "bgp_peer_prefixes_received", "paths in the peer's adj-RIB-in", labels=labels
            ),
            "prefixes_out": GaugeMetricFamily(
                p + "bgp_peer_prefixes_advertised", "routes in our adj-RIB-out", labels=labels
            ),
            "updates_in": CounterMetricFamily(
                p + "bgp_peer_updates_received",
                "route updates received (one per NLRI announced or withdrawn)",
                labels=labels,
            ),
            "updates_out": CounterMetricFamily(
                p + "bgp_peer_updates_sent",
                "route updates sent (one per NLRI announced or withdrawn)",
                labels=labels,
            ),
        }
        established = CounterMetricFamily(
            p + "bgp_peer_established",
            "times the BGP session came up (since the daemon started)",
            labels=["peer"],
        )
        for n in self.rib.show_neighbors():
            addr = str(n["address"])
            for key, fam in fams.items():
                counts, families = n[key], n["configured_families"]
                assert isinstance(counts, dict) and isinstance(families, list)
                for family in families:
                    fam.add_metric([addr, family], counts.get(family, 0))
            st = self.peer_status.get(addr)
            established.add_metric([addr], st.established if st else 0)
        yield from fams.values()
        yield established

    def _vrf_families(self, p: str) -> Iterator[Metric]:
        """Per VRF: selected routes, subscribed forwarders, changes of its selection."""
        routes = GaugeMetricFamily(p + "vrf_routes", "selected routes", labels=["vrf"])
        subs = GaugeMetricFamily(p + "vrf_subscribers", "subscribed forwarders", labels=["vrf"])
        updates = CounterMetricFamily(
            p + "vrf_updates",
            "changes of the VRF's selected routes (selected, replaced, withdrawn)",
            labels=["vrf"],
        )
        for v in self.rib.show_vrfs():
            name = str(v["name"])
            n_routes, subscribers = v["routes"], v["subscribers"]
            assert isinstance(n_routes, int) and isinstance(subscribers, list)
            routes.add_metric([name], n_routes)
            subs.add_metric([name], len(subscribers))
            updates.add_metric([name], self.rib.vrf_updates.get(name, 0))
        yield routes
        yield subs
        yield updates

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await httpserve.serve_one(reader, writer, self._http_route)

    async def _http_route(self, req: httpserve.Request) -> httpserve.Response:
        """GET views, POST actions (``/clear``, ``/reload``): an action is never a GET,
        so no prefetching client or stray link changes anything."""
        if req.path in ("/clear", "/reload"):
            if req.method != "POST":
                return httpserve.Response(405, f"{req.path}: use POST\n")
            try:
                if req.path == "/clear":
                    peer = req.query.get("peer")
                    if not peer:
                        raise RibError("/clear: peer=ADDRESS is required")
                    mode = req.query.get("mode", "hard")
                    actions = self.clear(peer, mode)
                    data: Any = {"cleared": peer, "mode": mode, "actions": actions}
                else:
                    data = await self.reload()
            except (RibError, ReloadError) as e:
                return httpserve.Response(409, f"{e}\n")
            except (CommandError, TimeoutError) as e:
                return httpserve.Response(503, f"ExaBGP: {e}\n")
            return httpserve.Response(200, json.dumps(data, indent=1) + "\n", "application/json")
        if req.method != "GET":
            return httpserve.Response(405, f"{req.path}: use GET\n")
        if req.path == "/metrics":
            return httpserve.Response(200, self.metrics(), CONTENT_TYPE_LATEST)
        if req.path.startswith("/show/"):
            what = req.path.removeprefix("/show/")
            try:
                if what == "neighbors":
                    data = await self.show_neighbors(req.query.get("peer") or None)
                else:
                    data = self.show(what, dict(req.query))
            except KeyError:
                return httpserve.Response(404, f"unknown: {req.path}?{_query(req)}\n")
            except RibError as e:
                return httpserve.Response(400, f"{e}\n")
            return httpserve.Response(200, json.dumps(data, indent=1) + "\n", "application/json")
        return httpserve.Response(404, f"unknown: {req.path}\n")


_COUNTER_HELP = {
    "xmpp_requests": "XMPP requests from forwarders",
    "xmpp_refused": "XMPP requests refused",
    "xmpp_sessions_refused": "XMPP sessions refused: the system is not a configured forwarder",
    "xmpp_notifications": "XMPP route notifications sent to forwarders",
    "bgp_inputs": "BGP inputs from ExaBGP (updates, peer state)",
    "bgp_refused": "BGP inputs ignored: malformed, or refused by the RIB",
    "bgp_commands_refused": "commands ExaBGP answered with an error (retried)",
    "exabgp_restarts": "ExaBGP child restarts",
}


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "added": sorted(new.keys() - old.keys()),
        "removed": sorted(old.keys() - new.keys()),
        "changed": sorted(k for k in old.keys() & new.keys() if old[k] != new[k]),
    }


def _query(req: httpserve.Request) -> str:
    return "&".join(f"{k}={v}" for k, v in req.query.items())


class _Families:
    """A prometheus_client collector over a function that yields metric families."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self.collect = families


def _add(sid: str, vpn: str, node: str, entry: RouteEntry) -> XmppRouteAdd:
    """The RIB input of ``node`` (its owner: the end-system named in it) in ``vpn``."""
    owner, _ = parse_item_node(node)
    return XmppRouteAdd(
        sid,
        vpn,
        entry.prefix,
        ipaddress.ip_address(entry.nexthop),
        entry.label,
        entry.version,
        owner=format_system_id(owner),
    )


async def run(cfg: Config) -> None:
    """Run until cancelled (SIGINT/SIGTERM handled by the CLI)."""
    rs = RouteServer(cfg)
    await rs.start()
    try:
        await asyncio.Event().wait()
    finally:
        await rs.stop()
