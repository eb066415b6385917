"""asyncio task helpers for shutdown paths that must always finish.

Python 3.11's ``asyncio.wait_for`` returns the inner result instead of
raising when a cancellation arrives just as the inner awaitable completes
(fixed in 3.12): a task cancelled at that moment goes on running, and
``task.cancel(); await task`` then waits for its next natural end, possibly
forever. Shutdown code therefore uses :func:`cancel_and_wait`, and loops
that are cancelled at shutdown use ``asyncio.timeout`` rather than
``wait_for``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("esxmpp.tasks")


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None], what: str = "") -> None:
    """Cancel ``tasks`` and wait until all have ended, cancelling again any
    task that swallowed the cancellation. Their exceptions are logged, not
    raised (a task that failed must not stop the shutdown of the others)."""
    todo = [t for t in tasks if t is not None]
    pending = set(todo)
    rounds = 0
    while pending:
        for t in pending:
            t.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.1)
        rounds += 1
        if pending and rounds == 10:
            log.warning("%s: %d task(s) still running after 1 s of cancelling", what, len(pending))
    for t in todo:
        if not t.cancelled():
            exc = t.exception()
            if exc is not None:
                log.error("%s: task ended with %r", what or "shutdown", exc, exc_info=exc)


SHUTDOWN_DEADLINE = 4.0  # seconds from SIGTERM to exit, whatever the state


def exit_watchdog(seconds: float, name: str) -> threading.Timer:
    """Started at SIGTERM: if the orderly shutdown has not ended the process
    within ``seconds`` (a bug, a stuck peer), exit anyway (status 1). A
    thread, so it fires even when the event loop is stuck."""

    def fire() -> None:
        log.error("%s: shutdown took more than %.0f s; exiting now", name, seconds)
        logging.shutdown()
        os._exit(1)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t
