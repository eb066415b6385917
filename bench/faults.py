"""Faults under traffic: per fault, packets lost, time to recover, worst loop lag.

Runs the chaos suite's lab (lab/: two ToRs on the embedded target, two
agents, two route servers with ExaBGP, a GoBGP reflector, four end-systems
sending v4 and v6 flows at 50 packets/s each) and applies every fault of
lab/chaos.py in turn, as tests/system/test_chaos.py does, but records the
figures instead of judging them: packets lost (all 8 flows together), time
from the fault to the last outage's end, time until the whole system held
exactly the intended state again, and the worst event-loop lag each daemon
reports. These are figures, not pass/fail: the reference is the fault-free
run of the same lab (lost 0, lag as measured before the first fault).

    python bench/faults.py --out bench/results        -> faults.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import write_result
from lab import chaos
from lab.lab import Lab, Slot
from lab.topology import default_topology


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results")
    p.add_argument("--only", action="append", default=[])
    args = p.parse_args()
    slot = Slot("b")
    topo = default_topology(slot.prefix, slot.mgmt)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(topo, Path(tmp), stale=4.0, retention=5.0)
        lab.up()
        try:
            chaos.poll(partial(chaos.flowing_recently, lab), 30, "traffic")
            chaos.wait_exact(lab, 30)
            results["reference"] = {"lost": 0, "loop_lag": chaos.loop_lags(lab)}
            for name in args.only or list(chaos.faults(lab)):
                try:
                    r = chaos.run_fault(lab, name)
                    results[name] = r.as_json()
                    print(
                        f"faults: {name}: lost {r.lost}, recovered {r.recovery:.2f} s, "
                        f"exact after {r.converged:.1f} s",
                        flush=True,
                    )
                except Exception as exc:
                    results[name] = {"error": str(exc)}
                    print(f"faults: {name}: {exc}", flush=True)
        finally:
            results["sigterm_exit_seconds"] = lab.down()
            slot.release()
    write_result(args.out, "faults", results)
    return 1 if any(isinstance(v, dict) and "error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
