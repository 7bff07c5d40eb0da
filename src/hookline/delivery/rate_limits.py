"""What a delivery worker knows of rate-limited webhooks (``rate_limit_per_second``).

The limit itself is kept in the database, shared by every worker
(:mod:`hookline.store.rate_windows`); a worker only needs to know which webhooks to claim
through their windows, and when to claim again:

- **learning** costs the unlimited path one NULL test per claimed delivery: a delivery of a
  limited webhook this worker did not know (its first, or the first after its limit was set)
  arrives through the fair claim, is given back unsent (its attempt uncounted) and the webhook
  is claimed through its window from then on;
- **forgetting**: the window claim answers each webhook's current limit; a webhook whose limit
  was removed (or that was deleted) goes back to the fair claim;
- **waking**: when a webhook took every token it was granted (more rows are likely waiting),
  the worker is woken when about half the burst has been earned again, so it claims in small
  batches without ever letting the window fill up and waste tokens.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from hookline.store.rate_windows import RatedClaim, burst

MIN_WAKE_SECONDS = 0.002


class RateLimits:
    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake  # the worker's claimer
        self.webhooks: set[uuid.UUID] = set()  # claimed through their windows
        self._new: list[uuid.UUID] = []  # learned since the last claim: windows to create
        self._timer: asyncio.TimerHandle | None = None

    def request(
        self, shares: Mapping[uuid.UUID, int], per_webhook: int, now: datetime
    ) -> RatedClaim | None:
        """What the next claim takes through windows (None: no limited webhook known)."""
        if not self.webhooks:
            return None
        new, self._new = self._new, []
        return RatedClaim(
            {hook: shares.get(hook, per_webhook) for hook in self.webhooks},
            now.timestamp(),
            new,
        )

    def unplanned(self, webhook_id: uuid.UUID, rated: RatedClaim | None) -> bool:
        """For a claimed delivery of a limited webhook: True when it came through the fair
        claim (not through ``rated``, the claim's windows): the caller gives it back unsent,
        and the claimer is woken to take it again through the window."""
        if rated is not None and webhook_id in rated.shares:
            return False
        if webhook_id not in self.webhooks:
            self.webhooks.add(webhook_id)
            self._new.append(webhook_id)
        self._wake()
        return True

    def settle(self, rated: RatedClaim) -> bool:
        """Read what a claim found; arrange a wake-up for the first webhook held back by its
        limit. Returns whether one was held back."""
        answered = {window.webhook_id for window in rated.windows}
        for hook in rated.shares:
            if hook not in answered:
                self.webhooks.discard(hook)  # deleted, or its window not created yet
        if rated.new:  # the claim did not run: learn them again next time
            self._new.extend(rated.new)
        wait: float | None = None
        for window in rated.windows:
            rate = window.rate
            if rate is None:
                self.webhooks.discard(window.webhook_id)
                continue
            share = rated.shares.get(window.webhook_id, 0)
            if window.taken < window.granted or window.granted >= share:
                continue  # nothing more due, or held by its destination's room (woken then)
            ready = window.next_free_at + (math.ceil(burst(rate) / 2) - 1) / rate
            delay = ready - rated.now
            wait = delay if wait is None else min(wait, delay)
        if wait is None:
            return False
        self._wake_in(max(MIN_WAKE_SECONDS, wait))
        return True

    def _wake_in(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        timer = self._timer
        at = loop.time() + seconds
        if timer is not None and not timer.cancelled() and loop.time() <= timer.when() <= at:
            return  # an earlier wake-up is already set
        if timer is not None:
            timer.cancel()
        self._timer = loop.call_at(at, self._wake)
