from __future__ import annotations

import json
from ipaddress import ip_address, ip_network

import pytest

from routeserver.config import load_dict
from routeserver.exabgp_adapter import (
    BgpInputError,
    PeerOpen,
    command_for,
    parse_message,
    render_config,
    version_community,
)
from routeserver.rib import (
    BgpAnnounce,
    BgpAttrs,
    BgpEndOfRib,
    BgpPeerDown,
    BgpPeerUp,
    BgpRouteAdd,
    BgpRouteDel,
    BgpRtcAdd,
    BgpRtcDel,
    BgpWithdraw,
    RtcAnnounce,
    RtcPrefix,
    RtcWithdraw,
    VpnRoute,
)

CFG = load_dict(
    {
        "server": {"router_id": "10.255.0.1", "asn": 64512},
        "bgp": {
            "graceful_restart": 90,
            "neighbor": [
                {"address": "127.0.0.2", "asn": 64512, "port": 1790},
                {"address": "192.0.2.9", "asn": 65001, "families": ["vpnv4"]},
            ],
        },
        "vrf": [{"vpn": "red", "import_targets": ["64512:100"]}],
    }
)
HEAD = '"exabgp": "5.0.0", "time": 1.0, "host": "vm", "pid": 1, "ppid": 1, "counter": 1'
NEI = (
    '"address": {"local": "10.255.0.1", "peer": "127.0.0.2"}, '
    '"asn": {"local": 64512, "peer": 64512}'
)


def msg(kind: str, body: str) -> str:
    return f'{{ {HEAD}, "type": "{kind}", "neighbor": {{ {NEI}, {body} }} }}'


def update_line(upd: dict) -> str:
    return msg("update", f'"direction": "receive", "message": {{"update": {json.dumps(upd)}}}')


#: one VPN-IPv4 and one VPN-IPv6 route from next hop 192.0.2.22 (ExaBGP's JSON)
VPN_ANNOUNCE = {
    "ipv4 mpls-vpn": {"192.0.2.22": [{"nlri": "10.2.2.2/32", "label": [[20000]], "rd": "64512:7"}]},
    "ipv6 mpls-vpn": {
        "::ffff:192.0.2.22": [{"nlri": "2001:db8::2/128", "label": [[20001]], "rd": "1.2.3.4:7"}]
    },
}


def vpn4(nlri: str, rd: str, attribute: str = "{}") -> str:
    route = f'{{"nlri": "{nlri}", "label": [[16]], "rd": "{rd}"}}'
    ann = f'{{"ipv4 mpls-vpn": {{"192.0.2.1": [{route}]}}}}'
    return msg(
        "update", f'"message": {{"update": {{"attribute": {attribute}, "announce": {ann}}}}}'
    )


def test_render_config_exact():
    assert render_config(CFG, "/py -m relay /s") == "\n".join(
        [
            "process esvpn-rs {",
            "  run /py -m relay /s;",
            "  encoder json;",
            "}",
            "",
            "neighbor 127.0.0.2 {",
            "  router-id 10.255.0.1;",
            "  local-address 10.255.0.1;",
            "  local-as 64512;",
            "  peer-as 64512;",
            "  connect 1790;",
            "  family { ipv4 mpls-vpn; ipv6 mpls-vpn; ipv4 rtc; }",
            "  capability {",
            "    route-refresh;",
            "    graceful-restart 90;",
            "  }",
            "  api {",
            "    processes [ esvpn-rs ];",
            "    receive { parsed; update; open; notification; }",
            "    send { parsed; notification; }",
            "    neighbor-changes;",
            "  }",
            "}",
            "",
            "neighbor 192.0.2.9 {",
            "  router-id 10.255.0.1;",
            "  local-address 10.255.0.1;",
            "  local-as 64512;",
            "  peer-as 65001;",
            "  family { ipv4 mpls-vpn; }",
            "  capability {",
            "    route-refresh;",
            "    graceful-restart 90;",
            "  }",
            "  api {",
            "    processes [ esvpn-rs ];",
            "    receive { parsed; update; open; notification; }",
            "    send { parsed; notification; }",
            "    neighbor-changes;",
            "  }",
            "}",
            "",
        ]
    )


def test_commands_exact():
    r4 = VpnRoute("10.255.0.1:1", ip_network("10.1.1.1/32"), 10000, ip_address("192.0.2.11"),
                  frozenset({"64512:100", "1.2.3.4:5"}), 7)  # fmt: skip
    r6 = VpnRoute("10.255.0.1:1", ip_network("2001:db8::1/128"), 10001, ip_address("192.0.2.11"),
                  frozenset({"64512:100"}))  # fmt: skip
    assert command_for(BgpAnnounce("127.0.0.2", r4), CFG) == (
        "neighbor 127.0.0.2 announce route 10.1.1.1/32 rd 10.255.0.1:1 label 10000 "
        "next-hop 192.0.2.11 origin igp local-preference 100 extended-community "
        "[ target:1.2.3.4:5 target:64512:100 0x8e01000000000007 ]"
    )
    assert command_for(BgpAnnounce("192.0.2.9", r6), CFG) == (
        "neighbor 192.0.2.9 announce route 2001:db8::1/128 rd 10.255.0.1:1 label 10001 "
        "next-hop ::ffff:192.0.2.11 origin igp extended-community [ target:64512:100 ]"
    )
    assert command_for(BgpWithdraw("127.0.0.2", r4), CFG) == (
        "neighbor 127.0.0.2 withdraw route 10.1.1.1/32 rd 10.255.0.1:1 label 10000 "
        "next-hop 192.0.2.11"
    )
    assert command_for(RtcAnnounce("127.0.0.2", "64512:100"), CFG) == (
        "neighbor 127.0.0.2 announce rtc 64512 64512:100 next-hop 10.255.0.1"
    )
    assert command_for(RtcWithdraw("127.0.0.2", "64512:100"), CFG) == (
        "neighbor 127.0.0.2 withdraw rtc 64512 64512:100 next-hop 10.255.0.1"
    )
    assert version_community(0xFFFFFFFF) == "0x8e010000ffffffff"


def test_parse_session_events_and_gr_from_open():
    opens = PeerOpen({})
    open_msg = msg(
        "open",
        '"direction": "receive", "open": {"version": 4, "capabilities": {"64": '
        '{"name": "graceful restart", "time": 90}}}',
    )
    assert parse_message(open_msg, opens) == []
    assert parse_message(msg("state", '"state": "connected"'), opens) == []
    # no multiprotocol capability in that OPEN: the peer negotiated none of our families
    assert parse_message(msg("state", '"state": "up"'), opens) == [
        BgpPeerUp("127.0.0.2", 90, frozenset())
    ]
    assert parse_message(msg("state", '"state": "down", "reason": "x"'), opens) == [
        BgpPeerDown("127.0.0.2")
    ]
    eor = msg(
        "update", '"direction": "receive", "message": {"eor": {"afi": "ipv6", "safi": "mpls-vpn"}}'
    )
    assert parse_message(eor, opens) == [BgpEndOfRib("127.0.0.2", "vpnv6")]


def test_parse_updates():
    rt100 = (0x0002 << 48) | (64512 << 32) | 100
    ver = (0x8E01 << 48) | 9
    upd = {
        "attribute": {
            "origin": "incomplete",
            # ExaBGP 5's form: segments by position
            "as-path": {
                "0": {"element": "as-sequence", "value": [65001, 65002]},
                "1": {"element": "as-set", "value": [65009, 65003]},
            },
            "med": 5,
            "local-preference": 200,
            "originator-id": "127.0.0.9",
            "cluster-list": ["127.0.6.2", "127.0.6.4"],
            "community": [[65001, 100], [65535, 65281]],
            "extended-community": [
                {"value": rt100, "string": "target:64512:100"},
                {"value": ver},
                {"value": 0x030C00000000_0008},  # an encapsulation community: kept as hex
            ],
        },
        "announce": {
            **VPN_ANNOUNCE,
            "ipv4 rtc": {
                "127.0.0.2": [
                    {"origin": 64512, "route-target": "target:64512:100"},
                    {"origin": 0, "route-target": None},
                    {"origin": 64513, "length": 80, "value": 0x0002FC0000000000},
                ]
            },
        },
        "withdraw": {
            "ipv4 mpls-vpn": [{"nlri": "10.3.3.3/32", "label": [[3]], "rd": "64512:8"}],
            "ipv4 rtc": [{"origin": 64512, "route-target": "target:64512:200"}],
        },
    }
    line = update_line(upd)
    attrs = BgpAttrs(
        200, (65001, 65002, 65003), 2, 5, "127.0.0.9", 2, ((65009, 65003),),
        cluster_list=("127.0.6.2", "127.0.6.4"),
        communities=("65001:100", "65535:65281"),
        ext_communities=("0x030c000000000008",),
    )  # fmt: skip
    assert parse_message(line, PeerOpen({})) == [
        BgpRouteDel("127.0.0.2", "64512:8", ip_network("10.3.3.3/32")),
        BgpRtcDel("127.0.0.2", "64512:200"),
        BgpRouteAdd(
            "127.0.0.2",
            "64512:7",
            ip_network("10.2.2.2/32"),
            20000,
            ip_address("192.0.2.22"),
            frozenset({"64512:100"}),
            9,
            attrs,
        ),
        BgpRouteAdd(
            "127.0.0.2",
            "1.2.3.4:7",
            ip_network("2001:db8::2/128"),
            20001,
            ip_address("192.0.2.22"),
            frozenset({"64512:100"}),
            9,
            attrs,
        ),
        BgpRtcAdd("127.0.0.2", "64512:100"),
        BgpRtcAdd("127.0.0.2", None),
        BgpRtcAdd("127.0.0.2", RtcPrefix(64513, 0x0002FC0000000000, 80)),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{", "not JSON"),
        (
            '{"type": "state", "neighbor": {"address": {"peer": "x"}}}',
            "message without a valid neighbor.address.peer",
        ),
        (
            vpn4("2001:db8::/64", "1:1"),
            "vpnv4: prefix 2001:db8::/64 of the wrong address family",
        ),
        (
            vpn4("10.0.0.0/8", "junk"),
            "vpnv4: route distinguisher 'junk' is not",
        ),
        (
            vpn4("10.0.0.0/8", "1:1", '{"origin": "bogus"}'),
            "unknown origin 'bogus'",
        ),
    ],
)
def test_bad_messages_are_refused_precisely(body, error):
    with pytest.raises(BgpInputError) as ei:
        parse_message(body, PeerOpen({}))
    assert str(ei.value).startswith(error)


def test_bad_route_in_an_update_is_treated_as_withdrawn():
    """RFC 7606: the rest of the UPDATE is used; the bad route is withdrawn, not kept."""
    rt100 = (0x0002 << 48) | (64512 << 32) | 100
    upd = {
        "attribute": {"origin": "igp", "extended-community": [{"value": rt100}]},
        "announce": {
            "ipv4 mpls-vpn": {
                "192.0.2.22": [
                    {"nlri": "10.2.2.2/32", "label": [[20000]], "rd": "64512:7"},
                    {"nlri": "10.2.2.3/32", "label": [["x"]], "rd": "64512:7"},
                    {"nlri": "10.2.2.4/33", "label": [[20002]], "rd": "64512:7"},
                ]
            }
        },
        "withdraw": {"ipv4 mpls-vpn": [{"nlri": "10.3.3.3/32", "rd": "junk"}]},
    }
    errors: list[BgpInputError] = []
    assert parse_message(update_line(upd), PeerOpen({}), errors) == [
        BgpRouteAdd("127.0.0.2", "64512:7", ip_network("10.2.2.2/32"), 20000,
                    ip_address("192.0.2.22"), frozenset({"64512:100"})),
        BgpRouteDel("127.0.0.2", "64512:7", ip_network("10.2.2.3/32")),
    ]  # fmt: skip
    assert [str(e) for e in errors] == [
        "vpnv4: route distinguisher 'junk' is not 'ASN:number' or 'IPv4:number'",
        "vpnv4: bad label [['x']]; 64512:7:10.2.2.3/32 treated as withdrawn (RFC 7606)",
        "vpnv4: bad prefix '10.2.2.4/33'",
    ]


def test_bad_attribute_withdraws_every_route_of_the_update():
    upd = {
        "attribute": {"origin": "igp", "local-preference": "high"},
        "announce": {
            **VPN_ANNOUNCE,
            "ipv4 rtc": {"127.0.0.2": [{"origin": 64512, "route-target": "target:64512:100"}]},
        },
    }
    errors: list[BgpInputError] = []
    assert parse_message(update_line(upd), PeerOpen({}), errors) == [
        BgpRouteDel("127.0.0.2", "64512:7", ip_network("10.2.2.2/32")),
        BgpRouteDel("127.0.0.2", "1.2.3.4:7", ip_network("2001:db8::2/128")),
        BgpRtcDel("127.0.0.2", "64512:100"),
    ]
    assert [str(e) for e in errors] == [
        "local-preference and med must be numbers; its routes are treated as withdrawn (RFC 7606)"
    ]
    # without an error list the first problem is raised (strict parsing)
    with pytest.raises(BgpInputError, match="local-preference and med must be numbers"):
        parse_message(update_line(upd), PeerOpen({}))
