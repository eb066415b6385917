"""Config from TOML: validated up front, errors name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from esxmpp.config import (
    ClientConfig,
    ConfigError,
    ServerConfig,
    client_config_from_toml,
    server_config_from_toml,
)

GOOD = """
[xmpp]
domain = "fwd1.example"
port = 5269
certfile = "/etc/esvpn/fwd1.pem"
keyfile = "/etc/esvpn/fwd1.key"
cafile = "/etc/esvpn/ca.pem"
auth = ["external", "PLAIN"]
plain_users = { "01020304abcd" = "secret" }
retention = 30
duplicate = "refuse"
own_nodes_only = false
"""


def test_server_config_from_toml() -> None:
    cfg = server_config_from_toml(tomllib.loads(GOOD)["xmpp"])
    assert cfg == ServerConfig(
        domain="fwd1.example",
        port=5269,
        certfile=Path("/etc/esvpn/fwd1.pem"),
        keyfile=Path("/etc/esvpn/fwd1.key"),
        cafile=Path("/etc/esvpn/ca.pem"),
        auth=("EXTERNAL", "PLAIN"),
        plain_users={"01020304abcd": "secret"},
        retention=30.0,
        duplicate="refuse",
        own_nodes_only=False,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("port = 70000", "xmpp.port: must be an integer 0..65535"),
        ("port = true", "xmpp.port: must be int"),
        ('duplicate = "both"', "xmpp.duplicate: must be 'takeover' or 'refuse'"),
        ('auth = ["DIGEST-MD5"]', "xmpp.auth: must be a non-empty list of"),
        ("max_sessions = 0", "xmpp.max_sessions: must be an integer > 0"),
        ("max_preauth_connections = 0", "xmpp.max_preauth_connections: must be an integer > 0"),
        ("max_preauth_per_address = -1", "xmpp.max_preauth_per_address: must be an integer > 0"),
        ("max_preauth_stanza_bytes = 1.5", "xmpp.max_preauth_stanza_bytes: must be int"),
        ("max_whitespace_bytes = 0", "xmpp.max_whitespace_bytes: must be an integer > 0"),
        ('max_whitespace_bytes = "1"', "xmpp.max_whitespace_bytes: must be int"),
        ("retention = -1", "xmpp.retention: must be a number >= 0"),
        ("ping_interval = 0", "xmpp.ping_interval: must be a number > 0"),
        ("colour = 1", "xmpp.colour: unknown key"),
        ("plain_users = { a = 1 }", "xmpp.plain_users.a: must be a string"),
    ],
)
def test_server_config_errors_name_the_key(change: str, message: str) -> None:
    data = tomllib.loads(GOOD)["xmpp"]
    data.update(tomllib.loads(change))
    with pytest.raises(ConfigError) as info:
        server_config_from_toml(data)
    assert str(info.value).startswith(message)


def test_server_config_requires_ca_for_external_and_users_for_plain() -> None:
    data = tomllib.loads(GOOD)["xmpp"]
    del data["cafile"]
    with pytest.raises(ConfigError, match=r"^xmpp\.cafile: required when auth includes EXTERNAL"):
        server_config_from_toml(data)
    data = tomllib.loads(GOOD)["xmpp"]
    del data["plain_users"]
    with pytest.raises(ConfigError, match=r"^xmpp\.plain_users: required when auth"):
        server_config_from_toml(data)
    with pytest.raises(ConfigError, match=r"^rs\.domain: required"):
        server_config_from_toml({}, prefix="rs")


def test_client_config() -> None:
    cfg = client_config_from_toml(
        {"jid": "01020304abcd@rs1", "host": "10.0.0.1", "password": "pw", "port": 5222}
    )
    assert cfg == ClientConfig(jid="01020304abcd@rs1", host="10.0.0.1", password="pw")
    with pytest.raises(ConfigError, match=r"^xmpp\.certfile: need certfile/keyfile"):
        client_config_from_toml({"jid": "a@b", "host": "h"})
    with pytest.raises(ConfigError, match=r"^xmpp\.jid: must be '<system id>@<domain>'"):
        client_config_from_toml({"jid": "ab", "host": "h", "password": "x"})
    with pytest.raises(ConfigError, match=r"^xmpp\.keyfile: certfile and keyfile go together"):
        client_config_from_toml({"jid": "a@b", "host": "h", "certfile": "/c.pem"})
