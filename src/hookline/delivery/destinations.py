"""The scheduling model: every control of a delivery worker is a limit on a *destination*.

A destination is where a request goes: scheme + host + port of the webhook URL
(``https://hooks.example.com`` and ``https://hooks.example.com:443/x`` are one destination;
two webhooks on the same host share one). A worker keeps, per destination:

- **lanes**, the requests it may have in flight. A destination starts with
  ``delivery_slow_host_concurrency`` lanes (4) and gains one per fast success, up to
  ``delivery_per_host_concurrency`` (64); a slow attempt (``delivery_slow_seconds``), a
  request in flight for that long, a timeout or a connection error puts it back to 4; a
  second quick 5xx or 429 in a row halves its lanes (not below 4): the receiver answers, so
  a lone 5xx among successes is one endpoint's trouble, not the host's, and a receiver that
  fails one request in ten keeps its speed. A healthy receiver reaches
  its full 64 within its first 60 deliveries; a hanging one never holds more than 4
  connections (after at most one round of its current lanes).
- **held**, the deliveries claimed for it and not yet sent. A destination may hold at most
  ``HELD_PER_LANE`` times its lanes (capped by two thirds of the worker's capacity); what it
  cannot hold stays in the queue, unclaimed. When its lanes fall back to the slow limit, what
  it holds beyond its new cap goes back to the queue at once. So a hanging destination holds 24
  deliveries, not the worker: the rest of the capacity is always there for other destinations,
  and a healthy one draining a backlog claims in large batches (fewer, cheaper claims).
- **the circuit**. After ``circuit_failures`` consecutive failures the circuit opens: no
  request goes out and no attempt is spent, the deliveries wait in the queue. After the
  cool-down one worker sends one probe; a success closes the circuit, a failure opens it again
  for twice as long (up to ``circuit_max_cooldown_seconds``). The open state is shared by all
  workers through the database (:mod:`hookline.store.destinations`).

A destination's *share* of the next claim is what it may still hold (0 while its circuit is
open, 1 for its probe). The claim (:mod:`hookline.store.queue_link`) takes at most that many
of each of its webhooks, and deals rows out in turns across webhooks, so no backlog delays
another webhook's first delivery. What a claim took beyond a share (a webhook not seen
before, or several webhooks of one destination) is given back at once, unsent and uncounted.

This module is the pure part (no I/O): the worker feeds it outcomes and asks it for limits.
"""

from __future__ import annotations

import collections
import uuid
from dataclasses import dataclass
from enum import StrEnum

from hookline.config import Settings
from hookline.store.queue import ClaimedDelivery

#: Deliveries a destination may hold per lane: the lanes' own, plus what keeps them busy
#: until the next claim comes back.
HELD_PER_LANE = 6


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    PROBING = "probing"  # open, and this worker sends the one probe


@dataclass(frozen=True, slots=True)
class Limits:
    lanes: int  # a healthy destination's lanes
    slow_lanes: int  # a new, slow or failing destination's lanes
    slow_seconds: float
    max_held: int  # what one destination may hold at most, whatever its lanes
    circuit_failures: int
    cooldown_seconds: float
    max_cooldown_seconds: float

    @classmethod
    def of(cls, settings: Settings, capacity: int) -> Limits:
        lanes = max(1, settings.delivery_per_host_concurrency)
        return cls(
            lanes=lanes,
            slow_lanes=max(1, min(lanes, settings.delivery_slow_host_concurrency)),
            slow_seconds=max(0.01, settings.delivery_slow_seconds),
            max_held=max(1, capacity * 2 // 3),
            circuit_failures=max(1, settings.circuit_failures),
            cooldown_seconds=max(0.01, settings.circuit_cooldown_seconds),
            max_cooldown_seconds=max(
                settings.circuit_cooldown_seconds, settings.circuit_max_cooldown_seconds
            ),
        )


class Destination:
    """One destination's state in one worker. ``lane_cap`` and ``cap`` are kept as plain
    attributes (read for every delivery) and recomputed when the lane limit or the circuit
    changes: change those only through :meth:`set_circuit`, :meth:`set_lane_limit`,
    :meth:`record`, :meth:`succeeded` and :meth:`stuck`."""

    __slots__ = (
        "backlog",
        "cap",
        "circuit",
        "failures",
        "held",
        "key",
        "lane_cap",
        "lane_limit",
        "lanes",
        "last_used",
        "limits",
        "sending",
        "webhooks",
    )

    def __init__(self, key: str, limits: Limits) -> None:
        self.key = key
        self.limits = limits
        self.lanes = 0  # lane tasks running
        self.held = 0  # claimed and not yet attempted (queued for a lane or being sent)
        self.failures = 0  # consecutive
        self.circuit = Circuit.CLOSED
        self.backlog: collections.deque[ClaimedDelivery] = collections.deque()
        self.sending: dict[uuid.UUID, float] = {}  # id -> loop time sent
        self.webhooks: set[uuid.UUID] = set()
        self.last_used = 0.0
        self.lane_limit = limits.slow_lanes
        self.lane_cap = 0  # lanes allowed now
        self.cap = 0  # deliveries this destination may hold now
        self._refresh()

    def _refresh(self) -> None:
        if self.circuit is Circuit.CLOSED:
            self.lane_cap = self.lane_limit
            self.cap = min(self.limits.max_held, HELD_PER_LANE * self.lane_limit)
        else:
            self.lane_cap = self.cap = 1 if self.circuit is Circuit.PROBING else 0

    def set_circuit(self, circuit: Circuit) -> None:
        self.circuit = circuit
        self._refresh()

    def set_lane_limit(self, lanes: int) -> None:
        self.lane_limit = lanes
        self._refresh()

    @property
    def excess(self) -> int:
        """Claimed deliveries beyond the cap that are still waiting for a lane: they go back
        to the queue (after the lanes fell to the slow limit; all of them once the circuit
        opened, its cap being 0)."""
        return min(len(self.backlog), self.held - self.cap) if self.held > self.cap else 0

    @property
    def room(self) -> int:
        return max(0, self.cap - self.held)

    def admit(self) -> bool:
        if self.held >= self.cap:
            return False
        self.held += 1
        return True

    def succeeded(self) -> None:
        """A fast success (the common case, kept to one call): one more lane, up to the
        limit."""
        self.failures = 0
        if self.lane_limit < self.limits.lanes:
            self.lane_limit += 1
            self._refresh()

    def record(self, *, failed: bool, slow: bool, answered: bool = False) -> bool:
        """Count one attempt's result; True when it makes the circuit open.

        ``answered``: a response came back (a failure is then a 5xx or a 429). A quick one
        right after another failure halves the lanes (additive increase, multiplicative
        decrease); a lone one keeps them: halving on every 5xx held a receiver that fails
        one request in ten at ~15 lanes, below 500 deliveries/s on a loaded machine. Silence
        and slowness still take the lanes back to the slow limit at once."""
        if failed:
            self.failures += 1
            if not answered or slow:
                self.set_lane_limit(self.limits.slow_lanes)
            elif self.failures > 1:
                self.set_lane_limit(max(self.limits.slow_lanes, self.lane_limit // 2))
            return self.circuit is Circuit.CLOSED and self.failures >= self.limits.circuit_failures
        if slow:
            self.failures = 0
            self.set_lane_limit(self.limits.slow_lanes)
        else:
            self.succeeded()
        return False

    def stuck(self, now: float) -> bool:
        """A request in flight for longer than a slow attempt: take the lanes back to the
        slow limit now, not when its timeout ends. True when that changed the limit."""
        if self.lane_limit <= self.limits.slow_lanes or not self.sending:
            return False
        if now - min(self.sending.values()) < self.limits.slow_seconds:
            return False
        self.set_lane_limit(self.limits.slow_lanes)
        return True

    @property
    def idle(self) -> bool:
        return not self.held and not self.lanes and self.circuit is Circuit.CLOSED


def counts_as_failure(status: int | None, retryable_error: bool) -> bool:
    """Does this result speak against the destination (rather than against one request)?

    No response (timeouts, refused connections, resets), 5xx and 429 do; any other answer
    means the receiver is there. An error that is ours (a refused address, a bad URL) does not.
    """
    if status is None:
        return retryable_error
    return status >= 500 or status == 429
