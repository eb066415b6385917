from __future__ import annotations

import json
import logging
from ipaddress import ip_address, ip_network

from esxmpp import dialect as d
from routeserver.rib import FwdEndOfRib, FwdRoute, FwdRoutes, FwdWithdraw
from routeserver.server import JsonFormatter, to_notifications

P1, P2 = ip_network("10.1.1.1/32"), ip_network("2001:db8::1/128")


def test_forwarder_outputs_become_notifications():
    routes = (
        FwdRoute(P1, ip_address("192.0.2.1"), 10000, 3),
        FwdRoute(P2, ip_address("192.0.2.1"), 10001),
    )
    assert to_notifications(FwdRoutes("0102030405a1", "red", routes)) == [
        d.ItemsEvent(
            "red",
            (
                ("10.1.1.1/32", d.RouteEntry(P1, ip_address("192.0.2.1"), 10000, 3)),
                ("2001:db8::1/128", d.RouteEntry(P2, ip_address("192.0.2.1"), 10001)),
            ),
        )
    ]
    assert to_notifications(FwdRoutes("0102030405a1", "red", routes), max_items=1) == [
        d.ItemsEvent(
            "red", (("10.1.1.1/32", d.RouteEntry(P1, ip_address("192.0.2.1"), 10000, 3)),)
        ),
        d.ItemsEvent(
            "red", (("2001:db8::1/128", d.RouteEntry(P2, ip_address("192.0.2.1"), 10001)),)
        ),
    ]
    assert to_notifications(FwdWithdraw("0102030405a1", "red", (P1, P2))) == [
        d.RetractEvent("red", ("10.1.1.1/32", "2001:db8::1/128"))
    ]
    assert to_notifications(FwdEndOfRib("0102030405a1", "red")) == [d.EndOfRib("red")]


def test_a_bgp_label_a_forwarder_cannot_use_is_not_sent(caplog):
    out = FwdRoutes("0102030405a1", "red", (FwdRoute(P1, ip_address("192.0.2.1"), 3),))
    with caplog.at_level(logging.WARNING, "routeserver"):
        assert to_notifications(out) == []
    assert caplog.messages == [
        "route 10.1.1.1/32 not sent to forwarders: label 3 outside 16..1048575"
    ]


def test_json_log_lines():
    rec = logging.LogRecord(
        "routeserver", logging.INFO, __file__, 1, "peer %s up", ("1.2.3.4",), None
    )
    doc = json.loads(JsonFormatter().format(rec))
    assert {k: doc[k] for k in ("level", "logger", "msg")} == {
        "level": "info",
        "logger": "routeserver",
        "msg": "peer 1.2.3.4 up",
    }
