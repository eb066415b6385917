"""Traffic through the compiled program (p4src/build) on the embedded target's
engine, programmed by the agent: exact frames in, exact frames out.

* an end-system's packet to a route learned from the route source leaves the
  fabric port MPLS-in-GRE encapsulated toward the remote forwarder;
* the remote forwarder's packet to our label is delivered on the vif;
* the agent restarts while packets keep flowing: not one is lost, and the
  restarted agent's reconciliation writes nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE, Dot1Q, Ether

from softswitch.engine import SoftEngine
from tests.system.test_agent_flow import Lab, attach_and_learn

HOST_MAC = "0a:00:00:00:00:01"
VRRP_MAC = "00:00:5e:00:01:01"
FABRIC_SRC, FABRIC_DST = "02:00:00:00:00:01", "02:00:00:00:00:fe"


def from_host(n: int = 0) -> bytes:
    return bytes(
        Ether(src=HOST_MAC, dst=VRRP_MAC)
        / Dot1Q(vlan=10)
        / IP(src="10.1.1.5", dst="10.2.0.9", ttl=64, id=n)
        / UDP(sport=1000 + n, dport=2000)
        / b"payload"
    )


def encapsulated(n: int = 0) -> bytes:
    inner = (
        IP(src="10.1.1.5", dst="10.2.0.9", ttl=63, id=n)
        / UDP(sport=1000 + n, dport=2000)
        / b"payload"
    )
    return bytes(
        Ether(src=FABRIC_SRC, dst=FABRIC_DST)
        / IP(src="192.0.2.1", dst="192.0.2.2", ttl=64, id=0, flags="DF", proto=47)
        / GRE(proto=0x8847)
        / MPLS(label=100, cos=0, s=1, ttl=63)
        / inner
    )


def from_fabric() -> bytes:
    inner = IP(src="10.2.0.9", dst="10.1.1.5", ttl=20) / UDP(sport=7, dport=8) / b"back"
    return bytes(
        Ether(src=FABRIC_DST, dst=FABRIC_SRC)
        / IP(src="192.0.2.2", dst="192.0.2.1", ttl=64, proto=47)
        / GRE(proto=0x8847)
        / MPLS(label=16, s=1, ttl=20)
        / inner
    )


def delivered() -> bytes:
    return bytes(
        Ether(src=VRRP_MAC, dst=HOST_MAC)
        / Dot1Q(vlan=10)
        / IP(src="10.2.0.9", dst="10.1.1.5", ttl=19)  # forwarded: TTL decremented
        / UDP(sport=7, dport=8)
        / b"back"
    )


def test_encapsulation_decapsulation_and_lossless_agent_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path, engine_factory=SoftEngine) as lab:  # the compiled program
            agent = await attach_and_learn(lab)
            engine = lab.engine
            assert engine.process(3, from_host()) == [(1, encapsulated())]
            assert engine.process(1, from_fabric()) == [(3, delivered())]
            # spoofed source: dropped
            spoofed = bytes(
                Ether(src=HOST_MAC, dst=VRRP_MAC)
                / Dot1Q(vlan=10)
                / IP(src="10.1.1.6", dst="10.2.0.9")
                / UDP()
            )
            assert engine.process(3, spoofed) == []

            # agent restart while traffic flows
            results: list[bool] = []
            stop = asyncio.Event()

            async def traffic() -> None:
                n = 0
                while not stop.is_set():
                    out = engine.process(3, from_host(n % 1000))
                    results.append(out == [(1, encapsulated(n % 1000))])
                    n += 1
                    await asyncio.sleep(0)  # let the agent run between packets

            sender = asyncio.create_task(traffic())
            await agent.close()
            lab.agent = agent = await lab.start_agent()
            await agent.driver.wait_synced(20)
            assert agent.driver.stats.last_reconcile_diff == 0
            assert agent.driver.stats.pipeline_commits == 0
            stop.set()
            await sender
            assert len(results) > 100
            assert all(results), f"{results.count(False)} of {len(results)} packets lost"
            assert await agent.driver.diff() == []

    asyncio.run(scenario())
