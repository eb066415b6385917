"""control.config: TOML -> frozen config; every error names its key."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from control.cli import table
from control.config import ConfigError, config_from_toml, load_config

BASE: dict[str, Any] = {
    "agent": {"system_id": "02:aa:00:00:00:01"},
    "switch": {"address": "127.0.0.1:9559", "p4info": "x.txtpb", "bmv2_json": "x.json"},
    "fabric": {
        "infra_address": "192.0.2.1",
        "ports": [1],
        "underlay": [
            {
                "prefix": "192.0.2.0/24",
                "port": 1,
                "src_mac": "02:00:00:00:00:01",
                "dst_mac": "02:00:00:00:00:fe",
            }
        ],
    },
    "end_systems": {"ports": {"0a0000000001": 3}},
    "xmpp": {
        "domain": "tor.test",
        "certfile": "tor.pem",
        "keyfile": "tor.key",
        "cafile": "ca.pem",
    },
    "route_servers": [
        {
            "jid": "02aa00000001@rs.test",
            "host": "rs.test",
            "certfile": "fwd.pem",
            "keyfile": "fwd.key",
            "cafile": "ca.pem",
        }
    ],
}


def with_(path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    cur = d
    for p in parents:
        cur = cur.setdefault(p, {})
    if value is None:
        del cur[leaf]
    else:
        cur[leaf] = value
    return d


def test_defaults() -> None:
    cfg = config_from_toml(BASE)
    assert cfg.system_id == bytes.fromhex("02aa00000001")
    assert cfg.switch.device_id == 0 and cfg.switch.election_id == 1
    assert cfg.fabric.infra_address == ipaddress.IPv4Address("192.0.2.1")
    assert cfg.fabric.underlay[0].dst_mac == 0x0200000000FE
    assert dict(cfg.end_system_ports) == {bytes.fromhex("0a0000000001"): 3}
    assert cfg.timers.stale == 60.0
    assert (cfg.labels.min, cfg.labels.max) == (16, (1 << 20) - 1)
    assert cfg.control == ("127.0.0.1", 9180)
    assert cfg.xmpp.domain == "tor.test"
    assert [r.jid for r in cfg.route_servers] == ["02aa00000001@rs.test"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("switch.device_id", -1, "switch.device_id: must be an integer 0..18446744073709551615"),
        (
            "switch.device_id",
            "0",
            "switch.device_id: must be an integer 0..18446744073709551615",
        ),
        ("switch.address", "nowhere", "switch.address: must be 'host:port'"),
        ("switch.p4info", None, "switch.p4info: required"),
        ("switch.colour", "red", "switch.colour: unknown key"),
        ("agent.system_id", "xyz", "agent.system_id: must be 12 hex digits"),
        ("fabric.infra_address", "300.1.1.1", "fabric.infra_address: must be an IPv4 address"),
        ("fabric.ports", [], "fabric.ports: must be a non-empty list of port numbers 0..510"),
        ("fabric.mtu", 100, "fabric.mtu: must be an integer 576..9216"),
        ("fabric.peers", ["x"], "fabric.peers[0]: must be an IPv4 address"),
        (
            "fabric.underlay",
            [
                {
                    "prefix": "192.0.2.1/24",
                    "port": 1,
                    "src_mac": "02:00:00:00:00:01",
                    "dst_mac": "02:00:00:00:00:fe",
                }
            ],
            "fabric.underlay[0].prefix: must be an IPv4 prefix (host bits zero)",
        ),
        (
            "fabric.underlay",
            [
                {
                    "prefix": "192.0.2.0/24",
                    "port": 1,
                    "src_mac": "zz",
                    "dst_mac": "02:00:00:00:00:fe",
                }
            ],
            "fabric.underlay[0].src_mac: must be a MAC address like 02:00:00:00:00:01",
        ),
        (
            "end_systems.ports",
            {"0a0000000001": 1},
            "end_systems.ports.0a0000000001: port 1 is a fabric port",
        ),
        (
            "end_systems.ports",
            {"nope": 3},
            "end_systems.ports.nope: key must be a 12 hex digit system id",
        ),
        ("timers.stale", 0, "timers.stale: must be a number > 0"),
        ("labels.min", 5, "labels.min: must be an integer 16..1048575"),
        ("labels.max", 17, None),
        ("xmpp.certfile", None, "xmpp.certfile: required"),
        ("xmpp", None, "xmpp: required (the end-systems' XMPP server)"),
        ("route_servers", None, "route_servers: required (at least one [[route_servers]])"),
        ("route_servers", [], "route_servers: must name at least one route server"),
        ("route_servers", {"host": "rs"}, "route_servers: must be an array of tables"),
        ("route_servers", [{"host": "rs"}], "route_servers[0].jid: required"),
    ],
)
def test_errors_name_the_key(path: str, value: Any, message: str | None) -> None:
    data = with_(path, value)
    if path == "labels.max":
        data["labels"]["min"] = 100
        message = "labels.max: must be >= labels.min"
    with pytest.raises(ConfigError) as exc:
        config_from_toml(data)
    assert str(exc.value) == message


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[switch\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)


def test_cli_table_format() -> None:
    rows = [
        {"vpn": "red", "vrf_id": 1, "addresses": ["10.1.1.5/32", "10.1.1.6/32"]},
        {"vpn": "blue-long", "vrf_id": 22, "addresses": []},
    ]
    assert table(rows) == (
        "VPN        VRF_ID  ADDRESSES\n"
        "red        1       10.1.1.5/32, 10.1.1.6/32\n"
        "blue-long  22      -\n"
    )
    assert table([]) == "(none)\n"
