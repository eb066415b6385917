"""Event-loop lag monitor, shared by the daemons (route server, agent).

A task sleeps ``interval`` seconds again and again and records how much
later than asked it woke up: that is how long the loop was held by
something else (a callback that did not yield). Exported as Prometheus
metrics: the worst lag since start, the worst of the last ``window`` seconds
and a histogram of every measurement.

    lag = LoopLag()
    lag.start()                       # inside the running loop
    families = lag.families("esvpn_rs")  # esvpn_rs_loop_lag_* metrics
    lag.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    """See the module docstring; ``clock`` is injectable for tests."""

    def __init__(self, interval: float = 0.02, window: float = 60.0) -> None:
        self.interval = interval
        self.window = window
        self.worst = 0.0
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(BUCKETS)  # cumulative counts are computed on export
        self._recent: deque[tuple[float, float]] = deque()  # (when, lag), lag decreasing
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="loop-lag")
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                asked = time.monotonic() + self.interval
                await asyncio.sleep(self.interval)
                now = time.monotonic()
                self.record(max(0.0, now - asked), now)

    def record(self, lag: float, now: float) -> None:
        """One measurement: ``lag`` seconds late at ``now``."""
        self.count += 1
        self.total += lag
        self.worst = max(self.worst, lag)
        for i, bound in enumerate(BUCKETS):
            if lag <= bound:
                self.buckets[i] += 1
                break
        # a monotonic deque: the front is the worst of the window
        while self._recent and self._recent[-1][1] <= lag:
            self._recent.pop()
        self._recent.append((now, lag))

    def recent(self, now: float | None = None) -> float:
        """The worst lag of the last ``window`` seconds."""
        now = time.monotonic() if now is None else now
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        return self._recent[0][1] if self._recent else 0.0

    def families(self, prefix: str) -> list[Metric]:
        """``<prefix>_loop_lag_{worst,recent_max}_seconds`` and the histogram
        ``<prefix>_loop_lag_seconds``, for a prometheus_client collector."""
        running, buckets = 0, []
        for bound, n in zip(BUCKETS, self.buckets, strict=True):
            running += n
            buckets.append((f"{bound:g}", running))
        buckets.append(("+Inf", self.count))
        return [
            GaugeMetricFamily(
                f"{prefix}_loop_lag_worst_seconds",
                "worst event-loop lag since start",
                value=self.worst,
            ),
            GaugeMetricFamily(
                f"{prefix}_loop_lag_recent_max_seconds",
                f"worst event-loop lag, last {self.window:g} s",
                value=self.recent(),
            ),
            HistogramMetricFamily(
                f"{prefix}_loop_lag_seconds",
                f"how late the loop woke a {self.interval:g} s sleep",
                buckets=buckets,
                sum_value=self.total,
            ),
        ]
