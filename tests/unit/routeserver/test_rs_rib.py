from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

import pytest

from routeserver.config import load_dict
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
    FwdEndOfRib,
    FwdRoute,
    FwdRoutes,
    FwdWithdraw,
    Rib,
    RibError,
    RtcAnnounce,
    RtcWithdraw,
    VpnRoute,
    XmppRouteAdd,
    XmppRouteDel,
    XmppSubscribe,
    XmppUnsubscribe,
)

H1, H2, HUB = "0102030405a1", "0102030405a2", "0a0000000001"
PE, PE2 = "192.0.2.1", "192.0.2.2"


def cfg(**bgp):
    return load_dict(
        {
            "server": {"router_id": "10.255.0.1", "asn": 64512},
            "bgp": {
                "neighbor": [
                    {"address": PE, "asn": 64512, "families": ["vpnv4", "vpnv6", "rtc"]},
                    {"address": PE2, "asn": 65001, "families": ["vpnv4", "vpnv6"]},
                ]
            },
            "vrf": [
                {"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:100"]},
                # hub and spoke: spokes export S, import H; the hub the reverse
                {
                    "vpn": "tenant1",
                    "systems": ["0102*"],
                    "isolated": True,
                    "import_targets": ["64512:201"],
                    "export_targets": ["64512:200"],
                },
                {
                    "name": "tenant1-hub",
                    "vpn": "tenant1",
                    "systems": ["0a*"],
                    "import_targets": ["64512:200"],
                    "export_targets": ["64512:201"],
                },
            ],
        }
    )


def live(config):
    """A RIB whose configured peers are established (routes go to those only)."""
    rib = Rib(config)
    for n in config.neighbors:
        rib.handle(BgpPeerUp(n.address, 0), 0)
        for fam in ("vpnv4", "vpnv6"):  # its initial routes are in
            rib.handle(BgpEndOfRib(n.address, fam), 0)
    return rib


def n(s):
    return ip_network(s)


def a(s):
    return ip_address(s)


def test_symmetric_vpn_xmpp_to_bgp_and_forwarders():
    rib = live(cfg())
    out = rib.handle(XmppSubscribe(H1, "red"), 0)
    # End-of-RIB waits for the routes our RTC route pulls in from PE
    # (unacknowledged, at most EOR_WAIT; acknowledged, RTC_ROUTES_WAIT from then)
    assert out == [RtcAnnounce(PE, "64512:100")]
    assert rib.next_deadline() == 10.0
    rib.rtc_sent(PE, "64512:100", 0.5)
    assert rib.next_deadline() == 1.5
    assert rib.expire(1.49) == []
    assert rib.expire(1.5) == [FwdEndOfRib(H1, "red")]
    out = rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 10000, 1), 0)
    route = VpnRoute(
        "192.0.2.11:1", n("10.1.1.1/32"), 10000, a("192.0.2.11"), frozenset({"64512:100"}), 1
    )
    # PE negotiated RTC but has not asked for 64512:100 yet; PE2 has no RTC
    assert out == [
        FwdRoutes(H1, "red", (FwdRoute(n("10.1.1.1/32"), a("192.0.2.11"), 10000, 1),)),
        BgpAnnounce(PE2, route),
    ]
    assert rib.handle(BgpRtcAdd(PE, "64512:100"), 0) == [BgpAnnounce(PE, route)]
    # a second forwarder subscribing gets the table and the end-of-RIB marker (the
    # routes our RTC route pulled in had RTC_ROUTES_WAIT to come)
    rib.rtc_sent(PE, "64512:100", 0)
    assert rib.handle(XmppSubscribe(H2, "red"), 1) == [
        FwdRoutes(H2, "red", (FwdRoute(n("10.1.1.1/32"), a("192.0.2.11"), 10000, 1),)),
        FwdEndOfRib(H2, "red"),
    ]
    out = rib.handle(XmppRouteDel(H1, "red", n("10.1.1.1/32")), 0)
    assert out == [
        FwdWithdraw(H1, "red", (n("10.1.1.1/32"),)),
        FwdWithdraw(H2, "red", (n("10.1.1.1/32"),)),
        BgpWithdraw(PE, route),
        BgpWithdraw(PE2, route),
    ]
    assert rib.handle(XmppUnsubscribe(H1, "red"), 0) == []
    assert rib.handle(XmppUnsubscribe(H2, "red"), 0) == [RtcWithdraw(PE, "64512:100")]


def test_bgp_route_imported_by_target_only():
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(XmppSubscribe(H2, "tenant1"), 0)
    out = rib.handle(
        BgpRouteAdd(
            PE, "64512:7", n("10.2.2.2/32"), 20000, a("192.0.2.22"), frozenset({"64512:100"})
        ),
        0,
    )
    assert out == [FwdRoutes(H1, "red", (FwdRoute(n("10.2.2.2/32"), a("192.0.2.22"), 20000, 0),))]
    out = rib.handle(
        BgpRouteAdd(
            PE, "64512:8", n("10.3.3.3/32"), 30000, a("192.0.2.33"), frozenset({"64512:999"})
        ),
        0,
    )
    assert out == []
    assert rib.handle(BgpRouteDel(PE, "64512:7", n("10.2.2.2/32")), 0) == [
        FwdWithdraw(H1, "red", (n("10.2.2.2/32"),))
    ]


def test_hub_and_spoke():
    rib = live(cfg())
    for sid in (H1, H2, HUB):
        rib.handle(XmppSubscribe(sid, "tenant1"), 0)
    rib.handle(BgpRtcAdd(PE, None), 0)
    spoke = FwdRoute(n("10.9.0.1/32"), a("192.0.2.11"), 100)
    out = rib.handle(XmppRouteAdd(H1, "tenant1", spoke.prefix, spoke.nexthop, 100), 0)
    # a spoke's route goes to the hub (and to BGP with the spoke target), not to spoke H2
    spoke_vpn = VpnRoute("192.0.2.11:2", spoke.prefix, 100, spoke.nexthop, frozenset({"64512:200"}))
    assert out == [
        BgpAnnounce(PE, spoke_vpn),
        BgpAnnounce(PE2, spoke_vpn),
        FwdRoutes(HUB, "tenant1", (spoke,)),
    ]
    spoke2 = FwdRoute(n("10.9.0.2/32"), a("192.0.2.12"), 200)
    out = rib.handle(XmppRouteAdd(H2, "tenant1", spoke2.prefix, spoke2.nexthop, 200), 0)
    assert [o for o in out if isinstance(o, FwdRoutes)] == [FwdRoutes(HUB, "tenant1", (spoke2,))]
    # the hub's default route goes to both spokes (and the hub's own VRF)
    hub = FwdRoute(n("0.0.0.0/0"), a("192.0.2.99"), 500)
    out = rib.handle(XmppRouteAdd(HUB, "tenant1", hub.prefix, hub.nexthop, 500), 0)
    assert [o for o in out if isinstance(o, FwdRoutes)] == [
        FwdRoutes(H1, "tenant1", (hub,)),
        FwdRoutes(H2, "tenant1", (hub,)),
        FwdRoutes(HUB, "tenant1", (hub,)),
    ]
    assert rib.table("tenant1") == (hub,)  # the spokes' VRF
    assert rib.table("tenant1-hub") == (hub, spoke, spoke2)
    # another spoke's route from BGP (spoke target) stays away from the spokes too
    out = rib.handle(
        BgpRouteAdd(PE, "64512:5", n("10.9.0.3/32"), 300, a("192.0.2.13"),
                    frozenset({"64512:200"})), 0,
    )  # fmt: skip
    assert out == [FwdRoutes(HUB, "tenant1", (FwdRoute(n("10.9.0.3/32"), a("192.0.2.13"), 300),))]


def test_extranet_routes_flow_between_the_extranet_vrfs_only():
    doc = {
        "server": {"router_id": "10.255.0.1", "asn": 64512},
        "bgp": {"neighbor": [{"address": PE2, "asn": 65001, "families": ["vpnv4"]}]},
        "vrf": [
            # two tenants, each also importing shared services; shared imports both
            {"vpn": "t3", "systems": ["03*"], "import_targets": ["64512:300", "64512:999"],
             "export_targets": ["64512:300"]},
            {"vpn": "t4", "systems": ["04*"], "import_targets": ["64512:400", "64512:999"],
             "export_targets": ["64512:400"]},
            {"vpn": "shared", "systems": ["05*"], "import_targets": ["64512:300", "64512:400"],
             "export_targets": ["64512:999"]},
        ],
    }  # fmt: skip
    rib = Rib(load_dict(doc))
    t3, t4, sh = "030000000001", "040000000001", "050000000001"
    rib.handle(XmppSubscribe(t3, "t3"), 0)
    rib.handle(XmppSubscribe(t4, "t4"), 0)
    rib.handle(XmppSubscribe(sh, "shared"), 0)

    def fwd(out):
        return [(o.system_id, o.vpn, o.routes) for o in out if isinstance(o, FwdRoutes)]

    r3 = FwdRoute(n("10.3.0.1/32"), a("192.0.2.3"), 300)
    r4 = FwdRoute(n("10.4.0.1/32"), a("192.0.2.4"), 400)
    rs = FwdRoute(n("10.99.0.1/32"), a("192.0.2.99"), 999)
    # a tenant's route reaches shared services, never the other tenant
    assert fwd(rib.handle(XmppRouteAdd(t3, "t3", r3.prefix, r3.nexthop, 300), 0)) == [
        (t3, "t3", (r3,)),
        (sh, "shared", (r3,)),
    ]
    assert fwd(rib.handle(XmppRouteAdd(t4, "t4", r4.prefix, r4.nexthop, 400), 0)) == [
        (t4, "t4", (r4,)),
        (sh, "shared", (r4,)),
    ]
    # shared services reach both tenants
    assert fwd(rib.handle(XmppRouteAdd(sh, "shared", rs.prefix, rs.nexthop, 999), 0)) == [
        (t3, "t3", (rs,)),
        (t4, "t4", (rs,)),
        (sh, "shared", (rs,)),
    ]
    # and so does a BGP route with the shared target; one with t4's target only t4 and shared
    out = rib.handle(
        BgpRouteAdd(PE2, "65001:1", n("10.99.0.2/32"), 1999, a("192.0.2.98"),
                    frozenset({"64512:999"})), 0,
    )  # fmt: skip
    assert [o.system_id for o in out if isinstance(o, FwdRoutes)] == [t3, t4]
    out = rib.handle(
        BgpRouteAdd(PE2, "65001:1", n("10.4.0.2/32"), 1400, a("192.0.2.97"),
                    frozenset({"64512:400"})), 0,
    )  # fmt: skip
    assert [o.system_id for o in out if isinstance(o, FwdRoutes)] == [t4, sh]
    assert [r.prefix for r in rib.table("t3")] == [r3.prefix, rs.prefix, n("10.99.0.2/32")]


def test_version_decides_moving_address():
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 100, 1), 0)
    out = rib.handle(
        BgpRouteAdd(
            PE, "64512:7", n("10.1.1.1/32"), 200, a("192.0.2.22"), frozenset({"64512:100"}), 2
        ),
        0,
    )
    assert out == [FwdRoutes(H1, "red", (FwdRoute(n("10.1.1.1/32"), a("192.0.2.22"), 200, 2),))]
    # an older instantiation elsewhere does not win
    out = rib.handle(
        BgpRouteAdd(
            PE2, "64512:9", n("10.1.1.1/32"), 300, a("192.0.2.33"), frozenset({"64512:100"}), 0
        ),
        0,
    )
    assert out == []


def route(peer, nh, **attrs):
    return BgpRouteAdd(
        peer, "1:1", n("10.5.0.0/16"), 16, a(nh), frozenset({"64512:100"}), 0, BgpAttrs(**attrs)
    )


@pytest.mark.parametrize(
    ("r1", "r2"),
    [
        (route(PE, "192.0.2.101", local_pref=200), route(PE2, "192.0.2.102")),
        (route(PE2, "192.0.2.101", as_path=(65001,)), route(PE, "192.0.2.102", as_path=(1, 2))),
        (route(PE2, "192.0.2.101", origin=0), route(PE, "192.0.2.102", origin=2)),
        (route(PE2, "192.0.2.101", as_path=(65001,)), route(PE, "192.0.2.102", as_path=(64999,))),
        (
            route(PE, "192.0.2.101", as_path=(7,), med=5),
            route(PE2, "192.0.2.102", as_path=(7,), med=10),
        ),
        (
            route(PE, "192.0.2.101", originator_id="1.1.1.1"),
            route(PE, "192.0.2.102", originator_id="2.2.2.2"),
        ),
        # RFC 4456 §9: same ORIGINATOR_ID (router id), then the shorter CLUSTER_LIST...
        (
            route(PE, "192.0.2.101", originator_id="1.1.1.1", cluster_list_len=1),
            route(PE, "192.0.2.102", originator_id="1.1.1.1", cluster_list_len=2),
        ),
        # ... which comes after the router id: a lower ORIGINATOR_ID wins on a longer list
        (
            route(PE, "192.0.2.101", originator_id="1.1.1.1", cluster_list_len=3),
            route(PE, "192.0.2.102", originator_id="2.2.2.2", cluster_list_len=1),
        ),
        # eBGP over iBGP before the router id
        (
            route(PE2, "192.0.2.101", originator_id="9.9.9.9"),
            route(PE, "192.0.2.102", originator_id="1.1.1.1"),
        ),
    ],
)
def test_decision_process(r1, r2):
    for first, second in ((r1, r2), (r2, r1)):
        rib = Rib(cfg())
        rib.handle(XmppSubscribe(H1, "red"), 0)
        rib.handle(first, 0)
        rib.handle(replace_rd(second), 0)
        sel = [r for r in rib.show_routes("red") if r["best"]]
        assert [r["nexthop"] for r in sel] == ["192.0.2.101"]


def replace_rd(r):
    from dataclasses import replace

    return replace(r, rd="2:2")


def test_graceful_restart_keeps_then_sweeps():
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(BgpPeerUp(PE, 120), 0)
    rib.handle(
        BgpRouteAdd(PE, "1:1", n("10.7.0.1/32"), 77, a("192.0.2.7"), frozenset({"64512:100"})), 0
    )
    rib.handle(
        BgpRouteAdd(PE, "1:1", n("10.7.0.2/32"), 78, a("192.0.2.7"), frozenset({"64512:100"})), 0
    )
    assert rib.handle(BgpPeerDown(PE), 10) == []
    assert rib.next_deadline() == 130
    assert [r["stale"] for r in rib.show_routes("red")] == [True, True]
    rib.handle(BgpPeerUp(PE, 120), 20)
    rib.handle(
        BgpRouteAdd(PE, "1:1", n("10.7.0.1/32"), 77, a("192.0.2.7"), frozenset({"64512:100"})), 20
    )
    out = rib.handle(BgpEndOfRib(PE, "vpnv4"), 21)
    assert out == [FwdWithdraw(H1, "red", (n("10.7.0.2/32"),))]
    assert rib.next_deadline() is None


def test_graceful_restart_timer_and_no_gr():
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(BgpPeerUp(PE, 30), 0)
    rib.handle(
        BgpRouteAdd(PE, "1:1", n("10.7.0.1/32"), 77, a("192.0.2.7"), frozenset({"64512:100"})), 0
    )
    rib.handle(BgpPeerDown(PE), 0)
    assert rib.expire(29.9) == []
    assert rib.expire(30) == [FwdWithdraw(H1, "red", (n("10.7.0.1/32"),))]
    rib.handle(BgpPeerUp(PE2, 0), 0)
    rib.handle(
        BgpRouteAdd(PE2, "1:1", n("10.7.0.3/32"), 77, a("192.0.2.7"), frozenset({"64512:100"})), 0
    )
    assert rib.handle(BgpPeerDown(PE2), 1) == [FwdWithdraw(H1, "red", (n("10.7.0.3/32"),))]


def test_bad_input_is_refused_precisely():
    rib = Rib(cfg())
    with pytest.raises(RibError, match=r"no VRF configured for system ffffffffffff in VPN 'nope'"):
        rib.handle(XmppSubscribe("ffffffffffff", "nope"), 0)
    with pytest.raises(RibError, match=r"BGP peer 203\.0\.113\.9 is not configured"):
        rib.handle(BgpRtcAdd("203.0.113.9", None), 0)
    with pytest.raises(RibError, match=r"IPv4 prefix 10\.0\.0\.1/32 with IPv6 next hop"):
        rib.handle(XmppRouteAdd(H1, "red", n("10.0.0.1/32"), a("2001:db8::1"), 16), 0)
    assert rib.sizes()["xmpp_paths"] == 0


def test_rtc_wildcard_and_withdraw_on_rtc_loss():
    rib = live(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(XmppRouteAdd(H1, "red", n("2001:db8::1/128"), a("2001:db8:ffff::11"), 99), 0)
    route = VpnRoute(
        "10.255.0.1:1", n("2001:db8::1/128"), 99, a("2001:db8:ffff::11"), frozenset({"64512:100"})
    )
    assert rib.handle(BgpRtcAdd(PE, None), 0) == [BgpAnnounce(PE, route)]
    assert rib.handle(BgpRtcDel(PE, None), 0) == [BgpWithdraw(PE, route)]


def test_rtc_filter_out_can_be_turned_off_per_peer():
    doc = {
        "server": {"router_id": "10.255.0.1", "asn": 64512},
        "bgp": {"neighbor": [{"address": PE, "asn": 64512, "rtc_filter_out": False}]},
        "vrf": [{"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:1"]}],
    }
    rib = live(load_dict(doc))
    assert rib.handle(XmppSubscribe(H1, "red"), 0) == [RtcAnnounce(PE, "64512:100")]
    assert rib.expire(10.0) == [FwdEndOfRib(H1, "red")]
    out = rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 16), 0)
    route = VpnRoute("192.0.2.11:1", n("10.1.1.1/32"), 16, a("192.0.2.11"), frozenset({"64512:1"}))
    assert out == [
        FwdRoutes(H1, "red", (FwdRoute(n("10.1.1.1/32"), a("192.0.2.11"), 16, 0),)),
        BgpAnnounce(PE, route),
    ]


def test_only_configured_families_are_advertised():
    doc = {
        "server": {"router_id": "10.255.0.1", "asn": 64512},
        "bgp": {"neighbor": [{"address": PE2, "asn": 65001, "families": ["vpnv4"]}]},
        "vrf": [{"vpn": "red", "import_targets": ["64512:100"], "export_targets": ["64512:100"]}],
    }
    rib = live(load_dict(doc))
    rib.handle(XmppSubscribe(H1, "red"), 0)
    out = rib.handle(XmppRouteAdd(H1, "red", n("2001:db8::1/128"), a("192.0.2.11"), 16), 0)
    assert [type(o).__name__ for o in out] == ["FwdRoutes"]


def test_own_route_reflected_back_is_ignored():
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    own = BgpRouteAdd(
        PE, "10.255.0.1:1", n("10.1.1.1/32"), 16, a("192.0.2.11"), frozenset({"64512:100"}),
        attrs=BgpAttrs(originator_id="10.255.0.1"),
    )  # fmt: skip
    assert rib.handle(own, 0) == []
    assert rib.sizes()["bgp_paths"] == 0


def test_coalesce_keeps_per_forwarder_order():
    from routeserver.rib import coalesce

    r = [FwdRoute(n(f"10.0.0.{i}/32"), a("192.0.2.1"), 16 + i) for i in range(4)]
    r1b = FwdRoute(n("10.0.0.1/32"), a("192.0.2.9"), 99)
    ann = BgpAnnounce(PE, VpnRoute("1:1", n("10.9.0.0/16"), 16, a("192.0.2.1"), frozenset()))
    out = coalesce(
        [
            FwdRoutes(H1, "red", (r[0],)),
            FwdRoutes(H2, "red", (r[0],)),
            ann,
            FwdRoutes(H1, "red", (r[1],)),
            FwdRoutes(H1, "red", (r1b, r[2])),
            FwdWithdraw(H1, "red", (r[0].prefix,)),
            FwdWithdraw(H1, "red", (r[3].prefix,)),
            FwdRoutes(H1, "red", (r[0],)),
            FwdEndOfRib(H2, "red"),
            FwdRoutes(H2, "red", (r[1],)),
        ]
    )
    assert out == [
        FwdRoutes(H1, "red", (r[0], r1b, r[2])),
        FwdRoutes(H2, "red", (r[0],)),
        ann,
        FwdWithdraw(H1, "red", (r[0].prefix, r[3].prefix)),
        FwdRoutes(H1, "red", (r[0],)),
        FwdEndOfRib(H2, "red"),
        FwdRoutes(H2, "red", (r[1],)),
    ]


def test_replay_lists_everything_advertised():
    rib = live(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(BgpRtcAdd(PE, "64512:100"), 0)
    rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 16), 0)
    route = VpnRoute(
        "192.0.2.11:1", n("10.1.1.1/32"), 16, a("192.0.2.11"), frozenset({"64512:100"})
    )
    assert rib.replay() == [
        RtcAnnounce(PE, "64512:100"),
        BgpAnnounce(PE, route),
        BgpAnnounce(PE2, route),
    ]


def test_refused_command_is_forgotten_and_resent_with_backoff():
    from routeserver.rib import BgpCommandFailed

    rib = live(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    assert rib.expire(10.0) == [FwdEndOfRib(H1, "red")]
    rib.handle(BgpRtcAdd(PE, "64512:100"), 0)
    out = rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 16), 0)
    route = VpnRoute(
        "192.0.2.11:1", n("10.1.1.1/32"), 16, a("192.0.2.11"), frozenset({"64512:100"})
    )
    assert out[1:] == [BgpAnnounce(PE, route), BgpAnnounce(PE2, route)]
    # ExaBGP refuses the announcement to PE: it leaves PE's adj-RIB-out, a resync is due in 1 s
    assert rib.handle(BgpCommandFailed(BgpAnnounce(PE, route)), 5) == []
    assert rib.show_rtc()["peers"][PE]["routes_out"] == 0  # type: ignore[index]
    assert rib.next_deadline() == 6
    assert rib.expire(5.9) == []
    assert rib.expire(6) == [BgpAnnounce(PE, route)]
    assert rib.next_deadline() is None
    # refused again: the backoff doubled (2 s); a refused RTC announcement joins that resync
    assert rib.handle(BgpCommandFailed(BgpAnnounce(PE, route)), 7) == []
    assert rib.handle(BgpCommandFailed(RtcAnnounce(PE, "64512:100")), 7.5) == []
    assert rib.next_deadline() == 9
    assert rib.expire(9) == [RtcAnnounce(PE, "64512:100"), BgpAnnounce(PE, route)]
    # a refused withdrawal is put back, so the resync withdraws again (4 s backoff now)
    out = rib.handle(XmppRouteDel(H1, "red", n("10.1.1.1/32")), 10)
    assert out[1:] == [BgpWithdraw(PE, route), BgpWithdraw(PE2, route)]
    assert rib.handle(BgpCommandFailed(BgpWithdraw(PE2, route)), 10) == []
    assert rib.expire(14) == [BgpWithdraw(PE2, route)]
    # a refusal for a route replaced meanwhile changes nothing; after 60 s quiet, 1 s again
    stale = VpnRoute("192.0.2.11:1", n("10.1.1.1/32"), 99, a("192.0.2.11"), frozenset())
    assert rib.handle(BgpCommandFailed(BgpAnnounce(PE, stale)), 100) == []
    assert rib.next_deadline() == 101
    assert rib.expire(101) == []


def test_bgp_path_with_a_reserved_label_is_never_selected():
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rt = frozenset({"64512:100"})
    good = BgpRouteAdd(PE2, "1:1", n("10.5.0.0/16"), 20000, a("192.0.2.101"), rt)
    out = rib.handle(good, 0)
    assert out == [FwdRoutes(H1, "red", (FwdRoute(n("10.5.0.0/16"), a("192.0.2.101"), 20000),))]
    # better on LOCAL_PREF, but label 3 (implicit null): not a candidate, nothing changes
    bad = BgpRouteAdd(PE, "2:2", n("10.5.0.0/16"), 3, a("192.0.2.102"), rt,
                      attrs=BgpAttrs(local_pref=200))  # fmt: skip
    assert rib.handle(bad, 0) == []
    assert [(r["nexthop"], r["best"]) for r in rib.show_routes("red")] == [("192.0.2.101", True)]
    # the usable path goes: the forwarder gets a withdrawal, not silence
    assert rib.handle(BgpRouteDel(PE2, "1:1", n("10.5.0.0/16")), 0) == [
        FwdWithdraw(H1, "red", (n("10.5.0.0/16"),))
    ]
    assert rib.table("red") == ()


def test_local_path_wins_over_bgp_at_equal_version():
    """Locally learned (XMPP) beats any BGP path of the same version, then version decides."""
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    local = FwdRoute(n("10.1.1.1/32"), a("192.0.2.11"), 100, 3)
    rib.handle(XmppRouteAdd(H1, "red", local.prefix, local.nexthop, 100, 3), 0)
    rt = frozenset({"64512:100"})
    # same version, higher LOCAL_PREF and an empty AS_PATH, over iBGP and eBGP: local stays
    for peer, rd in ((PE, "64512:7"), (PE2, "65001:7")):
        bgp = BgpRouteAdd(peer, rd, local.prefix, 200, a("192.0.2.22"), rt, 3,
                          BgpAttrs(local_pref=300))  # fmt: skip
        assert rib.handle(bgp, 0) == []
    assert [(r["source"], r["best"]) for r in rib.show_routes("red")] == [
        ("xmpp", True),
        ("bgp", False),
        ("bgp", False),
    ]
    # a newer version from BGP wins (the address moved) ...
    newer = BgpRouteAdd(PE2, "65001:7", local.prefix, 200, a("192.0.2.22"), rt, 4)
    moved = FwdRoute(local.prefix, a("192.0.2.22"), 200, 4)
    assert rib.handle(newer, 0) == [FwdRoutes(H1, "red", (moved,))]
    # ... and the local path is back as soon as it is republished with a newer one
    out = rib.handle(XmppRouteAdd(H1, "red", local.prefix, local.nexthop, 100, 5), 0)
    assert out[0] == FwdRoutes(H1, "red", (FwdRoute(local.prefix, local.nexthop, 100, 5),))


def test_peer_without_negotiated_rtc_gets_routes_unfiltered():
    """RFC 4684 §4: RTC configured for PE but not in its OPEN -> no RTC filtering."""
    rib = Rib(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 10000), 0)
    route = VpnRoute(
        "192.0.2.11:1", n("10.1.1.1/32"), 10000, a("192.0.2.11"), frozenset({"64512:100"})
    )
    # never up: nothing recorded as sent (routes_out 0), nothing sent
    assert [p["routes_out"] for p in rib.show_peers()] == [0, 0]
    out = rib.handle(BgpPeerUp(PE, 0, frozenset({"vpnv4", "vpnv6"})), 0)
    assert out == [BgpAnnounce(PE, route)]  # no RTC route, and no filtering
    assert rib.show_rtc()["peers"][PE]["rtc"] is False  # type: ignore[index]
    # the next session negotiates RTC: filtering applies, our RTC route is sent
    rib.handle(BgpPeerDown(PE), 1)
    out = rib.handle(BgpPeerUp(PE, 0, frozenset({"vpnv4", "vpnv6", "rtc"})), 2)
    assert out == [RtcAnnounce(PE, "64512:100"), BgpWithdraw(PE, route)]
    # a family the peer did not negotiate is not advertised
    rib.handle(BgpPeerDown(PE), 3)
    out = rib.handle(BgpPeerUp(PE, 0, frozenset({"vpnv6"})), 4)
    assert out == [RtcWithdraw(PE, "64512:100")]
    rib.handle(XmppRouteAdd(H1, "red", n("2001:db8::1/128"), a("192.0.2.11"), 10001), 5)
    assert [p["routes_out"] for p in rib.show_peers()] == [1, 0]


def test_as_path_loop_is_ignored_as_a_withdrawal():
    """RFC 4271 §9.1.2: our AS (64512) in the AS_PATH (or an AS_SET): not used."""
    rib = live(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rt = frozenset({"64512:100"})
    good = BgpRouteAdd(PE2, "65001:7", n("10.2.2.2/32"), 20000, a("192.0.2.22"), rt, 0,
                       BgpAttrs(as_path=(65001,)))  # fmt: skip
    assert rib.handle(good, 0) == [
        FwdRoutes(H1, "red", (FwdRoute(n("10.2.2.2/32"), a("192.0.2.22"), 20000),))
    ]
    looped = replace(good, attrs=BgpAttrs(as_path=(65001, 64512)))
    assert rib.handle(looped, 1) == [FwdWithdraw(H1, "red", (n("10.2.2.2/32"),))]
    in_set = replace(good, prefix=n("10.3.3.3/32"), attrs=BgpAttrs(as_path=(65001, 1),
                     as_sets=((1, 64512),)))  # fmt: skip
    assert rib.handle(in_set, 2) == []
    assert rib.counters["as_path_loop"] == 2
    assert rib.show_routes("red") == []


def test_rtc_prefix_matches_route_targets_by_prefix():
    """RFC 4684 §4: an RTC NLRI of 32..95 bits asks for the route targets it prefixes."""
    from routeserver.rib import RtcPrefix

    rt100 = (0x0002 << 48) | (64512 << 32) | 100
    by80 = RtcPrefix(64512, rt100 & ~0xFFFFFFFF, 80)  # type, AS, high 16 bits of number
    assert by80.covers("64512:100") and by80.covers("64512:65535")
    assert not by80.covers("64512:70000") and not by80.covers("64513:100")
    assert not by80.covers("10.0.0.1:100")  # another type
    assert RtcPrefix(64512, 0, 32).covers("10.0.0.1:100")  # origin AS only: everything
    rib = live(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 10000), 0)
    route = VpnRoute(
        "192.0.2.11:1", n("10.1.1.1/32"), 10000, a("192.0.2.11"), frozenset({"64512:100"})
    )
    assert rib.handle(BgpRtcAdd(PE, RtcPrefix(64513, 0x0002FC0000000000, 64)), 0) == [
        BgpAnnounce(PE, route)
    ]
    assert rib.handle(BgpRtcDel(PE, RtcPrefix(64513, 0x0002FC0000000000, 64)), 0) == [
        BgpWithdraw(PE, route)
    ]


def test_anycast_prefix_keeps_every_forwarders_path_in_bgp():
    """One RD per (forwarder, VRF): type 1 <forwarder address>:<VRF index>."""
    rib = live(cfg())
    rib.handle(BgpRtcAdd(PE, None), 0)
    rt = frozenset({"64512:100"})
    p = n("10.8.8.8/32")
    out = rib.handle(XmppRouteAdd(H1, "red", p, a("192.0.2.11"), 10000, 1), 0)
    one = VpnRoute("192.0.2.11:1", p, 10000, a("192.0.2.11"), rt, 1)
    assert out == [BgpAnnounce(PE, one), BgpAnnounce(PE2, one)]
    out = rib.handle(XmppRouteAdd(H2, "red", p, a("192.0.2.12"), 20000, 1), 0)
    two = VpnRoute("192.0.2.12:1", p, 20000, a("192.0.2.12"), rt, 1)
    assert out == [BgpAnnounce(PE, two), BgpAnnounce(PE2, two)]
    assert rib.handle(XmppRouteDel(H1, "red", p), 0) == [
        BgpWithdraw(PE, one),
        BgpWithdraw(PE2, one),
    ]
    # a configured rd is the VRF's one RD: the best path per prefix
    doc = {
        "server": {"router_id": "10.255.0.1", "asn": 64512},
        "bgp": {"neighbor": [{"address": PE, "asn": 64512, "families": ["vpnv4"]}]},
        "vrf": [{"vpn": "red", "rd": "64512:9", "import_targets": ["64512:100"],
                 "export_targets": ["64512:100"]}],
    }  # fmt: skip
    rib = live(load_dict(doc))
    out = rib.handle(XmppRouteAdd(H1, "red", p, a("192.0.2.11"), 10000, 1), 0)
    assert out == [BgpAnnounce(PE, replace(one, rd="64512:9"))]
    out = rib.handle(XmppRouteAdd(H2, "red", p, a("192.0.2.12"), 20000, 2), 0)
    assert out == [BgpAnnounce(PE, replace(two, rd="64512:9", version=2))]


# ------------------------------------------------------------ operator surface


def test_max_prefixes_ends_the_session_with_cease_1_and_drops_its_paths():
    from routeserver.rib import BgpTeardown

    config = cfg()
    config = replace(
        config, neighbors=(replace(config.neighbors[0], max_prefixes=2), config.neighbors[1])
    )
    rib = Rib(config)
    rib.handle(BgpPeerUp(PE, 120), 0)  # graceful restart advertised
    add = [
        BgpRouteAdd(PE, "1:1", n(f"10.0.0.{i}/32"), 16, a("192.0.2.9"), frozenset())
        for i in range(4)
    ]
    rib.handle(add[0], 0)
    rib.handle(add[1], 0)
    rib.handle(add[1], 0)  # the same path again: no new prefix
    teardown = BgpTeardown(PE, 1, "more than 2 prefixes (bgp.neighbor.max_prefixes)")
    assert rib.handle(add[2], 0) == [teardown]
    assert rib.handle(add[3], 0) == []  # asked once per session
    assert rib.show_neighbors()[0]["prefixes_in"] == {"vpnv4": 2}
    # the session ends: its paths go at once, graceful restart or not (RFC 4724 §4)
    rib.handle(BgpPeerDown(PE), 1)
    while rib.has_work():
        rib.work()
    assert (rib.show_neighbors()[0]["prefixes_in"], rib.show_neighbors()[0]["stale"]) == ({}, 0)
    # without a prefix limit or a teardown, a GR peer's paths stay stale
    rib.handle(BgpPeerUp(PE, 120), 2)
    rib.handle(add[0], 2)
    rib.handle(BgpPeerDown(PE), 3)
    while rib.has_work():
        rib.work()
    assert rib.show_neighbors()[0]["stale"] == 1


def test_clear_modes():
    from routeserver.rib import BgpClear, BgpRefresh, BgpResend, BgpTeardown

    rib = live(cfg())
    assert rib.handle(BgpClear(PE, "soft-in"), 0) == [
        BgpRefresh(PE, "rtc"), BgpRefresh(PE, "vpnv4"), BgpRefresh(PE, "vpnv6")
    ]  # fmt: skip
    assert rib.handle(BgpClear(PE2, "soft"), 0) == [
        BgpRefresh(PE2, "vpnv4"), BgpRefresh(PE2, "vpnv6"), BgpResend(PE2)
    ]  # fmt: skip
    assert rib.handle(BgpClear(PE, "hard"), 0) == [BgpTeardown(PE, 4, "cleared by the operator")]
    rib.handle(BgpPeerDown(PE), 0)
    with pytest.raises(RibError) as ei:
        rib.handle(BgpClear(PE, "soft-out"), 0)
    assert str(ei.value) == "BGP peer 192.0.2.1 is not established: no soft reset"
    with pytest.raises(RibError) as ei:
        rib.handle(BgpClear("192.0.2.9", "hard"), 0)
    assert str(ei.value) == "BGP peer 192.0.2.9 is not configured"
    with pytest.raises(RibError) as ei:
        rib.handle(BgpClear(PE2, "gentle"), 0)
    assert str(ei.value) == "clear mode 'gentle' is not one of hard, soft, soft-in, soft-out"


def test_lookup_says_why_the_best_path_won():
    rib = live(cfg())
    rt = frozenset({"64512:100"})

    def bgp(peer, rd, **attrs):
        return BgpRouteAdd(peer, rd, n("10.5.0.0/16"), 16, a("192.0.2.9"), rt, 0, BgpAttrs(**attrs))

    rib.handle(bgp(PE, "1:1", local_pref=200, communities=("65001:7",)), 0)
    rib.handle(bgp(PE, "1:2", local_pref=100), 0)
    rib.handle(bgp(PE2, "1:3", local_pref=200, as_path=(65001, 65002)), 0)
    rib.handle(bgp(PE2, "1:4", local_pref=200, as_path=(65001,), med=10), 0)
    rib.handle(bgp(PE2, "1:5", local_pref=200, as_path=(65001,), med=5), 0)
    [entry] = rib.lookup("10.5.1.1", vpn="red")
    assert (entry["vrf"], entry["prefix"]) == ("red", "10.5.0.0/16")
    whys = [(p["rd"], p["why"]) for p in entry["paths"]]
    assert whys == [
        ("1:1", "best of 5 paths"),
        ("1:4", "lost on AS_PATH length 1 > 0"),
        ("1:5", "lost on AS_PATH length 1 > 0"),
        ("1:3", "lost on AS_PATH length 2 > 0"),
        ("1:2", "lost on LOCAL_PREF 100 < 200"),
    ]
    assert entry["paths"][0]["communities"] == ["65001:7"]
    assert entry["paths"][0]["ext_communities"] == ["target:64512:100"]
    # between the two eBGP paths of one neighbour AS, MED decides
    rib.handle(BgpRouteDel(PE, "1:1", n("10.5.0.0/16")), 0)
    rib.handle(BgpRouteDel(PE, "1:2", n("10.5.0.0/16")), 0)
    [entry] = rib.lookup("10.5.0.0/16", vpn="red")
    assert [(p["rd"], p["why"]) for p in entry["paths"]] == [
        ("1:4", "lost on MED 10 > 5 (lowest from neighbour AS 65001)"),
        ("1:5", "best of 3 paths"),
        ("1:3", "lost on AS_PATH length 2 > 1"),
    ]
    assert [e["prefix"] for e in rib.lookup(rd="1:3")] == ["10.5.0.0/16"]
    assert rib.lookup("10.6.0.0/16") == []
    with pytest.raises(RibError) as ei:
        rib.lookup("10.5")
    assert str(ei.value) == "'10.5' is not an IP prefix or address"


def test_reconfigure_adds_and_removes_neighbors_and_vrfs():
    rib = live(cfg())
    rib.handle(XmppSubscribe(H1, "red"), 0)
    rib.handle(XmppRouteAdd(H1, "red", n("10.1.1.1/32"), a("192.0.2.11"), 10000, 1), 0)
    rib.handle(BgpRtcAdd(PE, None), 0)
    old = rib.config
    # red removed, PE2 removed, a new neighbor and VRF blue
    new = load_dict(
        {
            "server": {"router_id": "10.255.0.1", "asn": 64512},
            "bgp": {"neighbor": [
                {"address": PE, "asn": 64512, "families": ["vpnv4", "vpnv6", "rtc"]},
                {"address": "192.0.2.3", "asn": 64512},
            ]},
            "vrf": [{"vpn": "blue", "import_targets": ["64512:300"],
                     "export_targets": ["64512:300"]}],
        }
    )  # fmt: skip
    out = rib.reconfigure(new)
    while rib.has_work():
        out += rib.work()
    route = VpnRoute(
        "192.0.2.11:1", n("10.1.1.1/32"), 10000, a("192.0.2.11"), frozenset({"64512:100"}), 1
    )
    assert out == [
        FwdWithdraw(H1, "red", (n("10.1.1.1/32"),)),
        BgpWithdraw(PE, route),
        RtcWithdraw(PE, "64512:100"),
    ]
    assert [x["address"] for x in rib.show_neighbors()] == [PE, "192.0.2.3"]
    assert [v["name"] for v in rib.show_vrfs()] == ["blue"]
    with pytest.raises(RibError) as ei:
        rib.reconfigure(replace(old, asn=1))
    assert str(ei.value) == "server.asn: cannot change on reload (restart the daemon)"
