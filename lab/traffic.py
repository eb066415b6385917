"""The lab's end-system traffic: 802.1Q-tagged UDP flows, sent and checked.

One process per end-system, in its network namespace, on the interface that
leads to its ToR's switch port. It sends each flow at a steady rate to the
VRRP gateway MAC (the forwarder routes it) and reads everything that comes
back. Every packet carries a magic, the flow's id, a sequence number and the
send time, so the receiver tells, per flow it expects: how many arrived,
which were missing, and each outage (a gap in arrivals longer than
``outage_gap`` seconds) with its start, end and the sequence numbers lost.
Anything addressed to this end-system that is not one of its expected flows
(another VPN's packet, a wrong VLAN or MAC) is counted as a leak.

No scapy here: the frames are built with struct so that the generator costs
little CPU beside the switches it measures.

    python -m lab.traffic --iface eth0 --mac 0a:00:00:00:00:01 --vlan 10 \
        --send red-v4-1to2:10.1.1.1:10.1.1.2 --expect red-v4-2to1 \
        --rate 50 --status /tmp/h1.json

The status file (JSON, replaced atomically every ``--every`` seconds and at
exit) has ``sent`` and ``received`` per flow name, ``outages``, ``leaks``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from control.inet import checksum
from softswitch.ports import (
    _AUX_SPACE,
    ETH_P_ALL,
    PACKET_AUXDATA,
    PACKET_OUTGOING,
    SOL_PACKET,
    restore_vlan,
)

MAGIC = b"ESVL"
_PAYLOAD = struct.Struct("!4sIId")  # magic, flow id, seq, send time (CLOCK_MONOTONIC)
VRRP_MAC_V4 = "00:00:5e:00:01:01"
VRRP_MAC_V6 = "00:00:5e:00:02:01"
SPORT, DPORT = 40000, 40001


def flow_id(name: str) -> int:
    return zlib.crc32(name.encode())


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def udp_packet(src: str, dst: str, payload: bytes, ttl: int = 64) -> tuple[int, bytes]:
    """(EtherType, IPv4 or IPv6 packet carrying UDP SPORT -> DPORT)."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    ulen = 8 + len(payload)
    if s.version == 4:
        udp = struct.pack("!HHHH", SPORT, DPORT, ulen, 0) + payload
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, ttl, 17, 0, s.packed, d.packed)
        hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
        return 0x0800, hdr + udp
    pseudo = s.packed + d.packed + struct.pack("!IxxxB", ulen, 17)
    udp = struct.pack("!HHHH", SPORT, DPORT, ulen, 0) + payload
    c = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    hdr = struct.pack("!IHBB16s16s", 6 << 28, ulen, 17, ttl, s.packed, d.packed)
    return 0x86DD, hdr + udp


def frame(src_mac: str, vlan: int, src: str, dst: str, payload: bytes) -> bytes:
    etype, pkt = udp_packet(src, dst, payload)
    gw = VRRP_MAC_V4 if etype == 0x0800 else VRRP_MAC_V6
    return (
        mac_bytes(gw) + mac_bytes(src_mac) + struct.pack("!HHH", 0x8100, vlan & 0xFFF, etype) + pkt
    )


def parse_payload(data: bytes, my_mac: bytes, vlan: int) -> tuple[int, int, float] | bool | None:
    """(flow id, seq, send time) of one of our packets addressed to us on our
    VLAN; False for one of ours that arrived wrong (a leak); None for other
    traffic (ARP, the kernel's own)."""
    at = data.find(MAGIC)
    if at < 0 or len(data) < at + _PAYLOAD.size:
        return None
    _m, fid, seq, sent = _PAYLOAD.unpack_from(data, at)
    if data[:6] != my_mac or data[12:14] != b"\x81\x00":
        return False
    if struct.unpack_from("!H", data, 14)[0] & 0xFFF != vlan:
        return False
    return fid, seq, sent


@dataclass
class FlowRx:
    """What arrived of one expected flow."""

    received: int = 0
    max_seq: int = -1
    last_arrival: float = 0.0
    missing: int = 0  # sequence numbers skipped (lost or reordered)
    late: int = 0  # arrived after a higher one (reordered)
    outages: list[dict[str, float | int]] = field(default_factory=list)

    def arrive(self, seq: int, now: float, gap: float) -> None:
        self.received += 1
        if seq <= self.max_seq:
            self.late += 1
            self.missing = max(0, self.missing - 1)
            return
        if self.last_arrival and now - self.last_arrival > gap:
            self.outages.append(
                {
                    "start": self.last_arrival,
                    "end": now,
                    "lost": seq - self.max_seq - 1,
                }
            )
        self.missing += seq - self.max_seq - 1
        self.max_seq = seq
        self.last_arrival = now


@dataclass
class Flow:
    name: str
    src: str
    dst: str
    sent: int = 0


@dataclass
class Generator:
    mac: str
    vlan: int
    flows: list[Flow]
    expect: list[str]
    outage_gap: float
    rx: dict[int, FlowRx] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    leaks: int = 0
    unexpected: int = 0
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        for name in self.expect:
            self.rx[flow_id(name)] = FlowRx()
            self.names[flow_id(name)] = name

    def next_frames(self) -> list[bytes]:
        out = []
        now = time.monotonic()
        for f in self.flows:
            payload = _PAYLOAD.pack(MAGIC, flow_id(f.name), f.sent, now)
            out.append(frame(self.mac, self.vlan, f.src, f.dst, payload))
            f.sent += 1
        return out

    def receive(self, data: bytes, now: float) -> None:
        got = parse_payload(data, mac_bytes(self.mac), self.vlan)
        if got is None:
            return
        if isinstance(got, bool):
            self.leaks += 1
            return
        fid, seq, _sent = got
        rx = self.rx.get(fid)
        if rx is None:
            self.unexpected += 1  # ours, but a flow this end-system must not get
            return
        rx.arrive(seq, now, self.outage_gap)

    def status(self) -> dict[str, object]:
        return {
            "time": time.monotonic(),
            "started": self.started,
            "sent": {f.name: f.sent for f in self.flows},
            "received": {
                self.names[fid]: {
                    "count": r.received,
                    "max_seq": r.max_seq,
                    "last": r.last_arrival,
                    "missing": r.missing,
                    "late": r.late,
                    "outages": r.outages,
                }
                for fid, r in self.rx.items()
            },
            "leaks": self.leaks,
            "unexpected": self.unexpected,
        }


def write_status(path: Path, status: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(status))
        os.replace(tmp, path)
    except OSError as exc:  # the flows go on; the next write may succeed
        print(f"traffic: cannot write {path}: {exc}", file=sys.stderr, flush=True)


def parse_flow(spec: str) -> Flow:
    name, src, dst = spec.split(",")
    return Flow(name, src, dst)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.traffic", description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--vlan", required=True, type=int)
    p.add_argument("--send", action="append", default=[], metavar="NAME,SRC,DST")
    p.add_argument("--expect", action="append", default=[], metavar="NAME")
    p.add_argument("--rate", type=float, default=50.0, help="packets/s per flow")
    p.add_argument("--outage-gap", type=float, default=0.5)
    p.add_argument("--status", required=True, type=Path)
    p.add_argument("--every", type=float, default=0.1)
    args = p.parse_args(argv)
    gen = Generator(
        args.mac, args.vlan, [parse_flow(s) for s in args.send], args.expect, args.outage_gap
    )
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.settimeout(0.01)
    stop = False

    def on_term(_sig: int, _frm: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    interval = 1.0 / args.rate if args.rate > 0 else float("inf")
    next_send = time.monotonic()
    next_status = next_send
    while not stop:
        now = time.monotonic()
        if now >= next_send and gen.flows:
            for f in gen.next_frames():
                with contextlib.suppress(OSError):
                    sock.send(f)
            next_send += interval
            if next_send < now - 1.0:  # we were stopped: no burst to catch up
                next_send = now + interval
        if now >= next_status:
            write_status(args.status, gen.status())
            next_status = now + args.every
        timeout = max(0.0, min(next_send, next_status) - time.monotonic())
        sock.settimeout(min(timeout, 0.05) or 0.0005)
        try:
            while True:
                data, anc, _flags, addr = sock.recvmsg(65535, _AUX_SPACE)
                if addr[2] != PACKET_OUTGOING:
                    gen.receive(restore_vlan(data, anc), time.monotonic())
                sock.settimeout(0.0)
        except (TimeoutError, BlockingIOError, InterruptedError):
            pass
    write_status(args.status, gen.status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
