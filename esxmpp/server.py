"""asyncio XMPP server (client-to-server streams) for the draft's dialect.

Public API (stable):

* :class:`XmppServer` ``(config: ServerConfig, handler: Handler)`` with
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
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from esxmpp.config import ServerConfig
from esxmpp.dialect import Notification, Request
from esxmpp.session import Advertised, SessionTable


class ServerSession:
    """One authenticated, bound client session (created by the server)."""

    system_id: bytes
    jid: str
    mechanism: str
    peer: str

    @property
    def state(self) -> Advertised:
        """What this system id has advertised (read-only view)."""
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def send(self, note: Notification) -> None:
        """Queue a pubsub event notification; never blocks (slow clients are dropped)."""
        raise NotImplementedError

    def close(self, condition: str = "reset", text: str = "") -> None:
        """End the stream with a stream error (or plainly when condition is 'reset')."""
        raise NotImplementedError


class Handler(Protocol):
    """Application callbacks; each may return an awaitable."""

    def session_opened(self, session: ServerSession, resumed: bool) -> Awaitable[None] | None: ...

    def request(
        self, session: ServerSession, request: Request, changes: Sequence[Request]
    ) -> Awaitable[None] | None: ...

    def session_closed(self, session: ServerSession, reason: str) -> Awaitable[None] | None: ...

    def state_expired(
        self, system_id: bytes, changes: Sequence[Request]
    ) -> Awaitable[None] | None: ...


class XmppServer:
    """The XMPP server: one listening socket, many client streams."""

    def __init__(self, config: ServerConfig, handler: Handler) -> None:
        self.config = config
        self.handler = handler
        self.table = SessionTable(config.retention, config.duplicate, config.own_nodes_only)

    async def start(self) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    def session(self, system_id: bytes) -> ServerSession | None:
        raise NotImplementedError

    def sessions(self) -> list[ServerSession]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
