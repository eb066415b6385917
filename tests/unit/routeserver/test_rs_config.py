from __future__ import annotations

import pytest

from routeserver.config import ConfigError, load_dict, parse_route_target

BASE = {
    "server": {"router_id": "192.0.2.254", "asn": 64512},
    "vrf": [
        {"vpn": "tenant1", "import_targets": ["64512:100"], "export_targets": ["target:64512:100"]},
        {"vpn": "blue", "rd": "64512:7", "systems": ["0102*"], "import_targets": ["1.2.3.4:5"]},
    ],
}


def test_load_defaults_and_rd_assignment():
    cfg = load_dict(BASE)
    assert cfg.router_id == "192.0.2.254"
    assert cfg.local_address == "192.0.2.254"
    assert [v.rd for v in cfg.vrfs] == ["192.0.2.254:1", "64512:7"]
    assert cfg.vrfs[0].name == "tenant1"
    assert cfg.vrfs[0].export_targets == frozenset({"64512:100"})
    assert cfg.vrf_for("0102030405ab", "blue") is cfg.vrfs[1]
    assert cfg.vrf_for("aa02030405ab", "blue") is None
    assert cfg.vrf_for("AA02030405AB", "tenant1") is cfg.vrfs[0]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"server": {"asn": 1}}, "server.router_id: required"),
        ({"server": {"router_id": "x", "asn": 1}}, "server.router_id: 'x' is not an IPv4 address"),
        (
            {"server": {"router_id": "1.1.1.1", "asn": 0}},
            "server.asn: must be an integer 1..4294967295",
        ),
        ({"bogus": 1}, "bogus: unknown key"),
        (
            {"vrf": [{"vpn": "a", "import_targets": ["nope"]}]},
            "vrf[0].import_targets[0]: route target 'nope' is not 'ASN:number' or 'IPv4:number'",
        ),
        ({"vrf": [{"vpn": "a"}]}, "vrf[0]: needs import_targets or export_targets"),
        (
            {"vrf": [{"vpn": "a", "import_targets": ["1:1"], "isolated": "yes"}]},
            "vrf[0].isolated: must be true or false",
        ),
        (
            {"vrf": [{"vpn": "a", "rd": "1:1", "import_targets": ["1:1"]}] * 2},
            "vrf[1].name: 'a' already used by vrf[0]",
        ),
        (
            {"bgp": {"neighbor": [{"address": "1.1.1.1", "asn": 1, "families": ["evpn"]}]}},
            "bgp.neighbor[0].families[0]: 'evpn' is not one of vpnv4, vpnv6, rtc",
        ),
        ({"bgp": {"neighbor": [{"address": "1.1.1.1"}]}}, "bgp.neighbor[0].asn: required"),
        (
            {"vrf": [{"vpn": "caf\u00e9", "import_targets": ["1:1"]}]},
            "vrf[0].vpn: VPN name must be printable ASCII",
        ),
        (
            {"vrf": [{"vpn": "a\tb", "import_targets": ["1:1"]}]},
            "vrf[0].vpn: VPN name must be printable ASCII",
        ),
        (
            {"vrf": [{"vpn": "v" * 129, "import_targets": ["1:1"]}]},
            "vrf[0].vpn: VPN name is 129 octets, max 128",
        ),
        (
            {"vrf": [{"vpn": "a", "systems": ["01*", "0102-xyz*"], "import_targets": ["1:1"]}]},
            "vrf[0].systems[1]: '0102-xyz*' is not a system id pattern (hex digits and the "
            "fnmatch wildcards * ? [...] only)",
        ),
        (
            {"vrf": [{"vpn": "a", "systems": ["0102030405"], "import_targets": ["1:1"]}]},
            "vrf[0].systems[0]: '0102030405' can never match: a system id has 12 hex digits, "
            "this pattern needs 10",
        ),
        (
            {"vrf": [{"vpn": "a", "systems": ["0102030405a1b2*"], "import_targets": ["1:1"]}]},
            "vrf[0].systems[0]: '0102030405a1b2*' can never match: a system id has 12 hex "
            "digits, this pattern needs at least 14",
        ),
        (
            {"vrf": [{"vpn": "a", "systems": ["01[0-3*"], "import_targets": ["1:1"]}]},
            "vrf[0].systems[0]: '01[0-3*' has a bad or unbalanced [...] class",
        ),
        ({"xmpp": {"domain": "rs.test"}}, "xmpp.certfile: required"),
        ({"xmpp": {"domian": "rs.test"}}, "xmpp.domian: unknown key"),
    ],
)
def test_errors_name_the_key(patch, message):
    doc = {**BASE, **patch}
    with pytest.raises(ConfigError) as ei:
        load_dict(doc)
    assert str(ei.value).startswith(message)


def test_route_target_forms():
    assert parse_route_target("target:65000:1") == "65000:1"
    assert parse_route_target("4200000000:7") == "4200000000:7"
    assert parse_route_target("10.0.0.1:65535") == "10.0.0.1:65535"
    with pytest.raises(ValueError, match=r"number must be 0\.\.65535 after a 4-octet AS"):
        parse_route_target("4200000000:70000")


def test_example_config_loads():
    from pathlib import Path

    from routeserver.config import load

    cfg = load(Path(__file__).parents[3] / "examples" / "routeserver.toml")
    assert [(v.name, v.rd) for v in cfg.vrfs] == [
        ("tenant1", "192.0.2.254:1"),
        ("tenant2-spokes", "192.0.2.254:2"),
        ("tenant2-hub", "64512:2001"),
        ("tenant3", "192.0.2.254:4"),
    ]
    assert cfg.vrf_for("0a0000000001", "tenant2") is cfg.vrfs[2]
    assert cfg.vrf_for("020000000001", "tenant2") is cfg.vrfs[1]
    assert [v.isolated for v in cfg.vrfs] == [False, True, False, False]
    assert cfg.xmpp is not None and cfg.xmpp.retention == 60.0


def test_system_patterns_accepted_and_lowercased():
    doc = {
        **BASE,
        "vrf": [
            {"vpn": "a", "systems": ["0A*", "01020304050?", "01[0-3]*", "0102030405A1"],
             "import_targets": ["1:1"]}
        ],
    }  # fmt: skip
    cfg = load_dict(doc)
    assert cfg.vrfs[0].systems == ("0a*", "01020304050?", "01[0-3]*", "0102030405a1")
    for bad in ("01-2*", "01[]*", "01[x]*", "01[!0]0304050607080"):
        with pytest.raises(ConfigError, match=r"^vrf\[0\]\.systems\[0\]: "):
            load_dict({**BASE, "vrf": [{"vpn": "a", "systems": [bad], "import_targets": ["1:1"]}]})
    assert cfg.vrf_for("0120000000ff", "a") is cfg.vrfs[0]
    assert cfg.vrf_for("0140000000ff", "a") is None
