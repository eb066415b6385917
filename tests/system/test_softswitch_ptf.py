"""The ``ptf`` tool and p4runtime-shell, unchanged, against the embedded target.

The softswitch daemon runs the compiled esvpn program on veth pairs; the
``ptf`` command (the PTF package's own runner) executes
``tests/system/ptf/esvpn_ptf.py``, whose tests program the switch with
p4runtime-shell and check frames with PTF's dataplane — exactly how an
operator tests bmv2 (issue 4: "p4runtime-shell and the ptf tool work
against it unchanged").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packet.harness import VethBackend
from tests.system.softswitch_proc import wait_grpc_ready

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "p4src" / "build"
PTF_DIR = Path(__file__).resolve().parent / "ptf"
PORTS = (1, 2, 4)  # of the backend's 1..5: two end-system ports, one fabric port


@pytest.fixture
def switch() -> Iterator[tuple[str, dict[int, str]]]:
    """The softswitch daemon on veth pairs (the packet suite's VethBackend);
    the test side of each pair is left to PTF."""
    backend = VethBackend("soft")
    try:
        addr = backend.start()
        for sock in backend.socks.values():  # PTF opens its own
            sock.close()
        wait_grpc_ready(addr, backend.check_alive)
        yield addr, backend.tst
    finally:
        backend.stop()


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
