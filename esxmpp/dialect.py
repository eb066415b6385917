"""The draft's XMPP dialect (draft-ietf-l3vpn-end-system §6) as pure functions.

Stanzas are ``xml.etree.ElementTree.Element`` objects in Clark notation
(``{namespace}tag``). A slixmpp stanza's element is its ``.xml`` attribute.
Nothing here does I/O or keeps state; stateful checks (version going
backwards, publish/associate for a VPN the client never subscribed, node owned
by another system) live in :mod:`esxmpp.session`.

Requests (client -> server, inside ``<iq type='set'><pubsub xmlns=NS_PUBSUB>``):

==============  ==================================================================
event           wire form (children of ``<pubsub>``)
==============  ==================================================================
Subscribe       ``<subscribe node='vpn'/>`` then optionally ``<options><x xmlns=
                'jabber:x:data' type='submit'><field var='vpn#vlan_id'><value>
                100</value></field></x></options>``. Also accepted: the draft's
                literal form with ``<x>`` as a child of ``<subscribe>``.
Unsubscribe     ``<unsubscribe node='vpn'/>``
Publish         ``<publish node='0102030405ab:10.1.1.1/32'><item><entry
                xmlns='http://ietf.org/protocol/bgpvpn'>…</entry></item></publish>``
                (the draft's ``<entry>`` directly under ``<publish>`` is accepted)
Retract         ``<retract node='…'/>`` (with or without ``<item>``) or ``<delete
                node='…'/>`` (in the pubsub or pubsub#owner namespace). Built as
                ``<retract node='…'/>``.
Associate       ``<collection node='vpn'><associate node='…'/></collection>``
Dissociate      ``<collection node='vpn'><dissociate node='…'/></collection>``
EndOfSync       ``<publish node='EndOfRib'/>`` (no item): everything this session
                holds has been (re)sent; what a resumed earlier session of the
                same system id advertised and this one did not is withdrawn
==============  ==================================================================

Route entry payload (namespace ``http://ietf.org/protocol/bgpvpn``, element
order as in the draft)::

    <entry xmlns='http://ietf.org/protocol/bgpvpn'>
      <nlri af='1'>10.1.1.1/32</nlri>
      <next-hop af='1'>192.0.2.1</next-hop>
      <version id='1'/>
      <label>10000</label>
    </entry>

An end-system publishing to its external forwarder may leave out
``<next-hop>`` and ``<label>`` (the forwarder supplies its infrastructure
address and the vif's label, §5-§6); present ones are checked and ignored.
Parse with ``end_system=True`` for that side; the entry is then
:meth:`RouteEntry.end_system`, which is also what an end-system builds.

Tungsten Fabric's nested entry form (``<nlri><af>1</af><address>…</address>
</nlri><next-hops><next-hop><af/><address/><label/></next-hop></next-hops>
<version>n</version>``, same namespace, xmpp_unicast.xsd) is accepted when
reading; the draft's form is what we build.

Notifications (server -> client, ``<message><event xmlns=NS_EVENT>``; the
plain pubsub namespace is accepted when reading, as Tungsten Fabric sends it):

* ItemsEvent: ``<items node='vpn'><item id='…'><entry …/></item>…</items>``
* RetractEvent: ``<items node='vpn'><retract id='…'/>…</items>``
* EndOfRib: ``<items node='vpn'><end-of-rib xmlns='http://ietf.org/protocol/bgpvpn'/>
  </items>`` = "the initial table of this VPN has been sent"; ``EndOfRib(None)``
  is Tungsten Fabric's session-wide marker ``<items node='EndOfRib'/>``.

Item ids in notifications are chosen by the sender; :func:`default_item_id`
(the prefix text, as Tungsten Fabric does) is the suggested choice.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

NS_CLIENT = "jabber:client"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_XDATA = "jabber:x:data"
NS_BGPVPN = "http://ietf.org/protocol/bgpvpn"
NS_PING = "urn:xmpp:ping"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

VLAN_FIELD = "vpn#vlan_id"
END_OF_RIB_NODE = "EndOfRib"
MAX_VPN_NAME = 128
LABEL_MIN = 16
LABEL_MAX = (1 << 20) - 1
NO_LABEL = 0  # RouteEntry.label of an end-system's publish: its forwarder supplies one
VERSION_MAX = (1 << 32) - 1

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6120 §8.3.3 defined conditions -> error type (§8.3.2).
ERROR_TYPES: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "internal-server-error": "wait",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "unexpected-request": "wait",
}


class DialectError(Exception):
    """A request or notification that cannot be accepted.

    ``condition`` is an RFC 6120 §8.3.3 stanza error condition (a key of
    :data:`ERROR_TYPES`), ``text`` says precisely what was wrong. The server
    turns it into an ``<iq type='error'>`` with ``<text>``; the client raises
    it when the server answers a request with an error.
    """

    def __init__(self, condition: str, text: str) -> None:
        if condition not in ERROR_TYPES:
            raise ValueError(f"unknown stanza error condition {condition!r}")
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text

    @property
    def error_type(self) -> str:
        return ERROR_TYPES[self.condition]


@dataclass(frozen=True)
class RouteEntry:
    """One VPN route: prefix -> (infrastructure next hop, MPLS label), with version.

    An end-system's address published to an external forwarder carries no
    next hop and label (§5-§6: the forwarder supplies its infrastructure
    address and the vif's label): :meth:`end_system` makes that form, the
    unspecified address of the prefix's family and :data:`NO_LABEL`, which
    :func:`build_entry` sends without ``<next-hop>`` and ``<label>``.
    """

    prefix: IPNetwork
    nexthop: IPAddress
    label: int
    version: int = 0

    @classmethod
    def end_system(cls, prefix: IPNetwork, version: int = 0) -> RouteEntry:
        """An end-system's address: next hop and label left to its forwarder."""
        unspec = ipaddress.ip_address("0.0.0.0" if prefix.version == 4 else "::")
        return cls(prefix, unspec, NO_LABEL, version)

    @property
    def has_nexthop(self) -> bool:
        """False for the :meth:`end_system` form (no next hop and label)."""
        return self.label != NO_LABEL

    def __post_init__(self) -> None:
        if self.label == NO_LABEL and self.nexthop.is_unspecified:
            pass  # the end-system form
        elif not LABEL_MIN <= self.label <= LABEL_MAX:
            raise DialectError(
                "bad-request", f"label {self.label} outside {LABEL_MIN}..{LABEL_MAX}"
            )
        if not 0 <= self.version <= VERSION_MAX:
            raise DialectError("bad-request", f"version {self.version} outside 0..{VERSION_MAX}")


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Subscribe:
    """Join VPN ``node``; ``vlan_id`` is the end-system's 802.1Q tag (external forwarder)."""

    node: str
    vlan_id: int | None = None


@dataclass(frozen=True)
class Unsubscribe:
    node: str


@dataclass(frozen=True)
class Publish:
    """Create or replace item node ``node`` ('<system id>:<prefix>/<len>') with ``entry``."""

    node: str
    entry: RouteEntry


@dataclass(frozen=True)
class Retract:
    """Delete published item node ``node`` (the draft's node "delete")."""

    node: str


@dataclass(frozen=True)
class Associate:
    """Put published node ``node`` into VPN collection ``collection``."""

    collection: str
    node: str


@dataclass(frozen=True)
class Dissociate:
    collection: str
    node: str


@dataclass(frozen=True)
class EndOfSync:
    """The client has (re)sent everything it holds in this session: the
    server withdraws what the client advertised in an earlier session of the
    same system id (kept for retention, resumed) and did not advertise again
    in this one. Wire form: ``<publish node='EndOfRib'/>`` without an item."""


Request = Subscribe | Unsubscribe | Publish | Retract | Associate | Dissociate | EndOfSync

# ----------------------------------------------------------- notifications


@dataclass(frozen=True)
class ItemsEvent:
    """Routes added or replaced in VPN ``node``: ``items`` is ((item id, entry), ...)."""

    node: str
    items: tuple[tuple[str, RouteEntry], ...]


@dataclass(frozen=True)
class RetractEvent:
    """Routes withdrawn from VPN ``node``, by item id."""

    node: str
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class EndOfRib:
    """Initial table of VPN ``node`` complete; ``None`` = session-wide (Tungsten Fabric)."""

    node: str | None = None


Notification = ItemsEvent | RetractEvent | EndOfRib

# ------------------------------------------------------------------ helpers


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def check_vpn_name(name: str | None, what: str = "node") -> str:
    """Validate a VPN (collection) name: 1..128 octets of printable ASCII."""
    if name is None or name == "":
        raise DialectError("bad-request", f"{what}: missing VPN name")
    if not name.isascii() or not name.isprintable():
        raise DialectError("bad-request", f"{what}: VPN name must be printable ASCII")
    if len(name) > MAX_VPN_NAME:
        raise DialectError(
            "bad-request", f"{what}: VPN name is {len(name)} octets, max {MAX_VPN_NAME}"
        )
    if name == END_OF_RIB_NODE:
        raise DialectError("bad-request", f"{what}: {END_OF_RIB_NODE!r} is reserved")
    return name


# used with fullmatch: '$' alone would let a trailing newline through
_SYSID_RE = re.compile(r"[0-9a-fA-F]{12}")
_SEP_SYSID_RE = re.compile(r"[0-9a-fA-F]{2}([:.-]?)(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}")
_DOTTED_SYSID_RE = re.compile(r"[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}")


def parse_system_id(text: str) -> bytes:
    """System id text -> 6 bytes.

    Accepted: '01020304abcd'; pairs separated by one of ':', '-', '.' used
    throughout ('01:02:03:04:ab:cd', '01-02-03-04-ab-cd', '01.02.03.04.ab.cd');
    and the dotted MAC form of three groups of four ('0102.0304.abcd'). Case
    does not matter; mixed separators are refused.
    """
    if _SEP_SYSID_RE.fullmatch(text) is None and _DOTTED_SYSID_RE.fullmatch(text) is None:
        raise DialectError("jid-malformed", f"system id {text!r} is not 12 hex digits")
    return bytes.fromhex(re.sub(r"[:.-]", "", text))


def format_system_id(system_id: bytes) -> str:
    """6 bytes -> '01020304abcd' (the node-name form)."""
    if len(system_id) != 6:
        raise ValueError("a system id is 6 bytes")
    return system_id.hex()


@functools.lru_cache(maxsize=8192)
def parse_prefix(text: str, af: int | None = None, what: str = "nlri") -> IPNetwork:
    """Strict prefix parse ('10.1.1.0/24'; host bits must be zero); af 1=IPv4, 2=IPv6."""
    text = text.strip()
    if "/" not in text:
        raise DialectError("bad-request", f"{what}: {text!r} is not a prefix (addr/len)")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise DialectError("bad-request", f"{what}: {text!r}: {exc}") from None
    if af is not None and af != _af_of(net.version):
        raise DialectError("bad-request", f"{what}: af={af} but {text!r} is IPv{net.version}")
    return net


@functools.lru_cache(maxsize=8192)
def parse_item_node(name: str) -> tuple[bytes, IPNetwork]:
    """'01020304abcd:10.1.1.1/32' -> (system id, prefix). IPv6 prefixes keep their colons."""
    sysid, sep, prefix = name.partition(":")
    if not sep or _SYSID_RE.fullmatch(sysid) is None:
        raise DialectError(
            "bad-request", f"node {name!r}: expected '<12 hex digit system id>:<prefix>/<len>'"
        )
    return bytes.fromhex(sysid), parse_prefix(prefix, what=f"node {name!r}")


def item_node_name(system_id: bytes, prefix: IPNetwork) -> str:
    """(system id, prefix) -> '01020304abcd:10.1.1.1/32'."""
    return f"{format_system_id(system_id)}:{prefix}"


_MARTIAN_V4 = tuple(
    (ipaddress.IPv4Network(n), why)
    for n, why in (
        ("0.0.0.0/8", "'this network' (RFC 1122)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (RFC 1112), or broadcast"),
    )
)
_MARTIAN_V6 = tuple(
    (ipaddress.IPv6Network(n), why)
    for n, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)


def nexthop_problem(nexthop: IPAddress) -> str | None:
    """Why ``nexthop`` cannot be a forwarder's tunnel endpoint (None: it can).

    Refused: unspecified/'this network', loopback, link-local, multicast,
    reserved and broadcast addresses (IPv4-mapped ones by their IPv4 address).
    A route with such a next hop would make a switch encapsulate toward
    itself, nobody or everybody.
    """
    addr: IPAddress = nexthop
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    table = _MARTIAN_V4 if isinstance(addr, ipaddress.IPv4Address) else _MARTIAN_V6
    for net, why in table:
        if addr in net:
            return f"next hop {nexthop} is {why}, not a forwarder's address"
    return None


def default_item_id(entry: RouteEntry) -> str:
    """Notification item id for ``entry``: its prefix text (Tungsten Fabric's choice)."""
    return str(entry.prefix)


def _af_of(version: int) -> int:
    return 1 if version == 4 else 2


def _int(text: str | None, what: str, lo: int, hi: int) -> int:
    if text is None:
        raise DialectError("bad-request", f"{what}: missing")
    t = text.strip()
    if not t.isascii() or not t.isdigit():
        raise DialectError("bad-request", f"{what}: {text!r} is not a decimal integer")
    v = int(t)
    if not lo <= v <= hi:
        raise DialectError("bad-request", f"{what}: {v} outside {lo}..{hi}")
    return v


def _af(el: ET.Element, what: str) -> int:
    af = el.get("af")
    if af is None:
        raise DialectError("bad-request", f"{what}: missing af attribute")
    if af not in ("1", "2"):
        raise DialectError("bad-request", f"{what}: af={af!r}, expected 1 (IPv4) or 2 (IPv6)")
    return int(af)


# ----------------------------------------------------------- route entries


def _child_text(parent: ET.Element, name: str, what: str) -> str:
    el = parent.find(f"{{{NS_BGPVPN}}}{name}")
    if el is None or not (el.text or "").strip():
        raise DialectError("bad-request", f"{what}: missing <{name}>")
    return (el.text or "").strip()


def _version_of_tf(entry: ET.Element) -> int:
    ver = entry.find(f"{{{NS_BGPVPN}}}version")
    if ver is None:
        return 0
    return _int(ver.text if ver.get("id") is None else ver.get("id"), "version", 0, VERSION_MAX)


def _parse_tf_entry(entry: ET.Element, nlri: ET.Element, end_system: bool) -> RouteEntry:
    """Tungsten Fabric's form (xmpp_unicast.xsd): nlri/af+address, next-hops/next-hop.

    A host address without '/len' is a host prefix; of several next hops (ECMP)
    the first is taken, as this dialect carries one.
    """
    af = _int(_child_text(nlri, "af", "nlri"), "nlri af", 1, 2)
    addr = _child_text(nlri, "address", "nlri")
    if "/" not in addr:
        addr += "/32" if af == 1 else "/128"
    prefix = parse_prefix(addr, af, "nlri address")
    hops = entry.find(f"{{{NS_BGPVPN}}}next-hops")
    first = None if hops is None else hops.find(f"{{{NS_BGPVPN}}}next-hop")
    if first is None:
        if end_system:
            return RouteEntry.end_system(prefix, _version_of_tf(entry))
        raise DialectError("bad-request", "entry: missing <next-hops><next-hop>")
    nh_af = _int(_child_text(first, "af", "next-hop"), "next-hop af", 1, 2)
    nh_text = _child_text(first, "address", "next-hop")
    try:
        nexthop = ipaddress.ip_address(nh_text)
    except ValueError:
        raise DialectError("bad-request", f"next-hop: {nh_text!r} is not an IP address") from None
    if nh_af != _af_of(nexthop.version):
        raise DialectError(
            "bad-request", f"next-hop: af={nh_af} but {nh_text!r} is IPv{nexthop.version}"
        )
    label = _int(_child_text(first, "label", "next-hop"), "label", LABEL_MIN, LABEL_MAX)
    version = _version_of_tf(entry)
    if end_system:
        return RouteEntry.end_system(prefix, version)
    return RouteEntry(prefix, nexthop, label, version)


def parse_entry(entry: ET.Element, end_system: bool = False) -> RouteEntry:
    """``<entry xmlns=NS_BGPVPN>`` -> RouteEntry; every error names the element.

    Also reads Tungsten Fabric's nested form (``<nlri><af/><address/></nlri>
    <next-hops><next-hop>…``), which shares the namespace.

    ``end_system``: the entry is an end-system's publish to its external
    forwarder, which supplies the next hop and label itself (§5-§6). Both
    may then be absent; present ones must be well-formed and are ignored:
    the result is always :meth:`RouteEntry.end_system`.
    """
    if entry.tag != f"{{{NS_BGPVPN}}}entry":
        raise DialectError("bad-request", f"expected <entry xmlns='{NS_BGPVPN}'>, got {entry.tag}")
    tf_nlri = entry.find(f"{{{NS_BGPVPN}}}nlri")
    if tf_nlri is not None and len(tf_nlri):
        return _parse_tf_entry(entry, tf_nlri, end_system)
    fields: dict[str, ET.Element] = {}
    for child in entry:
        ns, name = _local(child.tag)
        if ns != NS_BGPVPN:
            continue  # foreign extensions are ignored
        if name in fields:
            raise DialectError("bad-request", f"entry: duplicate <{name}>")
        fields[name] = child
    for need in ("nlri",) if end_system else ("nlri", "next-hop", "label"):
        if need not in fields:
            raise DialectError("bad-request", f"entry: missing <{need}>")
    nlri = fields["nlri"]
    prefix = parse_prefix(nlri.text or "", _af(nlri, "nlri"), "nlri")
    version = 0
    if "version" in fields:
        version = _int(fields["version"].get("id"), "version id", 0, VERSION_MAX)
    if end_system:
        if "next-hop" in fields:
            _parse_nexthop(fields["next-hop"])
        if "label" in fields:
            _int(fields["label"].text, "label", LABEL_MIN, LABEL_MAX)
        return RouteEntry.end_system(prefix, version)
    nexthop = _parse_nexthop(fields["next-hop"])
    label = _int(fields["label"].text, "label", LABEL_MIN, LABEL_MAX)
    return RouteEntry(prefix, nexthop, label, version)


def _parse_nexthop(nh_el: ET.Element) -> IPAddress:
    nh_af = _af(nh_el, "next-hop")
    nh_text = (nh_el.text or "").strip()
    try:
        nexthop = ipaddress.ip_address(nh_text)
    except ValueError:
        raise DialectError("bad-request", f"next-hop: {nh_text!r} is not an IP address") from None
    if nh_af != _af_of(nexthop.version):
        raise DialectError(
            "bad-request", f"next-hop: af={nh_af} but {nh_text!r} is IPv{nexthop.version}"
        )
    return nexthop


def build_entry(entry: RouteEntry) -> ET.Element:
    """RouteEntry -> ``<entry xmlns=NS_BGPVPN>`` (nlri, next-hop, version, label).

    The :meth:`RouteEntry.end_system` form has no next-hop and label.
    """
    el = ET.Element(f"{{{NS_BGPVPN}}}entry")
    nlri = ET.SubElement(el, f"{{{NS_BGPVPN}}}nlri", af=str(_af_of(entry.prefix.version)))
    nlri.text = str(entry.prefix)
    if entry.has_nexthop:
        nh = ET.SubElement(el, f"{{{NS_BGPVPN}}}next-hop", af=str(_af_of(entry.nexthop.version)))
        nh.text = str(entry.nexthop)
    ET.SubElement(el, f"{{{NS_BGPVPN}}}version", id=str(entry.version))
    if entry.has_nexthop:
        label = ET.SubElement(el, f"{{{NS_BGPVPN}}}label")
        label.text = str(entry.label)
    return el


# ---------------------------------------------------------------- requests


def _one_child(parent: ET.Element, what: str) -> ET.Element:
    children = list(parent)
    if len(children) != 1:
        raise DialectError(
            "bad-request", f"{what}: expected exactly one child, got {len(children)}"
        )
    return children[0]


def _vlan_from_form(x: ET.Element) -> int | None:
    if x.get("type", "submit") != "submit":
        raise DialectError("bad-request", "subscribe options: data form type must be 'submit'")
    vlan: int | None = None
    for field in x.findall(f"{{{NS_XDATA}}}field"):
        if field.get("var") != VLAN_FIELD:
            continue  # other options (FORM_TYPE, ...) are not ours
        values = field.findall(f"{{{NS_XDATA}}}value")
        if len(values) != 1:
            raise DialectError("bad-request", f"{VLAN_FIELD}: expected exactly one <value>")
        vlan = _int(values[0].text, VLAN_FIELD, 1, 4094)
    return vlan


def parse_pubsub(pubsub: ET.Element, end_system: bool = False) -> Request:
    """``<pubsub>`` payload of an iq set -> Request.

    ``end_system``: the sender is an end-system and we its external
    forwarder: a publish's next hop and label are optional and ignored (see
    :func:`parse_entry`).
    """
    ns, name = _local(pubsub.tag)
    if name != "pubsub" or ns not in (NS_PUBSUB, NS_PUBSUB_OWNER):
        raise DialectError("feature-not-implemented", f"unsupported payload {pubsub.tag}")
    children = list(pubsub)
    if not children:
        raise DialectError("bad-request", "pubsub: empty")
    op = children[0]
    op_ns, op_name = _local(op.tag)
    if op_ns not in (NS_PUBSUB, NS_PUBSUB_OWNER):
        raise DialectError("bad-request", f"pubsub: unexpected {op.tag}")
    rest = children[1:]
    if op_name == "subscribe":
        node = check_vpn_name(op.get("node"), "subscribe")
        forms = [c for c in op if c.tag == f"{{{NS_XDATA}}}x"]
        for extra in rest:
            if extra.tag != f"{{{NS_PUBSUB}}}options":
                raise DialectError("bad-request", f"subscribe: unexpected sibling {extra.tag}")
            forms.extend(c for c in extra if c.tag == f"{{{NS_XDATA}}}x")
        if len(forms) > 1:
            raise DialectError("bad-request", "subscribe: more than one options form")
        vlan = _vlan_from_form(forms[0]) if forms else None
        return Subscribe(node, vlan)
    if rest:
        raise DialectError("bad-request", f"{op_name}: unexpected sibling {rest[0].tag}")
    if op_name == "unsubscribe":
        return Unsubscribe(check_vpn_name(op.get("node"), "unsubscribe"))
    if op_name == "publish" and op.get("node") == END_OF_RIB_NODE:
        if len(op):
            raise DialectError("bad-request", f"publish {END_OF_RIB_NODE}: takes no item")
        return EndOfSync()
    if op_name == "publish":
        node = op.get("node") or ""
        _sysid, prefix = parse_item_node(node)
        payload = _one_child(op, "publish")
        if payload.tag == f"{{{op_ns}}}item":
            payload = _one_child(payload, "publish item")
        entry = parse_entry(payload, end_system)
        if prefix != entry.prefix:
            raise DialectError(
                "bad-request", f"publish: node {node!r} does not match nlri {entry.prefix}"
            )
        return Publish(node, entry)
    if op_name in ("retract", "delete"):
        node = op.get("node") or ""
        parse_item_node(node)
        return Retract(node)
    if op_name == "collection":
        coll = check_vpn_name(op.get("node"), "collection")
        act = _one_child(op, "collection")
        act_ns, act_name = _local(act.tag)
        if act_ns != op_ns or act_name not in ("associate", "dissociate", "disassociate"):
            raise DialectError("bad-request", f"collection: unexpected {act.tag}")
        node = act.get("node") or ""
        parse_item_node(node)
        if act_name == "associate":
            return Associate(coll, node)
        return Dissociate(coll, node)
    raise DialectError("feature-not-implemented", f"pubsub operation <{op_name}> not supported")


def parse_request(iq: ET.Element, end_system: bool = False) -> Request:
    """``<iq type='set'><pubsub …/></iq>`` -> Request (raises DialectError)."""
    if _local(iq.tag)[1] != "iq":
        raise DialectError("bad-request", f"expected <iq>, got {iq.tag}")
    if iq.get("type") != "set":
        raise DialectError(
            "bad-request", f"pubsub requests are iq type 'set', got {iq.get('type')!r}"
        )
    return parse_pubsub(_one_child(iq, "iq"), end_system)


def build_pubsub(req: Request) -> ET.Element:
    """Request -> ``<pubsub xmlns=NS_PUBSUB>`` payload (to put in an iq set)."""
    ps = ET.Element(f"{{{NS_PUBSUB}}}pubsub")
    p = f"{{{NS_PUBSUB}}}"
    if isinstance(req, Subscribe):
        ET.SubElement(ps, p + "subscribe", node=req.node)
        if req.vlan_id is not None:
            opts = ET.SubElement(ps, p + "options", node=req.node)
            x = ET.SubElement(opts, f"{{{NS_XDATA}}}x", type="submit")
            field = ET.SubElement(x, f"{{{NS_XDATA}}}field", var=VLAN_FIELD)
            ET.SubElement(field, f"{{{NS_XDATA}}}value").text = str(req.vlan_id)
    elif isinstance(req, Unsubscribe):
        ET.SubElement(ps, p + "unsubscribe", node=req.node)
    elif isinstance(req, Publish):
        pub = ET.SubElement(ps, p + "publish", node=req.node)
        ET.SubElement(pub, p + "item").append(build_entry(req.entry))
    elif isinstance(req, Retract):
        ET.SubElement(ps, p + "retract", node=req.node)
    elif isinstance(req, Associate):
        coll = ET.SubElement(ps, p + "collection", node=req.collection)
        ET.SubElement(coll, p + "associate", node=req.node)
    elif isinstance(req, EndOfSync):
        ET.SubElement(ps, p + "publish", node=END_OF_RIB_NODE)
    else:
        coll = ET.SubElement(ps, p + "collection", node=req.collection)
        ET.SubElement(coll, p + "dissociate", node=req.node)
    return ps


def build_request(req: Request, iq_id: str, to: str | None = None) -> ET.Element:
    """Request -> complete ``<iq type='set' id=…>`` in jabber:client."""
    iq = ET.Element(f"{{{NS_CLIENT}}}iq", type="set", id=iq_id)
    if to is not None:
        iq.set("to", to)
    iq.append(build_pubsub(req))
    return iq


# ---------------------------------------------------------- iq replies


def build_result(iq: ET.Element, from_: str | None = None) -> ET.Element:
    """Empty ``<iq type='result'>`` answering ``iq``."""
    res = ET.Element(f"{{{NS_CLIENT}}}iq", type="result", id=iq.get("id", ""))
    if iq.get("from"):
        res.set("to", iq.get("from", ""))
    if from_:
        res.set("from", from_)
    return res


def build_error(iq: ET.Element, err: DialectError, from_: str | None = None) -> ET.Element:
    """``<iq type='error'>`` answering ``iq`` with ``err`` (RFC 6120 §8.3)."""
    res = build_result(iq, from_)
    res.set("type", "error")
    e = ET.SubElement(res, f"{{{NS_CLIENT}}}error", type=err.error_type)
    ET.SubElement(e, f"{{{NS_STANZAS}}}{err.condition}")
    text = ET.SubElement(e, f"{{{NS_STANZAS}}}text")
    text.text = err.text
    return res


def parse_iq_error(iq: ET.Element) -> DialectError:
    """``<iq type='error'>`` -> DialectError (unknown conditions become bad-request)."""
    err = None
    for child in iq:
        if _local(child.tag)[1] == "error":
            err = child
    if err is None:
        return DialectError("bad-request", "error reply without <error>")
    condition, text = "bad-request", ""
    for c in err:
        ns, name = _local(c.tag)
        if ns != NS_STANZAS:
            continue
        if name == "text":
            text = c.text or ""
        elif name in ERROR_TYPES:
            condition = name
    return DialectError(condition, text)


# ----------------------------------------------------------- notifications


def build_event(note: Notification) -> ET.Element:
    """Notification -> ``<event xmlns=NS_EVENT>`` payload."""
    ev = ET.Element(f"{{{NS_EVENT}}}event")
    p = f"{{{NS_EVENT}}}"
    if isinstance(note, ItemsEvent):
        items = ET.SubElement(ev, p + "items", node=note.node)
        for item_id, entry in note.items:
            ET.SubElement(items, p + "item", id=item_id).append(build_entry(entry))
    elif isinstance(note, RetractEvent):
        items = ET.SubElement(ev, p + "items", node=note.node)
        for item_id in note.item_ids:
            ET.SubElement(items, p + "retract", id=item_id)
    elif note.node is None:
        ET.SubElement(ev, p + "items", node=END_OF_RIB_NODE)
    else:
        items = ET.SubElement(ev, p + "items", node=note.node)
        ET.SubElement(items, f"{{{NS_BGPVPN}}}end-of-rib")
    return ev


def build_notification(note: Notification, to: str, from_: str) -> ET.Element:
    """Notification -> ``<message to=… from=…><event …/></message>`` in jabber:client."""
    msg = ET.Element(f"{{{NS_CLIENT}}}message", to=to)
    msg.set("from", from_)
    msg.append(build_event(note))
    return msg


def parse_event(ev: ET.Element) -> Notification:
    """``<event>`` (pubsub#event or plain pubsub namespace) -> Notification."""
    ns, name = _local(ev.tag)
    if name != "event" or ns not in (NS_EVENT, NS_PUBSUB):
        raise DialectError("bad-request", f"expected pubsub <event>, got {ev.tag}")
    items = _one_child(ev, "event")
    if items.tag != f"{{{ns}}}items":
        raise DialectError("bad-request", f"event: expected <items>, got {items.tag}")
    node = items.get("node") or ""
    if node == END_OF_RIB_NODE and len(items) == 0:
        return EndOfRib(None)
    check_vpn_name(node, "items")
    children = list(items)
    if not children:
        raise DialectError("bad-request", f"items {node!r}: empty")
    if len(children) == 1 and children[0].tag == f"{{{NS_BGPVPN}}}end-of-rib":
        return EndOfRib(node)
    kinds = {_local(c.tag) for c in children}
    if kinds == {(ns, "item")}:
        out: list[tuple[str, RouteEntry]] = []
        for it in children:
            item_id = it.get("id")
            if not item_id:
                raise DialectError("bad-request", f"items {node!r}: <item> without id")
            out.append((item_id, parse_entry(_one_child(it, f"item {item_id!r}"))))
        return ItemsEvent(node, tuple(out))
    if kinds == {(ns, "retract")}:
        ids: list[str] = []
        for r in children:
            rid = r.get("id")
            if not rid:
                raise DialectError("bad-request", f"items {node!r}: <retract> without id")
            ids.append(rid)
        return RetractEvent(node, tuple(ids))
    raise DialectError("bad-request", f"items {node!r}: mixed or unknown children")


def parse_notification(msg: ET.Element) -> Notification:
    """``<message>`` carrying a pubsub ``<event>`` -> Notification."""
    if _local(msg.tag)[1] != "message":
        raise DialectError("bad-request", f"expected <message>, got {msg.tag}")
    events = [c for c in msg if _local(c.tag)[1] == "event"]
    if len(events) != 1:
        raise DialectError("bad-request", f"message: expected one <event>, got {len(events)}")
    return parse_event(events[0])


def is_notification(msg: ET.Element) -> bool:
    """True when ``msg`` is a message with a pubsub event child (either namespace)."""
    return any(c.tag in (f"{{{NS_EVENT}}}event", f"{{{NS_PUBSUB}}}event") for c in msg)


def to_bytes(el: ET.Element, default_ns: str = NS_CLIENT) -> bytes:
    """Serialise a stanza for the wire with ``default_ns`` as the default namespace."""
    return serialize(el, default_ns).encode()


def serialize(el: ET.Element, default_ns: str = NS_CLIENT) -> str:
    """Serialise with a stable prefix-free form: every namespace change is an xmlns=."""
    parts: list[str] = []
    _ser(el, default_ns, parts)
    return "".join(parts)


def _esc(text: str, attr: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attr:
        text = text.replace("'", "&apos;").replace('"', "&quot;")
    return text


def _ser(el: ET.Element, parent_ns: str, out: list[str]) -> None:
    ns, name = _local(el.tag)
    out.append(f"<{name}")
    if ns != parent_ns:
        out.append(f" xmlns='{_esc(ns, True)}'")
    for k, v in el.attrib.items():
        if k.startswith("{"):
            kns, kname = _local(k)
            if kns == "http://www.w3.org/XML/1998/namespace":
                out.append(f" xml:{kname}='{_esc(v, True)}'")
            continue  # other namespaced attributes are not part of this dialect
        out.append(f" {k}='{_esc(v, True)}'")
    children: Iterable[ET.Element] = list(el)
    if not el.text and not list(el):
        out.append("/>")
    else:
        out.append(">")
        if el.text:
            out.append(_esc(el.text))
        for c in children:
            _ser(c, ns, out)
            if c.tail:
                out.append(_esc(c.tail))
        out.append(f"</{name}>")
