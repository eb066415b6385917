"""Issue 13, the punt path end to end: the agent (control.punt) behind the
softswitch's P4Runtime server, on the compiled program (p4src/build) in the
embedded engine. Frames go into the engine as on a port; what the switch
punts reaches the agent over its P4Runtime stream, and the agent's
packet-outs come out of the engine's ports; every frame is compared exactly.

Path-MTU discovery: a DF packet too big for the tunnel gets ICMP
fragmentation-needed with MTU = fabric MTU - 28 from the VPN's gateway, and
the packet resent at that size is encapsulated and sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scapy.contrib.mpls import MPLS
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import GRE, ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from control.p4rt import MeterRate, P4RuntimeClient
from control.punt import REASONS
from esxmpp.dialect import ItemsEvent
from softswitch.engine import SoftEngine
from softswitch.p4runtime import P4RuntimeServer
from tests.system.test_agent_flow import FWD_SID, INFRA, Lab, attach_and_learn, route, until

HOST_MAC = "0a:00:00:00:00:01"
VRRP4, VRRP6 = "00:00:5e:00:01:01", "00:00:5e:00:02:01"
FABRIC_SRC, FABRIC_DST = "02:00:00:00:00:01", "02:00:00:00:00:fe"
GW4, GW6 = "10.1.1.1", "2001:db8:1::1"
MTU = 1400  # fabric MTU: inner packets up to 1372 bytes fit
CPU = 255


class PuntLab(Lab):
    """Lab whose switch hands the agent's packet-outs to ``self.out`` and
    whose agent has VPN red's gateway addresses and DHCP."""

    def __init__(self, tmp: Path, **kw: Any) -> None:
        super().__init__(tmp, engine_factory=SoftEngine, **kw)
        self.out: list[tuple[int, bytes]] = []

    async def start_switch(self, engine: Any = None, tls: Any = None) -> None:
        def emit(port: int, frame: bytes) -> None:
            self.out.append((port, frame))

        self.switch = P4RuntimeServer(self.engine, device_id=1, cpu_port=CPU, emit=emit)
        self.switch_port = await self.switch.start(f"127.0.0.1:{self.switch_port}", tls=tls)

    def agent_config(self, stale: float = 30.0, retention: float = 30.0) -> dict[str, Any]:
        cfg = super().agent_config(stale, retention)
        cfg["fabric"]["mtu"] = MTU
        cfg["vpns"] = {"red": {"gateway_ipv4": GW4, "gateway_ipv6": GW6, "dhcp": True}}
        cfg["punt"] = {"icmp_rate": 1000.0, "icmp_burst": 1000}
        return cfg

    def send(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """A frame in on ``port``: what left on data ports; punts go to the agent."""
        outs = self.engine.process(port, frame)
        assert self.switch is not None
        for p, f in outs:
            if p == CPU:
                self.switch.packet_in(f)
        return [(p, f) for p, f in outs if p != CPU]

    async def answer(self, n: int = 1) -> list[tuple[int, bytes]]:
        """The next ``n`` frames the agent sent (packet-outs)."""
        await until(lambda: len(self.out) >= n, what="the agent's packet-out")
        got, self.out[:] = self.out[:n], self.out[n:]
        return got


async def learn_local_route(lab: PuntLab) -> None:
    """The route server sends the host's own route back (draft §5): local delivery,
    so what the agent routes to the host reaches it."""
    agent = lab.agent
    assert agent is not None
    lab.rs_handler.send(
        bytes.fromhex(FWD_SID),
        ItemsEvent("red", (("10.1.1.5/32", route("10.1.1.5/32", INFRA, 16, 3)),)),
    )
    await until(lambda: len(agent.state.remote["red"]) == 2, what="local route")
    await agent.driver.wait_synced(10)


def from_host(l3: Any, dst: str = VRRP4) -> bytes:
    return bytes(Ether(src=HOST_MAC, dst=dst) / Dot1Q(vlan=10) / l3)


def to_host(l3: Any, src: str = VRRP4, dst: str = HOST_MAC) -> bytes:
    return bytes(Ether(src=src, dst=dst) / Dot1Q(vlan=10) / l3)


def tunnelled(inner: IP) -> bytes:
    return bytes(
        Ether(src=FABRIC_SRC, dst=FABRIC_DST)
        / IP(src=INFRA, dst="192.0.2.2", ttl=64, id=0, flags="DF", proto=47)
        / GRE(proto=0x8847)
        / MPLS(label=100, cos=0, s=1, ttl=inner.ttl)
        / inner
    )


def df_udp(size: int, ttl: int = 64) -> IP:
    """IPv4/UDP with DF from the host to the remote VPN site, total length ``size``."""
    pkt = IP(src="10.1.1.5", dst="10.2.0.9", flags="DF", id=5, ttl=ttl) / UDP(sport=9, dport=9)
    return IP(bytes(pkt / Raw(b"p" * (size - 28))))


def icmp_error(about: bytes, icmp: Any) -> IP:
    """What the gateway sends the host: the ICMP error with at most 548 bytes quoted."""
    return IP(
        bytes(IP(src=GW4, dst="10.1.1.5", ttl=64, id=0, tos=0xC0, proto=1) / icmp / about[:548])
    )


def run(lab_test: Callable[[PuntLab], Any], tmp: Path) -> None:
    async def scenario() -> None:
        async with PuntLab(tmp) as lab:
            await attach_and_learn(lab)
            await learn_local_route(lab)
            await lab_test(lab)

    asyncio.run(scenario())


def test_path_mtu_discovery_through_the_tunnel(tmp_path: Path) -> None:
    async def t(lab: PuntLab) -> None:
        big = df_udp(MTU - 28 + 1)
        assert lab.send(3, from_host(big)) == []
        need = ICMP(type=3, code=4, nexthopmtu=MTU - 28)
        assert await lab.answer() == [(3, to_host(icmp_error(bytes(big), need)))]
        # the host resends at the MTU it was told: through the tunnel, exactly
        fits = df_udp(MTU - 28)
        out = IP(bytes(fits))
        out.ttl = 63
        del out.chksum
        assert lab.send(3, from_host(fits)) == [(1, tunnelled(IP(bytes(out))))]
        assert len(tunnelled(IP(bytes(out)))) == 14 + MTU
        assert lab.out == []

    run(t, tmp_path)


def test_time_exceeded_and_no_route_from_the_gateway(tmp_path: Path) -> None:
    async def t(lab: PuntLab) -> None:
        expired = df_udp(100, ttl=1)
        assert lab.send(3, from_host(expired)) == []
        te = ICMP(type=11, code=0)
        assert await lab.answer() == [(3, to_host(icmp_error(bytes(expired), te)))]
        nowhere = IP(bytes(IP(src="10.1.1.5", dst="10.77.0.1") / UDP(sport=1, dport=2)))
        assert lab.send(3, from_host(nowhere)) == []
        unreach = ICMP(type=3, code=0)
        assert await lab.answer() == [(3, to_host(icmp_error(bytes(nowhere), unreach)))]
        # an ICMP error is never answered with one
        err = IP(bytes(IP(src="10.1.1.5", dst="10.77.0.1") / ICMP(type=3, code=1) / (b"x" * 28)))
        assert lab.send(3, from_host(err)) == []
        agent = lab.agent
        assert agent is not None
        await until(lambda: agent.punt.stats.ignored.get("no_error_allowed") == 1)
        assert lab.out == []
        assert agent.punt.stats.received == {"ttl_expired": 1, "no_route": 2}

    run(t, tmp_path)


def test_echo_to_the_gateway_and_fabric_arp_are_answered(tmp_path: Path) -> None:
    async def t(lab: PuntLab) -> None:
        ping = IP(bytes(IP(src="10.1.1.5", dst=GW4, id=3) / ICMP(type=8, id=7, seq=1) / b"hi"))
        assert lab.send(3, from_host(ping)) == []
        pong = IP(bytes(IP(src=GW4, dst="10.1.1.5", id=0) / ICMP(type=0, id=7, seq=1) / b"hi"))
        assert await lab.answer() == [(3, to_host(pong))]
        who = bytes(
            Ether(src=FABRIC_DST, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=FABRIC_DST, psrc="192.0.2.254", pdst=INFRA)
        )
        assert lab.send(1, who) == []
        reply = bytes(
            Ether(src=FABRIC_SRC, dst=FABRIC_DST)
            / ARP(op=2, hwsrc=FABRIC_SRC, psrc=INFRA, hwdst=FABRIC_DST, pdst="192.0.2.254")
        )
        assert await lab.answer() == [(1, reply)]
        # not for us: no answer
        other = bytes(
            Ether(src=FABRIC_DST, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=FABRIC_DST, psrc="192.0.2.254", pdst="192.0.2.77")
        )
        assert lab.send(1, other) == []
        agent = lab.agent
        assert agent is not None
        await until(lambda: agent.punt.stats.ignored.get("arp_not_for_us") == 1)
        assert lab.out == []

    run(t, tmp_path)


def dhcp_frame(mtype: str, xid: int, **opts: Any) -> bytes:
    options: list[Any] = [("message-type", mtype), *opts.items(), "end"]
    return from_host(
        IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(op=1, xid=xid, chaddr=bytes.fromhex("0a0000000001") + bytes(10))
        / DHCP(options=options),
        dst="ff:ff:ff:ff:ff:ff",
    )


def dhcp_answer(mtype: str, xid: int, dst: str, yiaddr: str, lease: bool = True) -> bytes:
    options: list[Any] = [("message-type", mtype), ("server_id", GW4)]
    if mtype != "nak":
        if lease:
            options.append(("lease_time", 3600))
        options += [("subnet_mask", "255.255.255.0"), ("router", GW4)]
    options.append("end")
    bootp = BOOTP(
        op=2, xid=xid, yiaddr=yiaddr, chaddr=bytes.fromhex("0a0000000001") + bytes(10)
    ) / DHCP(options=options)
    pad = bytes(max(0, 300 - len(bytes(bootp))))
    eth_dst = "ff:ff:ff:ff:ff:ff" if dst == "255.255.255.255" else HOST_MAC
    ip = IP(src=GW4, dst=dst, ttl=64, id=0) / UDP(sport=67, dport=68) / bootp / pad
    return to_host(IP(bytes(ip)), dst=eth_dst)


def test_dhcp_proxy_offers_the_published_address(tmp_path: Path) -> None:
    async def t(lab: PuntLab) -> None:
        assert lab.send(3, dhcp_frame("discover", 0x1234)) == []
        assert await lab.answer() == [(3, dhcp_answer("offer", 0x1234, "10.1.1.5", "10.1.1.5"))]
        req = dhcp_frame("request", 0x1235, requested_addr="10.1.1.5", server_id=GW4)
        assert lab.send(3, req) == []
        assert await lab.answer() == [(3, dhcp_answer("ack", 0x1235, "10.1.1.5", "10.1.1.5"))]
        wrong = dhcp_frame("request", 0x1236, requested_addr="10.1.1.99")
        assert lab.send(3, wrong) == []
        nak = dhcp_answer("nak", 0x1236, "255.255.255.255", "0.0.0.0")
        assert await lab.answer() == [(3, nak)]
        # malformed (no end option): ignored, and the next one is still answered
        bad = bytearray(dhcp_frame("discover", 0x1237))
        end = bad.rindex(b"\xff")
        bad[end] = 0x63
        assert lab.send(3, bytes(bad)) == []
        assert lab.send(3, dhcp_frame("discover", 0x1238)) == []
        assert await lab.answer() == [(3, dhcp_answer("offer", 0x1238, "10.1.1.5", "10.1.1.5"))]
        agent = lab.agent
        assert agent is not None
        assert agent.punt.stats.ignored == {"dhcp_malformed": 1}
        assert agent.punt.stats.errors == 0

    run(t, tmp_path)


def test_punt_meter_is_programmed_for_every_reason(tmp_path: Path) -> None:
    async def t(lab: PuntLab) -> None:
        c = await P4RuntimeClient.connect(
            f"127.0.0.1:{lab.switch_port}", lab.info, device_id=1, election_id=1
        )
        try:
            assert await c.read_meters("punt_meter") == dict.fromkeys(
                REASONS, MeterRate(100, 50, 100, 50)
            )
        finally:
            await c.close()

    run(t, tmp_path)


def test_ipv6_packet_too_big_and_echo(tmp_path: Path) -> None:
    async def t(lab: PuntLab) -> None:
        agent = lab.agent
        assert agent is not None
        assert await lab.host_cmd(op="publish", prefix="2001:db8:1::5/128", vpn="red") == {
            "ok": True
        }
        fwd = bytes.fromhex(FWD_SID)
        lab.rs_handler.send(
            fwd,
            ItemsEvent(
                "red",
                (
                    ("2001:db8:2::/48", route("2001:db8:2::/48", "192.0.2.2", 100)),
                    ("2001:db8:1::5/128", route("2001:db8:1::5/128", INFRA, 16, 0)),
                ),
            ),
        )
        await until(lambda: len(agent.state.remote["red"]) == 4, what="IPv6 routes")
        await agent.driver.wait_synced(10)
        big = IPv6(bytes(IPv6(src="2001:db8:1::5", dst="2001:db8:2::9") / UDP() / Raw(b"q" * 1325)))
        assert len(big) == MTU - 28 + 1
        assert lab.send(3, from_host(big, dst=VRRP6)) == []
        ptb = IPv6(
            bytes(
                IPv6(src=GW6, dst="2001:db8:1::5", hlim=64)
                / ICMPv6PacketTooBig(mtu=MTU - 28)
                / bytes(big)[: 1280 - 48]  # RFC 4443 2.4(c): at most 1280 bytes
            )
        )
        assert await lab.answer() == [(3, to_host(ptb, src=VRRP6))]
        ping = IPv6(src="2001:db8:1::5", dst=GW6) / ICMPv6EchoRequest(id=1, seq=2, data=b"v6")
        assert lab.send(3, from_host(IPv6(bytes(ping)), dst=VRRP6)) == []
        pong = IPv6(
            bytes(
                IPv6(src=GW6, dst="2001:db8:1::5", hlim=64)
                / ICMPv6EchoReply(id=1, seq=2, data=b"v6")
            )
        )
        assert await lab.answer() == [(3, to_host(pong, src=VRRP6))]

    run(t, tmp_path)


def test_icmp_errors_are_rate_limited_by_the_agent(tmp_path: Path) -> None:
    async def t(lab: PuntLab) -> None:
        agent = lab.agent
        assert agent is not None
        now = [time.monotonic()]
        agent.punt.icmp_bucket.__init__(1.0, 2, now[0])  # type: ignore[misc]
        agent.punt.stats.icmp_rate_limited = 0
        real_clock = agent.clock
        agent.clock = lambda: now[0]
        try:
            frames = [
                from_host(IP(bytes(IP(src="10.1.1.5", dst="10.77.0.1") / UDP(sport=s, dport=2))))
                for s in range(5)
            ]
            for f in frames:
                assert lab.send(3, f) == []
            await until(lambda: agent.punt.stats.received.get("no_route") == 5)
            assert len(await lab.answer(2)) == 2
            assert agent.punt.stats.icmp_rate_limited == 3
            assert lab.out == []
            now[0] += 1.0  # a second later: one more
            assert lab.send(3, frames[0]) == []
            assert len(await lab.answer(1)) == 1
        finally:
            agent.clock = real_clock

    run(t, tmp_path)
