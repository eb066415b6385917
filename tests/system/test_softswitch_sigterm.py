"""The softswitch daemon exits within 5 s of SIGTERM while a controller streams
Writes and packet-outs and frames arrive on its veth ports (issue 19, bug 6)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
from google.rpc import code_pb2
from p4.v1 import p4runtime_pb2

from tests.system.softswitch_proc import free_port, wait_grpc_ready
from tests.unit.softswitch_p4rt.harness import Client
from tests.unit.softswitch_p4rt.p4rt_data import Ids, load_config, load_p4info


def l2_update(ids: Ids, n: int, kind: int) -> p4runtime_pb2.Update:
    te = p4runtime_pb2.TableEntry(table_id=ids.table("l2"))
    te.match.add(field_id=ids.field("l2", "dst_addr")).exact.value = n.to_bytes(6, "big")
    te.match.add(field_id=ids.field("l2", "ingress_port")).exact.value = b"\x00\x01"
    te.action.action.action_id = ids.action("set_port")
    te.action.action.params.add(param_id=ids.param("set_port", "port"), value=b"\x02")
    return p4runtime_pb2.Update(type=kind, entity=p4runtime_pb2.Entity(table_entry=te))


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def still_running(proc: subprocess.Popen[bytes]) -> None:
    """Fails with the process's output once it has exited."""
    assert proc.poll() is None, proc.communicate()[0].decode()


def test_sigterm_while_writing_and_forwarding_exits_within_5s() -> None:
    tag = f"{os.getpid() % 10000:04d}"
    sw, tst = f"es{tag}q1", f"es{tag}r1"  # switch side, test side
    with contextlib.suppress(subprocess.CalledProcessError):
        ip("link", "del", sw)
    ip("link", "add", sw, "type", "veth", "peer", "name", tst)
    for ifname in (sw, tst):
        ip("link", "set", ifname, "up")
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    raw.bind((tst, 3))
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "softswitch", "-i", f"1@{sw}", "--no-p4", "--device-id", "1",
         "--grpc-server-addr", addr, "--cpu-port", "255"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    stop = threading.Event()
    counts = {"writes": 0, "frames": 0}
    threads: list[threading.Thread] = []
    try:
        wait_grpc_ready(addr, lambda: still_running(proc))
        ids = Ids(load_p4info())
        c = Client(addr, election_id=1)
        assert c.open_stream().arbitration.status.code == code_pb2.OK
        c.set_pipeline(load_config())

        def writer() -> None:
            n = 0
            try:
                while not stop.is_set():
                    c.write(*(l2_update(ids, n * 50 + i, 1) for i in range(50)))  # INSERT
                    c.write(*(l2_update(ids, n * 50 + i, 3) for i in range(50)))  # DELETE
                    counts["writes"] += 1
                    n += 1
                    out = p4runtime_pb2.StreamMessageRequest()
                    out.packet.payload = b"\x00\x02" + bytes(60)
                    c.send(out)
            except (grpc.RpcError, ValueError):
                return  # the daemon went away

        frame = bytes.fromhex("0000000000070200000000010800") + bytes(50)

        def sender() -> None:
            while not stop.is_set():
                try:
                    raw.send(frame)
                    counts["frames"] += 1
                except BlockingIOError:
                    time.sleep(0)
                except OSError:
                    return

        threads = [threading.Thread(target=writer), threading.Thread(target=sender)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while counts["writes"] < 5 or counts["frames"] < 100:
            assert time.monotonic() < deadline, f"no load: {counts}"
            time.sleep(0.01)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            assert time.monotonic() - t0 < 5.0, "softswitch still running 5 s after SIGTERM"
            time.sleep(0.02)
        out = proc.communicate()[0].decode()
        assert proc.returncode == 0, out
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for t in threads:
            t.join(10)
        raw.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", sw)
