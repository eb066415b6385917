"""The console scripts as an operator / hypervisor hook runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.system.test_agent_flow import HOST_SID, Lab, until

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
        good = tmp_path / "good.toml"
        good.write_text(
            '[agent]\nsystem_id = "02aa00000001"\n'
            '[switch]\naddress = "127.0.0.1:9559"\np4info = "x"\nbmv2_json = "y"\n'
            '[fabric]\ninfra_address = "192.0.2.1"\nports = [1]\n'
            '[[fabric.underlay]]\nprefix = "192.0.2.0/24"\nport = 1\n'
            'src_mac = "02:00:00:00:00:01"\ndst_mac = "02:00:00:00:00:fe"\n'
        )
        assert await run(str(BIN / "esvpn-agent"), "--check", "--config", str(good)) == (
            0,
            "config ok\n",
            "",
        )

    asyncio.run(scenario())


def test_host_tool_and_show_commands(tmp_path: Path) -> None:
    async def scenario() -> None:
        lab = Lab(tmp_path)
        try:
            await lab.start_switch()
            await lab.start_rs()
            agent = await lab.start_agent()
            await agent.driver.wait_synced(10)
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
        finally:
            await lab.close()

    asyncio.run(scenario())
