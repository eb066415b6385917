"""The punt path: what the agent does with the packets the switch sends it.

Sans-I/O: :meth:`PuntHandler.handle` takes one packet-in and the clock and
returns the packet-outs to send; :func:`serve` is the asyncio shell reading
the driver's P4Runtime stream. The reasons (p4src/README.md, "Controller
headers") and what the agent does:

* FABRIC_ARP: an ARP request for the infrastructure address on a fabric port
  is answered with the MAC of that port (``[[fabric.underlay]] src_mac``).
* ROUTE: ICMP / ICMPv6 echo requests to a VPN's gateway address (a ``to_cpu``
  route this module installs) are answered.
* TTL_EXPIRED, NO_ROUTE, TOO_BIG: ICMP / ICMPv6 errors (RFC 1812 4.3.2,
  RFC 4443) from the VPN's gateway address (``[vpns.<name>] gateway_ipv4 /
  gateway_ipv6``): time exceeded, destination unreachable (no route), and
  fragmentation needed / packet too big with MTU = fabric MTU - 28 (the
  MPLS-in-GRE overhead). They are routed in the VRF by the switch (packet-out
  with ``vrf_id``), and rate-limited here (``[punt] icmp_rate``) on top of the
  switch's per-reason meter (``[punt] meter_rate``).
* DHCP: a DHCPv4 proxy (``[vpns.<name>] dhcp = true``): a vif's client is
  offered the first /32 its end-system published for that vif (draft §4:
  addresses stay what the end-system published), the gateway as server
  identifier and router.

A packet that is malformed or not for us is counted (``stats.ignored``) and
produces nothing; :func:`serve` survives anything a packet makes a handler
raise (logged, counted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from control import tables as T
from control.config import AgentConfig, PuntConfig, VpnConfig
from control.inet import checksum
from control.p4rt import Entity, Exact, Lpm, MeterRate, P4RuntimeClient, P4RuntimeError, TableEntry
from control.vrf import Interface, VrfState

log = logging.getLogger("control.punt")

# punt reasons: p4src/include/define.p4
FABRIC_ARP = 1
ROUTE = 2
TTL_EXPIRED = 3
NO_ROUTE = 4
TOO_BIG = 5
DHCP = 6
REASONS = {
    FABRIC_ARP: "fabric_arp",
    ROUTE: "route",
    TTL_EXPIRED: "ttl_expired",
    NO_ROUTE: "no_route",
    TOO_BIG: "too_big",
    DHCP: "dhcp",
}

ENCAP_OVERHEAD = 28  # outer IPv4 20 + GRE 4 + MPLS 4
VRRP_MAC_V4 = bytes.fromhex("00005e000101")
ICMP_TTL = 64
ICMP4_TOS = 0xC0  # RFC 1812 4.3.2.5: internetwork control precedence for ICMP errors


@dataclass(frozen=True, slots=True)
class PacketOut:
    """A frame for the switch: out of ``egress_port`` as is (``vrf_id`` 0), or
    its IP packet routed in ``vrf_id``."""

    payload: bytes
    egress_port: int = 0
    vrf_id: int = 0

    def metadata(self) -> dict[str, int]:
        return {"egress_port": self.egress_port, "_pad": 0, "vrf_id": self.vrf_id}


@dataclass(frozen=True, slots=True)
class Punted:
    """A packet-in: the frame and the switch's packet_in header."""

    payload: bytes
    reason: int
    ingress_port: int = 0
    vrf_id: int = 0
    vif_id: int = 0
    out_vif: int = 0

    @classmethod
    def from_metadata(cls, payload: bytes, md: Mapping[str, int]) -> Punted:
        return cls(
            payload,
            md.get("reason", 0),
            md.get("ingress_port", 0),
            md.get("vrf_id", 0),
            md.get("vif_id", 0),
            md.get("out_vif", 0),
        )


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; one token a packet."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class PuntStats:
    received: dict[str, int] = field(default_factory=dict)  # by reason name
    sent: int = 0  # packet-outs
    ignored: dict[str, int] = field(default_factory=dict)  # by why
    icmp_rate_limited: int = 0
    errors: int = 0  # a handler raised (a bug): logged with its traceback


class Ignored(Exception):
    """The packet gets no answer; the message says why (a stats key)."""


# --------------------------------------------------------------------------- packets


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, tos: int = 0) -> bytes:
    h = struct.pack(
        "!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, 0, 0, ICMP_TTL, proto, 0, src, dst
    )
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:]


def ipv6_packet(src: bytes, dst: bytes, next_hdr: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_hdr, ICMP_TTL) + src + dst + payload


def _l4_checksum6(src: bytes, dst: bytes, proto: int, data: bytes) -> int:
    return checksum(src + dst + struct.pack("!IxxxB", len(data), proto) + data)


def _l4_checksum4(src: bytes, dst: bytes, proto: int, data: bytes) -> int:
    return checksum(src + dst + struct.pack("!xBH", proto, len(data)) + data)


def _ether(ether_type: int) -> bytes:
    """The Ethernet header of a routed packet-out (the switch rewrites it)."""
    return bytes(12) + struct.pack("!H", ether_type)


def split_frame(frame: bytes) -> tuple[int, int, bytes]:
    """(offset of the L3 header, EtherType after the tags, the 802.1Q tags)."""
    if len(frame) < 14:
        raise Ignored("short_frame")
    off, etype = 12, int.from_bytes(frame[12:14], "big")
    while etype in (0x8100, 0x88A8):
        if len(frame) < off + 8:
            raise Ignored("short_frame")
        off += 4
        etype = int.from_bytes(frame[off : off + 2], "big")
    return off + 2, etype, frame[12:off]


def ip_packet(frame: bytes) -> bytes:
    """The IP packet of a punted frame, cut to its own length (Ethernet padding
    removed). The version nibble decides (a decapsulated packet keeps the
    outer EtherType)."""
    off, _, _ = split_frame(frame)
    pkt = frame[off:]
    if len(pkt) >= 20 and pkt[0] >> 4 == 4 and pkt[0] & 15 >= 5:
        total = int.from_bytes(pkt[2:4], "big")
        if (pkt[0] & 15) * 4 <= total <= len(pkt):
            return pkt[:total]
    elif len(pkt) >= 40 and pkt[0] >> 4 == 6:
        total = 40 + int.from_bytes(pkt[4:6], "big")
        if total <= len(pkt):
            return pkt[:total]
    raise Ignored("not_ip")


_V4_NO_ERROR_SRC = [
    ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3", "169.254.0.0/16")
]


def _icmp4_error_allowed(pkt: bytes) -> bool:
    """RFC 1812 4.3.2.7: no error about an ICMP error, a non-first fragment, or
    a packet from/to an address that is not one host's."""
    src, dst = ipaddress.IPv4Address(pkt[12:16]), ipaddress.IPv4Address(pkt[16:20])
    if any(src in n for n in _V4_NO_ERROR_SRC) or dst.is_multicast or dst == _BCAST4:
        return False
    if int.from_bytes(pkt[6:8], "big") & 0x1FFF:
        return False
    ihl = (pkt[0] & 15) * 4
    return not (pkt[9] == 1 and len(pkt) > ihl and pkt[ihl] in (3, 4, 5, 11, 12))


_BCAST4 = ipaddress.IPv4Address("255.255.255.255")


def _icmp6_error_allowed(pkt: bytes) -> bool:
    """RFC 4443 2.4(e): not about an ICMPv6 error, nor from an address that is
    not one host's, nor to a multicast group."""
    src, dst = ipaddress.IPv6Address(pkt[8:24]), ipaddress.IPv6Address(pkt[24:40])
    if src.is_unspecified or src.is_multicast or src.is_loopback or dst.is_multicast:
        return False
    return not (pkt[6] == 58 and len(pkt) > 40 and pkt[40] < 128)


def icmp4_error(
    gateway: bytes, pkt: bytes, icmp_type: int, code: int, rest: int, mtu: int
) -> bytes:
    """An ICMP error from ``gateway`` about ``pkt``: as much of it as fits in
    576 bytes (RFC 1812 4.3.2.3) and in the tunnel (fabric MTU - 28)."""
    room = min(576, mtu - ENCAP_OVERHEAD) - 28
    body = struct.pack("!BBHI", icmp_type, code, 0, rest) + pkt[:room]
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ipv4_header(gateway, pkt[12:16], 1, len(body), ICMP4_TOS) + body


def icmp6_error(
    gateway: bytes, pkt: bytes, icmp_type: int, code: int, rest: int, mtu: int
) -> bytes:
    """An ICMPv6 error: at most 1280 bytes (RFC 4443 2.4(c)) and what fits in
    the tunnel."""
    room = min(1280, mtu - ENCAP_OVERHEAD) - 48
    dst = pkt[8:24]
    body = struct.pack("!BBHI", icmp_type, code, 0, rest) + pkt[:room]
    body = body[:2] + struct.pack("!H", _l4_checksum6(gateway, dst, 58, body)) + body[4:]
    return ipv6_packet(gateway, dst, 58, body)


# --------------------------------------------------------------------------- DHCP

DHCP_MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
BOOTP_MIN = 300  # RFC 1542 2.1: a BOOTP message is at least 300 bytes


def dhcp_options(data: bytes) -> dict[int, bytes]:
    opts: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 255:
            return opts
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            raise Ignored("dhcp_malformed")
        opts.setdefault(code, data[i + 2 : i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    raise Ignored("dhcp_malformed")  # no end option


# --------------------------------------------------------------------------- handler


class PuntHandler:
    """Packet-in + clock -> packet-outs (see the module docstring)."""

    def __init__(self, cfg: AgentConfig, state: VrfState, now: float) -> None:
        self.cfg = cfg
        self.state = state
        self.icmp_bucket = TokenBucket(cfg.punt.icmp_rate, cfg.punt.icmp_burst, now)
        self.stats = PuntStats()
        self.port_macs: dict[int, bytes] = {}
        for u in cfg.fabric.underlay:
            self.port_macs.setdefault(u.port, u.src_mac.to_bytes(6, "big"))

    def handle(self, pin: Punted, now: float) -> list[PacketOut]:
        name = REASONS.get(pin.reason, "unknown")
        self.stats.received[name] = self.stats.received.get(name, 0) + 1
        try:
            if pin.reason == FABRIC_ARP:
                out = self._fabric_arp(pin)
            elif pin.reason == ROUTE:
                out = self._echo(pin)
            elif pin.reason in (TTL_EXPIRED, NO_ROUTE, TOO_BIG):
                out = self._icmp_error(pin, now)
            elif pin.reason == DHCP:
                out = self._dhcp(pin)
            else:
                raise Ignored("unknown_reason")
        except Ignored as e:
            why = str(e)
            self.stats.ignored[why] = self.stats.ignored.get(why, 0) + 1
            return []
        self.stats.sent += len(out)
        return out

    # ------------------------------------------------------------- lookups
    def _vif(self, vif_id: int) -> Interface | None:
        if vif_id == 0:
            return None
        return next((i for i in self.state.interfaces.values() if i.vif_id == vif_id), None)

    def _vpn(self, pin: Punted) -> tuple[str, int, VpnConfig]:
        """The VPN of a punted packet, its VRF id and its configuration."""
        vrf_id = pin.vrf_id
        if vrf_id == 0:  # from the fabric to a vif: that vif's VRF
            itf = self._vif(pin.out_vif)
            if itf is None or itf.vpn not in self.state.vrfs:
                raise Ignored("no_vrf")
            vrf_id = self.state.vrfs[itf.vpn].vrf_id
        vpn = next((n for n, v in self.state.vrfs.items() if v.vrf_id == vrf_id), None)
        if vpn is None:
            raise Ignored("no_vrf")
        conf = self.cfg.vpns.get(vpn)
        if conf is None:
            raise Ignored("no_gateway")
        return vpn, vrf_id, conf

    # ------------------------------------------------------------- reasons
    def _fabric_arp(self, pin: Punted) -> list[PacketOut]:
        off, etype, tags = split_frame(pin.payload)
        arp = pin.payload[off : off + 28]
        if etype != 0x0806 or len(arp) < 28 or arp[:8] != bytes.fromhex("0001080006040001"):
            raise Ignored("arp_not_request")
        sha, spa, tpa = arp[8:14], arp[14:18], arp[24:28]
        mac = self.port_macs.get(pin.ingress_port)
        if tpa != self.cfg.fabric.infra_address.packed:
            raise Ignored("arp_not_for_us")
        if mac is None:
            raise Ignored("arp_no_port_mac")
        reply = bytes.fromhex("0001080006040002") + mac + tpa + sha + spa
        frame = sha + mac + tags + b"\x08\x06" + reply
        return [PacketOut(frame, egress_port=pin.ingress_port)]

    def _echo(self, pin: Punted) -> list[PacketOut]:
        pkt = ip_packet(pin.payload)
        _, vrf_id, conf = self._vpn(pin)
        if pkt[0] >> 4 == 4:
            ihl = (pkt[0] & 15) * 4
            gw = conf.gateway_ipv4
            if gw is None or pkt[16:20] != gw.packed:
                raise Ignored("not_a_gateway")
            if (
                pkt[9] != 1
                or len(pkt) < ihl + 8
                or pkt[ihl] != 8
                or int.from_bytes(pkt[6:8], "big") & 0x3FFF
            ):
                raise Ignored("not_echo_request")
            icmp = b"\0\0\0\0" + pkt[ihl + 4 :]
            icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
            reply = ipv4_header(gw.packed, pkt[12:16], 1, len(icmp)) + icmp
            return [PacketOut(_ether(0x0800) + reply, vrf_id=vrf_id)]
        gw6 = conf.gateway_ipv6
        if gw6 is None or pkt[24:40] != gw6.packed:
            raise Ignored("not_a_gateway")
        if pkt[6] != 58 or len(pkt) < 48 or pkt[40] != 128:
            raise Ignored("not_echo_request")
        icmp = b"\x81\0\0\0" + pkt[44:]
        src = pkt[8:24]
        icmp = icmp[:2] + struct.pack("!H", _l4_checksum6(gw6.packed, src, 58, icmp)) + icmp[4:]
        return [PacketOut(_ether(0x86DD) + ipv6_packet(gw6.packed, src, 58, icmp), vrf_id=vrf_id)]

    def _icmp_error(self, pin: Punted, now: float) -> list[PacketOut]:
        pkt = ip_packet(pin.payload)
        _, vrf_id, conf = self._vpn(pin)
        mtu = self.cfg.fabric.mtu
        if pkt[0] >> 4 == 4:
            if conf.gateway_ipv4 is None:
                raise Ignored("no_gateway")
            if not _icmp4_error_allowed(pkt):
                raise Ignored("no_error_allowed")
            kind = {
                TTL_EXPIRED: (11, 0, 0),
                NO_ROUTE: (3, 0, 0),
                TOO_BIG: (3, 4, mtu - ENCAP_OVERHEAD),  # RFC 1191 4: next-hop MTU, low 16 bits
            }[pin.reason]
            if pin.reason == TOO_BIG and not int.from_bytes(pkt[6:8], "big") & 0x4000:
                raise Ignored("no_error_allowed")  # DF clear: not ours to report
            if not self._rate_ok(now):
                return []
            err = icmp4_error(conf.gateway_ipv4.packed, pkt, *kind, mtu)
            return [PacketOut(_ether(0x0800) + err, vrf_id=vrf_id)]
        if conf.gateway_ipv6 is None:
            raise Ignored("no_gateway")
        if not _icmp6_error_allowed(pkt):
            raise Ignored("no_error_allowed")
        kind6 = {
            TTL_EXPIRED: (3, 0, 0),
            NO_ROUTE: (1, 0, 0),
            TOO_BIG: (2, 0, mtu - ENCAP_OVERHEAD),
        }[pin.reason]
        if not self._rate_ok(now):
            return []
        err = icmp6_error(conf.gateway_ipv6.packed, pkt, *kind6, mtu)
        return [PacketOut(_ether(0x86DD) + err, vrf_id=vrf_id)]

    def _rate_ok(self, now: float) -> bool:
        if self.icmp_bucket.take(now):
            return True
        self.stats.icmp_rate_limited += 1
        return False

    def _dhcp(self, pin: Punted) -> list[PacketOut]:
        pkt = ip_packet(pin.payload)
        itf = self._vif(pin.vif_id)
        if itf is None:
            raise Ignored("no_vif")
        _, _, conf = self._vpn(pin)
        if not conf.dhcp or conf.gateway_ipv4 is None:
            raise Ignored("dhcp_off")
        if pkt[0] >> 4 != 4 or pkt[9] != 17:
            raise Ignored("dhcp_malformed")
        ihl = (pkt[0] & 15) * 4
        msg = pkt[ihl + 8 :]
        if len(msg) < 240 or msg[0] != 1 or msg[1:3] != b"\x01\x06" or msg[236:240] != DHCP_MAGIC:
            raise Ignored("dhcp_malformed")
        opts = dhcp_options(msg[240:])
        mtype = opts.get(53, b"")
        if len(mtype) != 1:
            raise Ignored("dhcp_malformed")
        server = conf.gateway_ipv4.packed
        if 54 in opts and opts[54] != server:
            raise Ignored("dhcp_other_server")
        ciaddr = msg[12:16]
        hosts = sorted(
            p.network_address
            for p in itf.addresses
            if isinstance(p, ipaddress.IPv4Network) and p.prefixlen == 32
        )
        if not hosts and mtype[0] != INFORM:
            raise Ignored("dhcp_no_address")
        yours = hosts[0].packed if hosts else bytes(4)
        if mtype[0] == DISCOVER:
            answer, yiaddr, reply_ciaddr = OFFER, yours, bytes(4)
        elif mtype[0] == REQUEST:
            wanted = opts.get(50, ciaddr)
            answer = ACK if wanted == yours else NAK
            yiaddr = yours if answer == ACK else bytes(4)
            reply_ciaddr = ciaddr if answer == ACK else bytes(4)
        elif mtype[0] == INFORM:
            answer, yiaddr, reply_ciaddr = ACK, bytes(4), ciaddr
        else:  # DECLINE, RELEASE: nothing to answer (the address is the end-system's)
            raise Ignored("dhcp_no_answer")
        o = bytes([53, 1, answer]) + bytes([54, 4]) + server
        if answer != NAK:
            mask = (0xFFFFFFFF << (32 - conf.dhcp_prefix_len)) & 0xFFFFFFFF
            if mtype[0] != INFORM:
                o += bytes([51, 4]) + conf.dhcp_lease.to_bytes(4, "big")
            o += bytes([1, 4]) + mask.to_bytes(4, "big") + bytes([3, 4]) + server
            if conf.dhcp_dns:
                dns = b"".join(a.packed for a in conf.dhcp_dns)
                o += bytes([6, len(dns)]) + dns
        o += b"\xff"
        body = (
            bytes([2, 1, 6, 0])
            + msg[4:8]  # xid
            + b"\0\0"  # secs
            + msg[10:12]  # flags
            + reply_ciaddr
            + yiaddr
            + bytes(4)  # siaddr
            + msg[24:28]  # giaddr
            + msg[28:44]  # chaddr
            + bytes(192)  # sname, file
            + DHCP_MAGIC
            + o
        )
        body += bytes(max(0, BOOTP_MIN - len(body)))
        # RFC 2131 4.1: NAK broadcast; to ciaddr when set; else to yiaddr,
        # or broadcast when the client asked for it (flags B bit)
        chaddr = msg[28:34]
        if answer == NAK or (reply_ciaddr == bytes(4) and msg[10] & 0x80):
            dst_ip, dst_mac = b"\xff\xff\xff\xff", b"\xff" * 6
        elif reply_ciaddr != bytes(4):
            dst_ip, dst_mac = reply_ciaddr, chaddr
        else:
            dst_ip, dst_mac = yiaddr, chaddr
        udp = struct.pack("!HHHH", 67, 68, 8 + len(body), 0) + body
        udp = (
            udp[:6] + struct.pack("!H", _l4_checksum4(server, dst_ip, 17, udp) or 0xFFFF) + udp[8:]
        )
        tag = struct.pack("!HH", 0x8100, itf.vlan)
        frame = (
            dst_mac + VRRP_MAC_V4 + tag + b"\x08\x00" + ipv4_header(server, dst_ip, 17, len(udp))
        )
        return [PacketOut(frame + udp, egress_port=itf.port)]


# --------------------------------------------------------------------------- switch state


def punt_entities(
    state: VrfState, vpns: Mapping[str, VpnConfig], n: Callable[[str], str]
) -> set[Entity]:
    """The entries the punt path needs: a ``to_cpu`` route for each gateway
    address (unless a received route has that very prefix: the end-system's
    wins), a ``dhcp_trap`` entry for each VRF with DHCP."""
    out: set[Entity] = set()
    for vpn, vrf in state.vrfs.items():
        conf = vpns.get(vpn)
        if conf is None:
            continue
        received = state.remote.get(vpn, {})
        for gw, table, plen in (
            (conf.gateway_ipv4, T.IPV4_ROUTE, 32),
            (conf.gateway_ipv6, T.IPV6_ROUTE, 128),
        ):
            if gw is None or f"{gw}/{plen}" in received:
                continue
            out.add(
                TableEntry(
                    n(table),
                    {T.F_VRF_ID: Exact(vrf.vrf_id), T.F_DST: Lpm(int(gw), plen)},
                    n(T.A_TO_CPU),
                )
            )
        if conf.dhcp:
            out.add(TableEntry(n(T.DHCP_TRAP), {T.F_VRF_ID: Exact(vrf.vrf_id)}, n(T.A_TRAP_DHCP)))
    return out


def meter_rates(cfg: PuntConfig) -> dict[int, MeterRate]:
    """``punt_meter`` cells: every reason gets ``meter_rate`` packets/s, burst
    ``meter_burst`` (cir = pir: a packet over the rate is red)."""
    r = MeterRate(cfg.meter_rate, cfg.meter_burst, cfg.meter_rate, cfg.meter_burst)
    return dict.fromkeys(REASONS, r)


# --------------------------------------------------------------------------- shell


async def program_meters(client: P4RuntimeClient, cfg: PuntConfig) -> None:
    """After a pipeline push / on a (re)connect: the punt meter's rates, only
    the cells that differ (a rewrite would refill the buckets). A refusal is
    logged; the switch then punts unlimited (unconfigured meter)."""
    try:
        have = await client.read_meters(T.M_PUNT)
        todo = {i: r for i, r in meter_rates(cfg).items() if have.get(i) != r}
        if todo:
            await client.write_meters(T.M_PUNT, todo)
    except P4RuntimeError as e:
        log.error("punt meter not programmed: %s", e)


async def serve(
    client_of: Callable[[], P4RuntimeClient | None],
    handler: PuntHandler,
    clock: Callable[[], float],
    idle: float = 0.1,
) -> None:
    """Read packet-ins from the current switch connection, send the answers.
    One bad packet never stops the loop: logged and counted."""
    while True:
        client = client_of()
        if client is None or not client.connected or not client.is_primary:
            await asyncio.sleep(idle)  # the driver (re)connects meanwhile
            continue
        try:
            pin = await client.packet_in(timeout=idle)
        except TimeoutError:
            continue
        try:
            for out in handler.handle(Punted.from_metadata(pin.payload, pin.metadata), clock()):
                await client.packet_out(out.payload, out.metadata())
        except asyncio.CancelledError:
            raise
        except Exception:
            handler.stats.errors += 1
            log.exception("punt: packet-in %s failed", pin.payload[:64].hex())
