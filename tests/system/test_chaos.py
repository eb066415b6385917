"""The chaos suite: the whole system as real processes in network namespaces
(lab/: two embedded-target switches, two agents, two route servers with
ExaBGP, a GoBGP route reflector, four end-systems in two VPNs with
overlapping addresses, v4 and v6 flows both ways), and every component
broken in turn while the traffic runs.

For each fault (lab/chaos.py says what each does and how it is repaired) the
test asserts: the flows resume within the fault's bound, the whole system
returns to exactly the intended state (each switch equals its agent's
intent, agents, route servers and the reflector hold exactly the expected
routes, nothing stale), no frame leaked into another VPN, and in the end
every process exits within 5 s of SIGTERM. The figures (packets lost, time
to recover, worst loop lag) are recorded by ``bench/faults.py``, not judged
here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import chaos
from lab.lab import Lab, Slot
from lab.topology import default_topology

assert shutil.which("gobgpd"), "install gobgpd: scripts/apt-deps.sh"

# Seconds within which every flow delivers again after the fault was repaired.
# The data plane keeps forwarding through every control-plane fault, so those
# must not interrupt traffic at all (the bound only absorbs the generator's
# own 20 ms packet spacing and status period); a switch that is killed loses
# its tables, and the bound covers a restart of its process, the agent's
# reconnect and a full write.
BOUNDS = {"kill-switch": 15.0, "sigterm-switch": 15.0}
CONTROL_PLANE_BOUND = 2.0


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    slot = Slot("c")  # a prefix and management network no other run uses
    # a directory of its own: pytest prunes old basetemp directories while
    # another pytest runs, and the lab's daemons live for the whole module
    workdir = Path(tempfile.mkdtemp(prefix="esvpn-chaos-"))
    lab = Lab(default_topology(slot.prefix, slot.mgmt), workdir, stale=4.0, retention=5.0)
    lab.up()
    try:
        yield lab
    finally:
        exits = lab.down()
        slot.release()
        slow = {k: v for k, v in exits.items() if v > 5.0}
        assert not slow, f"processes that took over 5 s to exit after SIGTERM: {slow}"
        print(f"chaos lab logs: {workdir}/logs")


FAULTS = list(chaos.faults(Lab(default_topology(), Path("/nonexistent"))))


@pytest.mark.parametrize("fault", FAULTS)
def test_fault(lab: Lab, fault: str) -> None:
    bound = next((b for k, b in BOUNDS.items() if fault.startswith(k)), CONTROL_PLANE_BOUND)
    result = chaos.run_fault(lab, fault, recover_within=60, converge_within=60)
    assert result.recovery <= bound, (
        f"{fault}: traffic recovered after {result.recovery:.2f} s (bound {bound} s): "
        f"{result.outages}"
    )
    if bound == CONTROL_PLANE_BOUND:
        assert result.lost <= int(os.environ.get("ESVPN_CHAOS_SLACK", "2")), result


def test_every_process_is_running(lab: Lab) -> None:
    """After all the faults, every daemon is the one the lab last started
    (none died on its own along the way)."""
    dead = [n for n, p in lab.procs.items() if not p.alive()]
    assert dead == []
