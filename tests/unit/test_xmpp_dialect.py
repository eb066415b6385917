"""The draft's §6 messages: exact XML out, typed events in, precise errors."""

from __future__ import annotations

import ipaddress as ip
import xml.etree.ElementTree as ET

import pytest

from esxmpp import dialect as d

NODE = "01020304abcd:10.1.1.1/32"
ENTRY = d.RouteEntry(ip.ip_network("10.1.1.1/32"), ip.ip_address("192.0.2.1"), 10000, 1)
ENTRY_XML = (
    "<entry xmlns='http://ietf.org/protocol/bgpvpn'><nlri af='1'>10.1.1.1/32</nlri>"
    "<next-hop af='1'>192.0.2.1</next-hop><version id='1'/><label>10000</label></entry>"
)
PS = "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"


def req_xml(req: d.Request) -> str:
    return d.serialize(d.build_request(req, "r1"))


def parse(text: str) -> d.Request:
    return d.parse_request(ET.fromstring(text))


def wrap(body: str) -> str:
    return f"<iq xmlns='jabber:client' type='set' id='x'>{PS}{body}</pubsub></iq>"


def test_subscribe_forwarder_to_route_server_exact() -> None:
    req = d.Subscribe("vpn-customer-name")
    assert req_xml(req) == (
        f"<iq type='set' id='r1'>{PS}<subscribe node='vpn-customer-name'/></pubsub></iq>"
    )
    assert parse(wrap("<subscribe node='vpn-customer-name'/>")) == req


def test_subscribe_with_vlan_exact() -> None:
    req = d.Subscribe("vpn-customer-name", 100)
    assert req_xml(req) == (
        f"<iq type='set' id='r1'>{PS}<subscribe node='vpn-customer-name'/>"
        "<options node='vpn-customer-name'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='vpn#vlan_id'><value>100</value></field></x></options></pubsub></iq>"
    )
    assert d.parse_request(d.build_request(req, "a")) == req


def test_subscribe_draft_literal_form_accepted() -> None:
    # The draft puts <x> inside <subscribe>.
    text = wrap(
        "<subscribe node='vpn-customer-name'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='vpn#vlan_id'><value>4094</value></field></x></subscribe>"
    )
    assert parse(text) == d.Subscribe("vpn-customer-name", 4094)


def test_publish_exact() -> None:
    req = d.Publish(NODE, ENTRY)
    assert req_xml(req) == (
        f"<iq type='set' id='r1'>{PS}<publish node='{NODE}'><item>{ENTRY_XML}</item>"
        "</publish></pubsub></iq>"
    )
    assert parse(wrap(f"<publish node='{NODE}'><item>{ENTRY_XML}</item></publish>")) == req
    # the draft's form without <item>
    assert parse(wrap(f"<publish node='{NODE}'>{ENTRY_XML}</publish>")) == req


def test_publish_ipv6_over_ipv4() -> None:
    e = d.RouteEntry(ip.ip_network("2001:db8::5/128"), ip.ip_address("192.0.2.1"), 16, 0)
    req = d.Publish("01020304abcd:2001:db8::5/128", e)
    x = req_xml(req)
    assert "<nlri af='2'>2001:db8::5/128</nlri><next-hop af='1'>192.0.2.1</next-hop>" in x
    assert d.parse_request(d.build_request(req, "a")) == req


def test_associate_dissociate_retract_exact() -> None:
    a = d.Associate("vpn-customer-name", NODE)
    assert req_xml(a) == (
        f"<iq type='set' id='r1'>{PS}<collection node='vpn-customer-name'>"
        f"<associate node='{NODE}'/></collection></pubsub></iq>"
    )
    assert d.parse_request(d.build_request(a, "a")) == a
    x = d.Dissociate("vpn-customer-name", NODE)
    assert req_xml(x) == (
        f"<iq type='set' id='r1'>{PS}<collection node='vpn-customer-name'>"
        f"<dissociate node='{NODE}'/></collection></pubsub></iq>"
    )
    assert d.parse_request(d.build_request(x, "a")) == x
    assert parse(wrap(f"<collection node='v'><disassociate node='{NODE}'/></collection>")) == (
        d.Dissociate("v", NODE)
    )
    r = d.Retract(NODE)
    assert req_xml(r) == f"<iq type='set' id='r1'>{PS}<retract node='{NODE}'/></pubsub></iq>"
    assert d.parse_request(d.build_request(r, "a")) == r
    owner = (
        "<iq xmlns='jabber:client' type='set' id='x'>"
        "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>"
        f"<delete node='{NODE}'/></pubsub></iq>"
    )
    assert parse(owner) == r
    assert parse(wrap(f"<retract node='{NODE}'><item id='10.1.1.1/32'/></retract>")) == r


def test_unsubscribe_exact() -> None:
    u = d.Unsubscribe("vpn-customer-name")
    assert req_xml(u) == (
        f"<iq type='set' id='r1'>{PS}<unsubscribe node='vpn-customer-name'/></pubsub></iq>"
    )
    assert d.serialize(d.build_pubsub(u)) == (
        f"{PS}<unsubscribe node='vpn-customer-name'/></pubsub>"
    )
    assert parse(wrap("<unsubscribe node='vpn-customer-name'/>")) == u
    with pytest.raises(d.DialectError) as info:
        parse(wrap("<unsubscribe/>"))
    assert (info.value.condition, info.value.text) == (
        "bad-request",
        "unsubscribe: missing VPN name",
    )


def test_end_of_sync_exact() -> None:
    e = d.EndOfSync()
    assert req_xml(e) == f"<iq type='set' id='r1'>{PS}<publish node='EndOfRib'/></pubsub></iq>"
    assert parse(wrap("<publish node='EndOfRib'/>")) == e
    with pytest.raises(d.DialectError) as info:
        parse(wrap("<publish node='EndOfRib'><item/></publish>"))
    assert (info.value.condition, info.value.text) == (
        "bad-request",
        "publish EndOfRib: takes no item",
    )


def test_update_notification_exact() -> None:
    note = d.ItemsEvent("vpn-customer-name", (("ae890ac52d0df67ed7cfdf51b644e901", ENTRY),))
    msg = d.build_notification(note, "01020304abcd@fwd/x", "rs1.example")
    assert d.serialize(msg) == (
        "<message to='01020304abcd@fwd/x' from='rs1.example'>"
        "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
        "<items node='vpn-customer-name'><item id='ae890ac52d0df67ed7cfdf51b644e901'>"
        f"{ENTRY_XML}</item></items></event></message>"
    )
    assert d.parse_notification(msg) == note


def test_retract_and_end_of_rib_notifications_exact() -> None:
    r = d.RetractEvent("v", ("10.1.1.1/32", "10.1.1.2/32"))
    assert d.serialize(d.build_event(r)) == (
        "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='v'>"
        "<retract id='10.1.1.1/32'/><retract id='10.1.1.2/32'/></items></event>"
    )
    assert d.parse_event(d.build_event(r)) == r
    e = d.EndOfRib("v")
    assert d.serialize(d.build_event(e)) == (
        "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='v'>"
        "<end-of-rib xmlns='http://ietf.org/protocol/bgpvpn'/></items></event>"
    )
    assert d.parse_event(d.build_event(e)) == e
    tf = d.EndOfRib(None)
    assert d.serialize(d.build_event(tf)) == (
        "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='EndOfRib'/></event>"
    )
    assert d.parse_event(d.build_event(tf)) == tf


def test_notification_in_plain_pubsub_namespace_accepted() -> None:
    # Tungsten Fabric's control node sends events in the pubsub namespace.
    msg = ET.fromstring(
        "<message xmlns='jabber:client' to='a@b' from='c'>"
        f"<event xmlns='http://jabber.org/protocol/pubsub'><items node='v'>"
        f"<item id='10.1.1.1/32'>{ENTRY_XML}</item></items></event></message>"
    )
    assert d.is_notification(msg)
    assert d.parse_notification(msg) == d.ItemsEvent("v", (("10.1.1.1/32", ENTRY),))


def entry(nlri: str = "<nlri af='1'>10.1.1.1/32</nlri>", **kw: str) -> str:
    nh = kw.get("nh", "<next-hop af='1'>192.0.2.1</next-hop>")
    ver = kw.get("ver", "<version id='1'/>")
    label = kw.get("label", "<label>10000</label>")
    return f"<entry xmlns='http://ietf.org/protocol/bgpvpn'>{nlri}{nh}{ver}{label}</entry>"


def pub(node: str = NODE, **kw: str) -> str:
    return wrap(f"<publish node='{node}'><item>{entry(**kw)}</item></publish>")


@pytest.mark.parametrize(
    ("text", "condition", "message"),
    [
        (pub(nlri="<nlri af='1'>10.1.1/32</nlri>"), "bad-request", "nlri: '10.1.1/32': "),
        (pub(nlri="<nlri af='1'>10.1.1.1</nlri>"), "bad-request", "is not a prefix"),
        (
            pub(nlri="<nlri af='2'>10.1.1.1/32</nlri>"),
            "bad-request",
            "nlri: af=2 but '10.1.1.1/32' is IPv4",
        ),
        (pub(nlri="<nlri af='3'>10.1.1.1/32</nlri>"), "bad-request", "nlri: af='3', expected"),
        (pub(nlri="<nlri>10.1.1.1/32</nlri>"), "bad-request", "nlri: missing af attribute"),
        (
            pub(nh="<next-hop af='2'>192.0.2.1</next-hop>"),
            "bad-request",
            "next-hop: af=2 but '192.0.2.1' is IPv4",
        ),
        (pub(nh="<next-hop af='1'>nowhere</next-hop>"), "bad-request", "not an IP address"),
        (pub(label="<label>15</label>"), "bad-request", "label: 15 outside 16..1048575"),
        (pub(label="<label>1048576</label>"), "bad-request", "label: 1048576 outside"),
        (pub(label="<label>x</label>"), "bad-request", "label: 'x' is not a decimal integer"),
        (pub(label=""), "bad-request", "entry: missing <label>"),
        (pub(ver="<version id='-1'/>"), "bad-request", "version id: '-1' is not a decimal"),
        (pub(node="01020304abcd:10.1.1.2/32"), "bad-request", "does not match nlri 10.1.1.1/32"),
        (pub(node="zz:10.1.1.1/32"), "bad-request", "expected '<12 hex digit system id>"),
        (wrap("<subscribe node=''/>"), "bad-request", "subscribe: missing VPN name"),
        (wrap(f"<subscribe node='{'v' * 129}'/>"), "bad-request", "129 octets, max 128"),
        (wrap("<subscribe node='vpn\u00e9'/>"), "bad-request", "printable ASCII"),
        (
            wrap(
                "<subscribe node='v'/><options><x xmlns='jabber:x:data' type='submit'>"
                "<field var='vpn#vlan_id'><value>4095</value></field></x></options>"
            ),
            "bad-request",
            "vpn#vlan_id: 4095 outside 1..4094",
        ),
        (
            wrap(
                "<subscribe node='v'/><options><x xmlns='jabber:x:data' type='submit'>"
                "<field var='vpn#vlan_id'><value>0</value></field></x></options>"
            ),
            "bad-request",
            "vpn#vlan_id: 0 outside 1..4094",
        ),
        (wrap("<items node='v'/>"), "feature-not-implemented", "<items> not supported"),
        (
            wrap(f"<collection node='v'><associate node='{NODE}'/><x/></collection>"),
            "bad-request",
            "collection: expected exactly one child, got 2",
        ),
    ],
)
def test_request_errors(text: str, condition: str, message: str) -> None:
    with pytest.raises(d.DialectError) as info:
        parse(text)
    assert info.value.condition == condition
    assert message in info.value.text


def test_get_is_not_a_request() -> None:
    with pytest.raises(d.DialectError, match="iq type 'set', got 'get'"):
        d.parse_request(
            ET.fromstring(f"<iq xmlns='jabber:client' type='get' id='x'>{PS}</pubsub></iq>")
        )


def test_error_reply_exact_and_parsed_back() -> None:
    iq = ET.fromstring("<iq xmlns='jabber:client' type='set' id='q7' from='01020304abcd@fwd/r'/>")
    err = d.DialectError("item-not-found", "not subscribed to VPN 'v'")
    out = d.build_error(iq, err, from_="fwd")
    assert d.serialize(out) == (
        "<iq type='error' id='q7' to='01020304abcd@fwd/r' from='fwd'><error type='cancel'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>not subscribed to VPN 'v'"
        "</text></error></iq>"
    )
    back = d.parse_iq_error(out)
    assert (back.condition, back.text) == ("item-not-found", "not subscribed to VPN 'v'")
    assert d.DialectError("not-authorized", "x").error_type == "auth"


def test_system_ids_and_node_names() -> None:
    sid = bytes.fromhex("01020304abcd")
    good = (
        "01020304abcd",
        "01:02:03:04:ab:cd",
        "01-02-03-04-AB-CD",
        "01.02.03.04.ab.cd",
        "0102.0304.abcd",
        "0102.0304.ABCD",
    )
    assert [d.parse_system_id(text) for text in good] == [sid] * len(good)
    bad_ids = (
        "01020304abc",
        "01:02:03:04:ab-cd",
        "g1020304abcd",
        "",
        "0102.0304abcd",
        "0102:0304:abcd",
        "0102.0304.ab.cd",
        "010.203.04a.bcd",
        "0102.0304.abcd.",
        "01020304abcd\n",
        "0102.0304.abcd\n",
    )
    for bad in bad_ids:
        with pytest.raises(d.DialectError) as info:
            d.parse_system_id(bad)
        assert (info.value.condition, info.value.text) == (
            "jid-malformed",
            f"system id {bad!r} is not 12 hex digits",
        )
    assert d.item_node_name(sid, ip.ip_network("2001:db8::/64")) == "01020304abcd:2001:db8::/64"
    assert d.parse_item_node("01020304abcd:2001:db8::/64") == (
        sid,
        ip.ip_network("2001:db8::/64"),
    )
    with pytest.raises(d.DialectError, match="expected '<12 hex digit system id>:"):
        d.parse_item_node("01020304abcd\n:10.1.1.1/32")
    assert d.default_item_id(ENTRY) == "10.1.1.1/32"


def test_route_entry_rejects_bad_label_directly() -> None:
    with pytest.raises(d.DialectError, match=r"label 5 outside 16\.\.1048575"):
        d.RouteEntry(ip.ip_network("10.0.0.0/8"), ip.ip_address("192.0.2.1"), 5)


def test_bad_notifications() -> None:
    with pytest.raises(d.DialectError, match="mixed or unknown children"):
        d.parse_event(
            ET.fromstring(
                "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='v'>"
                f"<item id='a'>{ENTRY_XML}</item><retract id='b'/></items></event>"
            )
        )
    with pytest.raises(d.DialectError, match="<item> without id"):
        d.parse_event(
            ET.fromstring(
                "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='v'>"
                f"<item>{ENTRY_XML}</item></items></event>"
            )
        )


def test_tungsten_fabric_entry_form_is_read() -> None:
    # xmpp_unicast.xsd's nested form, as Tungsten Fabric's control node sends it
    msg = ET.fromstring(
        "<message xmlns='jabber:client' to='a@b' from='c'>"
        "<event xmlns='http://jabber.org/protocol/pubsub'><items node='vrf'>"
        "<item id='10.1.2.1/32'><entry xmlns='http://ietf.org/protocol/bgpvpn'>"
        "<nlri><af>1</af><safi>1</safi><address>10.1.2.1/32</address></nlri>"
        "<next-hops><next-hop><af>1</af><address>10.1.1.1</address><label>10000</label>"
        "<tunnel-encapsulation-list><tunnel-encapsulation>gre</tunnel-encapsulation>"
        "</tunnel-encapsulation-list></next-hop>"
        "<next-hop><af>1</af><address>10.1.1.2</address><label>20000</label></next-hop>"
        "</next-hops><version>3</version><virtual-network>vn1</virtual-network>"
        "</entry></item>"
        "<item id='10.1.2.2'><entry xmlns='http://ietf.org/protocol/bgpvpn'>"
        "<nlri><af>1</af><address>10.1.2.2</address></nlri>"
        "<next-hops><next-hop><af>1</af><address>10.1.1.1</address><label>16</label>"
        "</next-hop></next-hops></entry></item></items></event></message>"
    )
    assert d.parse_notification(msg) == d.ItemsEvent(
        "vrf",
        (
            (
                "10.1.2.1/32",
                d.RouteEntry(ip.ip_network("10.1.2.1/32"), ip.ip_address("10.1.1.1"), 10000, 3),
            ),
            (
                "10.1.2.2",
                d.RouteEntry(ip.ip_network("10.1.2.2/32"), ip.ip_address("10.1.1.1"), 16, 0),
            ),
        ),
    )
    bad = ET.fromstring(
        "<entry xmlns='http://ietf.org/protocol/bgpvpn'><nlri><af>1</af>"
        "<address>10.1.2.2</address></nlri></entry>"
    )
    with pytest.raises(d.DialectError, match=r"entry: missing <next-hops><next-hop>"):
        d.parse_entry(bad)


# ------------------------------------------- end-system publish (external forwarder)

BARE = d.RouteEntry.end_system(ip.ip_network("10.1.1.1/32"), 1)


def test_end_system_publish_is_built_without_next_hop_and_label() -> None:
    assert req_xml(d.Publish(NODE, BARE)) == (
        f"<iq type='set' id='r1'>{PS}<publish node='{NODE}'><item>"
        "<entry xmlns='http://ietf.org/protocol/bgpvpn'><nlri af='1'>10.1.1.1/32</nlri>"
        "<version id='1'/></entry></item></publish></pubsub></iq>"
    )
    six = d.RouteEntry.end_system(ip.ip_network("2001:db8::5/128"))
    assert (six.nexthop, six.label, six.has_nexthop) == (ip.ip_address("::"), d.NO_LABEL, False)
    assert ENTRY.has_nexthop


@pytest.mark.parametrize(
    "text",
    [
        pub(nh="", label=""),  # the end-system's form
        pub(),  # present ones are ignored
        pub(nh="<next-hop af='1'>0.0.0.0</next-hop>", label="<label>16</label>"),  # placeholders
        pub(label=""),
        wrap(
            f"<publish node='{NODE}'><item><entry xmlns='http://ietf.org/protocol/bgpvpn'>"
            "<nlri><af>1</af><address>10.1.1.1</address></nlri><version>1</version>"
            "</entry></item></publish>"
        ),  # Tungsten Fabric's nested form without next-hops
    ],
)
def test_end_system_side_accepts_publish_without_next_hop_and_label(text: str) -> None:
    assert d.parse_request(ET.fromstring(text), end_system=True) == d.Publish(NODE, BARE)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (pub(nh="<next-hop af='1'>nowhere</next-hop>"), "not an IP address"),
        (pub(label="<label>15</label>"), "label: 15 outside 16..1048575"),
        (pub(nlri="<nlri af='1'>10.1.1/32</nlri>"), "nlri: '10.1.1/32': "),
    ],
)
def test_end_system_side_still_refuses_malformed_elements(text: str, message: str) -> None:
    with pytest.raises(d.DialectError) as info:
        d.parse_request(ET.fromstring(text), end_system=True)
    assert info.value.condition == "bad-request"
    assert message in info.value.text


def test_forwarder_side_still_needs_next_hop_and_label() -> None:
    with pytest.raises(d.DialectError, match=r"entry: missing <next-hop>"):
        parse(pub(nh="", label=""))
    with pytest.raises(d.DialectError, match=r"label 0 outside 16\.\.1048575"):
        d.RouteEntry(ip.ip_network("10.1.1.1/32"), ip.ip_address("192.0.2.1"), d.NO_LABEL)
