"""slixmpp-based client of the draft's dialect (forwarder -> route server,
end-system -> forwarder).

Public API (stable): :class:`XmppClient` ``(config: ClientConfig,
on_notification=None)`` with ``await connect()``, ``await subscribe(vpn,
vlan_id=None)``, ``unsubscribe(vpn)``, ``publish(node, entry)``,
``retract(node)``, ``associate(vpn, node)``, ``dissociate(vpn, node)``,
``request(req)`` (any :data:`esxmpp.dialect.Request`; raises DialectError on
an iq error), ``ping()``, ``notifications()`` (async iterator of
:data:`esxmpp.dialect.Notification`), ``await close()``, ``connected``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from esxmpp.config import ClientConfig
from esxmpp.dialect import Notification, Request, RouteEntry

NotificationCallback = Callable[[Notification], Awaitable[None] | None]


class XmppClient:
    def __init__(
        self, config: ClientConfig, on_notification: NotificationCallback | None = None
    ) -> None:
        self.config = config
        self.on_notification = on_notification

    async def connect(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    async def request(self, req: Request) -> None:
        raise NotImplementedError

    async def subscribe(self, vpn: str, vlan_id: int | None = None) -> None:
        raise NotImplementedError

    async def unsubscribe(self, vpn: str) -> None:
        raise NotImplementedError

    async def publish(self, node: str, entry: RouteEntry) -> None:
        raise NotImplementedError

    async def retract(self, node: str) -> None:
        raise NotImplementedError

    async def associate(self, vpn: str, node: str) -> None:
        raise NotImplementedError

    async def dissociate(self, vpn: str, node: str) -> None:
        raise NotImplementedError

    async def ping(self) -> float:
        raise NotImplementedError

    def notifications(self) -> AsyncIterator[Notification]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
