"""Batched P4Runtime Write throughput of the embedded target's server.

A real gRPC client writes N batches of B exact-match entries
(IngressImpl.l2: dst_addr, ingress_port -> set_port) to a P4RuntimeServer on
127.0.0.1 and times it end to end (gRPC, decoding, validation, store,
engine; the requests are serialized before the clock starts).
Goal: >= 50,000 entries/s with batches of 1000.

    .venv/bin/python bench/p4rt_writes.py [--engine soft|fake|both] [--batches 20] \
        [--batch-size 1000] [--out bench/results]

--engine soft uses softswitch.engine.SoftEngine on the p4c-compiled test
program (tests/unit/softswitch_p4rt/data/p4rt_test.json); --engine fake a
recording fake engine, which isolates the server's own cost; both (default)
runs the two side by side. Results go to <out>/p4rt_writes.json.
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

from p4.v1 import p4runtime_pb2  # noqa: E402

from tests.unit.softswitch_p4rt.fake_engine import RecordingFakeEngine  # noqa: E402
from tests.unit.softswitch_p4rt.harness import Client, ServerThread  # noqa: E402
from tests.unit.softswitch_p4rt.p4rt_data import Ids, load_config, load_p4info  # noqa: E402

GOAL = 50_000


def make_batches(batches: int, size: int) -> list[p4runtime_pb2.WriteRequest]:
    ids = Ids(load_p4info())
    table, f_mac, f_port = (
        ids.table("l2"),
        ids.field("l2", "dst_addr"),
        ids.field("l2", "ingress_port"),
    )
    action, param = ids.action("set_port"), ids.param("set_port", "port")
    out = []
    n = 0
    for _ in range(batches):
        req = p4runtime_pb2.WriteRequest(device_id=1)
        req.election_id.low = 1
        for _ in range(size):
            u = req.updates.add(type=p4runtime_pb2.Update.INSERT)
            te = u.entity.table_entry
            te.table_id = table
            te.match.add(field_id=f_mac).exact.value = n.to_bytes(6, "big")
            te.match.add(field_id=f_port).exact.value = bytes([1 + n % 8])
            te.action.action.action_id = action
            te.action.action.params.add(param_id=param, value=bytes([1 + n % 4]))
            n += 1
        out.append(req)
    return out


def run(engine_kind: str, batches: int, size: int) -> dict[str, object]:
    if engine_kind == "soft":
        from softswitch.engine import SoftEngine

        engine: object = SoftEngine()
    else:
        engine = RecordingFakeEngine()
    server = ServerThread(engine)  # type: ignore[arg-type]
    client = Client(server.address, election_id=1)
    try:
        client.open_stream()
        client.set_pipeline(load_config())
        # Serialized up front: the pure-Python protobuf of this venv would make the
        # client, not the server, the bottleneck.
        blobs = [r.SerializeToString() for r in make_batches(batches, size)]
        write = client.channel.unary_unary(
            "/p4.v1.P4Runtime/Write",
            request_serializer=None,
            response_deserializer=p4runtime_pb2.WriteResponse.FromString,
        )
        start = time.perf_counter()
        for blob in blobs:
            write(blob, timeout=60)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
        server.close()
    rate = batches * size / elapsed
    return {
        "benchmark": "p4rt_writes",
        "engine": engine_kind,
        "batches": batches,
        "batch_size": size,
        "entries": batches * size,
        "seconds": round(elapsed, 4),
        "entries_per_s": round(rate),
        "goal_entries_per_s": GOAL,
        "ratio_to_goal": round(rate / GOAL, 3),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("soft", "fake", "both"), default="both")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    engines = ("soft", "fake") if args.engine == "both" else (args.engine,)
    runs = [run(e, args.batches, args.batch_size) for e in engines]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "p4rt_writes.json"
    path.write_text(json.dumps(runs, indent=2) + "\n")
    for r in runs:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
