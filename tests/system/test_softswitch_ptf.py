"""The ``ptf`` tool and p4runtime-shell, unchanged, against the embedded target.

The softswitch daemon runs the compiled esvpn program on veth pairs; the
``ptf`` command (the PTF package's own runner) executes
``tests/system/ptf/esvpn_ptf.py``, whose tests program the switch with
p4runtime-shell and check frames with PTF's dataplane — exactly how an
operator tests bmv2 (issue 4: "p4runtime-shell and the ptf tool work
against it unchanged").
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "p4src" / "build"
PTF_DIR = Path(__file__).resolve().parent / "ptf"
PORTS = (1, 2, 4)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def switch() -> Iterator[tuple[str, dict[int, str]]]:
    tag = f"{os.getpid() % 10000:04d}"
    sw = {p: f"pf{tag}s{p}" for p in PORTS}
    tst = {p: f"pf{tag}t{p}" for p in PORTS}
    for p in PORTS:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", sw[p])
        _ip("link", "add", sw[p], "type", "veth", "peer", "name", tst[p])
        for ifname in (sw[p], tst[p]):
            # no router solicitations or MLD reports in the way of exact checks
            Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1")
            _ip("link", "set", ifname, "up")
    with socketless_port() as port:
        addr = f"127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="esvpn-ptf-switch-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-m", "softswitch", "--no-p4", "--device-id", "0"]
    cmd += [a for p in PORTS for a in ("-i", f"{p}@{sw[p]}")]
    cmd += ["--grpc-server-addr", addr, "--cpu-port", "255"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness: the gRPC channel connects
            assert proc.poll() is None, Path(log.name).read_text()
            with grpc.insecure_channel(addr) as ch:
                try:
                    grpc.channel_ready_future(ch).result(timeout=1)
                    break
                except grpc.FutureTimeoutError:
                    assert time.monotonic() < deadline, "softswitch never listened"
        yield addr, tst
    finally:
        proc.terminate()
        proc.wait(10)
        for p in PORTS:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "del", sw[p])


@contextlib.contextmanager
def socketless_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def test_ptf_tool_with_p4runtime_shell(switch: tuple[str, dict[int, str]]) -> None:
    addr, tst = switch
    ptf = shutil.which("ptf", path=str(Path(sys.executable).parent)) or "ptf"
    p4info, program = BUILD / "esvpn.p4info.txtpb", BUILD / "esvpn.json"
    params = f"grpc_addr='{addr}';p4info='{p4info}';bmv2_json='{program}'"
    with tempfile.TemporaryDirectory() as logdir:
        cmd = [ptf, "--test-dir", str(PTF_DIR), "--log-dir", logdir, "-t", params]
        cmd += [a for p in PORTS for a in ("-i", f"{p}@{tst[p]}")]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        run = subprocess.run(
            cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=240
        )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    # every PTF test of the file ran and passed, by name
    passed = set(re.findall(r"^esvpn_ptf\.(\w+) \.\.\. ok$", out, re.MULTILINE))
    assert passed == {"ArpAnswered", "EncapToRemote", "SpoofedDroppedAndCounted"}, out
    assert re.search(r"^Ran 3 tests in ", out, re.MULTILINE), out
