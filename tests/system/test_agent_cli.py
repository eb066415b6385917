"""The console scripts as an operator / hypervisor hook runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from esxmpp.pki import CertPair, Pki
from tests.system.softswitch_proc import free_port
from tests.system.test_agent_flow import FWD_SID, HOST_SID, Lab, attach_and_learn, until
from tests.system.test_agent_support import COMPILED

BIN = Path(sys.executable).parent


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_agent_config_check(tmp_path: Path) -> None:
    async def scenario() -> None:
        bad = tmp_path / "bad.toml"
        bad.write_text(
            '[agent]\nsystem_id = "02aa00000001"\n'
            '[switch]\naddress = "127.0.0.1:9559"\ndevice_id = -1\n'
            'p4info = "x"\nbmv2_json = "y"\n'
        )
        rc, out, err = await run(str(BIN / "esvpn-agent"), "--check", "--config", str(bad))
        assert (rc, out) == (2, "")
        assert err == (
            f"esvpn-agent: {bad}: switch.device_id: must be an integer 0..18446744073709551615\n"
        )
        p4info, js = COMPILED

        def config(p4info: Path, js: Path) -> Path:
            path = tmp_path / "agent.toml"
            path.write_text(
                '[agent]\nsystem_id = "02aa00000001"\n'
                f'[switch]\naddress = "127.0.0.1:9559"\np4info = "{p4info}"\n'
                f'bmv2_json = "{js}"\n'
                '[fabric]\ninfra_address = "192.0.2.1"\nports = [1]\n'
                '[[fabric.underlay]]\nprefix = "192.0.2.0/24"\nport = 1\n'
                'src_mac = "02:00:00:00:00:01"\ndst_mac = "02:00:00:00:00:fe"\n'
                '[xmpp]\ndomain = "tor.test"\ncertfile = "tor.pem"\nkeyfile = "tor.key"\n'
                'cafile = "ca.pem"\n'
                '[[route_servers]]\njid = "02aa00000001@rs.test"\nhost = "rs.test"\n'
                'certfile = "fwd.pem"\nkeyfile = "fwd.key"\ncafile = "ca.pem"\n'
            )
            return path

        agent = str(BIN / "esvpn-agent")
        good = config(p4info, js)
        assert await run(agent, "--check", "--config", str(good)) == (0, "config ok\n", "")
        missing = tmp_path / "nope.json"
        assert await run(agent, "--check", "--config", str(config(p4info, missing))) == (
            2,
            "",
            f"esvpn-agent: {good}: switch.bmv2_json: {missing}: "
            f"[Errno 2] No such file or directory: '{missing}'\n",
        )
        # a program without the flood table
        text = p4info.read_text()
        start = text.rindex("tables {\n", 0, text.index('alias: "flood"\n'))
        end = text.index("\ntables {", start) + 1
        lacking = tmp_path / "lacking.p4info.txtpb"
        lacking.write_text(text[:start] + text[end:])
        rc, out, err = await run(agent, "--check", "--config", str(config(lacking, js)))
        assert (rc, out) == (2, "")
        assert err == (
            f"esvpn-agent: {good}: switch.p4info: {lacking}: "
            "the program lacks what the agent programs: table flood\n"
        )

    asyncio.run(scenario())


def test_host_tool_and_show_commands(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            agent = await lab.start_synced()
            host = await lab.start_host()
            esvpn = str(BIN / "esvpn")
            sock = str(host.cfg.socket)
            assert await run(
                esvpn, "host", "subscribe", "--socket", sock, "--vpn", "red", "--vlan", "10"
            ) == (0, "", "")
            assert await run(
                esvpn, "host", "subscribe", "--socket", sock, "--vpn", "blue", "--vlan", "10"
            ) == (
                1,
                "",
                "esvpn host: conflict: vlan 10 is already used by VPN 'red'\n",
            )
            # one VPN subscribed: publish needs no --vpn
            assert await run(esvpn, "host", "publish", "--socket", sock, "10.1.1.5/32") == (
                0,
                "",
                "",
            )
            await agent.driver.wait_synced(10)
            control = f"127.0.0.1:{agent.control_port}"
            rc, out, err = await run(esvpn, "show", "interfaces", "--agent", control)
            assert (rc, err) == (0, "")
            assert out == (
                "SYSTEM_ID     VPN  VLAN  PORT  VIF_ID  LABEL  ADDRESSES    UNCONFIRMED\n"
                f"{HOST_SID}  red  10    3     1       16     10.1.1.5/32  False\n"
            )
            rc, out, _ = await run(esvpn, "show", "labels", "--agent", control, "--json")
            assert json.loads(out) == [
                {"label": 16, "state": "in use", "system_id": HOST_SID, "vpn": "red", "vlan": 10}
            ]
            rc, out, _ = await run(esvpn, "show", "counters", "--agent", control, "--json")
            assert (rc, json.loads(out)) == (
                0,
                [
                    {
                        "vif_id": 1,
                        "system_id": HOST_SID,
                        "vpn": "red",
                        "vlan": 10,
                        "rx_packets": 0,
                        "rx_bytes": 0,
                        "tx_packets": 0,
                        "tx_bytes": 0,
                    }
                ],
            )
            rc, out, _ = await run(esvpn, "show", "diff", "--agent", control)
            assert (rc, out) == (0, "0 update(s) pending\n")
            rc, out, err = await run(esvpn, "show", "vrfs", "--agent", "127.0.0.1:1")
            assert rc == 1 and err.startswith("esvpn: cannot reach the agent at 127.0.0.1:1")
            # the host tool's status
            rc, out, _ = await run(esvpn, "host", "status", "--socket", sock)
            assert json.loads(out) == {
                "connected": True,
                "subscriptions": {"red": 10},
                "addresses": {"10.1.1.5/32": ["red", 0]},
            }
            assert await run(esvpn, "host", "unsubscribe", "--socket", sock, "--vpn", "red") == (
                0,
                "",
                "",
            )
            await until(lambda: agent.state.interfaces == {})

    asyncio.run(scenario())


def to_toml(d: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for the agent config dicts of these tests."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return repr(v)

    lines = [
        f"{k} = {scalar(v)}"
        for k, v in d.items()
        if not isinstance(v, dict | list)
        or (isinstance(v, list) and not any(isinstance(x, dict) for x in v))
    ]
    out = "\n".join(lines) + "\n"
    for k, v in d.items():
        name = f"{prefix}{k}" if not any(c in k for c in ".:") else f'{prefix}"{k}"'
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + to_toml(v, f"{name}.")
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            for x in v:
                out += f"\n[[{name}]]\n" + to_toml(x, f"{name}.")
    return out


def test_agent_process_json_logs_and_sigterm(tmp_path: Path) -> None:
    async def scenario() -> None:
        lab = Lab(tmp_path)
        proc = None
        try:
            await lab.start_switch()
            await lab.start_rs()
            cfg = lab.agent_config()
            control = free_port()
            cfg["agent"]["control"] = f"127.0.0.1:{control}"
            path = tmp_path / "agent.toml"
            path.write_text(to_toml(cfg))
            proc = await asyncio.create_subprocess_exec(
                str(BIN / "esvpn-agent"),
                "--config",
                str(path),
                "--log-format",
                "json",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            esvpn = str(BIN / "esvpn")

            async def switch_connected() -> bool:
                rc, out, _ = await run(
                    esvpn, "show", "sessions", "--json", "--agent", f"127.0.0.1:{control}"
                )
                if rc != 0:
                    return False
                return any(s["kind"] == "switch" and s["connected"] for s in json.loads(out))

            loop = asyncio.get_running_loop()
            end = loop.time() + 20
            while not await switch_connected():
                assert loop.time() < end, "agent process never connected to the switch"
                await asyncio.sleep(0.1)
            rc, out, _ = await run(esvpn, "show", "sessions", "--agent", f"127.0.0.1:{control}")
            assert rc == 0
            assert out.splitlines()[0].split() == [
                "KIND",
                "SERVER",
                "CONNECTED",
                "PRIMARY",
                "SUBSCRIPTIONS",
                "PUBLISHED",
                "LAST_ERROR",
                "ADDRESS",
                "INSTALLED",
                "UPDATE_ERRORS",
            ]
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0
            logs = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
            assert all({"ts", "level", "logger", "msg"} <= set(x) for x in logs)
            assert any(
                x["msg"].startswith("switch 127.0.0.1:") and "reconciled" in x["msg"] for x in logs
            )
            # the state file was written on the way out
            assert json.loads((tmp_path / "agent-state.json").read_text())["vrf"]["vrfs"] == {}
        finally:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            await lab.close()

    asyncio.run(scenario())


class _Issued(Pki):
    """The certificates ``esvpn certs`` wrote, used as they are (none issued here)."""

    def server(self, name: str) -> CertPair:
        pair = self.paths(name, server=True)
        assert pair.certfile.exists() and pair.keyfile.exists(), name
        return pair

    def client(self, name: str) -> CertPair:
        pair = self.paths(name, server=False)
        assert pair.certfile.exists() and pair.keyfile.exists(), name
        return pair


def test_certs_command_makes_a_lab_pki_for_both_xmpp_hops(tmp_path: Path) -> None:
    """``esvpn certs`` output authenticates, with mutual TLS, the host tool to
    the agent (server tor.test, client = the host's system id) and the agent
    to the route server (server rs.test, client = the forwarder's system id)."""

    async def scenario() -> None:
        d = tmp_path / "pki"
        esvpn = str(BIN / "esvpn")
        rc, out, err = await run(
            esvpn, "certs", "--dir", str(d), "tor.test", "RS.test", "02:aa:00:00:00:01", HOST_SID
        )
        assert (rc, err) == (0, "")
        assert out == (
            f"created CA {d}/ca.pem {d}/ca.key\n"
            f"created server tor.test: {d}/server-tor.test.pem {d}/server-tor.test.key\n"
            f"created server rs.test: {d}/server-rs.test.pem {d}/server-rs.test.key\n"
            f"created client 02aa00000001: {d}/client-02aa00000001.pem "
            f"{d}/client-02aa00000001.key\n"
            f"created client {HOST_SID}: {d}/client-{HOST_SID}.pem {d}/client-{HOST_SID}.key\n"
        )
        assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
        # a second run keeps what exists (same CA: certificates stay valid)
        ca = (d / "ca.pem").read_bytes()
        rc, out, _ = await run(esvpn, "certs", "--dir", str(d), "tor.test")
        assert (rc, out) == (
            0,
            f"kept CA {d}/ca.pem {d}/ca.key\n"
            f"kept server tor.test: {d}/server-tor.test.pem {d}/server-tor.test.key\n",
        )
        assert (d / "ca.pem").read_bytes() == ca
        assert await run(esvpn, "certs", "--dir", str(d), "not a name") == (
            2,
            "",
            "esvpn certs: 'not a name': neither a system id nor a domain name\n",
        )
        async with Lab(tmp_path, pki=_Issued(d / "ca.pem", d / "ca.key", d)) as lab:
            agent = await attach_and_learn(lab)  # both hops up, a route each way
            assert lab.rs is not None
            (session,) = lab.rs.sessions()
            assert (session.mechanism, session.system_id.hex()) == ("EXTERNAL", FWD_SID)
            assert agent.xmpp is not None
            (host,) = agent.xmpp.sessions()
            assert (host.mechanism, host.system_id.hex()) == ("EXTERNAL", HOST_SID)

    asyncio.run(scenario())


def test_show_reports_a_failed_view_not_an_unreachable_agent(tmp_path: Path) -> None:
    """A view that raises inside the agent is answered 500 with the error, and
    ``esvpn show`` prints it (not "cannot reach the agent ... Remote end closed
    connection"); the agent keeps serving. The failure is injected (a fake
    view, named as such): no input makes a real view fail."""

    async def scenario() -> None:
        async with Lab(tmp_path) as lab:
            await lab.start_switch()
            await lab.start_rs()
            agent = await lab.start_agent()

            def broken_view() -> Any:  # the injected fault
                raise KeyError("vrf 'red'")

            agent.view_vrfs = broken_view  # type: ignore[method-assign]
            control = f"127.0.0.1:{agent.control_port}"
            esvpn = str(BIN / "esvpn")
            assert await run(esvpn, "show", "vrfs", "--agent", control) == (
                1,
                "",
                f"esvpn: the agent at {control} answered 500: "
                "/v1/vrfs failed in the agent: KeyError: \"vrf 'red'\"\n",
            )
            rc, out, _ = await run(esvpn, "show", "interfaces", "--agent", control)
            assert (rc, out) == (0, "(none)\n")

    asyncio.run(scenario())
