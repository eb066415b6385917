"""Issue 18: at the route server an end-system's route is keyed by its node
(forwarder *and* owning end-system), the first end-system to hold a prefix in
a VRF owns it there, and versions are compared only within one owner's node."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from routeserver.config import ConfigError, Limits, load_dict
from routeserver.rib import (
    BgpWithdraw,
    FwdRoute,
    FwdRoutes,
    Rib,
    VpnRoute,
    XmppRouteAdd,
    XmppRouteDel,
    XmppSubscribe,
)

F1, F2 = "02aa00000001", "02aa00000002"  # forwarders
ES_A, ES_B = "0a0000000001", "0a0000000002"  # end-systems (node owners)
P = ip_network("10.1.1.1/32")
NH1, NH2 = ip_address("192.0.2.1"), ip_address("192.0.2.2")
TOP = (1 << 32) - 1


def rib() -> Rib:
    r = Rib(
        load_dict(
            {
                "server": {"router_id": "10.255.0.1", "asn": 64512},
                "vrf": [{"vpn": "red", "import_targets": ["1:1"], "export_targets": ["1:1"]}],
            }
        )
    )
    for f in (F1, F2):
        r.handle(XmppSubscribe(f, "red"), 0)
    return r


def selected(r: Rib) -> tuple[FwdRoute, ...]:
    return r.table("red")


def test_two_end_systems_on_one_forwarder_do_not_share_a_key():
    r = rib()
    r.handle(XmppRouteAdd(F1, "red", P, NH1, 100, 1, owner=ES_A), 0)
    # ES_B (same forwarder) publishes the same prefix, then retracts it
    assert r.handle(XmppRouteAdd(F1, "red", P, NH1, 101, 1, owner=ES_B), 0) == []
    assert r.handle(XmppRouteDel(F1, "red", P, owner=ES_B), 0) == []
    # ES_A's route is still selected and exported: nothing was withdrawn
    assert selected(r) == (FwdRoute(P, NH1, 100, 1),)
    assert r.sizes()["xmpp_paths"] == 1 and r.sizes()["exports"] == 1
    out = r.handle(XmppRouteDel(F1, "red", P, owner=ES_A), 0)
    assert selected(r) == ()
    assert FwdRoutes(F1, "red", (FwdRoute(P, NH1, 101, 1),)) not in out


def test_a_higher_version_from_another_end_system_does_not_win():
    r = rib()
    r.handle(XmppRouteAdd(F1, "red", P, NH1, 100, 1, owner=ES_A), 0)
    assert r.handle(XmppRouteAdd(F2, "red", P, NH2, 200, TOP, owner=ES_B), 0) == []
    assert selected(r) == (FwdRoute(P, NH1, 100, 1),)
    assert r.owner_of("red", P) == ES_A
    # the owner leaves: the next claimant owns it now
    out = r.handle(XmppRouteDel(F1, "red", P, owner=ES_A), 0)
    assert selected(r) == (FwdRoute(P, NH2, 200, TOP),)
    assert r.owner_of("red", P) == ES_B
    old = VpnRoute("10.255.0.1:1", P, 100, NH1, frozenset({"1:1"}), 1)
    assert all(not isinstance(o, BgpWithdraw) or o.route != old for o in out)


def test_the_owner_moves_by_version():
    r = rib()
    r.handle(XmppRouteAdd(F1, "red", P, NH1, 100, 1, owner=ES_A), 0)
    r.handle(XmppRouteAdd(F2, "red", P, NH2, 200, 2, owner=ES_A), 0)
    assert selected(r) == (FwdRoute(P, NH2, 200, 2),)
    r.handle(XmppRouteDel(F1, "red", P, owner=ES_A), 0)
    assert selected(r) == (FwdRoute(P, NH2, 200, 2),)


def test_forwarders_and_limits_config():
    base = {
        "server": {"router_id": "10.255.0.1", "asn": 64512},
        "vrf": [{"vpn": "red", "import_targets": ["1:1"]}],
    }
    cfg = load_dict(base)
    assert cfg.forwarders == () and not cfg.is_forwarder(F1)  # default deny
    assert cfg.limits == Limits(200_000, 4096, 20_000.0, 500_000)
    xmpp = {"domain": "rs.test", "certfile": "c.pem", "keyfile": "k.pem", "cafile": "ca.pem"}
    cfg = load_dict({**base, "xmpp": {**xmpp, "forwarders": ["02AA*", F2]}})
    assert cfg.forwarders == ("02aa*", F2)
    assert cfg.is_forwarder(F1) and not cfg.is_forwarder(ES_A)
    assert cfg.xmpp is not None and cfg.xmpp.domain == "rs.test"
    cfg = load_dict({**base, "limits": {"routes_per_forwarder": 5, "requests_per_second": 2}})
    assert cfg.limits == Limits(5, 4096, 2.0, 500_000)
    for doc, err in [
        ({"xmpp": {**xmpp, "forwarders": ["zz"]}}, "xmpp.forwarders[0]: 'zz' is not a system"),
        ({"xmpp": {**xmpp, "forwarders": "*"}}, "xmpp.forwarders: must be a list of strings"),
        ({"limits": {"routes": 1}}, "limits.routes: unknown key"),
        ({"limits": {"request_burst": 0}}, "limits.request_burst: must be an integer 1.."),
        ({"limits": {"requests_per_second": 0}}, "limits.requests_per_second: must be a number"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_dict({**base, **doc})
        assert str(e.value).startswith(err), str(e.value)
