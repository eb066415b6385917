"""Operations that must never break a forwarder (issue 19): a dual-stack
end-system, route-server restarts, agent restarts with changed state, and
SIGTERM in every state. Real parts: the agent and the route server in
process or as their console scripts, the embedded target's switch, TLS XMPP."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import signal
import subprocess
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from control import tables as T
from control.host import send_command
from control.p4rt import Exact, Lpm, TableEntry
from control.vrf import LocalTarget, RemoteTarget
from esxmpp.client import XmppClient
from esxmpp.dialect import Dissociate, Retract
from esxmpp.testing import Pki, make_pki
from tests.system.forwarder_pair import (
    A_FWD,
    A_HOST,
    B_FWD,
    B_HOST,
    route_server,
    start_labs,
    two_labs,
)
from tests.system.test_agent_cli import BIN, free_port, to_toml
from tests.system.test_agent_flow import (
    HOST_SID,
    INFRA,
    Lab,
    end_system_client,
    http_get,
    until,
    until_async,
)

NET = ipaddress.ip_network
ROUNDS = 20  # SIGTERM races: enough rounds to catch a 1-in-15 hang


# ------------------------------------------------------------- bug 1: dual stack


def test_dual_stack_end_system_is_saved_installed_and_shown(tmp_path: Path) -> None:
    """An end-system with an IPv4 and an IPv6 address on one interface: the
    state file holds both (its save sorts both families), the switch holds
    both source entries, the operator views work and the agent closes."""

    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await lab.start_synced()
            await lab.start_host()
            assert await lab.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            for prefix in ("10.1.1.2/32", "fd00:1::2/128"):
                assert await lab.host_cmd(op="publish", prefix=prefix, version=1) == {"ok": True}
            await agent.driver.wait_synced(10)
            state_file = tmp_path / "agent-state.json"

            def saved() -> list[list[object]]:
                try:
                    data = json.loads(state_file.read_text())
                except (OSError, ValueError):
                    return []
                itfs = data["vrf"]["interfaces"]
                return list(itfs[0]["addresses"]) if itfs else []

            await until(lambda: len(saved()) == 2, what="both addresses saved")
            assert saved() == [
                ["10.1.1.2/32", f"{HOST_SID}:10.1.1.2/32", 1],
                ["fd00:1::2/128", f"{HOST_SID}:fd00:1::2/128", 1],
            ]
            source_tables = {lab.info.full_name(t) for t in (T.IPV4_SOURCE, T.IPV6_SOURCE)}
            sources = {
                e
                for e in await lab.switch_entities()
                if isinstance(e, TableEntry) and e.table in source_tables
            }
            assert sources == lab.canon(
                {
                    TableEntry(
                        T.IPV4_SOURCE,
                        {"vif_id": Exact(1), "src_addr": Lpm(0x0A010102, 32)},
                        T.A_PERMIT,
                    ),
                    TableEntry(
                        T.IPV6_SOURCE,
                        {
                            "vif_id": Exact(1),
                            "src_addr": Lpm(int(ipaddress.IPv6Address("fd00:1::2")), 128),
                        },
                        T.A_PERMIT,
                    ),
                }
            )
            assert agent.driver.connected
            assert await http_get(agent, "/v1/routes") == [
                {
                    "vpn": "red",
                    "prefix": prefix,
                    "source": "exported",
                    "nexthops": [f"{INFRA} label 16 version 1"],
                }
                for prefix in ("10.1.1.2/32", "fd00:1::2/128")
            ]
            assert await http_get(agent, "/v1/diff") == {"updates": []}
            metrics = await http_get(agent, "/metrics")
            assert 'esvpn_loop_errors_total{loop="save"} 0.0\n' in metrics
            assert "esvpn_switch_driver_errors_total 0.0\n" in metrics
            assert "esvpn_switch_connects_total 1.0\n" in metrics
        # closed cleanly (Lab.close awaited agent.close) and saved a last time
        assert len(saved()) == 2

    asyncio.run(scenario())


# ------------------------------------------------------- bug 7: SIGTERM always

OTHER_SID = "0a0000000002"


async def _get_json(port: int, path: str) -> object:
    def get() -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read())

    return await asyncio.to_thread(get)


async def exited_within(proc: asyncio.subprocess.Process, seconds: float) -> int | None:
    """The exit status if ``proc`` ends within ``seconds`` (polled), else None."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while proc.returncode is None and loop.time() < end:
        await asyncio.sleep(0.02)
    return proc.returncode


async def connect_until(client: XmppClient, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        try:
            await client.connect(timeout=2.0)
            return
        except ConnectionError:
            assert loop.time() < end, "the agent never accepted the end-system"
            await asyncio.sleep(0.05)


def test_agent_exits_on_sigterm_while_an_end_system_state_is_retained(tmp_path: Path) -> None:
    """One end-system has just left (its state is retained) and another is
    connected: SIGTERM ends the agent process with status 0 within 5 s, every
    time (the shutdown once waited on the retention timer, 1 in ~15)."""

    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            await lab.start_switch()
            await lab.start_rs()
            cfg = lab.agent_config(retention=30.0)
            control, xmpp = free_port(), free_port()
            cfg["agent"]["control"] = f"127.0.0.1:{control}"
            cfg["xmpp"]["port"] = xmpp
            cfg["end_systems"]["ports"][OTHER_SID] = 4
            path = tmp_path / "agent.toml"
            path.write_text(to_toml(cfg))
            for i in range(ROUNDS):
                log = (tmp_path / f"agent-{i}.log").open("w")
                proc = await asyncio.create_subprocess_exec(
                    str(BIN / "esvpn-agent"), "--config", str(path), stderr=log
                )
                leaving, staying = (
                    end_system_client(lab, HOST_SID, xmpp),
                    end_system_client(lab, OTHER_SID, xmpp),
                )
                try:
                    await connect_until(leaving)
                    await connect_until(staying)
                    await leaving.subscribe("red", 10)
                    await staying.subscribe("red", 20)
                    await leaving.close()

                    async def one_session() -> bool:
                        rows = await _get_json(control, "/v1/sessions")
                        assert isinstance(rows, list)
                        return [r["kind"] for r in rows].count("end-system") == 1

                    await until_async(one_session)
                    proc.send_signal(signal.SIGTERM)
                    rc = await exited_within(proc, 5.0)
                    assert rc == 0, f"round {i}: exit status {rc} (None: still running)"
                finally:
                    await staying.close()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                    log.close()

    asyncio.run(scenario())


def test_host_run_exits_on_sigterm_while_reconnecting(tmp_path: Path) -> None:
    """``esvpn host run`` whose agent went away, reconnecting every 50 ms:
    SIGTERM at any moment ends it with status 0 within 5 s."""

    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            await lab.start_switch()
            await lab.start_rs()
            await lab.start_agent()
            cli = lab.pki.client(HOST_SID)
            sock = tmp_path / "host.sock"
            host_toml = tmp_path / "host.toml"
            host_toml.write_text(
                f'[host]\nsocket = "{sock}"\nreconnect = 0.05\n'
                f'[xmpp]\njid = "{HOST_SID}@tor.test"\nhost = "127.0.0.1"\n'
                f"port = {lab.xmpp_port}\n"
                f'certfile = "{cli.certfile}"\nkeyfile = "{cli.keyfile}"\n'
                f'cafile = "{lab.pki.cafile}"\n'
            )
            rng = random.Random(19)
            for i in range(ROUNDS):
                if lab.agent is None:
                    await lab.start_agent()
                proc = await asyncio.create_subprocess_exec(
                    str(BIN / "esvpn"),
                    "host",
                    "run",
                    "--config",
                    str(host_toml),
                    stderr=asyncio.subprocess.DEVNULL,
                )
                try:

                    async def connected() -> bool:
                        try:
                            return (await send_command(sock, {"op": "status"}, 2.0))["connected"]
                        except OSError:
                            return False

                    await until_async(connected, 20.0)
                    assert lab.agent is not None
                    await lab.agent.close()  # the agent goes away
                    lab.agent = None
                    await asyncio.sleep(rng.uniform(0.0, 0.3))  # somewhere in the retries
                    proc.send_signal(signal.SIGTERM)
                    rc = await exited_within(proc, 5.0)
                    assert rc == 0, f"round {i}: exit status {rc} (None: still running)"
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()

    asyncio.run(scenario())


# ------------------------------------------- bug 2: route-server kill -9 and restart


class RouteServerProcess:
    """``esvpn-routeserver run`` as a process in its own process group (so a
    kill -9 takes its ExaBGP child with it, whatever issue 19 bug 4 says)."""

    def __init__(self, tmp: Path, pki: Pki) -> None:
        self.tmp = tmp
        self.xmpp_port, self.control_port = free_port(), free_port()
        cert = pki.server("rs.test")
        self.config = tmp / "rs.toml"
        self.config.write_text(
            '[server]\nrouter_id = "127.0.6.1"\nasn = 64512\n'
            f'[xmpp]\ndomain = "rs.test"\ncertfile = "{cert.certfile}"\n'
            f'keyfile = "{cert.keyfile}"\ncafile = "{pki.cafile}"\n'
            f"port = {self.xmpp_port}\nown_nodes_only = false\n"
            'forwarders = ["02aa*"]\n'
            f"[control]\nport = {self.control_port}\n"
            '[[vrf]]\nvpn = "red"\nimport_targets = ["64512:100"]\n'
            'export_targets = ["64512:100"]\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        with (self.tmp / f"rs-{self.runs}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "esvpn-routeserver"), "run", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    async def get(self, path: str) -> Any:
        def get() -> Any:
            url = f"http://127.0.0.1:{self.control_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read().decode()
            return json.loads(body) if path.startswith("/show") else body

        return await asyncio.to_thread(get)

    async def up(self) -> bool:
        try:
            await self.get("/show/sessions")
        except OSError:
            return False
        return True

    async def sessions_opened(self) -> int:
        text = await self.get("/metrics")
        line = next(x for x in text.splitlines() if x.startswith("esvpn_rs_xmpp_sessions_opened"))
        return int(float(line.split()[1]))


def test_route_server_kill_and_restart_brings_both_forwarders_back(tmp_path: Path) -> None:
    """Two agents, one route server process killed with SIGKILL while the
    agents retry, then restarted on the same ports: each forwarder has
    exactly one session again, re-subscribed and re-published, the routes
    are re-learned on both sides, and no session flaps (the failed attempts
    of the outage once lived on in the background and bound sessions that
    replaced each other with <conflict>)."""

    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        rs = RouteServerProcess(tmp_path, pki)
        a, b = two_labs(tmp_path, pki)
        rs.start()
        try:
            await until_async(rs.up, 30.0)
            await start_labs(rs.xmpp_port, a, b)
            assert await a.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            assert await b.host_cmd(op="subscribe", vpn="red", vlan=20) == {"ok": True}
            assert await a.host_cmd(op="publish", prefix="10.1.1.5/32") == {"ok": True}
            assert await b.host_cmd(op="publish", prefix="10.1.2.7/32") == {"ok": True}
            assert a.agent is not None and b.agent is not None
            agents = (a.agent, b.agent)
            want = {
                A_FWD: {
                    NET("10.1.1.5/32"): frozenset({LocalTarget(1, 3, 10, int(A_HOST, 16))}),
                    NET("10.1.2.7/32"): frozenset({RemoteTarget(IPv4Address("192.0.2.2"), 16)}),
                },
                B_FWD: {
                    NET("10.1.2.7/32"): frozenset({LocalTarget(1, 3, 20, int(B_HOST, 16))}),
                    NET("10.1.1.5/32"): frozenset({RemoteTarget(IPv4Address("192.0.2.1"), 16)}),
                },
            }
            for fwd, agent in zip((A_FWD, B_FWD), agents, strict=True):
                await until(
                    lambda ag=agent, f=fwd: ag.state.selected_routes("red") == want[f],  # type: ignore[misc]
                    what=f"routes at {fwd}",
                )

            rs.kill()
            await until(lambda: not any(ag.rs.servers[0].connected for ag in agents))
            # the agents' retry loops run several times during the outage
            tries = [ag.rs.servers[0].attempts for ag in agents]
            await until(
                lambda: all(
                    ag.rs.servers[0].attempts >= t + 6 for ag, t in zip(agents, tries, strict=True)
                ),
                timeout=30.0,
                what="retries during the outage",
            )
            rs.start()
            await until_async(rs.up, 30.0)

            async def both_back() -> bool:
                rows = await rs.get("/show/sessions")
                return sorted(
                    (r["system_id"], r["subscriptions"], r["published"]) for r in rows
                ) == [
                    (A_FWD, ["red"], 1),
                    (B_FWD, ["red"], 1),
                ]

            await until_async(both_back, 30.0)
            for fwd, agent in zip((A_FWD, B_FWD), agents, strict=True):
                await until(
                    lambda ag=agent, f=fwd: ag.state.selected_routes("red") == want[f],  # type: ignore[misc]
                    what=f"routes re-learned at {fwd}",
                )
            # stable: for longer than the slowest background retry the outage
            # could have left behind (slixmpp: 1, 3, 7 s), still one session
            # each and no more session opens than the two of the restart
            loop = asyncio.get_running_loop()
            end = loop.time() + 8.0
            while loop.time() < end:
                assert await both_back()
                assert await rs.sessions_opened() == 2
                assert all(ag.rs.servers[0].connected for ag in agents)
                await asyncio.sleep(0.2)
            assert [ag.rs.servers[0].conflicts for ag in agents] == [0, 0]
            for ag in agents:
                await ag.driver.wait_synced(10)
                assert await ag.driver.diff() == []
        finally:
            await a.close()
            await b.close()
            rs.kill()

    asyncio.run(scenario())


# ---------------------------------------- bug 3: agree after a resumed session


def test_route_server_drops_what_a_restarted_agent_no_longer_has(tmp_path: Path) -> None:
    """Agent A publishes X and Y, stops without withdrawing (the route server
    keeps its state for the retention time) and comes back with a state in
    which only X exists: once A has re-sent X and its end of sync, the route
    server holds X only and forwarder B no longer routes to Y."""

    async def scenario() -> None:
        pki = make_pki(tmp_path / "pki")
        rs = route_server(pki, retention=60, forwarders=[A_FWD, B_FWD])
        a, b = two_labs(tmp_path, pki)
        await rs.start()
        try:
            assert rs.xmpp is not None
            await start_labs(rs.xmpp.port, a, b)
            assert await a.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            assert await b.host_cmd(op="subscribe", vpn="red", vlan=20) == {"ok": True}
            for prefix in ("10.1.1.5/32", "10.1.1.6/32"):
                assert await a.host_cmd(op="publish", prefix=prefix) == {"ok": True}
            assert b.agent is not None
            sb = b.agent.state
            x, y = NET("10.1.1.5/32"), NET("10.1.1.6/32")
            remote = frozenset({RemoteTarget(IPv4Address("192.0.2.1"), 16)})
            await until(lambda: sb.selected_routes("red") == {x: remote, y: remote}, what="X, Y")

            # A goes away without withdrawing anything (as a kill -9 would)
            assert a.host is not None and a.agent is not None
            await a.host.close()
            a.host = None
            await a.agent.close()
            a.agent = None
            fwd = bytes.fromhex(A_FWD)
            await until(lambda: rs.xmpp is not None and rs.xmpp.session(fwd) is None)
            # ... and comes back with a state in which only X exists
            path = a.tmp / "agent-state.json"
            data = json.loads(path.read_text())
            y_node = f"{A_HOST}:10.1.1.6/32"
            (itf,) = data["vrf"]["interfaces"]
            itf["addresses"] = [ad for ad in itf["addresses"] if ad[1] != y_node]
            del data["vrf"]["published"][A_HOST][y_node]
            path.write_text(json.dumps(data))
            state = rs.xmpp.table.state(fwd)
            assert state is not None and len(state.published) == 2  # retained
            agent = await a.start_agent()
            await until(lambda: agent.rs.servers[0].end_of_sync, what="A's end of sync")
            state = rs.xmpp.table.state(fwd)
            assert state is not None
            assert set(state.published) == {f"{A_HOST}:10.1.1.5/32"}
            assert state.associations == {f"{A_HOST}:10.1.1.5/32": {"red"}}
            await until(lambda: sb.selected_routes("red") == {x: remote}, what="Y withdrawn at B")
            assert [r["prefix"] for r in rs.rib.show_routes("red")] == ["10.1.1.5/32"]
            # the agent's view: the end-system has not re-announced X yet
            assert set(agent.state.interfaces) == {(bytes.fromhex(A_HOST), "red")}
        finally:
            await a.close()
            await b.close()
            await rs.stop()

    asyncio.run(scenario())


# ------------------------------------ bug 8 (agent): withdrawals already done


def test_withdrawal_the_route_server_already_did_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The route server no longer holds a node when the agent withdraws it
    (it dropped it at an EndOfSync, or its retention ran out): its
    item-not-found answers to the dissociate and retract are the wanted
    state, logged at info and counted, not errors."""

    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await lab.start_synced()
            await lab.start_host()
            assert await lab.host_cmd(op="subscribe", vpn="red", vlan=10) == {"ok": True}
            assert await lab.host_cmd(op="publish", prefix="10.1.1.5/32") == {"ok": True}
            await until(lambda: len(lab.rs_handler.requests) == 3, what="exports")
            node = f"{HOST_SID}:10.1.1.5/32"
            fwd = bytes.fromhex(lab.fwd_sid)
            assert lab.rs is not None
            # the route server side drops the node (what its EndOfSync or
            # retention would do), through its session table
            assert lab.rs.table.apply(fwd, Retract(node)) == [
                Dissociate("red", node),
                Retract(node),
            ]
            caplog.clear()
            assert await lab.host_cmd(op="retract", prefix="10.1.1.5/32") == {"ok": True}
            rs = agent.rs.servers[0]
            await until(lambda: rs.already_withdrawn == 2, what="both withdrawals answered")
            assert (rs.errors, rs.last_error, rs.sent) == (0, "", {})
            assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
            assert [r.getMessage() for r in caplog.records if r.name == "control.routeservers"] == [
                f"route server {rs.name}: {node} in red already withdrawn "
                f"(item-not-found: node {node!r} is not in VPN 'red')",
                f"route server {rs.name}: {node} already withdrawn "
                f"(item-not-found: node {node!r} is not published)",
            ]

    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
