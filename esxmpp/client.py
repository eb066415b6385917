"""slixmpp-based client of the draft's dialect (forwarder -> route server,
end-system -> forwarder).

Public API (stable): :class:`XmppClient` ``(config: ClientConfig,
on_notification=None)`` with ``await connect()``, ``await subscribe(vpn,
vlan_id=None)``, ``unsubscribe(vpn)``, ``publish(node, entry)``,
``retract(node)``, ``associate(vpn, node)``, ``dissociate(vpn, node)``,
``end_of_sync()``,
``request(req)`` (any :data:`esxmpp.dialect.Request`; raises DialectError on
an iq error), ``ping()``, ``notifications()`` (async iterator of
:data:`esxmpp.dialect.Notification`), ``await close()``, ``connected``,
``await wait_disconnected()``.

Authentication: with ``certfile``/``keyfile`` in the config the client uses
SASL EXTERNAL (XEP-0178: identity from the certificate, empty authzid);
otherwise SASL PLAIN with the JID localpart and ``password``. TLS is always
required (STARTTLS); the server certificate is verified against ``cafile``
and ``server_name`` (default: the JID domain).

Keepalive: XEP-0199 pings every ``ping_interval``; a ping unanswered within
``ping_timeout`` ends the session (``wait_disconnected()`` returns). There is
no automatic reconnect: the owner reconnects and re-advertises (the server
keeps its state for its retention time, so nothing is withdrawn meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from esxmpp.config import ClientConfig, client_ssl_context
from esxmpp.dialect import (
    NS_CLIENT,
    Associate,
    DialectError,
    Dissociate,
    EndOfSync,
    Notification,
    Publish,
    Request,
    Retract,
    RouteEntry,
    Subscribe,
    Unsubscribe,
    build_pubsub,
    is_notification,
    parse_iq_error,
    parse_notification,
)

log = logging.getLogger("esxmpp.client")

NotificationCallback = Callable[[Notification], Awaitable[None] | None]


class XmppClient:
    """One client session to one server."""

    def __init__(
        self, config: ClientConfig, on_notification: NotificationCallback | None = None
    ) -> None:
        self.config = config
        self.on_notification = on_notification
        self._queue: asyncio.Queue[Notification | None] = asyncio.Queue()
        self._xmpp: Any = None
        self._connected = False
        self._disconnected: asyncio.Event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.bad_notifications = 0
        self.callback_errors = 0  # notifications whose callback raised (logged, skipped)
        #: condition of the stream error that ended the last session ('' if none),
        #: e.g. 'conflict' when the server replaced it by a newer session
        self.stream_error = ""
        #: when the last stanza arrived from the server (liveness beside pings)
        self.last_received = 0.0

    # ---------------------------------------------------------------- setup

    def _make(self) -> Any:
        cfg = self.config
        use_cert = cfg.certfile is not None
        # our context goes in at construction: without one, slixmpp builds a
        # default context and loads the system CA store (about 200 ms of CPU
        # on the event loop per connection attempt, measured)
        xmpp = slixmpp.ClientXMPP(
            cfg.jid,
            cfg.password or "",
            sasl_mech="EXTERNAL" if use_cert else "PLAIN",
            ssl_context=client_ssl_context(cfg),
        )
        if cfg.server_name:
            xmpp.default_domain = cfg.server_name
        xmpp.enable_plaintext = False
        xmpp.enable_direct_tls = False
        xmpp.enable_starttls = True
        xmpp.whitespace_keepalive = False
        # Our own keepalive (below): slixmpp's would silently reconnect on a timeout.
        xmpp.register_plugin("xep_0199", {"keepalive": False, "timeout": cfg.ping_timeout})
        xmpp.register_handler(
            Callback("esxmpp notification", MatchXPath(f"{{{NS_CLIENT}}}message"), self._on_msg)
        )
        xmpp.add_filter("in", self._received)
        return xmpp

    def _received(self, stanza: Any) -> Any:
        self.last_received = time.monotonic()
        return stanza

    async def connect(self, timeout: float | None = None) -> None:
        """Connect, STARTTLS, authenticate, bind; return when the session is up.

        Raises ConnectionError (with the reason) when it cannot.
        """
        if self._xmpp is not None and self._connected:
            raise RuntimeError("already connected")
        xmpp = self._make()
        self._xmpp = xmpp
        self._queue = asyncio.Queue()  # a fresh session: no stale end marker
        self.stream_error = ""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()

        def finish(reason: str | None) -> None:
            if not done.done():
                done.set_result(reason)

        xmpp.add_event_handler("session_start", lambda _e: finish(None))
        xmpp.add_event_handler("failed_all_auth", lambda _e: finish("authentication failed"))
        xmpp.add_event_handler("connection_failed", lambda e: finish(f"connection failed: {e}"))
        xmpp.add_event_handler("ssl_invalid_chain", lambda e: finish(f"TLS: {e}"))
        xmpp.add_event_handler("stream_error", self._on_stream_error)
        xmpp.add_event_handler("disconnected", lambda _e: self._on_disconnected(xmpp, finish))
        xmpp.connect(self.config.host, self.config.port)
        wait = timeout if timeout is not None else self.config.request_timeout
        try:
            async with asyncio.timeout(wait):
                reason = await done
        except TimeoutError:
            reason = "timed out"
        except BaseException:  # cancelled: this attempt must not live on
            self._kill(xmpp)
            raise
        if reason is not None:
            self._kill(xmpp)
            raise ConnectionError(f"{self.config.jid} -> {self.config.host}: {reason}")
        self._connected = True
        self._disconnected.clear()
        self._spawn(self._keepalive())
        if self.on_notification is not None:
            self._spawn(self._dispatch())

    @staticmethod
    def _kill(xmpp: Any) -> None:
        """End a connection attempt for good. slixmpp reschedules a failed
        attempt by itself (with a growing delay, forever) and ``abort()`` does
        nothing without a transport: left alone, an attempt that failed while
        the server was down connects later on its own and binds a second
        session that replaces the owner's (a ``<conflict>`` flap)."""
        xmpp.cancel_connection_attempt()
        xmpp.abort()
        xmpp.cancel_connection_attempt()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _keepalive(self) -> None:
        """XEP-0199 ping every ping_interval; no answer within ping_timeout ends the
        session, unless other stanzas arrived since the ping was sent (a server
        busy sending us a big table answers late but is alive)."""
        while self._connected:
            await asyncio.sleep(self.config.ping_interval)
            if not self._connected:
                return
            sent = time.monotonic()
            try:
                await self.ping()
            except (IqTimeout, TimeoutError):
                if self.last_received >= sent:
                    # the answer is queued behind what the server is sending us
                    # (a big table): stanzas keep arriving, so it is alive
                    log.info("%s: ping answer late behind received stanzas", self.config.jid)
                    continue
                log.warning("%s: server did not answer a ping; closing", self.config.jid)
                self._xmpp.abort()
                return
            except IqError:
                continue  # an error reply is still an answer
            except ConnectionError:
                return

    def _on_stream_error(self, err: Any) -> None:
        with contextlib.suppress(Exception):
            self.stream_error = str(err["condition"])
        log.warning("%s: stream error %s", self.config.jid, err)

    def _on_disconnected(self, xmpp: Any, finish: Callable[[str | None], None]) -> None:
        finish("disconnected")
        xmpp.cancel_connection_attempt()  # no automatic reconnect: the owner decides
        if xmpp is not self._xmpp:
            return  # a previous session of this client ending late
        self._connected = False
        self._disconnected.set()
        self._queue.put_nowait(None)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def jid(self) -> str:
        """Full JID bound by the server ('' before connect)."""
        return str(self._xmpp.boundjid) if self._xmpp is not None else ""

    async def wait_disconnected(self) -> None:
        await self._disconnected.wait()

    async def close(self) -> None:
        """Close the stream cleanly (``</stream:stream>``) and wait for the end."""
        xmpp = self._xmpp
        if xmpp is None:
            return
        try:
            if self._connected:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await xmpp.disconnect(wait=1.0)
        finally:
            self._kill(xmpp)
            self._connected = False
            self._disconnected.set()
            for t in list(self._tasks):
                t.cancel()

    # ------------------------------------------------------------- requests

    async def request(self, req: Request) -> None:
        """Send one request and wait for the server's answer (DialectError on error)."""
        xmpp = self._xmpp
        if xmpp is None or not self._connected:
            raise ConnectionError("not connected")
        iq = xmpp.make_iq_set(ito=xmpp.boundjid.domain)
        iq.append(build_pubsub(req))
        send = asyncio.ensure_future(iq.send(timeout=self.config.request_timeout))
        gone = asyncio.ensure_future(self._disconnected.wait())
        await asyncio.wait({send, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not send.done():
            send.cancel()
            raise ConnectionError(f"session ended before the answer to {req}")
        try:
            send.result()
        except IqError as exc:
            raise parse_iq_error(exc.iq.xml) from None
        except IqTimeout:
            raise TimeoutError(
                f"no answer to {req} within {self.config.request_timeout}s"
            ) from None

    async def subscribe(self, vpn: str, vlan_id: int | None = None) -> None:
        await self.request(Subscribe(vpn, vlan_id))

    async def unsubscribe(self, vpn: str) -> None:
        await self.request(Unsubscribe(vpn))

    async def publish(self, node: str, entry: RouteEntry) -> None:
        await self.request(Publish(node, entry))

    async def retract(self, node: str) -> None:
        await self.request(Retract(node))

    async def associate(self, vpn: str, node: str) -> None:
        await self.request(Associate(vpn, node))

    async def dissociate(self, vpn: str, node: str) -> None:
        await self.request(Dissociate(vpn, node))

    async def end_of_sync(self) -> None:
        """Everything this session holds has been sent (see esxmpp.dialect.EndOfSync)."""
        await self.request(EndOfSync())

    async def ping(self) -> float:
        """XEP-0199 ping of the server; returns the round-trip time in seconds."""
        xmpp = self._xmpp
        if xmpp is None or not self._connected:
            raise ConnectionError("not connected")
        t0 = time.monotonic()
        await xmpp.plugin["xep_0199"].send_ping(
            xmpp.boundjid.domain, timeout=self.config.ping_timeout
        )
        return time.monotonic() - t0

    # -------------------------------------------------------- notifications

    def _on_msg(self, msg: Any) -> None:
        el = msg.xml
        if not is_notification(el):
            return
        try:
            note = parse_notification(el)
        except DialectError as exc:
            self.bad_notifications += 1
            log.warning("%s: bad notification: %s", self.config.jid, exc)
            return
        self._queue.put_nowait(note)

    async def _dispatch(self) -> None:
        """Feed the callback in arrival order (one notification at a time)."""
        assert self.on_notification is not None
        while True:
            note = await self._queue.get()
            if note is None:
                return
            try:
                res = self.on_notification(note)
                if inspect.isawaitable(res):
                    await res
            except Exception:  # one bad notification must not stop the others
                self.callback_errors += 1
                log.exception("%s: notification callback failed", self.config.jid)

    async def notifications(self) -> AsyncIterator[Notification]:
        """Notifications in arrival order, until the session ends (no callback set)."""
        if self.on_notification is not None:
            raise RuntimeError("notifications go to the on_notification callback")
        while True:
            note = await self._queue.get()
            if note is None:
                return
            yield note
