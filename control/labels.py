"""Id allocation (MPLS labels, vif ids, VRF ids, next-hop ids): pure, with a clock.

An id is never handed out while it is in use, nor during ``hold`` seconds
after it was released (remote forwarders may still send to a released label
until the withdrawal has spread). Allocation is next-fit, so a freed id is
also the last one to come back.
"""

from __future__ import annotations


class ExhaustedError(Exception):
    pass


class IdPool:
    def __init__(self, lo: int, hi: int, hold: float = 0.0, name: str = "id") -> None:
        if lo > hi:
            raise ValueError(f"{name}: empty range {lo}..{hi}")
        self.lo, self.hi, self.hold, self.name = lo, hi, hold, name
        self._used: set[int] = set()
        self._held: dict[int, float] = {}  # id -> free again at
        self._next = lo

    def __contains__(self, i: object) -> bool:
        return i in self._used

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def held(self, now: float) -> dict[int, float]:
        self._gc(now)
        return dict(self._held)

    def _gc(self, now: float) -> None:
        for i in [i for i, t in self._held.items() if t <= now]:
            del self._held[i]

    def allocate(self, now: float) -> int:
        self._gc(now)
        size = self.hi - self.lo + 1
        if len(self._used) + len(self._held) >= size:
            raise ExhaustedError(f"no free {self.name} in {self.lo}..{self.hi}")
        i = self._next
        while i in self._used or i in self._held:
            i = self.lo if i >= self.hi else i + 1
        self._used.add(i)
        self._next = self.lo if i >= self.hi else i + 1
        return i

    def reserve(self, i: int) -> None:
        """Mark ``i`` in use (state restored after a restart)."""
        if not self.lo <= i <= self.hi:
            raise ValueError(f"{self.name} {i} outside {self.lo}..{self.hi}")
        if i in self._used:
            raise ValueError(f"{self.name} {i} already in use")
        self._held.pop(i, None)
        self._used.add(i)

    def release(self, i: int, now: float) -> None:
        self._used.discard(i)
        if self.hold > 0:
            self._held[i] = now + self.hold
