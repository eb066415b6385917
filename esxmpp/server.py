"""asyncio XMPP server (client-to-server streams) for the draft's dialect.

Public API (stable):

* :class:`XmppServer` ``(config: ServerConfig, handler: Handler, clock,
  end_systems=False)`` (``end_systems``: we are the clients' external
  forwarder; a publish needs no next hop and label) with
  ``await start()``, ``port``, ``await close()``, ``session(system_id)``,
  ``sessions()``, ``table`` (the :class:`esxmpp.session.SessionTable`).
* :class:`Handler` — the application's callbacks (sync or async):
  ``session_opened(session, resumed)``, ``request(session, request, changes)``
  (raise :class:`esxmpp.dialect.DialectError` to refuse; state is committed
  only if it returns), ``session_closed(session, reason)``,
  ``state_expired(system_id, changes)`` (retention ran out: withdraw).
* :class:`ServerSession` — one authenticated, bound client: ``system_id``
  (6 bytes), ``jid``, ``mechanism``, ``peer``, ``state``, ``send(notification)``,
  ``close(condition, text)``.

Negotiation (RFC 6120): stream header -> features ``<starttls><required/>``
-> TLS (client certificate verified against ``cafile`` when given) -> stream
restart -> SASL (EXTERNAL per XEP-0178 when the client presented a verified
certificate whose CN or a DNS subjectAltName is a system id, optionally
'<system id>@domain'; PLAIN with ``plain_users``) -> restart -> resource
binding (+ the legacy RFC 3921 session iq, answered for old clients). Then
pubsub iqs go to the handler, XEP-0199 pings are answered, and the server
pings a client idle ``ping_interval`` seconds, dropping it after
``ping_misses`` unanswered pings (idle = no complete stanza: bytes that do
not finish one do not count, so a client stuck inside a stanza is dropped
the same way, with ``connection-timeout``). Presence and message stanzas from clients
are accepted and ignored; other iqs get ``service-unavailable``.

The client's identity is its system id, derived from the JID localpart or the
certificate: 12 hex digits, bare ('01020304abcd'), in pairs separated by ':',
'-' or '.' ('01:02:03:04:ab:cd'), or dotted in groups of four ('0102.0304.abcd');
see :func:`esxmpp.dialect.parse_system_id`.

Fair shares (issue 18): bound sessions are limited by ``max_sessions`` (one
more is refused at bind with ``resource-constraint``; a system id already
bound may still take over). Connections still negotiating have their own pool,
``max_preauth_connections``, and a share per source (IPv4 address or IPv6
/64), ``max_preauth_per_address``: a source over its share is refused before
TLS with ``policy-violation``; when the pool is full, the newcomer takes the
slot of the oldest negotiating connection of the source holding the most, if
that source holds more than the newcomer's would (that connection gets
``resource-constraint``, or is just closed mid-TLS-handshake), else the
newcomer gets ``resource-constraint``. Until SASL succeeds stanzas and stream
headers are bounded by ``max_preauth_stanza_bytes``, and whitespace between
stanzas by ``max_whitespace_bytes`` always.

Every violation closes that one stream with the RFC 6120 §4.9 stream error,
logged as ``esxmpp.server`` warnings; the server and other sessions go on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import inspect
import ipaddress
import itertools
import logging
import secrets
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from esxmpp.config import ServerConfig, server_ssl_context, shrink_tls_read_buffer
from esxmpp.dialect import (
    NS_CLIENT,
    NS_PING,
    NS_PUBSUB,
    NS_PUBSUB_OWNER,
    NS_STANZAS,
    DialectError,
    EndOfSync,
    Notification,
    Request,
    build_error,
    build_notification,
    build_result,
    format_system_id,
    parse_pubsub,
    parse_system_id,
    serialize,
)
from esxmpp.jid import same_domain
from esxmpp.session import Advertised, SessionTable
from esxmpp.stream import (
    NS_STREAM_ERRORS,
    Stanza,
    StreamClose,
    StreamError,
    StreamEvent,
    StreamOpen,
    StreamParser,
)
from esxmpp.tasks import cancel_and_wait

log = logging.getLogger("esxmpp.server")

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
READ_CHUNK = 4096
MAX_AUTH_ATTEMPTS = 3


class _Closed(Exception):
    """Internal: the stream is over (reason in args[0])."""


class Handler(Protocol):
    """Application callbacks; each may return an awaitable (it is then awaited)."""

    def session_opened(self, session: ServerSession, resumed: bool) -> Awaitable[None] | None: ...

    def request(
        self, session: ServerSession, request: Request, changes: Sequence[Request]
    ) -> Awaitable[None] | None: ...

    def session_closed(self, session: ServerSession, reason: str) -> Awaitable[None] | None: ...

    def state_expired(
        self, system_id: bytes, changes: Sequence[Request]
    ) -> Awaitable[None] | None: ...


async def _call(fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    res = fn(*args)
    if inspect.isawaitable(res):
        await res


def _stream_error_bytes(condition: str, text: str) -> bytes:
    t = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = f"<{condition} xmlns='{NS_STREAM_ERRORS}'/>"
    if t:
        body += f"<text xmlns='{NS_STREAM_ERRORS}'>{t}</text>"
    return f"<stream:error>{body}</stream:error></stream:stream>".encode()


def source_key(host: str) -> str:
    """The source a pre-authentication connection is counted against: its IPv4
    address, or the /64 of its IPv6 address (one host usually holds a whole /64)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host  # a Unix socket path or the like: one source
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def identity_from_cert(cert: dict[str, Any]) -> bytes | None:
    """System id from a verified peer certificate (``SSLSocket.getpeercert()``).

    Candidates, in order: DNS subjectAltNames, then subject commonName; each
    may be '<system id>' or '<system id>@<domain>'. The first that parses wins.
    """
    names: list[str] = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    for rdn in cert.get("subject", ()):
        names.extend(v for k, v in rdn if k == "commonName")
    for name in names:
        local = name.split("@", 1)[0]
        try:
            return parse_system_id(local)
        except DialectError:
            continue
    return None


class ServerSession:
    """One client connection; a *session* once authenticated and bound."""

    def __init__(
        self, server: XmppServer, writer: asyncio.StreamWriter, peer: str, peer_host: str = ""
    ) -> None:
        self._server = server
        self._writer = writer
        self.peer = peer
        self.system_id = b""
        self.jid = ""
        self.mechanism = ""
        self.bound = False
        self._open = True
        self._close_reason = ""
        self._closing: asyncio.Event = asyncio.Event()
        self._ids = itertools.count(1)
        self.pending_pings: set[str] = set()
        self.source = source_key(peer_host)
        self.header_sent = False  # our stream header went out on the current stream
        self.handshaking = False  # in the TLS handshake: no XML can be written

    @property
    def state(self) -> Advertised:
        """What this system id has advertised (read it, do not modify it)."""
        st = self._server.table.state(self.system_id)
        return st if st is not None else Advertised()

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def write_buffer(self) -> int:
        """Bytes queued for the peer and not yet sent (a bulk sender paces on it)."""
        return int(self._writer.transport.get_write_buffer_size())

    def _write(self, data: bytes) -> None:
        if not self._open:
            return
        transport = self._writer.transport
        if transport.is_closing():
            self._abort("connection lost")
            return
        if transport.get_write_buffer_size() + len(data) > self._server.config.max_write_buffer:
            log.warning("%s %s: write buffer full, dropping slow client", self.peer, self.jid)
            self._abort("write buffer full")
            return
        self._writer.write(data)

    def send_element(self, el: ET.Element) -> None:
        """Send any stanza element (jabber:client default namespace)."""
        self._write(serialize(el, NS_CLIENT).encode())

    def send(self, note: Notification) -> None:
        """Queue a pubsub event notification; never blocks (slow clients are dropped)."""
        if not self.bound:
            raise RuntimeError("session not bound")
        self.send_element(build_notification(note, self.jid, self._server.config.domain))

    def close(self, condition: str = "reset", text: str = "") -> None:
        """End the stream: with stream error ``condition`` (or plainly when 'reset')."""
        if not self._open:
            return
        if condition == "reset":
            self._write(b"</stream:stream>")
        else:
            self._write(_stream_error_bytes(condition, text))
        self._close_reason = self._close_reason or (
            f"{condition}: {text}" if condition != "reset" else "closed by server"
        )
        self._finish()

    def _refuse(self, condition: str, text: str) -> None:
        """Close a stream that is still negotiating (our header first if not yet sent)."""
        if self.handshaking:  # mid-TLS: a stream error cannot be delivered
            self._abort(f"{condition}: {text}")
            return
        if not self.header_sent:
            self._write(self._server._header(None, secrets.token_hex(8)))
            self.header_sent = True
        self._close_reason = self._close_reason or f"{condition}: {text}"
        self.close(condition, text)

    def _abort(self, reason: str) -> None:
        self._close_reason = self._close_reason or reason
        self._open = False
        self._writer.transport.abort()
        self._closing.set()

    def _finish(self) -> None:
        self._open = False
        with contextlib.suppress(Exception):
            if self._writer.can_write_eof():
                self._writer.write_eof()
        self._writer.close()
        self._closing.set()

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"


class XmppServer:
    """The XMPP server: one listening socket, many client streams."""

    def __init__(
        self,
        config: ServerConfig,
        handler: Handler,
        clock: Callable[[], float] = time.monotonic,
        end_systems: bool = False,
    ) -> None:
        self.config = config
        self.handler = handler
        self.clock = clock
        # clients are end-systems and we their external forwarder: a publish's
        # next hop and label are ours to supply (esxmpp.dialect.parse_entry)
        self.end_systems = end_systems
        self.table = SessionTable(config.retention, config.duplicate, config.own_nodes_only)
        self._ssl = server_ssl_context(config)
        self._server: asyncio.Server | None = None
        self._conns: set[ServerSession] = set()
        # connections not yet bound, by source (oldest first): see _admit
        self._preauth: dict[str, dict[ServerSession, None]] = {}
        self._preauth_count = 0
        self._bound: dict[bytes, ServerSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry_wakeup = asyncio.Event()
        self._expiry_task: asyncio.Task[None] | None = None
        self._session_keys = itertools.count(1)

    # ------------------------------------------------------------------ API

    async def start(self) -> None:
        """Listen on config.host:config.port (port 0 picks a free one: see ``port``)."""
        self._server = await asyncio.start_server(
            self._accept, self.config.host, self.config.port, limit=READ_CHUNK * 4
        )
        self._expiry_task = asyncio.create_task(self._expiry_loop())
        log.info("listening on %s:%d", self.config.host, self.port)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    def session(self, system_id: bytes) -> ServerSession | None:
        """The live bound session of ``system_id``."""
        return self._bound.get(system_id)

    def sessions(self) -> list[ServerSession]:
        """All live bound sessions."""
        return list(self._bound.values())

    @property
    def connection_count(self) -> int:
        """Open connections, bound or still negotiating."""
        return len(self._conns)

    @property
    def preauth_count(self) -> int:
        """Open connections still negotiating (not yet bound)."""
        return self._preauth_count

    async def close(self) -> None:
        """Stop listening and end every stream (state is kept, not withdrawn)."""
        if self._server is not None:
            self._server.close()
        for s in list(self._conns):
            s.close("system-shutdown", "server shutting down")
        # the expiry timer first: nothing is withdrawn during a shutdown
        await cancel_and_wait([self._expiry_task], "esxmpp server expiry")
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            await cancel_and_wait(pending, "esxmpp server connections")
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()

    # ------------------------------------------------------------ retention

    async def _expiry_loop(self) -> None:
        while True:
            deadline = self.table.next_deadline()
            self._expiry_wakeup.clear()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._expiry_wakeup.wait()
            for exp in self.table.expire(self.clock()):
                log.info("state of %s expired: %d changes", exp.system_id.hex(), len(exp.changes))
                try:
                    await _call(self.handler.state_expired, exp.system_id, exp.changes)
                except Exception:
                    log.exception("handler.state_expired failed")

    # ------------------------------------------------------------ connection

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        host = str(peername[0]) if isinstance(peername, tuple) else str(peername)
        sess = ServerSession(self, writer, peer, host)
        self._conns.add(sess)
        key = next(self._session_keys)
        try:
            refusal = self._admit(sess)
            if refusal is not None:
                log.warning("%s: refused: %s", peer, refusal[1])
                sess._refuse(*refusal)
                return
            await _Conn(self, sess, reader, key).run()
        except asyncio.CancelledError:  # server shutdown: this task is the connection's root
            sess._abort("server shutdown")
        except Exception:  # a bug must not kill the server
            log.exception("%s: connection failed", peer)
            sess.close("internal-server-error", "")
        finally:
            self._conns.discard(sess)
            self._preauth_done(sess)
            if sess.bound:
                if self._bound.get(sess.system_id) is sess:
                    del self._bound[sess.system_id]
                self.table.close(sess.system_id, key, self.clock())
                self._expiry_wakeup.set()
                try:
                    await _call(self.handler.session_closed, sess, sess._close_reason or "closed")
                except Exception:
                    log.exception("handler.session_closed failed")
            if sess.is_open:
                sess._abort("connection ended")
            self._tasks.discard(task)

    def _admit(self, sess: ServerSession) -> tuple[str, str] | None:
        """Count a new connection as pre-authentication, or say why it is refused.

        Connections that are not yet bound have their own pool
        (``max_preauth_connections``), apart from the bound sessions
        (``max_sessions``), and a share per source (``max_preauth_per_address``):
        a source at its share gets ``policy-violation``. When the pool is full,
        the newcomer takes the slot of the oldest negotiating connection of the
        source holding the most, if that source would still hold more than the
        newcomer's after it (that connection gets ``resource-constraint``);
        otherwise the newcomer gets ``resource-constraint``. So a flood from a
        few sources cannot keep other sources from logging in, and every
        negotiating connection still ends within ``negotiation_timeout``.
        """
        cfg = self.config
        mine = self._preauth.get(sess.source, {})
        if len(mine) >= cfg.max_preauth_per_address:
            return (
                "policy-violation",
                f"too many unauthenticated connections from {sess.source}",
            )
        if self._preauth_count >= cfg.max_preauth_connections:
            top = max(self._preauth.values(), key=len)
            if len(top) <= len(mine) + 1:
                return ("resource-constraint", "too many unauthenticated connections")
            victim = next(iter(top))
            log.warning(
                "%s: dropped for %s: %d unauthenticated connections",
                victim.peer,
                sess.peer,
                self._preauth_count,
            )
            self._preauth_done(victim)
            victim._refuse(
                "resource-constraint", "too many unauthenticated connections from your address"
            )
        self._preauth.setdefault(sess.source, {})[sess] = None
        self._preauth_count += 1
        return None

    def _preauth_done(self, sess: ServerSession) -> None:
        """The connection is bound or gone: it no longer counts as pre-authentication."""
        mine = self._preauth.get(sess.source)
        if mine is None or sess not in mine:
            return
        del mine[sess]
        self._preauth_count -= 1
        if not mine:
            del self._preauth[sess.source]

    def _header(self, to: str | None, stream_id: str) -> bytes:
        to_attr = f" to='{to}'" if to else ""
        return (
            f"<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' "
            f"xmlns:stream='http://etherx.jabber.org/streams' id='{stream_id}' "
            f"from='{self.config.domain}'{to_attr} version='1.0' xml:lang='en'>"
        ).encode()


def _xml_attr_ok(value: str) -> bool:
    return all(c not in value for c in "<>&'\"") and value.isprintable()


class _Conn:
    """Drives one connection through negotiation and the session."""

    def __init__(
        self, server: XmppServer, sess: ServerSession, reader: asyncio.StreamReader, key: int
    ) -> None:
        self.server = server
        self.cfg = server.config
        self.sess = sess
        self.reader = reader
        self.key = key
        self.parser = self._new_parser()
        self.queue: list[StreamEvent] = []
        self.tls = False
        self.cert_id: bytes | None = None
        self.cert_error = "no client certificate"

    def _new_parser(self) -> StreamParser:
        # Before SASL succeeds a stanza (and the stream header) is small: a client
        # that has not authenticated gets the smaller bound.
        size = self.cfg.max_stanza_bytes
        if not self.sess.mechanism:
            size = min(size, self.cfg.max_preauth_stanza_bytes)
        return StreamParser(size, self.cfg.max_depth, self.cfg.max_whitespace_bytes)

    async def run(self) -> None:
        sess = self.sess
        try:
            async with asyncio.timeout(self.cfg.negotiation_timeout):
                await self._negotiate()
            await self._session_loop()
        except StreamError as exc:
            log.warning("%s %s: stream error %s", sess.peer, sess.jid, exc)
            if not sess.header_sent:
                sess._write(self.server._header(None, secrets.token_hex(8)))
            sess._close_reason = f"{exc.condition}: {exc.text}"
            sess.close(exc.condition, exc.text)
        except TimeoutError:
            log.warning("%s: negotiation timed out", sess.peer)
            if not sess.header_sent:
                sess._write(self.server._header(None, secrets.token_hex(8)))
            sess.close("connection-timeout", "negotiation took too long")
        except _Closed as exc:
            sess._close_reason = sess._close_reason or str(exc.args[0])
            if sess.is_open:
                sess.close()
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("%s %s: connection error %s", sess.peer, sess.jid, exc)
            sess._abort(f"connection error: {exc}")
        finally:
            self.parser.close()

    # ----------------------------------------------------------------- input

    async def _next(self) -> StreamEvent:
        while not self.queue:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise _Closed("connection closed by peer")
            self.queue.extend(self.parser.feed(data))
        return self.queue.pop(0)

    async def _stanza(self) -> ET.Element:
        ev = await self._next()
        if isinstance(ev, StreamClose):
            raise _Closed("stream closed by peer")
        if isinstance(ev, StreamOpen):  # pragma: no cover - parser forbids a second one
            raise StreamError("bad-format", "unexpected stream header")
        return ev.element

    async def _open_stream(self) -> None:
        ev = await self._next()
        if not isinstance(ev, StreamOpen):  # pragma: no cover - parser guarantees it
            raise StreamError("bad-format", "expected a stream header")
        to = ev.attrs.get("to")
        from_ = ev.attrs.get("from")
        hdr_to = from_ if from_ and _xml_attr_ok(from_) else None
        self.sess._write(self.server._header(hdr_to, secrets.token_hex(8)))
        self.sess.header_sent = True
        if ev.default_ns != NS_CLIENT:
            raise StreamError("invalid-namespace", f"content namespace must be {NS_CLIENT}")
        if ev.attrs.get("version", "") != "1.0":
            raise StreamError("unsupported-version", "only version 1.0 is supported")
        if to is not None and not same_domain(to, self.cfg.domain):
            raise StreamError("host-unknown", f"this server is {self.cfg.domain}")

    def _restart(self) -> None:
        self.parser.close()
        self.parser = self._new_parser()
        self.queue = []
        self.sess.header_sent = False

    def _features(self, body: str) -> None:
        self.sess._write(f"<stream:features>{body}</stream:features>".encode())

    # ----------------------------------------------------------- negotiation

    async def _negotiate(self) -> None:
        await self._open_stream()
        self._features(f"<starttls xmlns='{NS_TLS}'><required/></starttls>")
        el = await self._stanza()
        if el.tag != f"{{{NS_TLS}}}starttls":
            raise StreamError("policy-violation", "STARTTLS is required")
        self.sess._write(f"<proceed xmlns='{NS_TLS}'/>".encode())
        if self.queue or self.parser.closed:
            raise StreamError("policy-violation", "data after <starttls/>")
        writer = self.sess._writer
        raw = writer.transport
        self.sess.handshaking = True
        try:
            await writer.start_tls(self.server._ssl)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            raise _Closed(f"TLS handshake failed: {exc}") from None
        except AttributeError:
            # We closed it mid-handshake (a dropped pre-authentication connection, or
            # shutdown): asyncio 3.11's start_tls then sets the writer's transport to
            # None and fails on it. Put the closed one back so the writer still works
            # (close, __del__).
            if writer.transport is not None:
                raise
            setattr(writer, "_transport", raw)  # noqa: B010 - private, no setter
            raise _Closed(self.sess._close_reason or "closed during the TLS handshake") from None
        finally:
            self.sess.handshaking = False
        self.tls = True
        shrink_tls_read_buffer(self.sess._writer)
        sslobj = self.sess._writer.get_extra_info("ssl_object")
        cert = sslobj.getpeercert() if sslobj is not None else None
        if cert:
            self.cert_id = identity_from_cert(cert)
            if self.cert_id is None:
                self.cert_error = "certificate names no system id"
        self._restart()
        await self._open_stream()
        mechs = [m for m in self.cfg.auth if m == "PLAIN" or (m == "EXTERNAL" and self.cert_id)]
        body = "".join(f"<mechanism>{m}</mechanism>" for m in mechs)
        self._features(f"<mechanisms xmlns='{NS_SASL}'>{body}</mechanisms>")
        await self._authenticate(mechs)
        self._restart()
        await self._open_stream()
        self._features(
            f"<bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session>"
        )
        await self._bind()

    def _sasl_failure(self, condition: str, text: str) -> None:
        t = f"<text xml:lang='en'>{text}</text>" if text else ""
        self.sess._write(f"<failure xmlns='{NS_SASL}'><{condition}/>{t}</failure>".encode())

    async def _authenticate(self, mechs: list[str]) -> None:
        for _attempt in range(MAX_AUTH_ATTEMPTS):
            el = await self._stanza()
            if el.tag == f"{{{NS_SASL}}}abort":
                self._sasl_failure("aborted", "")
                continue
            if el.tag != f"{{{NS_SASL}}}auth":
                raise StreamError("not-authorized", "authenticate first")
            mech = el.get("mechanism", "")
            if mech not in mechs:
                self._sasl_failure("invalid-mechanism", f"offered: {' '.join(mechs)}")
                continue
            text = (el.text or "").strip()
            if text == "" and mech == "EXTERNAL":
                self.sess._write(f"<challenge xmlns='{NS_SASL}'/>".encode())
                resp = await self._stanza()
                if resp.tag != f"{{{NS_SASL}}}response":
                    self._sasl_failure("aborted", "")
                    continue
                text = (resp.text or "").strip() or "="
            try:
                raw = b"" if text == "=" else base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                self._sasl_failure("incorrect-encoding", "bad base64")
                continue
            try:
                if mech == "EXTERNAL":
                    self._external(raw)
                else:
                    self._plain(raw)
            except DialectError as exc:
                log.warning("%s: SASL %s failed: %s", self.sess.peer, mech, exc.text)
                self._sasl_failure("not-authorized", exc.text)
                continue
            self.sess.mechanism = mech
            self.sess._write(f"<success xmlns='{NS_SASL}'/>".encode())
            return
        raise StreamError("not-authorized", "too many authentication attempts")

    def _external(self, authzid: bytes) -> None:
        if self.cert_id is None:
            raise DialectError("not-authorized", self.cert_error)
        if authzid:
            try:
                want = parse_system_id(authzid.decode("utf-8").split("@", 1)[0])
            except (UnicodeDecodeError, DialectError):
                raise DialectError("not-authorized", "authzid is not a system id") from None
            if want != self.cert_id:
                raise DialectError("not-authorized", "authzid does not match the certificate")
        self.sess.system_id = self.cert_id
        self._localpart = format_system_id(self.cert_id)

    def _plain(self, raw: bytes) -> None:
        try:
            authzid, user, password = raw.decode("utf-8").split("\0")
        except (UnicodeDecodeError, ValueError):
            raise DialectError("not-authorized", "malformed PLAIN response") from None
        expected = self.cfg.plain_users.get(user)
        ok = expected is not None and hmac.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        )
        if not ok:
            raise DialectError("not-authorized", "wrong user name or password")
        sid = parse_system_id(user)
        if authzid and parse_system_id(authzid.split("@", 1)[0]) != sid:
            raise DialectError("not-authorized", "authzid differs from user")
        self.sess.system_id = sid
        self._localpart = user

    async def _bind(self) -> None:
        while True:
            el = await self._stanza()
            if el.tag != f"{{{NS_CLIENT}}}iq":
                raise StreamError("not-authorized", "bind a resource first")
            bind = el.find(f"{{{NS_BIND}}}bind")
            if bind is None or el.get("type") != "set":
                err = DialectError("not-authorized", "bind a resource first")
                self.sess.send_element(build_error(el, err))
                continue
            if (
                len(self.server._bound) >= self.cfg.max_sessions
                and self.sess.system_id not in self.server._bound
            ):
                raise StreamError("resource-constraint", "too many sessions")
            res_el = bind.find(f"{{{NS_BIND}}}resource")
            resource = (res_el.text or "").strip() if res_el is not None else ""
            if not resource or len(resource) > 64 or not _xml_attr_ok(resource):
                resource = secrets.token_hex(4)
            try:
                opened = self.server.table.open(self.sess.system_id, self.key, self.server.clock())
            except DialectError as exc:
                self.sess.send_element(build_error(el, exc))
                raise _Closed(f"refused: {exc.text}") from None
            self.sess.jid = f"{self._localpart}@{self.cfg.domain}/{resource}"
            res = build_result(el)
            ET.SubElement(
                ET.SubElement(res, f"{{{NS_BIND}}}bind"), f"{{{NS_BIND}}}jid"
            ).text = self.sess.jid
            self.sess.send_element(res)
            self.sess.bound = True
            self.server._preauth_done(self.sess)
            if opened.replaced is not None:
                old = self.server._bound.get(self.sess.system_id)
                if old is not None:
                    log.info("%s: replaced by a new session from %s", old.jid, self.sess.peer)
                    old.close("conflict", "replaced by a new session")
            self.server._bound[self.sess.system_id] = self.sess
            log.info(
                "%s: session %s (%s%s)",
                self.sess.peer,
                self.sess.jid,
                self.sess.mechanism,
                ", resumed" if opened.resumed else "",
            )
            await _call(self.server.handler.session_opened, self.sess, opened.resumed)
            return

    # --------------------------------------------------------------- session

    async def _session_loop(self) -> None:
        misses = 0
        handled = 0
        interval = self.cfg.ping_interval
        sess = self.sess
        while sess.is_open:
            try:
                # The timer runs until the next *complete* stanza, not the next byte:
                # a client stuck (or trickling bytes) inside a stanza cannot answer
                # pings either, so it is dropped like a silent one.
                if self.queue:
                    ev = self.queue.pop(0)
                else:
                    async with asyncio.timeout(interval):
                        ev = await self._next()
            except TimeoutError:
                if len(sess.pending_pings) >= self.cfg.ping_misses:
                    raise StreamError("connection-timeout", f"{misses} pings unanswered") from None
                pid = sess.next_id("ping")
                sess.pending_pings.add(pid)
                misses = len(sess.pending_pings)
                sess._write(
                    f"<iq type='get' id='{pid}' to='{sess.jid}' from='{self.cfg.domain}'>"
                    f"<ping xmlns='{NS_PING}'/></iq>".encode()
                )
                continue
            if isinstance(ev, StreamClose):
                raise _Closed("stream closed by peer")
            if not isinstance(ev, Stanza):  # pragma: no cover
                raise StreamError("bad-format", "unexpected stream header")
            await self._dispatch(ev.element)
            handled += 1
            if handled % 64 == 0:
                await asyncio.sleep(0)  # a flooding client must not starve the others

    async def _dispatch(self, el: ET.Element) -> None:
        sess = self.sess
        frm = el.get("from")
        if frm is not None and frm not in (sess.jid, sess.jid.split("/", 1)[0]):
            raise StreamError("invalid-from", f"from {frm!r} is not {sess.jid}")
        tag = el.tag
        if tag in (f"{{{NS_CLIENT}}}presence", f"{{{NS_CLIENT}}}message"):
            return
        if tag != f"{{{NS_CLIENT}}}iq":
            raise StreamError("unsupported-stanza-type", f"<{tag}> is not a stanza")
        typ = el.get("type")
        iq_id = el.get("id")
        if iq_id is None:
            raise StreamError("bad-format", "iq without id")
        if typ in ("result", "error"):
            sess.pending_pings.discard(iq_id)
            return
        if typ not in ("get", "set"):
            raise StreamError("bad-format", f"iq type {typ!r}")
        children = list(el)
        if len(children) != 1:
            sess.send_element(
                build_error(el, DialectError("bad-request", "iq get/set needs one child"))
            )
            return
        child = children[0]
        if child.tag == f"{{{NS_PING}}}ping" and typ == "get":
            sess.send_element(build_result(el))
            return
        if child.tag == f"{{{NS_SESSION}}}session" and typ == "set":
            sess.send_element(build_result(el))
            return
        if child.tag in (f"{{{NS_PUBSUB}}}pubsub", f"{{{NS_PUBSUB_OWNER}}}pubsub"):
            if typ != "set":
                err = DialectError("feature-not-implemented", "only pubsub sets are supported")
                sess.send_element(build_error(el, err))
                return
            await self._pubsub(el, child)
            return
        err = DialectError("service-unavailable", f"{child.tag} is not served here")
        sess.send_element(build_error(el, err))

    async def _pubsub(self, iq: ET.Element, payload: ET.Element) -> None:
        sess = self.sess
        table = self.server.table
        try:
            req = parse_pubsub(payload, self.server.end_systems)
            changes = table.plan(sess.system_id, req)
            await _call(self.server.handler.request, sess, req, changes)
        except DialectError as exc:
            log.info("%s: refused %s", sess.jid, exc)
            sess.send_element(build_error(iq, exc))
            return
        except Exception:
            log.exception("%s: handler failed", sess.jid)
            err = DialectError("internal-server-error", "request failed")
            sess.send_element(build_error(iq, err))
            return
        # State belongs to the system id: commit even if a newer session took over
        # while the handler ran (the handler has acted on these changes).
        if table.state(sess.system_id) is not None:
            table.commit(sess.system_id, changes)
            table.mark(sess.system_id, req)
        if isinstance(req, EndOfSync) and changes:
            log.info(
                "%s: end of sync: withdrew %d items the earlier session had advertised",
                sess.jid,
                len(changes),
            )
        sess.send_element(build_result(iq))


__all__ = [
    "NS_STANZAS",
    "Handler",
    "ServerSession",
    "XmppServer",
    "identity_from_cert",
]
