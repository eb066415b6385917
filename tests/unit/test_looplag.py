"""esxmpp.looplag: the event-loop lag monitor both daemons export."""

from __future__ import annotations

import asyncio
import time

from esxmpp.looplag import LoopLag


def test_record_window_and_metric_families() -> None:
    lag = LoopLag(interval=0.02, window=60)
    lag.record(0.003, now=100.0)
    lag.record(0.2, now=110.0)
    lag.record(0.04, now=150.0)
    assert lag.worst == 0.2
    assert lag.recent(now=165.0) == 0.2
    assert lag.recent(now=171.0) == 0.04  # the 0.2 s one left the 60 s window
    fams = {f.name: f for f in lag.families("esvpn_rs")}
    assert fams["esvpn_rs_loop_lag_worst_seconds"].samples[0].value == 0.2
    assert fams["esvpn_rs_loop_lag_worst_seconds"].type == "gauge"
    hist = fams["esvpn_rs_loop_lag_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 1
    assert buckets["0.05"] == 2
    assert buckets["0.25"] == 3
    assert buckets["+Inf"] == 3
    count = [s.value for s in hist.samples if s.name.endswith("_count")]
    assert count == [3]


def test_a_blocked_loop_is_measured() -> None:
    async def body() -> float:
        lag = LoopLag(interval=0.01)
        lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the fault under test: a callback holding the loop
        deadline = time.monotonic() + 5
        while lag.worst < 0.2:  # measured once the monitor runs again
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        lag.stop()
        return lag.worst

    assert asyncio.run(body()) >= 0.2
