"""Run every benchmark, each in its own process, results into --out.

Each bench/*.py script measures one thing against a reference run side by
side and writes its own JSON file; this runner only sequences them and
prints a one-line summary per script.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHES = (
    "engine_pps.py",
    "dataplane_pps.py",
    "p4rt_writes.py",
    "agent_write_rate.py",
    "xmpp_load.py",
    "rs_routes.py",
    "rs_loop_lag.py",
    "agent_loop_lag.py",
    "faults.py",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--out", default="bench/results", help="directory for result files")
    parser.add_argument("--only", action="append", default=[], help="run only this script")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for name in args.only or BENCHES:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(here / name), "--out", str(out)], check=False)
        took = time.monotonic() - started
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        print(f"bench: {name}: {status} in {took:.0f} s", flush=True)
        if proc.returncode != 0:
            failed.append(name)
    print(f"bench: results in {out}/" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
