"""The example configs in examples/: each tool's check passes on its example
(run as an operator would, from the repository root), and every key the
loader knows is shown (set, or commented out) with a comment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from esxmpp.config import ClientConfig, ServerConfig

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER = set(ServerConfig.__dataclass_fields__)
CLIENT = set(ClientConfig.__dataclass_fields__)

# every key each loader accepts, per table (control/config.py, control/host.py,
# routeserver/config.py, esxmpp/config.py)
KEYS: dict[str, dict[str, set[str]]] = {
    "agent.toml": {
        "agent": {"system_id", "state_file", "control"},
        "switch": {"address", "device_id", "election_id", "p4info", "bmv2_json", "tls"},
        "switch.tls": {"root_cert", "cert", "key", "server_name"},
        "fabric": {"infra_address", "mtu", "ports", "peers", "underlay"},
        "fabric.underlay": {"prefix", "port", "src_mac", "dst_mac", "vlan"},
        "end_systems": {"ports"},
        "xmpp": SERVER,
        "route_servers": CLIENT,
        "timers": {"stale", "coalesce", "reconnect"},
        "labels": {"min", "max"},
        "punt": {"meter_rate", "meter_burst", "icmp_rate", "icmp_burst"},
        "vpns.red": {
            "prefixes",
            "host_routes_only",
            "end_systems",
            "gateway_ipv4",
            "gateway_ipv6",
            "dhcp",
            "dhcp_prefix_len",
            "dhcp_lease",
            "dhcp_dns",
        },
        "limits": {
            "interfaces_per_end_system",
            "addresses_per_end_system",
            "requests_per_second",
            "request_burst",
            "switch_answer",
        },
    },
    "host.toml": {"host": {"socket", "reconnect"}, "xmpp": CLIENT},
    "routeserver.toml": {
        "server": {"router_id", "asn", "local_address", "log_level"},
        "xmpp": SERVER | {"forwarders"},
        "limits": {
            "routes_per_forwarder",
            "vpns_per_forwarder",
            "requests_per_second",
            "request_burst",
        },
        "control": {"host", "port"},
        "bgp": {"graceful_restart", "exabgp", "neighbor"},
        "bgp.neighbor": {
            "address",
            "asn",
            "port",
            "families",
            "passive",
            "listen_port",
            "rtc_filter_out",
        },
        "vrf": {"name", "vpn", "rd", "systems", "import_targets", "export_targets", "isolated"},
    },
}

CHECKS = {
    "agent.toml": ([str(BIN / "esvpn-agent"), "--check", "--config"], "config ok\n"),
    "host.toml": ([str(BIN / "esvpn"), "host", "check", "--config"], "config ok\n"),
    "routeserver.toml": (
        [str(BIN / "esvpn-routeserver"), "check", "--config"],
        "examples/routeserver.toml: ok (4 VRFs, 2 neighbors)\n",
    ),
}

HEADER = re.compile(r"^#?\s*\[\[?([A-Za-z0-9_.]+)\]\]?")
KEY = re.compile(r"^(#?)\s*([A-Za-z0-9_]+)\s*=(.*)$")


def shown_keys(text: str) -> dict[str, dict[str, str]]:
    """table -> key -> its line, for the first line showing each key (set or
    commented out); a header 'a.b' shows key b of table a."""
    shown: dict[str, dict[str, str]] = {}
    table = ""
    for line in text.splitlines():
        if m := HEADER.match(line):
            table = m.group(1)
            parent, _, last = table.rpartition(".")
            shown.setdefault(parent, {}).setdefault(last, line)
            continue
        if (m := KEY.match(line)) and table:
            shown.setdefault(table, {}).setdefault(m.group(2), line)
    return shown


def test_every_tool_config_has_an_example() -> None:
    assert sorted(p.name for p in (ROOT / "examples").glob("*.toml")) == sorted(KEYS)
    assert not (ROOT / "routeserver" / "example.toml").exists()


@pytest.mark.parametrize("name", sorted(KEYS))
def test_example_passes_the_tools_check(name: str) -> None:
    cmd, out = CHECKS[name]
    r = subprocess.run(
        [*cmd, f"examples/{name}"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, out, "")


@pytest.mark.parametrize("name", sorted(KEYS))
def test_example_shows_every_key_with_a_comment(name: str) -> None:
    shown = shown_keys((ROOT / "examples" / name).read_text(encoding="utf-8"))
    missing = [
        f"{t}.{k}"
        for t, keys in KEYS[name].items()
        for k in sorted(keys)
        if k not in shown.get(t, {})
    ]
    assert missing == []
    uncommented = [
        f"{t}.{k}"
        for t, keys in KEYS[name].items()
        for k in sorted(keys)
        if "#" not in shown[t][k].lstrip("#")
    ]
    assert uncommented == []


def test_agent_config_docstring_has_no_placeholders() -> None:
    import control.config
    import control.host

    for mod in (control.config, control.host):
        assert mod.__doc__ is not None
        # (the host tool's socket protocol below elides a reply with '...')
        assert "..." not in mod.__doc__.split("Protocol on the socket")[0]
