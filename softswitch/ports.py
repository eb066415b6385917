"""Ports of the embedded P4 target: Linux interfaces (AF_PACKET) or in-process.

A ``PortHub`` owns the port-number -> driver map. Every frame received on a
port goes through ``engine.process``; each output goes to the driver of its
port, to the CPU hook when it is the CPU port, and is counted as dropped when
the port has no driver (bmv2 does the same with unbound ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from softswitch.api import Engine, EngineError

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MAX_FRAME = 65535
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: no copy of our own sends
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_AUX_SPACE = socket.CMSG_SPACE(_AUXDATA.size)


def restore_vlan(frame: bytes, ancdata: list[tuple[int, int, bytes]]) -> bytes:
    """Put back the 802.1Q tag the kernel's VLAN offload moved into auxdata.

    Linux strips the outer tag of received frames on most interfaces (veths
    included) and reports it in PACKET_AUXDATA; libpcap, and so bmv2, puts it
    back. The P4 program must see the frame as it was on the wire.
    """
    for level, ctype, data in ancdata:
        if level != SOL_PACKET or ctype != PACKET_AUXDATA or len(data) < _AUXDATA.size:
            continue
        status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(data)
        if not status & TP_STATUS_VLAN_VALID and tci == 0:
            continue
        if not status & TP_STATUS_VLAN_TPID_VALID:
            tpid = 0x8100
        return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
    return frame


class PortDriver:
    """Something frames can be sent out of."""

    def send(self, frame: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the driver's resources (default: nothing)."""


@dataclass
class PortStats:
    rx: int = 0
    tx: int = 0
    dropped_no_port: int = 0
    engine_errors: int = 0


class PortHub:
    """Runs frames through the engine and dispatches the outputs."""

    def __init__(self, engine: Engine, cpu_port: int | None = None) -> None:
        self.engine = engine
        self.cpu_port = cpu_port
        self.ports: dict[int, PortDriver] = {}
        self.cpu_hook: Callable[[bytes], None] | None = None
        self.stats = PortStats()

    def attach(self, port: int, driver: PortDriver) -> None:
        if port in self.ports:
            raise ValueError(f"port {port} is already bound")
        if port == self.cpu_port:
            raise ValueError(f"port {port} is the CPU port")
        self.ports[port] = driver

    def receive(self, port: int, frame: bytes) -> None:
        """A frame arrived on ``port`` (the CPU port for packet-outs)."""
        self.stats.rx += 1
        try:
            outputs = self.engine.process(port, frame)
        except EngineError as exc:
            self.stats.engine_errors += 1
            log.warning("engine refused a frame from port %d: %s", port, exc)
            return
        except Exception:  # a daemon never dies of its input
            self.stats.engine_errors += 1
            log.exception("engine failed on a frame from port %d", port)
            return
        for out_port, out in outputs:
            self.emit(out_port, out)

    def emit(self, port: int, frame: bytes) -> None:
        if port == self.cpu_port and self.cpu_hook is not None:
            self.cpu_hook(frame)
            return
        driver = self.ports.get(port)
        if driver is None:
            self.stats.dropped_no_port += 1
            return
        self.stats.tx += 1
        driver.send(frame)

    def close(self) -> None:
        for driver in self.ports.values():
            driver.close()
        self.ports.clear()


@dataclass
class MemoryPort(PortDriver):
    """In-process port for tests: collects what the switch sends out of it."""

    sent: list[bytes] = field(default_factory=list)

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)


class AfPacketPort(PortDriver):
    """A Linux interface through an AF_PACKET raw socket, read on the event loop."""

    def __init__(self, hub: PortHub, port: int, ifname: str) -> None:
        self.hub = hub
        self.port = port
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self.sock.bind((ifname, ETH_P_ALL))
            self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            # every frame sent would otherwise come back to this socket
            # (PACKET_OUTGOING) and cost a receive; older kernels filter below
            with contextlib.suppress(OSError):
                self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(64):  # bounded burst, then yield to the loop
            try:
                frame, anc, _flags, addr = self.sock.recvmsg(MAX_FRAME, _AUX_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("port %d (%s): receive failed: %s", self.port, self.ifname, exc)
                return
            if addr[2] == PACKET_OUTGOING:
                continue  # our own transmissions
            self.hub.receive(self.port, restore_vlan(frame, anc))

    def send(self, frame: bytes) -> None:
        try:
            self.sock.send(frame)
        except OSError as exc:
            log.warning("port %d (%s): send failed: %s", self.port, self.ifname, exc)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def parse_interface(spec: str) -> tuple[int, str]:
    """``N@ifname`` as simple_switch's ``-i`` takes it."""
    num, sep, ifname = spec.partition("@")
    if not sep or not ifname:
        raise ValueError(f"interface {spec!r}: expected PORT@IFNAME")
    try:
        port = int(num)
    except ValueError:
        raise ValueError(f"interface {spec!r}: port must be an integer") from None
    if not 0 <= port < 511:
        raise ValueError(f"interface {spec!r}: port must be in 0..510")
    return port, ifname
