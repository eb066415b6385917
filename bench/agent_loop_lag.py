"""Agent event-loop lag under a 100,000-route burst (issue 19, bug 5).

The agent's VRF state and switch driver (control.vrf, control.desired,
control.driver) against the embedded target's P4Runtime server in its own
process, as in agent_write_rate.py, with the softswitch tests' recording
fake engine (``--engine soft``: the real one). The program sizes its route
tables at 16,384 entries: the bench's copy of the P4Info sizes them at
262,144 so that the 100,000 routes fit.
The route server's notifications are applied as the agent applies them
(``VrfState.routes_update`` / ``routes_retract`` and a driver kick per
notification of 100 items, the loop served between notifications); the
XMPP parsing is not part of it. Each phase has its own
:class:`esxmpp.looplag.LoopLag`, from the first notification until the
switch holds the result:

* ``replay``: N routes arrive (a new primary's table replay).
* ``withdraw``: the same N routes are retracted (a peer down at the route
  server).

N = 100,000 (10,000 with --quick). Results: ``<out>/agent_loop_lag.json``.

    .venv/bin/python bench/agent_loop_lag.py [--quick] [--routes N] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.agent_write_rate import Switch, agent_driver, routes  # noqa: E402
from bench.report import write_result  # noqa: E402
from control.desired import desired_steps  # noqa: E402
from control.vrf import STEP  # noqa: E402
from esxmpp.looplag import LoopLag  # noqa: E402
from tests.system.test_agent_support import COMPILED  # noqa: E402

NOTE = 100  # items per notification (routeserver.server.MAX_ITEMS)


def big_tables(tmp: Path) -> Path:
    """A copy of the program's P4Info whose 16,384-entry tables hold 262,144."""
    text = COMPILED[0].read_text()
    assert "size: 16384" in text
    out = tmp / "esvpn.p4info.txtpb"
    out.write_text(text.replace("size: 16384", "size: 262144"))
    return out


async def run(address: str, n: int, p4info: Path) -> dict[str, Any]:
    st, drv = agent_driver(address, p4info, COMPILED[1], desired_steps, coalesce=0.005)
    drv.start()
    await drv.wait_synced(60)
    drv.gc.start()  # as a daemon does once started
    items = routes(n)
    result: dict[str, Any] = {"routes": n, "step": STEP, "notification_items": NOTE}

    async def phase(name: str, apply: Any) -> None:
        lag = LoopLag()
        lag.start()
        before = drv.stats.updates
        t0 = time.monotonic()
        for i in range(0, n, NOTE):
            apply(items[i : i + NOTE])
            drv.kick()
            await asyncio.sleep(0)
        t_in = time.monotonic()
        await drv.wait_synced(600)
        t1 = time.monotonic()
        lag.stop()
        result[name] = {
            "worst_lag_ms": round(lag.worst * 1000, 1),
            "samples": lag.count,
            "seconds": round(t1 - t0, 2),
            "notifications_seconds": round(t_in - t0, 2),
            "syncs": drv.stats.syncs,
            "updates": drv.stats.updates - before,
        }
        print(name, result[name], file=sys.stderr, flush=True)

    await phase("replay", lambda chunk: st.routes_update("red", chunk, time.monotonic()))
    await phase("withdraw", lambda chunk: st.routes_retract("red", [i for i, _ in chunk]))
    result["worst_lag_ms"] = max(result[k]["worst_lag_ms"] for k in ("replay", "withdraw"))
    result["gc_freezes"] = drv.gc.freezes
    await drv.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="10,000 routes instead of 100,000")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--engine", choices=("soft", "fake"), default="fake")
    args = ap.parse_args()
    n = args.routes or (10_000 if args.quick else 100_000)
    switch = Switch(args.engine)
    try:
        with tempfile.TemporaryDirectory(prefix="agent-lag-") as tmp:
            result = asyncio.run(run(switch.address, n, big_tables(Path(tmp))))
    finally:
        switch.close()
    result["engine"] = args.engine
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    write_result(args.out, "agent_loop_lag", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
