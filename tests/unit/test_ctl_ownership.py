"""Issue 18 at the agent (control.vrf, control.config): the VPNs a forwarder
serves, what an end-system may publish in each (host routes only, prefixes per
VPN or per end-system, first come owns an address), per end-system quotas,
and next hops from route servers that no forwarder can have."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType
from typing import Any

import pytest

from control.config import ConfigError, Limits, VpnConfig, config_from_toml
from control.vrf import RemoteTarget, VrfState
from esxmpp.dialect import (
    Associate,
    DialectError,
    Publish,
    Request,
    Retract,
    RouteEntry,
    Subscribe,
    Unsubscribe,
)
from tests.unit.test_ctl_config import BASE

INFRA = ipaddress.IPv4Address("192.0.2.1")
A, B = bytes.fromhex("0a0000000001"), bytes.fromhex("0a0000000002")
net = ipaddress.ip_network


def make(limits: Limits | None = None) -> VrfState:
    vpns = {
        "red": VpnConfig(
            prefixes=(net("10.1.0.0/16"), net("fd00:1::/48")),
            end_systems=MappingProxyType({B: (net("10.1.2.0/24"),)}),
        ),
        "blue": VpnConfig(host_routes_only=False),
    }
    return VrfState(INFRA, {A: 3, B: 4}, vpns=MappingProxyType(vpns), limits=limits)


def es(st: VrfState, sid: bytes, *changes: Request) -> None:
    """One request per change, in order (as end-systems send them)."""
    for ch in changes:
        st.end_system(sid, [ch], 0.0)


def node(sid: bytes, prefix: str) -> str:
    return f"{sid.hex()}:{prefix}"


def pub(sid: bytes, prefix: str, version: int = 1) -> Publish:
    return Publish(node(sid, prefix), RouteEntry.end_system(net(prefix), version))


def refusal(st: VrfState, sid: bytes, *changes: Request) -> tuple[str, str]:
    before = (st.to_json(0.0), st.generation)
    with pytest.raises(DialectError) as e:
        st.end_system(sid, list(changes), 0.0)
    assert (st.to_json(0.0), st.generation) == before  # refused: nothing changed
    return e.value.condition, e.value.text


def test_a_vpn_not_served_is_refused() -> None:
    st = make()
    for vpn in ("nonexistent", "RED", "../red"):
        assert refusal(st, A, Subscribe(vpn, 10)) == (
            "forbidden",
            f"VPN {vpn!r} is not served by this forwarder (vpns)",
        )
    assert st.vrfs == {} and st.interfaces == {}
    assert st.vif_ids.in_use == frozenset() and st.labels.in_use == frozenset()
    es(st, A, Subscribe("red", 10))
    assert set(st.vrfs) == {"red"}


def test_what_an_end_system_may_publish() -> None:
    st = make()
    es(st, A, Subscribe("red", 10))
    es(st, B, Subscribe("red", 20))
    for prefix in ("0.0.0.0/0", "10.2.0.0/16", "10.1.1.0/24"):
        es(st, A, pub(A, prefix))
        assert refusal(st, A, Associate("red", node(A, prefix))) == (
            "forbidden",
            f"{prefix}: only host routes (/32) may be published in VPN 'red' "
            "(vpns.red.host_routes_only)",
        )
    es(st, A, pub(A, "10.2.0.1/32"))
    assert refusal(st, A, Associate("red", node(A, "10.2.0.1/32"))) == (
        "forbidden",
        "10.2.0.1/32 is outside the prefixes system 0a0000000001 may use in VPN 'red' "
        "(vpns.red.prefixes)",
    )
    # B has narrower ranges of its own
    es(st, B, pub(B, "10.1.1.9/32"))
    assert refusal(st, B, Associate("red", node(B, "10.1.1.9/32"))) == (
        "forbidden",
        "10.1.1.9/32 is outside the prefixes system 0a0000000002 may use in VPN 'red' "
        "(vpns.red.end_systems)",
    )
    es(st, B, pub(B, "10.1.2.9/32"), Associate("red", node(B, "10.1.2.9/32")))
    es(st, A, pub(A, "fd00:1::5/128"), Associate("red", node(A, "fd00:1::5/128")))
    # blue allows subnets, anywhere
    es(
        st,
        A,
        Subscribe("blue", 30),
        pub(A, "10.7.0.0/16"),
        Associate("blue", node(A, "10.7.0.0/16")),
    )
    assert {(e.vpn, str(e.prefix)) for e in st.exports()} == {
        ("red", "10.1.2.9/32"),
        ("red", "fd00:1::5/128"),
        ("blue", "10.7.0.0/16"),
    }


def test_first_come_owns_an_address_in_a_vpn() -> None:
    st = make()
    es(st, A, Subscribe("red", 10), pub(A, "10.1.2.5/32"), Associate("red", node(A, "10.1.2.5/32")))
    es(st, B, Subscribe("red", 20))
    # B publishes the same address, even at the highest version: refused
    es(st, B, pub(B, "10.1.2.5/32", version=(1 << 32) - 1))
    assert refusal(st, B, Associate("red", node(B, "10.1.2.5/32"))) == (
        "conflict",
        "10.1.2.5/32 in VPN 'red' belongs to end-system 0a0000000001",
    )
    assert [(e.system_id, e.version) for e in st.exports()] == [(A, 1)]
    # the owner releases it: now B may have it
    es(st, A, Retract(node(A, "10.1.2.5/32")))
    es(st, B, Associate("red", node(B, "10.1.2.5/32")))
    assert [(e.system_id, e.version) for e in st.exports()] == [(B, (1 << 32) - 1)]


def test_quotas_per_end_system() -> None:
    st = make(Limits(interfaces_per_end_system=1, addresses_per_end_system=2))
    es(st, A, Subscribe("red", 10))
    assert refusal(st, A, Subscribe("blue", 11)) == (
        "resource-constraint",
        "system 0a0000000001 already has 1 interfaces (limits.interfaces_per_end_system = 1)",
    )
    es(st, B, Subscribe("blue", 11))  # another end-system's share is its own
    es(st, A, pub(A, "10.1.1.1/32"), pub(A, "10.1.1.2/32"))
    assert refusal(st, A, pub(A, "10.1.1.3/32")) == (
        "resource-constraint",
        "system 0a0000000001 already publishes 2 addresses (limits.addresses_per_end_system = 2)",
    )
    es(st, A, pub(A, "10.1.1.2/32", version=2))  # a new version of one it has: fine
    es(st, A, Retract(node(A, "10.1.1.2/32")), pub(A, "10.1.1.3/32"))
    es(st, A, Unsubscribe("red"), Subscribe("blue", 12))


def test_martian_next_hops_from_route_servers_are_not_installed() -> None:
    st = make()
    es(st, A, Subscribe("red", 10))
    ok = RouteEntry(net("10.1.9.9/32"), ipaddress.ip_address("192.0.2.2"), 100, 1)
    st.routes_update("red", [("10.1.9.9/32", ok)], 0.0)
    assert st.selected_routes("red") == {
        net("10.1.9.9/32"): frozenset({RemoteTarget(ipaddress.IPv4Address("192.0.2.2"), 100)})
    }
    for i, nh in enumerate(("0.0.0.0", "127.0.0.1", "255.255.255.255", "224.0.0.1"), 1):
        bad = RouteEntry(net("10.1.9.9/32"), ipaddress.ip_address(nh), 100, 2)
        st.routes_update("red", [("10.1.9.9/32", bad), (f"10.1.8.{i}/32", bad)], 0.0)
        assert st.selected_routes("red") == {}  # the earlier route is withdrawn
        assert st.refused_routes == 2 * i
        st.routes_update("red", [("10.1.9.9/32", ok)], 0.0)


def test_vpns_and_limits_config() -> None:
    cfg = config_from_toml(BASE)
    assert dict(cfg.vpns) == {} and cfg.limits == Limits()  # default: no VPN served
    doc: dict[str, Any] = {
        **BASE,
        "vpns": {
            "red": {
                "prefixes": ["10.1.0.0/16"],
                "host_routes_only": False,
                "end_systems": {"0A0000000001": ["10.1.1.0/28"]},
            },
            "blue": {},
        },
        "limits": {"interfaces_per_end_system": 2, "switch_answer": 1},
    }
    cfg = config_from_toml(doc)
    assert cfg.vpns["red"] == VpnConfig(
        (net("10.1.0.0/16"),), False, MappingProxyType({A: (net("10.1.1.0/28"),)})
    )
    assert cfg.vpns["blue"] == VpnConfig()
    assert cfg.limits == Limits(interfaces_per_end_system=2, switch_answer=1.0)
    for bad, err in [
        ({"vpns": {"red": {"prefix": []}}}, "vpns.red.prefix: unknown key"),
        ({"vpns": {"red": {"prefixes": ["10.1.0.1/16"]}}}, "vpns.red.prefixes[0]: '10.1.0.1/16'"),
        ({"vpns": {"red": {"host_routes_only": 1}}}, "vpns.red.host_routes_only: must be true"),
        ({"vpns": {"red": {"end_systems": {"x": []}}}}, "vpns.red.end_systems.x: key must be"),
        ({"vpns": {"red": 1}}, "vpns.red: must be a table"),
        ({"limits": {"request_burst": 0}}, "limits.request_burst: must be an integer 1.."),
        ({"limits": {"switch_answer": 0}}, "limits.switch_answer: must be a number > 0"),
        ({"limits": {"vifs": 1}}, "limits.vifs: unknown key"),
    ]:
        with pytest.raises(ConfigError) as e:
            config_from_toml({**BASE, **bad})
        assert str(e.value).startswith(err), str(e.value)
