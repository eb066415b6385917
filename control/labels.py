"""Id allocation (MPLS labels, vif ids, VRF ids, next-hop ids): pure, with a clock.

An id is never handed out while it is in use, nor during ``hold`` seconds
after it was released (remote forwarders may still send to a released label
until the withdrawal has spread). Allocation is next-fit, so a freed id is
also the last one to come back.

:meth:`IdPool.to_json` / :meth:`IdPool.restore_json` carry the hold-downs and
the next-fit pointer across a restart, so an id released just before the
agent stopped is not handed out again as soon as it is back. A hold is saved
as the seconds it still had to run (rounded up) and restarts from the restore
time: the time the agent was down is added to it, never taken off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


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
        self.changes = 0  # bumped by every call that changes what to save

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
        self.changes += 1
        return i

    @property
    def next(self) -> int:
        """The next-fit pointer (where the next search starts)."""
        return self._next

    def cancel(self, i: int, next_before: int) -> None:
        """Undo an :meth:`allocate` that returned ``i`` when the pointer was
        ``next_before`` (the id was never handed out: no hold)."""
        self._used.discard(i)
        self._next = next_before
        self.changes += 1

    def reserve(self, i: int) -> None:
        """Mark ``i`` in use (state restored after a restart)."""
        if not self.lo <= i <= self.hi:
            raise ValueError(f"{self.name} {i} outside {self.lo}..{self.hi}")
        if i in self._used:
            raise ValueError(f"{self.name} {i} already in use")
        self._held.pop(i, None)
        self._used.add(i)
        self.changes += 1

    def hold_until(self, i: int, until: float) -> None:
        """Keep ``i`` from being handed out before ``until`` (an id the switch
        still uses while the agent has lost its record of it); ids in use or
        outside the range are left alone."""
        if self.lo <= i <= self.hi and i not in self._used:
            self._held[i] = max(self._held.get(i, until), until)
            self.changes += 1

    def release(self, i: int, now: float) -> None:
        self._used.discard(i)
        if self.hold > 0:
            self._held[i] = now + self.hold
        self.changes += 1

    # ------------------------------------------------------------ persistence
    def to_json(self, now: float) -> dict[str, Any]:
        """Next-fit pointer and hold-downs (id, seconds left, rounded up)."""
        self._gc(now)
        return {
            "next": self._next,
            "held": [[i, math.ceil(t - now)] for i, t in sorted(self._held.items())],
        }

    def restore_json(self, data: Mapping[str, Any], now: float) -> None:
        """Load :meth:`to_json` output after the ids in use were reserved.

        Raises ValueError (changing nothing) for a pointer or id outside the
        range, an id both in use and held, or a negative hold.
        """
        nxt = data["next"]
        if type(nxt) is not int or not self.lo <= nxt <= self.hi:
            raise ValueError(f"{self.name} pool: next {nxt!r} outside {self.lo}..{self.hi}")
        held: dict[int, float] = {}
        for i, left in data["held"]:
            if type(i) is not int or not self.lo <= i <= self.hi:
                raise ValueError(f"{self.name} pool: held {i!r} outside {self.lo}..{self.hi}")
            if i in self._used:
                raise ValueError(f"{self.name} pool: {i} both in use and held")
            if type(left) not in (int, float) or left < 0:
                raise ValueError(f"{self.name} pool: hold of {i} is {left!r}")
            held[i] = now + left
        self._next = nxt
        self._held.update(held)
        self.changes += 1
