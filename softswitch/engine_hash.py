"""bmv2's hash algorithms (src/bm_sim/calculations.cpp), bit-exact.

Every function takes the byte buffer bmv2 builds from a field list (fields
packed bit after bit, zero padded to a whole byte) and returns the unsigned
result bmv2's functor returns.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

HashFn = Callable[[bytes], int]


def _reflect(value: int, nbits: int) -> int:
    out = 0
    for _ in range(nbits):
        out = (out << 1) | (value & 1)
        value >>= 1
    return out


def _make_crc(
    width: int, poly: int, init: int, xor_out: int, refl_in: bool, refl_out: bool
) -> HashFn:
    """Table driven CRC exactly as bmv2's crc_custom<T> computes it."""
    top = 1 << (width - 1)
    wmask = (1 << width) - 1
    table: list[int] = []
    for dividend in range(256):
        rem = (dividend << (width - 8)) & wmask
        for _ in range(8):
            rem = ((rem << 1) ^ poly) & wmask if rem & top else (rem << 1) & wmask
        table.append(rem)
    shift = width - 8
    refl8 = [_reflect(b, 8) for b in range(256)]

    def crc(buf: bytes) -> int:
        rem = init
        for byte in buf:
            data = (refl8[byte] if refl_in else byte) ^ (rem >> shift)
            rem = table[data & 0xFF] ^ ((rem << 8) & wmask)
        if refl_out:
            rem = _reflect(rem, width)
        return rem ^ xor_out

    return crc


#: bmv2 "crc16": CRC-16/ARC.
crc16 = _make_crc(16, 0x8005, 0x0000, 0x0000, True, True)
#: bmv2 "crcCCITT": CRC-16/CCITT-FALSE.
crc_ccitt = _make_crc(16, 0x1021, 0xFFFF, 0x0000, False, False)
crc8_custom = _make_crc(8, 0x07, 0x00, 0x00, False, False)
crc16_custom = _make_crc(16, 0x8005, 0x0000, 0x0000, True, True)
crc32_custom = _make_crc(32, 0x04C11DB7, 0xFFFFFFFF, 0xFFFFFFFF, True, True)
crc64_custom = _make_crc(64, 0x1B, 0, 0, True, True)


def crc32(buf: bytes) -> int:
    """bmv2 "crc32": the standard (zlib) CRC-32."""
    return binascii.crc32(buf)


def csum16(buf: bytes) -> int:
    """Internet checksum (RFC 1071) of the buffer, odd byte padded with zero.

    The ones' complement sum of 16-bit words is the buffer's value modulo
    0xffff (2**16 == 1 mod 0xffff), with 0xffff instead of 0 for a non-zero
    buffer (end-around carry never yields +0).
    """
    if len(buf) & 1:
        buf += b"\x00"
    v = int.from_bytes(buf, "big")
    r = v % 0xFFFF
    if r == 0 and v:
        r = 0xFFFF
    return ~r & 0xFFFF


def identity(buf: bytes) -> int:
    """First (up to) 8 bytes as a big-endian integer."""
    return int.from_bytes(buf[:8], "big")


def _make_xor(nbytes: int) -> HashFn:
    def xor_hash(buf: bytes) -> int:
        out = 0
        n = len(buf)
        full = n - n % nbytes
        for i in range(0, full, nbytes):
            out ^= int.from_bytes(buf[i : i + nbytes], "big")
        tail = buf[full:]
        if tail:
            out ^= int.from_bytes(tail, "big") << (8 * (nbytes - len(tail)))
        return out

    return xor_hash


xor16 = _make_xor(2)
xor32 = _make_xor(4)


class RoundRobin:
    """bmv2 "round_robin": a counter, one per calculation instance."""

    def __init__(self) -> None:
        self.idx = 0

    def __call__(self, buf: bytes) -> int:
        v = self.idx
        self.idx += 1
        return v


class RoundRobinConsistent:
    """bmv2 "round_robin_consistent": same input, same output."""

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}

    def __call__(self, buf: bytes) -> int:
        return self.seen.setdefault(bytes(buf), len(self.seen))


_STATELESS: dict[str, HashFn] = {
    "crc16": crc16,
    "crc32": crc32,
    "crcCCITT": crc_ccitt,
    "csum16": csum16,
    "cksum16": csum16,
    "identity": identity,
    "xor16": xor16,
    "xor32": xor32,
    "crc8_custom": crc8_custom,
    "crc16_custom": crc16_custom,
    "crc32_custom": crc32_custom,
    "crc64_custom": crc64_custom,
}

ALGORITHMS = frozenset([*_STATELESS, "round_robin", "round_robin_consistent"])


def get_hash(algo: str) -> HashFn | None:
    """A fresh hash function for a calculation, or None if unknown."""
    if algo == "round_robin":
        return RoundRobin()
    if algo == "round_robin_consistent":
        return RoundRobinConsistent()
    return _STATELESS.get(algo)
