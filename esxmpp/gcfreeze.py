"""Keeps the cyclic GC's full collections off a large, long-lived heap.

A daemon holding 100,000 routes has a few million GC-tracked objects
(paths, prefixes, keys, table entries). CPython's full collection scans
every one of them, and runs again whenever the objects added since the
last one exceed a quarter of it: a second or more with the event loop held,
at unpredictable moments while a table loads. The routes themselves form
no reference cycles (refcounting frees them), so scanning them is waste.

After bulk work, :meth:`GcFreeze.added` is told how many long-lived items
(routes, entries) it created; every :attr:`every` of them the whole heap
is moved to the permanent generation (``gc.freeze()``, O(1), no scan). Later collections scan only
what was allocated since, so none scans more than about ``every`` items'
objects. The idea is the one softswitch/p4runtime.py applies to big
P4Runtime write batches.

The cost: a reference cycle that becomes garbage while frozen is not
collected until the heap is thawed. :meth:`tick` (called by the daemon
after bulk work, at most every ``check`` seconds of the clock) thaws and
collects once the frozen part is small again (fewer than ``thaw_below``
objects, e.g. after a big withdrawal), when a full collection is cheap.
So frozen cyclic garbage is bounded by what was frozen while the heap was
large, and freed when it shrinks. One per process: the GC is the process's.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


class GcFreeze:
    """See the module docstring."""

    def __init__(
        self,
        every: int = 1000,
        thaw_below: int = 50_000,
        check: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        self.thaw_below = thaw_below
        self.check = check
        self.clock = clock
        self.freezes = 0
        self.thaws = 0
        self._pending = 0
        self._checked = clock()

    def start(self) -> None:
        """At daemon start, before serving: collect once and freeze what start-up
        made (modules, configuration), so no collection ever scans it again."""
        gc.collect()
        gc.freeze()
        self.freezes += 1

    def added(self, n: int) -> None:
        """``n`` long-lived items were just created: freeze every ``every`` of them."""
        self._pending += n
        if self._pending >= self.every:
            self._pending = 0
            # no young collection first: after a long pause of the GC (control.driver
            # disables it during a sync) the young generation holds the whole burst
            gc.freeze()
            self.freezes += 1

    def tick(self) -> bool:
        """Thaw and collect once the frozen heap is small (checked every ``check`` s).
        True when it thawed."""
        now = self.clock()
        if now - self._checked < self.check:
            return False
        self._checked = now
        frozen = gc.get_freeze_count()  # walks the frozen list: a few ms at most
        if frozen == 0 or frozen >= self.thaw_below:
            return False
        gc.unfreeze()
        gc.collect()
        self.thaws += 1
        return True
