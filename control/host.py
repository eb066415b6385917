"""End-system side tool: holds the XMPP session of a host with its forwarder.

``esvpn host run --config host.toml`` keeps one session (reconnecting, and
re-advertising everything it holds after a reconnect) and listens on a local
Unix socket; ``esvpn host subscribe|unsubscribe|publish|retract|status`` send
one JSON line there and print the answer, so a hypervisor hook can call
them. The forwarder's refusals come back verbatim (exit status 1).

host.toml::

    [host]
    socket = "/run/esvpn/host.sock"     # [/run/esvpn-host.sock]
    reconnect = 1.0                     # [1.0]
    [xmpp]                              # esxmpp ClientConfig keys
    jid = "0a0000000001@tor1.example.net"   # localpart = this host's system id (a MAC)
    host = "10.0.0.1"
    port = 5222
    certfile = "/etc/esvpn/pki/client-0a0000000001.pem"    # from esvpn certs
    keyfile = "/etc/esvpn/pki/client-0a0000000001.key"
    cafile = "/etc/esvpn/pki/ca.pem"

Every key with its default: ``examples/host.toml``.

Protocol on the socket (one JSON object per line each way)::

    {"op": "subscribe", "vpn": "red", "vlan": 10}      -> {"ok": true}
    {"op": "publish", "prefix": "10.1.1.5/32", "vpn": "red", "version": 1}
    {"op": "retract", "prefix": "10.1.1.5/32"}
    {"op": "unsubscribe", "vpn": "red"}
    {"op": "status"}                                   -> {"ok": true, "connected": ...}
    errors: {"ok": false, "error": "conflict: vlan 10 is already used by VPN 'red'"}
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.config import ConfigError
from esxmpp.client import XmppClient
from esxmpp.config import ClientConfig, client_config_from_toml
from esxmpp.config import ConfigError as XmppConfigError
from esxmpp.dialect import (
    DialectError,
    IPNetwork,
    RouteEntry,
    check_vpn_name,
    item_node_name,
    parse_system_id,
)
from esxmpp.tasks import cancel_and_wait

log = logging.getLogger("control.host")


@dataclass(frozen=True)
class HostConfig:
    xmpp: ClientConfig
    socket: Path = Path("/run/esvpn-host.sock")
    reconnect: float = 1.0

    @property
    def system_id(self) -> bytes:
        return parse_system_id(self.xmpp.jid.split("@", 1)[0])


def load_host_config(path: str | Path) -> HostConfig:
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    for k in data:
        if k not in ("host", "xmpp"):
            raise ConfigError(f"{k}: unknown key")
    h = data.get("host", {})
    for k in h:
        if k not in ("socket", "reconnect"):
            raise ConfigError(f"host.{k}: unknown key")
    if "xmpp" not in data:
        raise ConfigError("xmpp: required")
    try:
        xmpp = client_config_from_toml(data["xmpp"], "xmpp")
    except XmppConfigError as e:
        raise ConfigError(str(e)) from None
    try:
        parse_system_id(xmpp.jid.split("@", 1)[0])
    except DialectError:
        raise ConfigError(
            "xmpp.jid: localpart must be this host's 12 hex digit system id"
        ) from None
    sock = h.get("socket", "/run/esvpn-host.sock")
    if not isinstance(sock, str) or not sock:
        raise ConfigError("host.socket: must be a path")
    rc = h.get("reconnect", 1.0)
    if isinstance(rc, bool) or not isinstance(rc, int | float) or rc <= 0:
        raise ConfigError("host.reconnect: must be a number > 0")
    return HostConfig(xmpp, Path(sock), float(rc))


@dataclass
class HostState:
    subs: dict[str, int] = field(default_factory=dict)  # vpn -> vlan
    addrs: dict[IPNetwork, tuple[str, int]] = field(default_factory=dict)  # prefix -> vpn, ver


class HostAgent:
    def __init__(self, cfg: HostConfig) -> None:
        self.cfg = cfg
        self.sid = cfg.system_id
        self.state = HostState()
        self.client: XmppClient | None = None
        self._lock = asyncio.Lock()
        self._server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.cfg.socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.cfg.socket.unlink()
        self._server = await asyncio.start_unix_server(self._serve, str(self.cfg.socket))
        self._task = asyncio.create_task(self._session_loop())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await cancel_and_wait([self._task], "host session")
        if self.client is not None:
            await self.client.close()
        with contextlib.suppress(FileNotFoundError):
            self.cfg.socket.unlink()

    def _entry(self, prefix: IPNetwork, version: int) -> RouteEntry:
        # no next hop and label: the forwarder supplies both (draft §5-§6)
        return RouteEntry.end_system(prefix, version)

    async def _session_loop(self) -> None:
        while True:
            client = XmppClient(self.cfg.xmpp)
            try:
                await client.connect()
                async with self._lock:
                    for vpn, vlan in self.state.subs.items():
                        await client.subscribe(vpn, vlan)
                    for prefix, (vpn, ver) in self.state.addrs.items():
                        node = item_node_name(self.sid, prefix)
                        await client.publish(node, self._entry(prefix, ver))
                        await client.associate(vpn, node)
                    self.client = client
                    self.connected.set()
                log.info("connected to %s", self.cfg.xmpp.host)
                await client.wait_disconnected()
            except (ConnectionError, OSError, TimeoutError, DialectError) as e:
                log.warning("session: %s", e)
            self.connected.clear()
            self.client = None
            with contextlib.suppress(Exception):
                await client.close()
            await asyncio.sleep(self.cfg.reconnect)

    async def command(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        try:
            if op == "status":
                return {
                    "ok": True,
                    "connected": self.connected.is_set(),
                    "subscriptions": self.state.subs,
                    "addresses": {str(p): v for p, v in self.state.addrs.items()},
                }
            async with self._lock:
                c = self.client
                if c is None or not c.connected:
                    return {"ok": False, "error": "not connected to the forwarder"}
                if op == "subscribe":
                    vpn = check_vpn_name(req.get("vpn"), "vpn")
                    vlan = req.get("vlan")
                    if not isinstance(vlan, int) or not 1 <= vlan <= 4094:
                        return {"ok": False, "error": "vlan: must be an integer 1..4094"}
                    await c.subscribe(vpn, vlan)
                    self.state.subs[vpn] = vlan
                elif op == "unsubscribe":
                    vpn = check_vpn_name(req.get("vpn"), "vpn")
                    await c.unsubscribe(vpn)
                    self.state.subs.pop(vpn, None)
                    for p in [p for p, (v, _) in self.state.addrs.items() if v == vpn]:
                        del self.state.addrs[p]
                elif op == "publish":
                    prefix = ipaddress.ip_network(str(req.get("prefix")), strict=True)
                    vpn_arg = req.get("vpn")
                    if vpn_arg is None:
                        if len(self.state.subs) != 1:
                            return {"ok": False, "error": "vpn: required (not exactly one VPN)"}
                        vpn_arg = next(iter(self.state.subs))
                    vpn = check_vpn_name(vpn_arg, "vpn")
                    version = req.get("version", 0)
                    if not isinstance(version, int):
                        return {"ok": False, "error": "version: must be an integer"}
                    if vpn not in self.state.subs:
                        return {
                            "ok": False,
                            "error": f"item-not-found: not subscribed to VPN {vpn!r}",
                        }
                    node = item_node_name(self.sid, prefix)
                    old = self.state.addrs.get(prefix)
                    await c.publish(node, self._entry(prefix, version))
                    if old is None or old[0] != vpn:
                        try:
                            if old is not None:
                                await c.dissociate(old[0], node)
                            await c.associate(vpn, node)
                        except DialectError:
                            if old is None:  # undo the publish: nothing half-done
                                await c.retract(node)
                            raise
                    self.state.addrs[prefix] = (vpn, version)
                elif op == "retract":
                    prefix = ipaddress.ip_network(str(req.get("prefix")), strict=True)
                    await c.retract(item_node_name(self.sid, prefix))
                    self.state.addrs.pop(prefix, None)
                else:
                    return {"ok": False, "error": f"op: unknown operation {op!r}"}
        except DialectError as e:
            return {"ok": False, "error": str(e)}
        except ValueError as e:
            return {"ok": False, "error": f"prefix: {e}"}
        except (ConnectionError, TimeoutError) as e:
            return {"ok": False, "error": f"forwarder: {e}"}
        return {"ok": True}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except ValueError as e:
                    resp: dict[str, Any] = {"ok": False, "error": f"bad request: {e}"}
                else:
                    resp = await self.command(req)
                writer.write(json.dumps(resp).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def send_command(socket: Path, req: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), timeout)
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        resp: dict[str, Any] = json.loads(line)
        return resp
    finally:
        writer.close()
