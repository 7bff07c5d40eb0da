"""The loop every periodic platform service runs: a tick, then a wait for the interval or the
stop signal, whichever comes first.

A failed tick is logged and the next one runs on time: a scheduler must outlive a bad row or a
database blip. ``ticked`` is called after every tick (tests await it instead of polling the
database for the service's effects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Ticked = Callable[[], None] | None


async def every(
    interval: float,
    stop: asyncio.Event,
    tick: Callable[[], Awaitable[object]],
    *,
    what: str,
    ticked: Ticked = None,
) -> None:
    """Run ``tick`` now and then every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            await tick()
        except Exception:
            log.exception("%s failed; trying again in %g s", what, interval)
        if ticked is not None:
            ticked()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
