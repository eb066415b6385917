"""control.punt without a switch: the [punt] / [vpns] config, and the handler
never raises on whatever the switch punts (one bad packet stops nothing)."""

from __future__ import annotations

import copy
import ipaddress
import random
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from control.config import ConfigError, PuntConfig, VpnConfig, config_from_toml
from control.punt import DHCP as R_DHCP
from control.punt import (
    FABRIC_ARP,
    NO_ROUTE,
    ROUTE,
    TOO_BIG,
    TTL_EXPIRED,
    Punted,
    PuntHandler,
    TokenBucket,
    meter_rates,
)
from control.vrf import VrfState
from esxmpp.dialect import Associate, Publish, RouteEntry, Subscribe
from tests.unit.test_ctl_config import BASE

VPNS = {"red": {"gateway_ipv4": "10.1.1.1", "gateway_ipv6": "2001:db8:1::1", "dhcp": True}}


def config(**extra: Any) -> Any:
    data = copy.deepcopy(BASE)
    data.update(extra)
    return config_from_toml(data)


def test_defaults_and_a_vpn() -> None:
    cfg = config()
    assert cfg.punt == PuntConfig(100, 50, 10.0, 20)
    assert dict(cfg.vpns) == {}
    cfg = config(vpns=VPNS, punt={"meter_rate": 5, "icmp_rate": 0.5})
    assert cfg.vpns["red"] == VpnConfig(
        gateway_ipv4=ipaddress.IPv4Address("10.1.1.1"),
        gateway_ipv6=ipaddress.IPv6Address("2001:db8:1::1"),
        dhcp=True,
    )
    assert cfg.punt == PuntConfig(5, 50, 0.5, 20)
    assert set(meter_rates(cfg.punt)) == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"punt": {"rate": 1}}, "punt.rate: unknown key"),
        ({"punt": {"meter_rate": -1}}, "punt.meter_rate: must be an integer 0..1000000"),
        ({"punt": {"icmp_rate": 0}}, "punt.icmp_rate: must be a number > 0"),
        ({"vpns": {"red": 1}}, "vpns.red: must be a table"),
        ({"vpns": {"red": {"gw": 1}}}, "vpns.red.gw: unknown key"),
        (
            {"vpns": {"red": {"gateway_ipv4": "x"}}},
            "vpns.red.gateway_ipv4: must be an IPv4 address",
        ),
        (
            {"vpns": {"red": {"gateway_ipv6": "1.2.3.4"}}},
            "vpns.red.gateway_ipv6: must be an IPv6 address",
        ),
        (
            {"vpns": {"red": {"dhcp": True}}},
            "vpns.red.dhcp: needs vpns.red.gateway_ipv4 (the DHCP server and router)",
        ),
        ({"vpns": {"red": {"dhcp": "yes"}}}, "vpns.red.dhcp: must be true or false"),
        (
            {"vpns": {"red": {"gateway_ipv4": "10.1.1.1", "dhcp_dns": ["x"]}}},
            "vpns.red.dhcp_dns[0]: must be an IPv4 address",
        ),
        (
            {"vpns": {"red": {"dhcp_prefix_len": 33}}},
            "vpns.red.dhcp_prefix_len: must be an integer 1..32",
        ),
    ],
)
def test_errors_name_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config(**extra)
    assert str(exc.value) == message


def test_token_bucket() -> None:
    b = TokenBucket(2.0, 3, 100.0)
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert [b.take(100.5), b.take(100.5)] == [True, False]
    assert b.take(99.0) is False  # a clock going back adds nothing


def _handler() -> PuntHandler:
    cfg = config(vpns=VPNS)
    state = VrfState(cfg.fabric.infra_address, cfg.end_system_ports)
    sid = bytes.fromhex("0a0000000001")
    node = "0a0000000001:10.1.1.5/32"
    entry = RouteEntry(ipaddress.ip_network("10.1.1.5/32"), ipaddress.ip_address("0.0.0.0"), 16, 1)
    for req in (Subscribe("red", 10), Publish(node, entry), Associate("red", node)):
        state.end_system(sid, [req], 0.0)
    assert state.interfaces[(sid, "red")].vif_id == 1
    return PuntHandler(cfg, state, 0.0)


def _corpus() -> list[Punted]:
    v4 = Ether() / Dot1Q(vlan=10) / IP(src="10.1.1.5", dst="10.2.0.9", flags="DF") / UDP()
    v6 = Ether() / Dot1Q(vlan=10) / IPv6(src="2001:db8:1::5", dst="2001:db8:1::1")
    dhcp = (
        Ether()
        / Dot1Q(vlan=10)
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes(16))
        / DHCP(options=[("message-type", "discover"), "end"])
    )
    arp = Ether() / ARP(op=1, pdst="192.0.2.1")
    ping = Ether() / Dot1Q(vlan=10) / IP(src="10.1.1.5", dst="10.1.1.1") / ICMP(type=8)
    return [
        Punted(bytes(arp), FABRIC_ARP, 1),
        Punted(bytes(ping), ROUTE, 3, 1, 1),
        Punted(bytes(v6 / ICMPv6EchoRequest()), ROUTE, 3, 1, 1),
        Punted(bytes(v4 / (b"x" * 1400)), TOO_BIG, 3, 1, 1),
        Punted(bytes(v4), TTL_EXPIRED, 3, 1, 1),
        Punted(bytes(v6 / UDP()), NO_ROUTE, 3, 1, 1),
        Punted(bytes(v4), NO_ROUTE, 1, 0, 0, 1),
        Punted(bytes(dhcp), R_DHCP, 3, 1, 1),
        Punted(bytes(v4), 99, 3, 1, 1),
    ]


def test_whatever_is_punted_the_handler_answers_or_counts_never_raises() -> None:
    h = _handler()
    # unmutated, every known reason gets its one answer
    assert [len(h.handle(p, 0.0)) for p in _corpus()] == [1, 1, 1, 1, 1, 1, 1, 1, 0]
    h = _handler()
    rng = random.Random(13)
    n = 0
    for pin in _corpus():
        for _ in range(300):
            b = bytearray(pin.payload)
            for _ in range(rng.randint(1, 4)):
                if not b:
                    break
                op = rng.random()
                i = rng.randrange(len(b))
                if op < 0.5:
                    b[i] = rng.randrange(256)
                elif op < 0.8:
                    del b[i:]
                else:
                    b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            reason = pin.reason if rng.random() < 0.9 else rng.randrange(8)
            for out in h.handle(
                Punted(bytes(b), reason, pin.ingress_port, pin.vrf_id, pin.vif_id, pin.out_vif),
                float(n),
            ):
                assert out.payload
            n += 1
    assert h.stats.errors == 0
    assert sum(h.stats.received.values()) == n
