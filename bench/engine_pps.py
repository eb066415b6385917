"""Packet rate of the embedded target's engine (softswitch.engine.SoftEngine).

Runs frames through ``SoftEngine.process`` in-process (no ports) and reports
packets per second for:

* ``simple_router``: bmv2's p4c-compiled simple_router (lpm + 2 exact tables,
  IPv4 checksum verify/update), the shape of a routed packet;
* ``esvpn_encap`` / ``esvpn_decap`` (when p4src/build/esvpn.json exists):
  the project's program with the packet suite's entries (tests/packet/topo.py
  ``base()`` plus a VRF route to a remote forwarder and a per-interface
  label, as bench/dataplane_pps.py installs them over P4Runtime, here given
  to the engine directly): a tagged IPv4/UDP frame from an end-system port
  classified, anti-spoof-checked, routed in its VRF and MPLS-in-GRE
  encapsulated toward REMOTE_A; and MPLS-in-GRE from a fabric port
  delivered to a vif. Every frame's output is checked byte for byte once
  before timing;
* ``esvpn_miss``: the same program with no entries (every frame takes the
  miss/drop path).

The reference run beside it is SoftEngine(generate=False), the engine
without generated code, timed alternately with the default one (after
checking both emit the same bytes for every frame): the gain of code
generation under the same machine load (--no-closures skips it). The
comparison with bmv2 needs ports, not an in-process call: it is
bench/dataplane_pps.py. Each case is timed --repeat times and the median
reported (all runs are recorded).

    .venv/bin/python bench/engine_pps.py [--packets 20000] [--repeat 3] [--no-closures] \
        [--out bench/results] [--only esvpn_encap]

Results go to <out>/engine_pps.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import write_result  # noqa: E402
from softswitch.api import ActionCall, EntryTarget, Exact, GroupRef, Lpm, MemberRef  # noqa: E402
from softswitch.api import Replica as EngineReplica  # noqa: E402
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


#: A case made ready to time: (engine, frames, ingress port).
Setup = tuple[SoftEngine, list[bytes], int]


def setup_simple_router(generate: bool) -> Setup:
    e = SoftEngine(generate=generate)
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
    return e, frames, 1


class _EngineDataplane:
    """The packet suite's ``Dataplane.insert/modify`` over one SoftEngine: the
    control.p4rt entities tests/packet/tables.py builds become the engine
    calls softswitch/p4rt_store.py makes for them (key fields and action
    params in the JSON's order, aliases resolved as P4Runtime does)."""

    def __init__(self, e: SoftEngine, j: dict[str, Any]) -> None:
        self.e = e
        self.tables = {t["name"]: t for p in j["pipelines"] for t in p["tables"]}
        self.params = {a["name"]: [r["name"] for r in a["runtime_data"]] for a in j["actions"]}

    def _call(self, name: str, params: Mapping[str, int], among: list[str]) -> ActionCall:
        if name not in self.params:  # an alias: the last name component
            (name,) = [a for a in among if a.rsplit(".", 1)[-1] == name]
        return ActionCall(name, tuple(params[p] for p in self.params[name]))

    def insert(self, *entities: Any) -> None:
        from control import p4rt

        for x in entities:
            if isinstance(x, p4rt.TableEntry):
                tj = self.tables[x.table]
                key: list[Any] = []
                for k in tj["key"]:
                    m = x.match.get(k["name"])
                    if isinstance(m, p4rt.Exact):
                        key.append(Exact(m.value))
                    elif isinstance(m, p4rt.Lpm):
                        key.append(Lpm(m.value, m.prefix_len) if m.prefix_len else None)
                    else:
                        raise AssertionError(f"bench: match {m!r} of {x.table}")
                target: EntryTarget
                if x.member_id is not None:
                    target = MemberRef(x.member_id)
                elif x.group_id is not None:
                    target = GroupRef(x.group_id)
                else:
                    assert x.action is not None
                    target = self._call(x.action, x.params, tj["actions"])
                self.e.table_add(x.table, tuple(key), target, x.priority)
            elif isinstance(x, p4rt.ActionProfileMember):
                self.e.member_set(x.profile, x.member_id, self._call(x.action, x.params, []))
            elif isinstance(x, p4rt.ActionProfileGroup):
                mids = [mid for mid, w in sorted(x.members) for _ in range(w)]
                self.e.group_set(x.profile, x.group_id, mids)
            elif isinstance(x, p4rt.MulticastGroup):
                reps = [EngineReplica(r.port, r.instance) for r in x.replicas]
                self.e.mc_group_set(x.group_id, reps)
            else:
                raise AssertionError(f"bench: entity {x!r}")

    def modify(self, *entities: Any) -> None:
        for x in entities:
            assert x.is_default and x.action is not None, x
            tj = self.tables[x.table]
            self.e.table_set_default(x.table, self._call(x.action, x.params, tj["actions"]))


Case = tuple[int, list[bytes], int, list[bytes]]


def _bench_cases() -> dict[str, Case]:
    from tests.packet.topo import bench_cases

    return bench_cases()


def _esvpn_engine(entries: bool, generate: bool = True) -> SoftEngine:
    j = json.loads(ESVPN.read_text())
    e = SoftEngine(generate=generate)
    e.load(j)
    if entries:
        from tests.packet.topo import bench_program

        dp: Any = _EngineDataplane(e, j)
        bench_program(dp)
    return e


def setup_esvpn_case(name: str) -> Callable[[bool], Setup | None]:
    def setup(generate: bool) -> Setup | None:
        if not ESVPN.exists():
            return None
        e = _esvpn_engine(entries=True, generate=generate)
        in_port, frames, out_port, want = _bench_cases()[name]
        for i, f in enumerate(frames):
            got = e.process(in_port, f)
            assert got == [(out_port, want[i])], f"esvpn {name} frame {i}: {got!r:.200}"
        return e, frames, in_port

    return setup


def setup_esvpn_miss(generate: bool) -> Setup | None:
    if not ESVPN.exists():
        return None
    e = _esvpn_engine(entries=False, generate=generate)
    frames = [_ipv4_frame(bytes([10, i, 1, 1])) for i in range(64)]
    assert e.process(1, frames[0]) == [], "esvpn without entries must drop"
    return e, frames, 1


def _rate(case: Setup, n: int) -> float:
    """packets/s of one run of n frames."""
    e, frames, port = case
    process = e.process
    nf = len(frames)
    t0 = time.perf_counter()
    for i in range(n):
        process(port, frames[i % nf])
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--out", default=str(ROOT / "bench/results"))
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="one case")
    ap.add_argument(
        "--repeat", type=int, default=3, help="timed runs per case; the median is reported"
    )
    ap.add_argument(
        "--no-closures",
        action="store_true",
        help="skip the reference run of SoftEngine(generate=False), the closure-only engine",
    )
    args = ap.parse_args()
    results: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "packets": args.packets,
        "repeat": args.repeat,
        "programs": {},
    }
    programs: dict[str, dict[str, Any]] = {}
    setups: dict[str, Callable[[bool], Setup | None]] = {
        "simple_router": setup_simple_router,
        "esvpn_encap": setup_esvpn_case("encap"),
        "esvpn_decap": setup_esvpn_case("decap"),
        "esvpn_miss": setup_esvpn_miss,
    }
    for name, setup in setups.items():
        if args.only and name not in args.only:
            continue
        case = setup(True)
        if case is None:
            continue
        ref_case = None if args.no_closures else setup(False)
        if ref_case is not None:  # the same bytes out of both engines
            for f in case[1]:
                assert case[0].process(case[2], f) == ref_case[0].process(case[2], f), name
        runs, ref_runs = [], []
        for _ in range(args.repeat):  # alternating, so both see the same load
            runs.append(_rate(case, args.packets))
            if ref_case is not None:
                ref_runs.append(_rate(ref_case, args.packets))
        pps = statistics.median(runs)
        programs[name] = {"soft_pps": round(pps), "soft_pps_runs": [round(x) for x in runs]}
        line = f"{name}: {pps:,.0f} packets/s"
        if ref_runs:
            closure_pps = statistics.median(ref_runs)
            programs[name]["closures_pps"] = round(closure_pps)
            programs[name]["closures_pps_runs"] = [round(x) for x in ref_runs]
            line += f"; closures only {closure_pps:,.0f} (x{pps / closure_pps:.1f})"
        print(line)
    results["programs"] = programs
    write_result(args.out, "engine_pps", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
