"""The ``esvpn-routeserver`` console script: check, run (daemon) and show, as processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST

from esxmpp.testing import make_pki
from tests.prometheus_text import families

CLI = [sys.executable, "-m", "routeserver.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, control_port: int, extra: str = "") -> Path:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("rs.test")
    conf = tmp_path / "rs.toml"
    conf.write_text(
        f"""
[server]
router_id = "127.0.6.21"
asn = 64512

[xmpp]
domain = "rs.test"
certfile = "{server.certfile}"
keyfile = "{server.keyfile}"
cafile = "{pki.cafile}"
port = 0

[control]
port = {control_port}

[bgp]
[[bgp.neighbor]]
address = "127.0.6.22"
asn = 64512
port = 17909

[[vrf]]
vpn = "tenant1"
systems = ["0102*"]
isolated = true
import_targets = ["64512:201"]
export_targets = ["64512:200"]

[[vrf]]
name = "tenant1-hub"
vpn = "tenant1"
systems = ["0a*"]
rd = "64512:77"
import_targets = ["64512:200"]
export_targets = ["64512:201"]
{extra}"""
    )
    return conf


def test_check_names_the_bad_key(tmp_path: Path) -> None:
    good = write_config(tmp_path, 1)
    res = subprocess.run(
        [*CLI, "check", "--config", str(good)], capture_output=True, text=True, check=False
    )
    assert (res.returncode, res.stdout) == (0, f"{good}: ok (2 VRFs, 1 neighbors)\n")
    bad = write_config(tmp_path, 1, '\n[[vrf]]\nvpn = "x"\nimport_targets = ["64512"]\n')
    res = subprocess.run(
        [*CLI, "check", "--config", str(bad)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 2
    assert res.stderr == (
        "error: vrf[2].import_targets[0]: route target '64512' is not 'ASN:number' or "
        "'IPv4:number'\n"
    )


def test_run_show_and_stop(tmp_path: Path) -> None:
    port = free_port()
    conf = write_config(tmp_path, port)
    proc = subprocess.Popen(
        [*CLI, "run", "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            res = subprocess.run(
                [*CLI, "show", "vrfs", "--json", "--config", str(conf)],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode == 0:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, res.stderr
            time.sleep(0.1)
        assert json.loads(res.stdout) == [
            {"name": "tenant1", "vpn": "tenant1", "rd": "127.0.6.21:1", "import": ["64512:201"],
             "export": ["64512:200"], "systems": ["0102*"], "isolated": True, "subscribers": [],
             "routes": 0},
            {"name": "tenant1-hub", "vpn": "tenant1", "rd": "64512:77", "import": ["64512:200"],
             "export": ["64512:201"], "systems": ["0a*"], "isolated": False, "subscribers": [],
             "routes": 0},
        ]  # fmt: skip
        res = subprocess.run(
            [*CLI, "show", "peers", "--control", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert res.stdout.splitlines() == [
            "address     asn    up  graceful_restart  routes_in  routes_out  stale",
            "127.0.6.22  64512      0                 0          0           0",
        ]
        res = subprocess.run(
            [*CLI, "show", "rtc", "--control", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert res.stdout.splitlines() == [
            "originated: -",
            "peer        rtc  received  advertised  routes_out",
            "127.0.6.22       -         -           0",  # RTC not negotiated: never up
        ]
        # /metrics: Prometheus text by prometheus_client, HELP and TYPE for every family
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
            fams = families(r.read().decode())
        assert {n: t for n, (t, _, _) in fams.items()} == {
            "esvpn_rs_rib_entries": "gauge",
            "esvpn_rs_rib_inputs_total": "counter",
            "esvpn_rs_xmpp_requests_total": "counter",
            "esvpn_rs_xmpp_refused_total": "counter",
            "esvpn_rs_xmpp_notifications_total": "counter",
            "esvpn_rs_bgp_inputs_total": "counter",
            "esvpn_rs_bgp_refused_total": "counter",
            "esvpn_rs_bgp_commands_refused_total": "counter",
            "esvpn_rs_exabgp_restarts_total": "counter",
            "esvpn_rs_bgp_commands_total": "counter",
            "esvpn_rs_bgp_command_errors_total": "counter",
            "esvpn_rs_bgp_commands_pending": "gauge",
            "esvpn_rs_bgp_peer_up": "gauge",
            "esvpn_rs_xmpp_sessions": "gauge",
            "esvpn_rs_uptime_seconds": "gauge",
            "esvpn_rs_xmpp_sessions_opened_total": "counter",
            "esvpn_rs_xmpp_sessions_refused_total": "counter",
            "esvpn_rs_loop_lag_worst_seconds": "gauge",
            "esvpn_rs_loop_lag_recent_max_seconds": "gauge",
            "esvpn_rs_loop_lag_seconds": "histogram",
            "esvpn_rs_bgp_peer_prefixes_received": "gauge",
            "esvpn_rs_bgp_peer_prefixes_advertised": "gauge",
            "esvpn_rs_bgp_peer_updates_received_total": "counter",
            "esvpn_rs_bgp_peer_updates_sent_total": "counter",
            "esvpn_rs_bgp_peer_established_total": "counter",
            "esvpn_rs_vrf_routes": "gauge",
            "esvpn_rs_vrf_subscribers": "gauge",
            "esvpn_rs_vrf_updates_total": "counter",
        }
        assert fams["esvpn_rs_bgp_peer_up"][2] == {'esvpn_rs_bgp_peer_up{peer="127.0.6.22"}': 0}
        assert fams["esvpn_rs_bgp_peer_prefixes_received"][2] == {
            f'esvpn_rs_bgp_peer_prefixes_received{{family="{f}",peer="127.0.6.22"}}': 0
            for f in ("vpnv4", "vpnv6", "rtc")
        }
        assert fams["esvpn_rs_vrf_routes"][2] == {
            'esvpn_rs_vrf_routes{vrf="tenant1"}': 0,
            'esvpn_rs_vrf_routes{vrf="tenant1-hub"}': 0,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines()]
    assert {"level", "logger", "msg", "ts"} <= set(logs[0])
    assert any(r["msg"] == "route server 127.0.6.21 started" for r in logs)


def test_run_names_its_own_port_in_use(tmp_path: Path) -> None:
    """The control port taken by another process: ``run`` says so (not
    "cannot reach the route server") and exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        conf = write_config(tmp_path, port)
        res = subprocess.run(
            [*CLI, "run", "--config", str(conf)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert res.returncode == 1, res.stderr
    assert res.stderr.splitlines()[-1] == (
        f"error: cannot start the route server: control port 127.0.0.1:{port}: "
        "cannot listen: address already in use"
    )
