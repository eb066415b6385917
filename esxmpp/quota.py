"""Request-rate quotas: a token bucket per client, pure (the caller passes the time).

``RateLimits(rate, burst)`` lets each key make ``burst`` requests in a row and
``rate`` per second on average after that; :meth:`RateLimits.take` says whether
one more request is within the quota. Used by the agent (per end-system) and
the route server (per forwarder): a request beyond it is refused
``resource-constraint`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Hashable

MAX_KEYS = 100_000  # buckets kept at most; full ones are dropped first


class RateLimits:
    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: Hashable, now: float) -> bool:
        """One request of ``key`` at ``now``: True when within the quota (counted)."""
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_KEYS:
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled (they would start full anyway)."""
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
