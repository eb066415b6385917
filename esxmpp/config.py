"""Frozen configuration for the XMPP server and client, loaded from TOML tables.

Server table (e.g. ``[xmpp]`` in a daemon's TOML; every key optional except
``domain``, ``certfile``, ``keyfile``)::

    [xmpp]
    host = "0.0.0.0"
    port = 5222
    domain = "rs1.example.net"        # our JID domain, 'to' clients must use
    certfile = "/etc/esvpn/rs1.pem"    # server certificate chain (PEM)
    keyfile = "/etc/esvpn/rs1.key"
    cafile = "/etc/esvpn/ca.pem"       # CA that signs client certificates
    auth = ["EXTERNAL"]               # SASL mechanisms offered: EXTERNAL and/or PLAIN
    plain_users = { "01020304abcd" = "secret" }   # for PLAIN (labs only)
    max_stanza_bytes = 65536
    max_depth = 16
    max_whitespace_bytes = 4096        # keepalive whitespace allowed between two stanzas
    max_sessions = 10000               # bound (authenticated) sessions
    max_preauth_connections = 256      # connections still negotiating (before bind) ...
    max_preauth_per_address = 16       # ... from one IPv4 address or IPv6 /64
    max_preauth_stanza_bytes = 8192    # stanza (and stream header) size before SASL success
    max_write_buffer = 1048576
    negotiation_timeout = 10.0
    ping_interval = 30.0               # server pings a client idle this long ...
    ping_misses = 3                    # ... and drops it after this many unanswered pings
    retention = 60.0                   # advertised state kept after a session closes
    duplicate = "takeover"             # or "refuse": a second session for a system id
    own_nodes_only = true              # published node ids must carry the client's system id
                                       # (false on a route server fed by relaying forwarders)

Errors name the key: ``xmpp.port: must be an integer 0..65535``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

MECHANISMS = ("EXTERNAL", "PLAIN")


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with the key's dotted path."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the XMPP server needs; see the module docstring for meanings."""

    domain: str
    certfile: Path
    keyfile: Path
    cafile: Path | None = None
    host: str = "127.0.0.1"
    port: int = 5222
    auth: tuple[str, ...] = ("EXTERNAL",)
    plain_users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    max_stanza_bytes: int = 65536
    max_depth: int = 16
    max_whitespace_bytes: int = 4096
    max_sessions: int = 10000
    max_preauth_connections: int = 256
    max_preauth_per_address: int = 16
    max_preauth_stanza_bytes: int = 8192
    max_write_buffer: int = 1 << 20
    negotiation_timeout: float = 10.0
    ping_interval: float = 30.0
    ping_misses: int = 3
    retention: float = 60.0
    duplicate: Literal["takeover", "refuse"] = "takeover"
    own_nodes_only: bool = True

    def __post_init__(self) -> None:
        validate_server_config(self, "xmpp")


@dataclass(frozen=True)
class ClientConfig:
    """How a client reaches one server.

    ``jid`` is '<system id>@<domain>' (a resource is added by the server).
    With ``certfile``/``keyfile`` the client authenticates with SASL EXTERNAL;
    with ``password`` (and no cert) SASL PLAIN. ``cafile`` verifies the server;
    ``server_name`` overrides the name checked against the server certificate
    (default: the JID domain).
    """

    jid: str
    host: str
    port: int = 5222
    certfile: Path | None = None
    keyfile: Path | None = None
    cafile: Path | None = None
    password: str | None = None
    server_name: str | None = None
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        validate_client_config(self, "xmpp")


def _positive(cfg: object, prefix: str, names: tuple[str, ...]) -> None:
    for n in names:
        v = getattr(cfg, n)
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            raise ConfigError(f"{prefix}.{n}: must be a number > 0")


def validate_server_config(cfg: ServerConfig, prefix: str) -> None:
    if not isinstance(cfg.domain, str) or not cfg.domain:
        raise ConfigError(f"{prefix}.domain: must be a non-empty string")
    if isinstance(cfg.port, bool) or not isinstance(cfg.port, int) or not 0 <= cfg.port <= 65535:
        raise ConfigError(f"{prefix}.port: must be an integer 0..65535")
    if not cfg.auth or any(m not in MECHANISMS for m in cfg.auth):
        raise ConfigError(f"{prefix}.auth: must be a non-empty list of {list(MECHANISMS)}")
    if "EXTERNAL" in cfg.auth and cfg.cafile is None:
        raise ConfigError(f"{prefix}.cafile: required when auth includes EXTERNAL")
    if "PLAIN" in cfg.auth and not cfg.plain_users:
        raise ConfigError(f"{prefix}.plain_users: required when auth includes PLAIN")
    for n in (
        "max_stanza_bytes",
        "max_depth",
        "max_whitespace_bytes",
        "max_sessions",
        "max_preauth_connections",
        "max_preauth_per_address",
        "max_preauth_stanza_bytes",
        "max_write_buffer",
        "ping_misses",
    ):
        v = getattr(cfg, n)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{prefix}.{n}: must be an integer > 0")
    _positive(cfg, prefix, ("negotiation_timeout", "ping_interval"))
    if isinstance(cfg.retention, bool) or not isinstance(cfg.retention, int | float):
        raise ConfigError(f"{prefix}.retention: must be a number >= 0")
    if cfg.retention < 0:
        raise ConfigError(f"{prefix}.retention: must be a number >= 0")
    if cfg.duplicate not in ("takeover", "refuse"):
        raise ConfigError(f"{prefix}.duplicate: must be 'takeover' or 'refuse'")


def validate_client_config(cfg: ClientConfig, prefix: str) -> None:
    if "@" not in cfg.jid or cfg.jid.startswith("@") or cfg.jid.endswith("@"):
        raise ConfigError(f"{prefix}.jid: must be '<system id>@<domain>'")
    if isinstance(cfg.port, bool) or not isinstance(cfg.port, int) or not 0 < cfg.port <= 65535:
        raise ConfigError(f"{prefix}.port: must be an integer 1..65535")
    if (cfg.certfile is None) != (cfg.keyfile is None):
        raise ConfigError(f"{prefix}.keyfile: certfile and keyfile go together")
    if cfg.certfile is None and cfg.password is None:
        raise ConfigError(f"{prefix}.certfile: need certfile/keyfile (EXTERNAL) or password")
    _positive(cfg, prefix, ("ping_interval", "ping_timeout", "request_timeout"))


def _get(data: Mapping[str, Any], key: str, prefix: str, kind: type | tuple[type, ...]) -> Any:
    v = data[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{prefix}.{key}: must be {names}")
    return v


def server_config_from_toml(data: Mapping[str, Any], prefix: str = "xmpp") -> ServerConfig:
    """Build a ServerConfig from a parsed TOML table; unknown keys are errors."""
    known = set(ServerConfig.__dataclass_fields__)
    for k in data:
        if k not in known:
            raise ConfigError(f"{prefix}.{k}: unknown key")
    kw: dict[str, Any] = {}
    for k in ("domain", "host", "duplicate"):
        if k in data:
            kw[k] = _get(data, k, prefix, str)
    for k in ("certfile", "keyfile", "cafile"):
        if k in data:
            kw[k] = Path(_get(data, k, prefix, str))
    for k in ("domain", "certfile", "keyfile"):
        if k not in kw:
            raise ConfigError(f"{prefix}.{k}: required")
    for k in ("port", "max_stanza_bytes", "max_depth", "max_whitespace_bytes", "max_sessions",
              "max_preauth_connections", "max_preauth_per_address", "max_preauth_stanza_bytes",
              "max_write_buffer", "ping_misses"):  # fmt: skip
        if k in data:
            kw[k] = _get(data, k, prefix, int)
    for k in ("negotiation_timeout", "ping_interval", "retention"):
        if k in data:
            kw[k] = float(_get(data, k, prefix, (int, float)))
    if "own_nodes_only" in data:
        kw["own_nodes_only"] = _get(data, "own_nodes_only", prefix, bool)
    if "auth" in data:
        auth = _get(data, "auth", prefix, list)
        if not all(isinstance(m, str) for m in auth):
            raise ConfigError(f"{prefix}.auth: must be a list of strings")
        kw["auth"] = tuple(m.upper() for m in auth)
    if "plain_users" in data:
        users = _get(data, "plain_users", prefix, dict)
        for u, p in users.items():
            if not isinstance(p, str):
                raise ConfigError(f"{prefix}.plain_users.{u}: must be a string")
        kw["plain_users"] = MappingProxyType(dict(users))
    try:
        return ServerConfig(**kw)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{prefix}: {exc}") from None


def client_config_from_toml(data: Mapping[str, Any], prefix: str = "xmpp") -> ClientConfig:
    """Build a ClientConfig from a parsed TOML table; unknown keys are errors."""
    known = set(ClientConfig.__dataclass_fields__)
    for k in data:
        if k not in known:
            raise ConfigError(f"{prefix}.{k}: unknown key")
    kw: dict[str, Any] = {}
    for k in ("jid", "host", "password", "server_name"):
        if k in data:
            kw[k] = _get(data, k, prefix, str)
    for k in ("jid", "host"):
        if k not in kw:
            raise ConfigError(f"{prefix}.{k}: required")
    for k in ("certfile", "keyfile", "cafile"):
        if k in data:
            kw[k] = Path(_get(data, k, prefix, str))
    if "port" in data:
        kw["port"] = _get(data, "port", prefix, int)
    for k in ("ping_interval", "ping_timeout", "request_timeout"):
        if k in data:
            kw[k] = float(_get(data, k, prefix, (int, float)))
    return ClientConfig(**kw)


# ------------------------------------------------------------------- TLS


def server_ssl_context(cfg: ServerConfig) -> ssl.SSLContext:
    """TLS 1.2+ server context; asks for a client certificate when cafile is set.

    With EXTERNAL only, a verified client certificate is required; with PLAIN
    also offered, a certificate is optional (but verified when presented).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cfg.certfile), str(cfg.keyfile))
    if cfg.cafile is not None:
        ctx.load_verify_locations(cafile=str(cfg.cafile))
        ctx.verify_mode = ssl.CERT_REQUIRED if cfg.auth == ("EXTERNAL",) else ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(cfg: ClientConfig) -> ssl.SSLContext:
    """TLS client context: verifies the server against cafile (or system CAs)."""
    ctx = ssl.create_default_context(cafile=str(cfg.cafile) if cfg.cafile else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.certfile is not None and cfg.keyfile is not None:
        ctx.load_cert_chain(str(cfg.certfile), str(cfg.keyfile))
    return ctx


TLS_READ_BUFFER = 4 * 1024


def shrink_tls_read_buffer(writer: asyncio.StreamWriter) -> None:
    """asyncio's TLS protocol keeps a zero-filled 256 KiB read buffer per connection;
    4 KiB is enough for XMPP stanzas (reads just take more calls) and makes 10,000
    sessions affordable."""
    proto = getattr(writer.transport, "_ssl_protocol", None)
    if proto is None or not hasattr(proto, "_ssl_buffer") or not hasattr(proto, "max_size"):
        return  # another asyncio implementation: leave it alone
    proto.max_size = TLS_READ_BUFFER
    proto._ssl_buffer = bytearray(TLS_READ_BUFFER)
    proto._ssl_buffer_view = memoryview(proto._ssl_buffer)
