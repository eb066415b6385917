"""Both daemons' control ports (esxmpp.httpserve) against oversized and malformed
requests: each gets its exact HTTP refusal, and the daemon serves on (issue 18).

The daemons run as an operator runs them: subprocesses from their console scripts.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from esxmpp.pki import make_pki
from tests.system.softswitch_proc import free_port
from tests.system.test_agent_support import COMPILED

BIN = Path(sys.executable).parent


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, then read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def refusal(status: str, text: str) -> bytes:
    body = (text + "\n").encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def agent_config(tmp: Path, control: int) -> Path:
    pki = make_pki(tmp / "pki")
    server = pki.server("tor.test")
    fwd = pki.client("02aa00000001")
    p4info, js = COMPILED
    path = tmp / "agent.toml"
    path.write_text(
        f'[agent]\nsystem_id = "02aa00000001"\ncontrol = "127.0.0.1:{control}"\n'
        f'[switch]\naddress = "127.0.0.1:{free_port()}"\np4info = "{p4info}"\n'
        f'bmv2_json = "{js}"\n'
        '[fabric]\ninfra_address = "192.0.2.1"\nports = [1]\n'
        '[[fabric.underlay]]\nprefix = "192.0.2.0/24"\nport = 1\n'
        'src_mac = "02:00:00:00:00:01"\ndst_mac = "02:00:00:00:00:fe"\n'
        f'[xmpp]\ndomain = "tor.test"\ncertfile = "{server.certfile}"\n'
        f'keyfile = "{server.keyfile}"\ncafile = "{pki.cafile}"\nport = 0\n'
        f'[[route_servers]]\njid = "02aa00000001@rs.test"\nhost = "127.0.0.1"\n'
        f'port = {free_port()}\ncertfile = "{fwd.certfile}"\nkeyfile = "{fwd.keyfile}"\n'
        f'cafile = "{pki.cafile}"\n'
    )
    return path


def routeserver_config(tmp: Path, control: int) -> Path:
    pki = make_pki(tmp / "pki")
    server = pki.server("rs.test")
    path = tmp / "rs.toml"
    path.write_text(
        '[server]\nrouter_id = "127.0.6.31"\nasn = 64512\n'
        f'[xmpp]\ndomain = "rs.test"\ncertfile = "{server.certfile}"\n'
        f'keyfile = "{server.keyfile}"\ncafile = "{pki.cafile}"\nport = 0\n'
        f"[control]\nport = {control}\n"
        '[[vrf]]\nvpn = "red"\nimport_targets = ["64512:1"]\nexport_targets = ["64512:1"]\n'
    )
    return path


@pytest.fixture(scope="module", params=["agent", "routeserver"])
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """The daemon's control port, once it answers /metrics (one daemon for all requests)."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    port = free_port()
    if request.param == "agent":
        cmd = [str(BIN / "esvpn-agent"), "--config", str(agent_config(tmp_path, port))]
    else:
        conf = routeserver_config(tmp_path, port)
        cmd = [str(BIN / "esvpn-routeserver"), "run", "--config", str(conf)]
    err = tmp_path / "stderr"
    with err.open("w") as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, err.read_text()
            try:
                if exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n").startswith(
                    b"HTTP/1.1 200 OK\r\n"
                ):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)  # polling with a deadline
        yield port
        # it served all of that and still runs, with no traceback logged
        assert exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")
        assert proc.poll() is None
        assert "Traceback" not in err.read_text()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("request_bytes", "status", "text"),
    [
        (
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
            "414 Request-URI Too Long",
            "request line longer than 8192 bytes",
        ),
        (
            b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n",
            "414 Request-URI Too Long",
            "request line longer than 8192 bytes",
        ),
        (
            b"GET /metrics HTTP/1.1\r\n" + b"X-Big: " + b"b" * 20_000 + b"\r\n\r\n",
            "431 Request Header Fields Too Large",
            "header lines longer than 16384 bytes",
        ),
        (
            b"GET /metrics HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
            "431 Request Header Fields Too Large",
            "more than 100 header lines",
        ),
        (
            b"GET /metrics HTTP/1.1\r\n" + (b"X-More: " + b"m" * 1000 + b"\r\n") * 17 + b"\r\n",
            "431 Request Header Fields Too Large",
            "header lines longer than 16384 bytes",
        ),
        (b"HELLO\r\n\r\n", "400 Bad Request", "request line is not 'METHOD /target HTTP/1.x'"),
        (b"GET /metrics HTTP/2.0\r\n\r\n", "400 Bad Request", "not HTTP/1.0 or HTTP/1.1"),
        (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", "400 Bad Request", "malformed header line"),
        (b"GET /metrics HTTP/1.1\r\nHost: x", "400 Bad Request", "request cut short"),
    ],
    ids=[
        "line-100k",
        "line-8k",
        "header-20k",
        "101-headers",
        "headers-17k",
        "garbage",
        "http2",
        "bad-header",
        "cut-short",
    ],
)
def test_control_port_refuses_bad_requests_precisely(
    daemon: int, request_bytes: bytes, status: str, text: str
) -> None:
    if request_bytes.endswith(b"Host: x"):
        with socket.create_connection(("127.0.0.1", daemon), timeout=10) as s:
            s.sendall(request_bytes)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
    else:
        got = exchange(daemon, request_bytes)
    assert got == refusal(status, text)
