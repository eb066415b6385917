"""Batched P4Runtime Write throughput of the embedded target, side by side
with its own general write path and with simple_switch_grpc.

A real gRPC client writes N batches of B INSERTs to a switch process on
127.0.0.1 (``python -m softswitch --no-p4``, the deployment form), then
MODIFYs every entry (new action params), then DELETEs every entry, and times
each of the three end to end (gRPC, decoding, validation, store, engine;
the requests are serialized before the clock starts, since the pure-Python
protobuf of this venv would make the client the bottleneck). Two workloads:

- ``l2``: the p4c-compiled test program's IngressImpl.l2 (dst_addr,
  ingress_port -> set_port), values zero-padded to full width as
  p4runtime-shell sends them;
- ``routes``: our program's VRF routes, SwitchIngress.pipe.routing.ipv4_route
  and ipv6_route alternately (vrf_id exact, dst_addr lpm of every prefix
  length -> set_nexthop), the bulk of what the agent writes.

Targets, each in a fresh process per run, interleaved, --repeat times,
medians reported: ``soft`` (the default server, with its compiled entry
parsers), ``soft-general`` (``--general-write-path``: every entry the general
way, the reference) and ``bmv2`` (simple_switch_grpc --no-p4, when found:
SIMPLE_SWITCH_GRPC, PATH, or /opt/p4/bin). Goal: ``soft`` >= 50,000
entries/s with batches of 1000, for each of insert, modify and delete.

    .venv/bin/python bench/p4rt_writes.py [--workload l2|routes|both] \
        [--batches N] [--batch-size 1000] [--repeat 3] [--out bench/results]

Results go to <out>/p4rt_writes.json; the exit status is 1 when a ``soft``
median is below the goal.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from p4.v1 import p4runtime_pb2  # noqa: E402

from tests.unit.softswitch_p4rt.harness import Client  # noqa: E402
from tests.unit.softswitch_p4rt.p4rt_data import Ids, load_config, load_esvpn_config  # noqa: E402

GOAL = 50_000


def l2_entries(
    config: p4runtime_pb2.ForwardingPipelineConfig, count: int, variant: int
) -> list[bytes]:
    ids = Ids(config.p4info)
    table, f_mac, f_port = (
        ids.table("l2"),
        ids.field("l2", "dst_addr"),
        ids.field("l2", "ingress_port"),
    )
    action, param = ids.action("set_port"), ids.param("set_port", "port")
    out = []
    for n in range(count):
        te = p4runtime_pb2.TableEntry(table_id=table)
        te.match.add(field_id=f_mac).exact.value = n.to_bytes(6, "big")
        te.match.add(field_id=f_port).exact.value = (1 + n % 8).to_bytes(2, "big")
        te.action.action.action_id = action
        te.action.action.params.add(
            param_id=param, value=(1 + (n + variant) % 4).to_bytes(2, "big")
        )
        out.append(te.SerializeToString())
    return out


def route_entries(
    config: p4runtime_pb2.ForwardingPipelineConfig, count: int, variant: int
) -> list[bytes]:
    ids = Ids(config.p4info)
    action = ids.action("set_nexthop")
    param = ids.param("set_nexthop", "nexthop_id")
    tables: list[list[bytes]] = []
    for name, width in (("ipv4_route", 32), ("ipv6_route", 128)):
        out: list[bytes] = []
        seen: set[tuple[int, int, int]] = set()
        k = 0
        while len(out) < (count + 1 - len(tables)) // 2:
            k += 1
            plen, vrf = 1 + k % width, 1 + k % 64
            value = ((k * 0x9E3779B97F4A7C15) % (1 << width)) >> (width - plen) << (width - plen)
            if (vrf, value, plen) in seen:  # short prefixes repeat: one of each
                continue
            seen.add((vrf, value, plen))
            te = p4runtime_pb2.TableEntry(table_id=ids.table(name))
            te.match.add(field_id=ids.field(name, "vrf_id")).exact.value = vrf.to_bytes(2, "big")
            lpm = te.match.add(field_id=ids.field(name, "dst_addr")).lpm
            lpm.value = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
            lpm.prefix_len = plen
            te.action.action.action_id = action
            nexthop = (1 + (k + variant) % 4000).to_bytes(2, "big")
            te.action.action.params.add(param_id=param, value=nexthop)
            out.append(te.SerializeToString())
        tables.append(out)
    v4, v6 = tables
    return [te for pair in zip(v4, v6, strict=False) for te in pair] + v4[len(v6) :]


#: workload -> (config, entries(config, count, variant)): the variant changes
#: only the action params (what a MODIFY changes)
WORKLOADS: dict[
    str,
    tuple[
        Callable[[], p4runtime_pb2.ForwardingPipelineConfig],
        Callable[[p4runtime_pb2.ForwardingPipelineConfig, int, int], list[bytes]],
    ],
] = {"l2": (load_config, l2_entries), "routes": (load_esvpn_config, route_entries)}

OPS = ("insert", "modify", "delete")
_UTYPE = {
    "insert": p4runtime_pb2.Update.INSERT,
    "modify": p4runtime_pb2.Update.MODIFY,
    "delete": p4runtime_pb2.Update.DELETE,
}


def make_batches(entries: list[bytes], size: int, op: str) -> list[bytes]:
    """Serialized WriteRequests of `size` updates each."""
    out = []
    for i in range(0, len(entries), size):
        req = p4runtime_pb2.WriteRequest(device_id=1)
        req.election_id.low = 1
        for te in entries[i : i + size]:
            req.updates.add(type=_UTYPE[op]).entity.table_entry.ParseFromString(te)
        out.append(req.SerializeToString())
    return out


from bench.report import write_result  # noqa: E402
from bmv2 import simple_switch_grpc  # noqa: E402


def bmv2_path() -> str | None:
    return simple_switch_grpc()


def _command(target: str, address: str) -> list[str]:
    grpc_args = ["--grpc-server-addr", address, "--cpu-port", "255"]
    if target == "bmv2":
        exe = bmv2_path()
        assert exe is not None
        return [exe, "--device-id", "1", "--no-p4", "--", *grpc_args]
    general = ["--general-write-path"] if target == "soft-general" else []
    return [sys.executable, "-m", "softswitch", "--no-p4", "-L", "warning", *general, *grpc_args]


def run_once(
    target: str, config: p4runtime_pb2.ForwardingPipelineConfig, ops: dict[str, list[bytes]]
) -> dict[str, float]:
    """Seconds to write every batch of each op, in order, to a fresh switch
    process; every update must succeed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    # the switch's log, shown if a run fails
    with tempfile.TemporaryFile(prefix=f"p4rt-writes-{target}-") as log:
        proc = subprocess.Popen(
            _command(target, address), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            return _drive(address, config, ops)
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _drive(
    address: str, config: p4runtime_pb2.ForwardingPipelineConfig, ops: dict[str, list[bytes]]
) -> dict[str, float]:
    channel = grpc.insecure_channel(address, options=[("grpc.max_metadata_size", 64 << 20)])
    client = Client(address, election_id=1, channel=channel)
    took: dict[str, float] = {}
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
        client.open_stream()
        client.set_pipeline(config)
        write = channel.unary_unary(
            "/p4.v1.P4Runtime/Write",
            request_serializer=None,
            response_deserializer=p4runtime_pb2.WriteResponse.FromString,
        )
        for op, blobs in ops.items():
            start = time.perf_counter()
            for blob in blobs:
                write(blob, timeout=120)  # any failed update raises
            took[op] = time.perf_counter() - start
        return took
    finally:
        client.close()


def run(
    workload: str, batches: int, size: int, repeat: int, targets: list[str]
) -> dict[str, object]:
    make_config, make_entries = WORKLOADS[workload]
    config = make_config()
    entries = batches * size
    ops = {
        "insert": make_batches(make_entries(config, entries, 0), size, "insert"),
        "modify": make_batches(make_entries(config, entries, 1), size, "modify"),
        "delete": make_batches(make_entries(config, entries, 1), size, "delete"),
    }
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    for _ in range(repeat):  # interleaved, so drifts of the machine hit all alike
        for target, got in runs.items():
            took = run_once(target, config, ops)
            got.append({op: entries / t for op, t in took.items()})
    result: dict[str, object] = {
        "benchmark": "p4rt_writes",
        "workload": workload,
        "batches": batches,
        "batch_size": size,
        "entries": entries,
        "repeat": repeat,
    }
    for op in OPS:
        per = {t: statistics.median(r[op] for r in runs[t]) for t in targets}
        out: dict[str, object] = {
            "entries_per_s": {t: round(v) for t, v in per.items()},
            "runs_entries_per_s": {t: [round(r[op]) for r in runs[t]] for t in targets},
            "ratio_to_goal": round(per["soft"] / GOAL, 3),
            "ratio_to_general_path": round(per["soft"] / per["soft-general"], 2),
        }
        if "bmv2" in per:
            out["ratio_to_bmv2"] = round(per["soft"] / per["bmv2"], 2)
        result[op] = out
    result["goal_entries_per_s"] = GOAL
    result["python"] = platform.python_version()
    result["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("l2", "routes", "both"), default="both")
    ap.add_argument(
        "--batches", type=int, default=None, help="default: 60 (l2), 32 (routes, 16k per table)"
    )
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    workloads = ("l2", "routes") if args.workload == "both" else (args.workload,)
    default_batches = {"l2": 60, "routes": 32}  # the route tables hold 16384 each
    targets = ["soft", "soft-general"]
    if bmv2_path() is not None:
        targets.append("bmv2")
    else:
        print("p4rt_writes: simple_switch_grpc not found; measuring the embedded target only")
    runs = [
        run(w, args.batches or default_batches[w], args.batch_size, args.repeat, targets)
        for w in workloads
    ]
    write_result(args.out, "p4rt_writes", runs)
    for r in runs:
        print(json.dumps(r))
    met = all(r[op]["ratio_to_goal"] >= 1 for r in runs for op in OPS)  # type: ignore[index]
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
