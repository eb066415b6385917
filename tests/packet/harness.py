"""Packet-test harness: one ``Dataplane`` API over every target.

Tests send frames into switch ports and expect exact frames out of exact
ports (or nothing), and program the switch over real P4Runtime (gRPC) with
the agent's own client, ``control.p4rt``. What differs between targets is
only how frames reach the switch, chosen in ``make_backend``:

* ``soft``: the embedded target (``softswitch``) runs in this process — its
  engine, port hub and P4Runtime server on a background asyncio loop — with
  in-process ports. Processing a frame is synchronous, so "nothing came out"
  is exact.
* ``bmv2``: ``simple_switch_grpc --no-p4`` on veth pairs this harness creates;
  frames go through AF_PACKET sockets on the test side of each pair.
  ``ESVPN_SOFT_PORTS=veth`` runs the ``softswitch`` CLI the same way.

Either way the pipeline is pushed with SetForwardingPipelineConfig (which
also resets all switch state between tests), and readiness is awaited
(gRPC channel ready + arbitration), never slept for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import select
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bmv2 import switch_command
from control import p4rt

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "p4src" / "build"
BMV2_JSON = BUILD / "esvpn.json"
P4INFO = BUILD / "esvpn.p4info.txtpb"

CPU_PORT = 255
PORTS = (1, 2, 3, 4, 5)
DEVICE_ID = 0

T = TypeVar("T")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40


class LoopThread:
    """An asyncio loop on a daemon thread; tests call into it synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def _c() -> T:
            return fn(*args)

        return self.run(_c())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class Backend(Protocol):
    #: True when send() returns only after the switch finished the frame.
    synchronous: bool

    def start(self) -> str:
        """Bring the switch up; return its P4Runtime address."""

    def send(self, port: int, frame: bytes) -> None: ...

    def recv(self, port: int, timeout: float) -> bytes | None: ...

    def stop(self) -> None: ...


class _QueuePort:
    """softswitch port driver collecting what the switch sends out."""

    def __init__(self, q: queue.Queue[bytes]) -> None:
        self.q = q

    def send(self, frame: bytes) -> None:
        self.q.put(frame)

    def close(self) -> None:
        pass


class SoftBackend:
    """The embedded target in this process with in-process ports."""

    synchronous = True

    def __init__(self, loop: LoopThread, generate: bool = True) -> None:
        self.loop = loop
        self.generate = generate
        self.queues: dict[int, queue.Queue[bytes]] = {p: queue.Queue() for p in PORTS}
        self._server: Any = None
        self._hub: Any = None

    def start(self) -> str:
        async def _start() -> int:
            from softswitch.engine import SoftEngine
            from softswitch.p4runtime import P4RuntimeServer
            from softswitch.ports import PortHub

            engine = SoftEngine(generate=self.generate)
            hub = PortHub(engine, CPU_PORT)
            for p in PORTS:
                hub.attach(p, _QueuePort(self.queues[p]))
            server = P4RuntimeServer(
                engine,
                device_id=DEVICE_ID,
                cpu_port=CPU_PORT,
                packet_out=lambda frame: hub.receive(CPU_PORT, frame),
            )
            hub.cpu_hook = server.packet_in
            self._server, self._hub = server, hub
            port: int = await server.start("127.0.0.1:0")
            return port

        return f"127.0.0.1:{self.loop.run(_start())}"

    def send(self, port: int, frame: bytes) -> None:
        self.loop.call(self._hub.receive, port, frame)

    def recv(self, port: int, timeout: float) -> bytes | None:
        try:
            return self.queues[port].get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        if self._server is not None:
            self.loop.run(self._server.stop(0))


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VethBackend:
    """A switch process bound to veth pairs (simple_switch_grpc or softswitch)."""

    synchronous = False

    def __init__(self, kind: str) -> None:
        self.kind = kind
        tag = f"{os.getpid() % 10000:04d}"
        # switch side / test side interface names (<= 15 characters)
        self.sw = {p: f"es{tag}s{p}" for p in PORTS}
        self.tst = {p: f"es{tag}t{p}" for p in PORTS}
        self.socks: dict[int, socket.socket] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        # the switch log outlives the run, for post-mortems
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"esvpn-{kind}-", suffix=".log", delete=False
        )

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def _command(self, grpc_addr: str) -> list[str]:
        ifs = [f"{p}@{self.sw[p]}" for p in PORTS]
        return switch_command(self.kind, ifs, grpc_addr, DEVICE_ID, CPU_PORT)

    def start(self) -> str:
        for p in PORTS:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ip("link", "del", self.sw[p])
            self._ip("link", "add", self.sw[p], "type", "veth", "peer", "name", self.tst[p])
            for ifname in (self.sw[p], self.tst[p]):
                Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1")
                self._ip("link", "set", ifname, "mtu", "9000", "up")
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((self.tst[p], ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            with contextlib.suppress(OSError):  # no copies of our own sends
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.setblocking(False)
            self.socks[p] = s
        addr = f"127.0.0.1:{_free_tcp_port()}"
        self.proc = subprocess.Popen(
            self._command(addr), stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO
        )
        return addr

    def send(self, port: int, frame: bytes) -> None:
        self.socks[port].send(frame)

    def recv(self, port: int, timeout: float) -> bytes | None:
        s = self.socks[port]
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, anc, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(64))
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                select.select([s], [], [], left)
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            return _retag(data, anc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for s in self.socks.values():
            s.close()
        for p in PORTS:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ip("link", "del", self.sw[p])

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.log.flush()
            tail = Path(self.log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{tail}")


def _retag(frame: bytes, anc: Iterable[tuple[int, int, bytes]]) -> bytes:
    """Put back the 802.1Q tag the kernel moved into PACKET_AUXDATA."""
    for level, kind, data in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 20:
            status, _len, _snap, _mac, _net, tci, tpid = struct.unpack("IIIHHHH", data[:20])
            if status & TP_STATUS_VLAN_VALID:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0x8100
                return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
    return frame


def make_backend(target: str, loop: LoopThread) -> Backend:
    if target == "soft-closures":  # the engine without generated code (reference)
        return SoftBackend(loop, generate=False)
    if target == "soft" and os.environ.get("ESVPN_SOFT_PORTS", "memory") == "memory":
        return SoftBackend(loop)
    return VethBackend("bmv2" if target == "bmv2" else "soft")


class Dataplane:
    """What a packet test sees: ports, frames and the switch's P4Runtime."""

    def __init__(self, target: str) -> None:
        for f in (BMV2_JSON, P4INFO):
            if not f.exists():
                raise RuntimeError(f"{f} is missing: run `make p4` (needs p4c-bm2-ss)")
        self.target = target
        self.loop = LoopThread()
        self.backend = make_backend(target, self.loop)
        self.info = p4rt.P4Info.load(P4INFO)
        self.pipeline = p4rt.Pipeline.load(BMV2_JSON, self.info)
        self.client: p4rt.P4RuntimeClient | None = None
        self._loaded = False  # a pipeline was pushed
        #: how long "nothing" is waited for on a target that is not synchronous
        self.quiet = 0.25
        self.timeout = 3.0

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        try:
            addr = self.backend.start()
            deadline = time.monotonic() + 60
            while True:
                if isinstance(self.backend, VethBackend):
                    self.backend.check_alive()
                try:
                    self.client = self.loop.run(
                        p4rt.P4RuntimeClient.connect(addr, self.info, DEVICE_ID, 1, timeout=2.0)
                    )
                    break
                except p4rt.P4RuntimeError:
                    if time.monotonic() > deadline:
                        raise
            self.loop.run(self.client.wait_primary(timeout=10))
        except BaseException:
            self.stop()
            raise

    def reset(self) -> None:
        """A fresh pipeline: no entries, groups or counts; no frames queued.

        Multicast groups are deleted first: simple_switch_grpc forgets them
        on a new pipeline but keeps their replicas in its replication
        engine, so a group written again would replicate twice."""
        if self._loaded:
            groups = self.loop.run(self.p4.read_multicast_groups())
            self.write([p4rt.Update(p4rt.DELETE, g) for g in groups])
        self.loop.run(self.p4.set_pipeline(self.pipeline, force=True))
        self._loaded = True
        self._drain()

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.loop.run(self.client.close(), timeout=10)
        self.backend.stop()
        self.loop.stop()

    @property
    def p4(self) -> p4rt.P4RuntimeClient:
        assert self.client is not None
        return self.client

    # ----------------------------------------------------------------- frames
    def send(self, port: int, frame: Any) -> None:
        self.backend.send(port, bytes(frame))

    def expect(self, port: int, frame: Any) -> None:
        """The next frame out of ``port`` is exactly ``frame``."""
        want = bytes(frame)
        got = self.backend.recv(port, self.timeout)
        assert got is not None, f"nothing out of port {port}; expected {want.hex()}"
        assert got == want, _diff(port, want, got)

    def expect_one_of(self, candidates: Sequence[tuple[int, Any]]) -> int:
        """Exactly one of the (port, frame) candidates comes out; its index."""
        wants = [(p, bytes(f)) for p, f in candidates]
        ports = sorted({p for p, _ in wants})
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for p in ports:
                got = self.backend.recv(p, 0.01)
                if got is None:
                    continue
                for i, (wp, wf) in enumerate(wants):
                    if wp == p and wf == got:
                        return i
                raise AssertionError(f"unexpected frame out of port {p}: {got.hex()}")
        raise AssertionError(f"none of {len(wants)} candidate frames came out of {ports}")

    def expect_nothing(self) -> None:
        """No frame out of any port (exact on a synchronous target)."""
        wait = 0.0 if self.backend.synchronous else self.quiet
        deadline = time.monotonic() + wait
        for p in PORTS:
            got = self.backend.recv(p, max(0.0, deadline - time.monotonic()))
            assert got is None, f"unexpected frame out of port {p}: {got.hex()}"

    def _drain(self) -> None:
        for p in PORTS:
            while self.backend.recv(p, 0.0) is not None:
                pass
        self.loop.call(self.p4.drain_packet_ins)

    # ----------------------------------------------------------------- P4Runtime
    def write(self, updates: Sequence[p4rt.Update]) -> None:
        self.loop.run(self.p4.write(updates)).raise_on_error()

    def insert(self, *entities: p4rt.Entity) -> None:
        self.write([p4rt.Update(p4rt.INSERT, e) for e in entities])

    def modify(self, *entities: p4rt.Entity) -> None:
        self.write([p4rt.Update(p4rt.MODIFY, e) for e in entities])

    def counter(self, name: str, index: int) -> p4rt.CounterValue:
        cells = self.loop.run(self.p4.read_counters(name, index))
        return cells.get(index, p4rt.CounterValue(0, 0))

    def wait_counter(
        self, name: str, index: int, packets: int, nbytes: int | None = None
    ) -> p4rt.CounterValue:
        """Poll a counter cell until it shows ``packets`` (deadline), then
        check it exactly."""
        deadline = time.monotonic() + self.timeout
        value = self.counter(name, index)
        while value.packets < packets and time.monotonic() < deadline:
            value = self.counter(name, index)
        assert value.packets == packets, f"{name}[{index}]: {value} != {packets} packets"
        if nbytes is not None:
            assert value.bytes == nbytes, f"{name}[{index}]: {value} != {nbytes} bytes"
        return value

    def packet_out(self, frame: Any, port: int) -> None:
        md = {"egress_port": port, "_pad": 0, "vrf_id": 0}
        self.loop.run(self.p4.packet_out(bytes(frame), md))

    def packet_out_routed(self, frame: Any, vrf_id: int) -> None:
        """A packet the agent originates: routed in ``vrf_id``."""
        md = {"egress_port": 0, "_pad": 0, "vrf_id": vrf_id}
        self.loop.run(self.p4.packet_out(bytes(frame), md))

    def packet_in(self) -> p4rt.PacketIn:
        return self.loop.run(self.p4.packet_in(timeout=self.timeout))

    def no_packet_in(self) -> None:
        # packet-ins travel over the gRPC stream even from the soft target
        try:
            pin = self.loop.run(self.p4.packet_in(timeout=self.quiet))
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet-in {pin}")


def _diff(port: int, want: bytes, got: bytes) -> str:
    first = next(
        (i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b),
        min(len(want), len(got)),
    )
    return (
        f"port {port}: frame differs at byte {first} "
        f"(expected {len(want)} bytes, got {len(got)})\n"
        f"  expected {want.hex()}\n  got      {got.hex()}"
    )
