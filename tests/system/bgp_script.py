"""A SCRIPTED BGP peer for interop tests: messages no real peer here sends on demand.

It listens on one address and port, takes the route server's (ExaBGP's)
connection, answers its OPEN with its own (chosen families, 4-octet AS) and a
KEEPALIVE, records every message it receives (decoded just enough: the OPEN's
graceful-restart flags, each UPDATE's path attribute codes and VPN-IPv4 NLRI)
and sends the UPDATEs the test builds with the helpers below (RTC NLRI of any
length, VPN-IPv4 routes with any AS_PATH). Not a BGP implementation: the
bytes it sends are spelled out, RFC 4271 / 4760 / 4684 / 4364.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass, field

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
AFI_IPV4, SAFI_VPN, SAFI_RTC = 1, 128, 132
ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF, EXT_COMMUNITIES, MP_REACH, MP_UNREACH = (
    1, 2, 3, 5, 16, 14, 15,
)  # fmt: skip


def message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def attribute(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | 0x10, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def route_target(asn: int, number: int) -> bytes:
    """A 2-octet-AS route target extended community (type 0x00, sub-type 0x02)."""
    return struct.pack("!BBHI", 0x00, 0x02, asn, number)


def rtc_nlri(length: int, origin: int = 0, rt: bytes = b"") -> bytes:
    """RFC 4684 NLRI: length in bits, then that many bits of origin AS + route target."""
    body = (struct.pack("!I", origin) + rt)[: (length + 7) // 8]
    return bytes([length]) + body


def update(attrs: bytes, withdrawn: bytes = b"", nlri: bytes = b"") -> bytes:
    return message(
        UPDATE,
        struct.pack("!H", len(withdrawn))
        + withdrawn
        + struct.pack("!H", len(attrs))
        + attrs
        + nlri,
    )


def base_attrs(as_path: tuple[int, ...] = (), local_pref: int | None = 100) -> bytes:
    seg = struct.pack("!BB", 2, len(as_path)) + b"".join(struct.pack("!I", a) for a in as_path)
    out = attribute(0x40, ORIGIN, b"\x00") + attribute(0x40, AS_PATH, seg if as_path else b"")
    if local_pref is not None:
        out += attribute(0x40, LOCAL_PREF, struct.pack("!I", local_pref))
    return out


def rtc_update(nlris: list[bytes], nexthop: str, withdraw: bool = False) -> bytes:
    if withdraw:
        mp = struct.pack("!HB", AFI_IPV4, SAFI_RTC) + b"".join(nlris)
        return update(attribute(0x80, MP_UNREACH, mp))
    nh = ipaddress.IPv4Address(nexthop).packed
    mp = struct.pack("!HBB", AFI_IPV4, SAFI_RTC, len(nh)) + nh + b"\x00" + b"".join(nlris)
    return update(base_attrs() + attribute(0x80, MP_REACH, mp))


def vpn_update(
    prefix: str, rd: tuple[int, int], label: int, nexthop: str, rts: list[bytes],
    as_path: tuple[int, ...] = (), local_pref: int | None = 100,
) -> bytes:  # fmt: skip
    """One VPN-IPv4 route: RD type 0 (2-octet AS, number), one label (bottom of stack)."""
    net = ipaddress.IPv4Network(prefix)
    rd_bytes = struct.pack("!HHI", 0, rd[0], rd[1])
    addr = net.network_address.packed[: (net.prefixlen + 7) // 8]
    nlri = bytes([24 + 64 + net.prefixlen]) + ((label << 4) | 1).to_bytes(3, "big") + rd_bytes
    nh = bytes(8) + ipaddress.IPv4Address(nexthop).packed
    mp = struct.pack("!HBB", AFI_IPV4, SAFI_VPN, len(nh)) + nh + b"\x00" + nlri + addr
    ext = attribute(0xC0, EXT_COMMUNITIES, b"".join(rts))
    return update(base_attrs(as_path, local_pref) + ext + attribute(0x80, MP_REACH, mp))


@dataclass
class Received:
    """One UPDATE we got: its attribute codes and the VPN-IPv4 routes it announced."""

    codes: list[int]
    vpn: list[tuple[str, str]]  # (rd 'admin:number', prefix)
    withdrawn: list[tuple[str, str]]


def _rd_text(raw: bytes) -> str:
    kind = struct.unpack("!H", raw[:2])[0]
    if kind == 0:
        admin, number = struct.unpack("!HI", raw[2:8])
        return f"{admin}:{number}"
    if kind == 1:
        return f"{ipaddress.IPv4Address(raw[2:6])}:{struct.unpack('!H', raw[6:8])[0]}"
    admin, number = struct.unpack("!IH", raw[2:8])
    return f"{admin}:{number}"


def _vpn_nlris(data: bytes) -> list[tuple[str, str]]:
    out = []
    while data:
        bits = data[0]
        size = (bits + 7) // 8
        body, data = data[1 : 1 + size], data[1 + size :]
        plen = bits - 88
        addr = (body[11:] + bytes(4))[:4]
        out.append((_rd_text(body[3:11]), f"{ipaddress.IPv4Address(addr)}/{plen}"))
    return out


def parse_update(body: bytes) -> Received:
    wlen = struct.unpack("!H", body[:2])[0]
    alen = struct.unpack("!H", body[2 + wlen : 4 + wlen])[0]
    attrs = body[4 + wlen : 4 + wlen + alen]
    codes, vpn, withdrawn = [], [], []
    while attrs:
        flags, code = attrs[0], attrs[1]
        if flags & 0x10:
            size, head = struct.unpack("!H", attrs[2:4])[0], 4
        else:
            size, head = attrs[2], 3
        value, attrs = attrs[head : head + size], attrs[head + size :]
        codes.append(code)
        afi, safi = struct.unpack("!HB", value[:3]) if len(value) >= 3 else (0, 0)
        if code == MP_REACH and (afi, safi) == (AFI_IPV4, SAFI_VPN):
            nhlen = value[3]
            vpn += _vpn_nlris(value[5 + nhlen :])
        elif code == MP_UNREACH and (afi, safi) == (AFI_IPV4, SAFI_VPN):
            withdrawn += _vpn_nlris(value[3:])
    return Received(codes, vpn, withdrawn)


@dataclass
class ScriptedPeer:
    """SCRIPTED peer (see the module docstring); ``start`` listens, the route server connects."""

    address: str
    port: int
    asn: int
    families: tuple[tuple[int, int], ...] = ((AFI_IPV4, SAFI_VPN), (AFI_IPV4, SAFI_RTC))
    opens: list[bytes] = field(default_factory=list)  # OPEN bodies received
    updates: list[Received] = field(default_factory=list)
    notifications: list[tuple[int, int]] = field(default_factory=list)  # received
    established: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.address, self.port)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def send(self, raw: bytes) -> None:
        assert self._writer is not None, "no session"
        self._writer.write(raw)

    def restart_flag(self, index: int = -1) -> int | None:
        """The Restart State bit of the graceful-restart capability in OPEN ``index``."""
        body = self.opens[index]
        params = body[10 : 10 + body[9]]
        while params:
            ptype, plen = params[0], params[1]
            caps, params = params[2 : 2 + plen], params[2 + plen :]
            while ptype == 2 and caps:
                code, clen = caps[0], caps[1]
                if code == 64:
                    return caps[2] >> 7
                caps = caps[2 + clen :]
        return None

    def _open(self) -> bytes:
        caps = b"".join(
            bytes([1, 4]) + struct.pack("!HBB", afi, 0, safi) for afi, safi in self.families
        ) + bytes([65, 4]) + struct.pack("!I", self.asn)  # fmt: skip
        params = bytes([2, len(caps)]) + caps
        my_as = self.asn if self.asn <= 0xFFFF else 23456
        body = struct.pack("!BHH", 4, my_as, 90) + ipaddress.IPv4Address(self.address).packed
        return message(OPEN, body + bytes([len(params)]) + params)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None and not self._writer.is_closing():
            writer.close()  # one session at a time
            return
        self._writer = writer
        self.established.clear()
        writer.write(self._open())
        try:
            while True:
                head = await reader.readexactly(19)
                length, kind = struct.unpack("!HB", head[16:19])
                body = await reader.readexactly(length - 19)
                if kind == OPEN:
                    self.opens.append(body)
                    writer.write(message(KEEPALIVE, b""))
                elif kind == KEEPALIVE:
                    if not self.established.is_set():
                        self.established.set()
                    writer.write(message(KEEPALIVE, b""))
                elif kind == UPDATE:
                    self.updates.append(parse_update(body))
                elif kind == NOTIFICATION:
                    self.notifications.append((body[0], body[1]))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.established.clear()
            writer.close()
