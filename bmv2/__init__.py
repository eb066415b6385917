"""How esvpn runs on bmv2's simple_switch_grpc, and on its drop-in, the
embedded target (softswitch/): one place for the switch command line that
the lab (make demo), the packet suite's bmv2 backend and the benchmarks use.

simple_switch_grpc for this program (bmv2 1.15):

    simple_switch_grpc --device-id 0 -i 1@fab0 -i 3@p3 --no-p4 \\
        -- --grpc-server-addr 127.0.0.1:9559 --cpu-port 255

- ports: ``-i PORT@IFNAME`` per port; the agent's ``[fabric] ports`` and
  ``[end_systems.ports]`` name the same numbers;
- ``--device-id``: the agent's ``[switch] device_id`` (0, both defaults);
- ``--no-p4``: the agent sets the pipeline (p4src/build/esvpn.json and its
  P4Info) on connect, and only when the cookie differs;
- ``--cpu-port 255``: the port of packet-in / packet-out (the program's
  CPU_PORT), given after ``--`` as a target option;
- ``--grpc-server-addr``: the agent's ``[switch] address``.

The embedded target takes the same options (``python -m softswitch``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

#: where a from-source build installs (bmv2/README.md)
DEFAULT_PREFIX = Path("/opt/p4")
DEVICE_ID = 0
CPU_PORT = 255


def simple_switch_grpc() -> str | None:
    """The simple_switch_grpc to run: $SIMPLE_SWITCH_GRPC, PATH, /opt/p4/bin."""
    exe = os.environ.get("SIMPLE_SWITCH_GRPC") or shutil.which("simple_switch_grpc")
    exe = exe or str(DEFAULT_PREFIX / "bin/simple_switch_grpc")
    return exe if Path(exe).exists() else None


def switch_command(
    target: str,
    interfaces: Sequence[str],
    grpc_addr: str,
    device_id: int = DEVICE_ID,
    cpu_port: int = CPU_PORT,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of a switch ("bmv2" or "soft") with ``PORT@IFNAME``
    interfaces, started without a program (the controller sets it)."""
    ifs = [a for spec in interfaces for a in ("-i", spec)]
    grpc = ["--grpc-server-addr", grpc_addr, "--cpu-port", str(cpu_port)]
    if target == "bmv2":
        exe = simple_switch_grpc()
        if exe is None:
            raise RuntimeError(
                "simple_switch_grpc not found (SIMPLE_SWITCH_GRPC, PATH, /opt/p4/bin): "
                "see bmv2/README.md"
            )
        return [exe, "--device-id", str(device_id), *ifs, "--no-p4", *extra, "--", *grpc]
    if target != "soft":
        raise ValueError(f"unknown switch target {target!r} (soft or bmv2)")
    return [
        sys.executable,
        "-m",
        "softswitch",
        *ifs,
        "--no-p4",
        "--device-id",
        str(device_id),
        *extra,
        *grpc,
    ]
