"""Packet rate of the embedded target's engine (softswitch.engine.SoftEngine).

Runs frames through ``SoftEngine.process`` in-process (no ports) and reports
packets per second for:

* ``simple_router``: bmv2's p4c-compiled simple_router (lpm + 2 exact tables,
  IPv4 checksum verify/update), the shape of a routed packet;
* ``esvpn`` (when p4src/build/esvpn.json exists): the project's program with
  an empty table set (every frame takes the miss/drop path).

The goal is >= 25% of bmv2's rate on the same program; pass bmv2's measured
rate with --bmv2-pps NAME=PPS to record the ratio side by side.

    .venv/bin/python bench/engine_pps.py [--packets 20000] [--out bench/results] \
        [--bmv2-pps simple_router=120000]

Results go to <out>/engine_pps.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from softswitch.api import ActionCall, Exact, Lpm  # noqa: E402
from softswitch.engine import SoftEngine  # noqa: E402

SIMPLE_ROUTER = ROOT / "tests/unit/softswitch_engine/data/simple_router.json"
ESVPN = ROOT / "p4src/build/esvpn.json"


def _ipv4_frame(dst: bytes) -> bytes:
    head = bytes.fromhex("4500002e00010000") + bytes([64, 0x11])
    rest = bytes([10, 0, 0, 1]) + dst
    words = head + b"\0\0" + rest
    s = sum(int.from_bytes(words[i : i + 2], "big") for i in range(0, 20, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    ip = head + (~s & 0xFFFF).to_bytes(2, "big") + rest
    eth = bytes.fromhex("000000000001000000000009") + b"\x08\x00"
    return eth + ip + bytes.fromhex("0035003500120000") + bytes(18)


def bench_simple_router(n: int) -> float:
    e = SoftEngine()
    e.load(json.loads(SIMPLE_ROUTER.read_text()))
    for i in range(256):
        e.table_add(
            "ipv4_lpm", (Lpm(0x0A000000 | i << 16, 16),), ActionCall("set_nhop", (i, 1 + i % 8))
        )
        e.table_add("forward", (Exact(i),), ActionCall("set_dmac", (0x020000000000 | i,)))
    for port in range(1, 9):
        e.table_add(
            "send_frame", (Exact(port),), ActionCall("rewrite_mac", (0x020000000100 | port,))
        )
    frames = [_ipv4_frame(bytes([10, i, 1, 1])) for i in range(64)]
    assert e.process(1, frames[3]), "simple_router must forward the bench frame"
    return _rate(e, frames, n)


def bench_esvpn(n: int) -> float | None:
    if not ESVPN.exists():
        return None
    e = SoftEngine()
    e.load(json.loads(ESVPN.read_text()))
    frames = [_ipv4_frame(bytes([10, i, 1, 1])) for i in range(64)]
    return _rate(e, frames, n)


def _rate(e: SoftEngine, frames: list[bytes], n: int) -> float:
    process = e.process
    nf = len(frames)
    t0 = time.perf_counter()
    for i in range(n):
        process(1, frames[i % nf])
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--out", default=str(ROOT / "bench/results"))
    ap.add_argument("--bmv2-pps", action="append", default=[], metavar="NAME=PPS")
    args = ap.parse_args()
    ref = {k: float(v) for k, v in (x.split("=", 1) for x in args.bmv2_pps)}
    results: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "packets": args.packets,
        "goal_ratio_vs_bmv2": 0.25,
        "programs": {},
    }
    programs: dict[str, dict[str, float | None]] = {}
    for name, fn in (("simple_router", bench_simple_router), ("esvpn", bench_esvpn)):
        pps = fn(args.packets)
        if pps is None:
            continue
        bmv2 = ref.get(name)
        programs[name] = {
            "soft_pps": round(pps),
            "bmv2_pps": bmv2,
            "ratio": round(pps / bmv2, 3) if bmv2 else None,
        }
        print(f"{name}: {pps:,.0f} packets/s" + (f" ({pps / bmv2:.0%} of bmv2)" if bmv2 else ""))
    results["programs"] = programs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_pps.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
