"""The delivery worker: claim due deliveries, send them concurrently, record results in batches.

Loops sharing one process:

- the **claimer** leases batches of due deliveries whenever there is free capacity, so the
  next batch is already claimed while the previous one is still being sent; when the queue is
  empty it sleeps until a wake-up (LISTEN/NOTIFY, or the in-process signal after an emitting
  commit), the next known due time, or the slow poll. A wake-up claims at once: commits that
  come while a claim is in flight are gathered by the next claim, which follows straight
  away (under load the claims batch themselves; an idle worker adds no wait);
- **lanes**, per destination (:mod:`hookline.delivery.destinations`), each sending one
  delivery after another;
- the **recorder** writes whatever results have accumulated in one transaction, so a busy
  worker writes a few statements per hundreds of attempts;
- the **renewer** extends the lease of every delivery held (waiting for a lane, being sent,
  or waiting for its recording) every third of the lease, so a live worker's deliveries are
  never taken over, however long they take;
- the **tender**, once a second: takes the lanes of a destination with a request stuck in
  flight back to the slow limit, follows the circuits shared through the database (and wins
  probes), and on PostgreSQL keeps this worker's heartbeat and releases the claims of dead
  workers (:mod:`hookline.store.destinations`).

The claim is fair: it asks for no more of a webhook than its destination may still hold
(nothing while its circuit is open) and deals rows out in turns across webhooks. A killed
worker's claims are released at the next start on SQLite (one process per file) and by any
worker once its heartbeat is ``delivery_takeover_seconds`` old on PostgreSQL; the rows become
due again (same delivery id = same ``webhook-id``): at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from opentelemetry.trace import Span

from hookline.delivery import metrics, policy
from hookline.delivery.destinations import Circuit, Destination, Limits, counts_as_failure
from hookline.delivery.rate_limits import RateLimits
from hookline.delivery.sender import Sender, SendResult, host_key
from hookline.delivery.signing import SigningKey, delivery_headers
from hookline.logconfig import ids
from hookline.runtime import Runtime
from hookline.store import destinations as shared
from hookline.store.delivery_queue import DeliveryQueue, open_delivery_queue
from hookline.store.queue import AttemptRecord, ClaimedDelivery
from hookline.store.statuses import Outcome, WebhookStatus
from hookline.store.traces import event_traceparents
from hookline.tracing import TRACEPARENT, end_attempt, traceparent_of

# Members bound once: reading an Enum member goes through its metaclass (about 160 ns), and
# this path reads these several times per delivery.
_ACTIVE = WebhookStatus.ACTIVE
_DELIVERED, _DROPPED = Outcome.DELIVERED, Outcome.DROPPED

log = logging.getLogger(__name__)

RECORD_ATTEMPTS = 5
RECORD_LINGER = 0.01  # seconds
# A claim (a round trip that also waits its turn on a busy event loop) takes up to this many
# batches, and up to this many batches of claimed-but-unfinished work may be held beyond the
# concurrency: enough that the senders never wait for a claim or a recording.
CLAIM_BATCHES = 2
HELD_BATCHES = 4
# Claims that find nothing twice running (what is due is held back: a full destination, an
# ordered stream's head in flight) are spaced this far apart, so a stream of commits cannot
# turn into a stream of futile claims; any other wake-up claims at once.
FUTILE_CLAIM_SPACING = 0.005  # seconds
# A claim cut short by a destination's share is woken again when room frees up: waiting
# this long first gathers more room, so a drain claims in big batches, not in slivers.
ROOM_LINGER = 0.005  # seconds
LOOK_AHEAD_SPACING = 0.1  # seconds between two reads of the next due time
TEND_SECONDS = 1.0  # the tender's period
FORGET_IDLE_SECONDS = 300.0  # an idle destination's state is dropped after this long


class DeliveryWorker:
    def __init__(self, runtime: Runtime, *, owner: str | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.owner = owner or (f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        self.concurrency = max(1, self.settings.delivery_concurrency)
        self.batch_size = max(1, min(self.settings.delivery_batch_size, self.concurrency))
        self._min_claim = max(1, self.batch_size // 4)
        # Claimed-and-unrecorded deliveries allowed: the concurrency, plus room for claimed
        # work waiting for a lane and finished results waiting for (or in) their recording.
        self._capacity_limit = self.concurrency + HELD_BATCHES * self.batch_size
        self._wake = asyncio.Event()
        self._looking: asyncio.Task[None] | None = None  # the next due time being read
        self._due_timer: asyncio.TimerHandle | None = None  # wakes the claimer then
        self._looked_at = -LOOK_AHEAD_SPACING  # loop time of the last read
        self._capacity = asyncio.Event()
        self._results_ready = asyncio.Event()
        #: Set while the claim loop waits with nothing to do (tests await it, never sleep).
        self.idle = asyncio.Event()
        self._results: list[AttemptRecord] = []
        self._inflight = 0  # claimed and not yet recorded
        #: Claimed and not yet recorded: delivery id -> loop time its lease was last set.
        self._held: dict[uuid.UUID, float] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._limits = Limits.of(self.settings, self._capacity_limit)
        self._dests: dict[str, Destination] = {}
        self._fresh_cap = Destination("", self._limits).cap  # a destination not seen yet
        self._slow_ms = self._limits.slow_seconds * 1000.0
        self._loop_time: Callable[[], float] = time.monotonic  # the loop's clock, once running
        self._hook_dest: dict[uuid.UUID, Destination] = {}
        self._limited = False  # the last claim was cut by a destination's share
        self._rates = RateLimits(self.wake)  # rate-limited webhooks: claimed through windows
        self._writes: set[asyncio.Task[None]] = set()  # circuit writes and give-backs
        self._writing: collections.Counter[str] = collections.Counter()  # by destination
        self._keys: dict[str, SigningKey] = {}  # by encrypted secret (a random nonce each)
        self._rng = random.Random()
        self._tracing = runtime.tracing
        self._traceparents: dict[uuid.UUID, str] = {}  # by event id, while tracing is on
        self._outcomes: collections.Counter[str] = collections.Counter()
        self._recorded = asyncio.Condition()
        self.recorded_count = 0
        self._active = False
        self._stopping = False
        self._closing = False
        self._queue: DeliveryQueue

    # -- wake-ups ---------------------------------------------------------------------------

    def wake(self, *_: object) -> None:
        if self._active:
            self._wake.set()

    def _wake_later(self, seconds: float) -> None:
        if seconds <= self.settings.delivery_poll_seconds:
            asyncio.get_running_loop().call_later(max(0.0, seconds), self.wake)

    # -- main -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._active = True
        self._loop_time = asyncio.get_running_loop().time
        db = self.runtime.db
        db.on_wake(self.wake)
        helpers: list[asyncio.Task[None]] = []
        listen_stop = asyncio.Event()
        self._queue = open_delivery_queue(db)
        try:
            async with Sender(self.settings) as sender:
                self._sender = sender
                helpers.append(
                    asyncio.create_task(
                        self._queue.follow(self.wake, listen_stop),
                        name="hookline:delivery-listen",
                    )
                )
                await self._recover()
                recorder = asyncio.create_task(self._record_loop(), name="hookline:recorder")
                helpers.append(
                    asyncio.create_task(
                        self._renew_loop(listen_stop), name="hookline:lease-renewer"
                    )
                )
                helpers.append(
                    asyncio.create_task(self._tend_loop(listen_stop), name="hookline:tender")
                )
                try:
                    await self._claim_loop(stop)
                finally:
                    await self._drain(recorder)
        finally:
            self._active = False
            if self._due_timer is not None:
                self._due_timer.cancel()
            if self._looking is not None:
                self._looking.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._looking
            with contextlib.suppress(Exception):
                await self._queue.stop(self.owner)
            listen_stop.set()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=5)

    async def _drain(self, recorder: asyncio.Task[None]) -> None:
        """On stop: let in-flight sends finish (bounded), record them, then stop the recorder."""
        if self._sends:
            grace = min(self.settings.delivery_timeout, 8.0)
            _, pending = await asyncio.wait(set(self._sends), timeout=grace)
            self._closing = True  # no new lane may start on a closing sender
            for task in pending:  # their leases expire and another worker sends them again
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=5)
        self._stopping = True
        self._results_ready.set()  # the recorder flushes what is left, then returns
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(recorder, timeout=10)

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        # Stopping wakes the claimer like any wake-up, so its waits need no task of their own.
        def stopped(_: object) -> None:
            self._wake.set()
            self._capacity.set()

        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(stopped)
        try:
            await self._claim_until(stop)
        finally:
            stopping.cancel()

    async def _claim_until(self, stop: asyncio.Event) -> None:
        clock = self.runtime.clock
        lease = timedelta(seconds=self.settings.delivery_lease_seconds)
        poll = max(0.01, self.settings.delivery_poll_seconds)
        loop = asyncio.get_running_loop()
        futile = 0  # claims in a row that found nothing
        claimed_at = 0.0  # loop time the last claim ended
        while not stop.is_set():
            want = min(CLAIM_BATCHES * self.batch_size, self._capacity_limit - self._inflight)
            if want < self._min_claim:
                self._capacity.clear()
                await self._capacity.wait()
                continue
            self._wake.clear()
            now = clock.now()
            shares, per_webhook = self._shares(want)
            rated = self._rates.request(shares, per_webhook, now)
            try:
                items = await self._queue.claim(
                    owner=self.owner,
                    now=now,
                    lease_until=now + lease,
                    limit=want,
                    per_webhook=per_webhook,
                    shares=shares,
                    rated=rated,
                )
            except Exception:
                log.exception("claiming deliveries failed; retrying")
                await _first(stop.wait(), timeout=1.0)
                continue
            rate_held = rated is not None and self._rates.settle(rated)
            claimed_at = loop.time()
            futile = 0 if items else futile + 1
            if self._tracing is not None and items:
                await self._load_traceparents(items)
            self._inflight += len(items)
            leased_at = loop.time()
            held = self._held
            refused: list[ClaimedDelivery] = []
            taken: collections.Counter[uuid.UUID] = collections.Counter()
            for item in items:
                held[item.delivery_id] = leased_at
                taken[item.webhook_id] += 1
                if (
                    item.rate_limit is not None and self._rates.unplanned(item.webhook_id, rated)
                ) or not self._dispatch(item):
                    refused.append(item)
            self._limited = any(
                count >= shares.get(hook, per_webhook) for hook, count in taken.items()
            )
            if refused:  # given back before the next claim, which must not see them leased
                with contextlib.suppress(Exception):
                    await self._give_back_rows(self._release(refused))
            if len(items) >= want:
                continue  # probably more due: claim again while these are being sent
            if not items:  # idle: a timer wakes at the next due time (a retry, a lease expiry)
                # What is due may be held back (a full destination, an open circuit, a rate
                # limit): room freeing up, a probe, the tender or the rate limit's timer wakes
                # the claimer instead.
                self._look_ahead(poll, 0 in shares.values() or rate_held)
            elif self._wake.is_set():
                continue  # woken while claiming: there is new work already
            if not items:
                self.idle.set()
            # Woken straight from the wake-up's callback: no task, no linger before the claim.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()
            self.idle.clear()
            pause = claim_pause(futile, loop.time() - claimed_at, limited=self._limited)
            if pause > 0 and not stop.is_set():
                await asyncio.sleep(pause)

    def _look_ahead(self, poll: float, held_back: bool) -> None:
        """Read the next due time beside the claimer, not in its way (one read at a time):
        the read goes through the shared pool, where under a burst of emitting transactions
        it may wait its turn for long, and wake-ups must be claimed meanwhile. At most one
        read per ``LOOK_AHEAD_SPACING``: an empty claim after a busy one is common under load
        (its work was claimed before its wake-up came), and what becomes due later without a
        wake-up (a retry, a lease expiry) is rare and not that urgent."""
        now = self._loop_time()
        if now - self._looked_at < LOOK_AHEAD_SPACING:
            return
        if self._looking is None or self._looking.done():
            self._looked_at = now
            self._looking = asyncio.create_task(self._arm_due_timer(poll, held_back))

    async def _arm_due_timer(self, poll: float, held_back: bool) -> None:
        try:
            due = await self._queue.next_due()
        except Exception:  # the poll wakes the claimer anyway
            log.debug("reading the next due delivery failed", exc_info=True)
            return
        if due is None:
            return
        delay = max(0.01, (due - self.runtime.clock.now()).total_seconds())
        if held_back:
            delay = max(delay, TEND_SECONDS / 4)
        if delay >= poll or not self._active:
            return
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_timer = asyncio.get_running_loop().call_later(delay, self.wake)

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        """Every third of the lease, extend the leases held for that long or longer."""
        lease = self.settings.delivery_lease_seconds
        period = max(0.05, lease / 3)
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await _first(stop.wait(), timeout=period)
            started = loop.time()
            due = [i for i, leased_at in self._held.items() if started - leased_at >= period]
            if not due or stop.is_set():
                continue
            try:
                kept = await self._queue.renew(
                    owner=self.owner,
                    delivery_ids=due,
                    until=self.runtime.clock.now() + timedelta(seconds=lease),
                )
            except Exception:  # the next round tries again, still within the lease
                log.exception("renewing %d delivery leases failed", len(due))
                continue
            held = self._held
            for delivery_id in due:
                if delivery_id in held:
                    held[delivery_id] = started
            if kept < len(due):  # recorded meanwhile, or taken over after a stall
                log.debug("renewed %d of %d delivery leases", kept, len(due))

    async def _load_traceparents(self, items: list[ClaimedDelivery]) -> None:
        """Tracing only: the stored trace context of the claimed deliveries' events."""
        if len(self._traceparents) > 10_000:
            self._traceparents.clear()
        wanted = {item.event_id for item in items} - self._traceparents.keys()
        try:
            async with self.runtime.db.read() as conn:
                self._traceparents.update(await event_traceparents(conn, wanted))
        except Exception:  # a trace must never hold up a delivery
            log.warning("reading the trace context of %d events failed", len(wanted))

    # -- sending ------------------------------------------------------------------------------

    def _shares(self, want: int) -> tuple[dict[uuid.UUID, int], int]:
        """What the next claim may take per known webhook (its destination's room, split
        between the destination's webhooks), and per webhook not seen yet (a new
        destination's room)."""
        shares: dict[uuid.UUID, int] = {}
        for dest in self._dests.values():
            hooks = dest.webhooks
            if not hooks:
                continue
            room = dest.room
            share = min(want, -(-room // len(hooks)))
            for hook in hooks:
                shares[hook] = share
        return shares, min(want, self._fresh_cap)

    def _destination(self, item: ClaimedDelivery) -> Destination:
        url = item.url if item.webhook_status == _ACTIVE else None
        key = _host_key(url)
        dest = self._dests.get(key)
        if dest is None:
            dest = self._dests[key] = Destination(key, self._limits)
            if not key:  # deliveries to drop: nothing is sent, no limit to learn
                dest.set_lane_limit(self._limits.lanes)
        hook = item.webhook_id
        known = self._hook_dest.get(hook)
        if known is not dest:
            if known is not None:  # the webhook's URL changed
                known.webhooks.discard(hook)
            dest.webhooks.add(hook)
            self._hook_dest[hook] = dest
        return dest

    def _dispatch(self, item: ClaimedDelivery) -> bool:
        """Queue ``item`` for its destination's lanes; False when the destination may not
        hold it (full, or its circuit open): the caller gives it back."""
        dest = self._destination(item)
        if not dest.admit():
            return False
        dest.backlog.append(item)
        if dest.lanes < dest.lane_cap:
            self._fill_lanes(dest)
        return True

    def _fill_lanes(self, dest: Destination) -> None:
        """Lanes (at most the destination's lane limit) each send one delivery after another,
        like a client's connection loop: no task and no semaphore wait per delivery, and a
        slow destination only ever occupies its own lanes."""
        if self._closing:
            return
        cap = dest.lane_cap
        while dest.lanes < cap and dest.lanes < len(dest.backlog):
            dest.lanes += 1
            task = asyncio.create_task(self._lane(dest))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _lane(self, dest: Destination) -> None:
        backlog = dest.backlog
        try:
            while backlog and dest.lanes <= dest.lane_cap:
                self._finish(await self._attempt(dest, backlog.popleft()))
                if backlog and dest.lanes < dest.lane_cap:
                    self._fill_lanes(dest)  # a fast success raised the lane limit
        finally:
            # No await between the last emptiness check and here: _dispatch sees either a
            # live lane (which will take its item) or the decremented count.
            dest.lanes -= 1
            dest.last_used = self._loop_time()
            if backlog and not dest.lanes:
                self._fill_lanes(dest)

    # -- destinations -------------------------------------------------------------------------

    def _after_attempt(self, dest: Destination, result: SendResult) -> None:
        """Feed the destination's model; act on its circuit."""
        failed = counts_as_failure(result.status, result.retryable_error)
        opens = dest.record(
            failed=failed,
            slow=result.duration_ms >= self._limits.slow_seconds * 1000.0,
            answered=result.status is not None,
        )
        if dest.excess:
            self._give_back_excess(dest)
        if dest.circuit is Circuit.CLOSED:
            if opens:
                log.warning(
                    "circuit of %s opened after %d consecutive failures", dest.key, dest.failures
                )
                dest.set_circuit(Circuit.OPEN)
                self._give_back_excess(dest)
                self._write(dest, self._open_circuit, dest.key, dest.failures)
        elif not failed:  # the probe (or a request sent before it opened) got through
            log.info("circuit of %s closed", dest.key)
            dest.set_circuit(Circuit.CLOSED)
            dest.failures = 0
            self._write(dest, self._close_circuit, dest.key)
            self.wake()
        elif dest.circuit is Circuit.PROBING:
            dest.set_circuit(Circuit.OPEN)
            self._give_back_excess(dest)
            self._write(dest, self._reopen_circuit, dest.key)

    def _give_back_excess(self, dest: Destination) -> None:
        """Give back the newest deliveries a destination holds beyond its (just lowered) cap
        and has not started: all of them once its circuit opened (cap 0), the surplus when
        its lanes fell to the slow limit, so a receiver that turned bad keeps no more of the
        worker than a slow one may."""
        items = [dest.backlog.pop() for _ in range(dest.excess)]
        dest.held -= len(items)
        if items:
            self._spawn(self._give_back_rows(self._release(items)))

    def _release(self, items: list[ClaimedDelivery]) -> list[uuid.UUID]:
        """Stop holding claimed deliveries that will not be sent; returns their ids."""
        held = self._held
        for item in items:
            held.pop(item.delivery_id, None)
        self._inflight -= len(items)
        self._capacity.set()
        return [item.delivery_id for item in items]

    async def _give_back_rows(self, ids: list[uuid.UUID]) -> None:
        """Return claimed deliveries unsent (lease released, attempt not counted)."""
        now = self.runtime.clock.now()
        await self._queue.give_back(owner=self.owner, delivery_ids=ids, now=now)

    def _spawn(self, work: Awaitable[None], dest: Destination | None = None) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:  # a lost write heals: leases expire, the tender re-reads
                log.exception("delivery scheduling write failed")
            finally:
                if dest is not None:
                    self._writing[dest.key] -= 1

        if dest is not None:
            self._writing[dest.key] += 1
        task = asyncio.create_task(run())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _write(self, dest: Destination, fn: Any, *args: Any) -> None:
        self._spawn(fn(*args), dest)

    async def _open_circuit(self, key: str, failures: int) -> None:
        async with self.runtime.db.transaction(priority=True) as conn:
            await shared.open_circuit(
                conn,
                key,
                failures=failures,
                now=self.runtime.clock.now(),
                cooldown=self._limits.cooldown_seconds,
            )

    async def _close_circuit(self, key: str) -> None:
        async with self.runtime.db.transaction(priority=True) as conn:
            await shared.close_circuit(conn, key)

    async def _reopen_circuit(self, key: str) -> None:
        async with self.runtime.db.transaction(priority=True) as conn:
            cooldown = await shared.reopen_circuit(
                conn,
                key,
                owner=self.owner,
                now=self.runtime.clock.now(),
                max_cooldown=self._limits.max_cooldown_seconds,
            )
        if cooldown is not None:
            log.warning("probe of %s failed; circuit open for %g s", key, cooldown)

    # -- recovery and the tender ----------------------------------------------------------------

    async def _recover(self) -> None:
        """Join the workers and release what dead ones left claimed, without waiting for
        their leases to expire."""
        now = self.runtime.clock.now()
        try:
            released = await self._queue.start(self.owner, now, self._dead_before(now))
        except Exception:
            log.exception("releasing stale delivery claims failed; their leases will expire")
            return
        if released:
            log.warning("released %d deliveries claimed by workers that died", released)

    async def _heartbeat(self) -> None:
        now = self.runtime.clock.now()
        released = await self._queue.beat(self.owner, now, self._dead_before(now))
        if released:
            log.warning("released %d deliveries claimed by dead workers", released)
            self.wake()

    def _dead_before(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.settings.delivery_takeover_seconds)

    async def _tend_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        beat_every = max(0.2, self.settings.delivery_takeover_seconds / 5)
        last_beat = loop.time()
        while not stop.is_set():
            await _first(stop.wait(), timeout=TEND_SECONDS)
            if stop.is_set():
                return
            now = loop.time()
            for key, dest in list(self._dests.items()):
                if dest.stuck(now) and dest.excess:
                    self._give_back_excess(dest)
                if dest.idle and now - dest.last_used > FORGET_IDLE_SECONDS:
                    del self._dests[key]
                    for hook in dest.webhooks:
                        if self._hook_dest.get(hook) is dest:
                            del self._hook_dest[hook]
            try:
                await self._follow_circuits()
                if now - last_beat >= beat_every:
                    last_beat = now
                    await self._heartbeat()
            except Exception:
                log.exception("delivery worker upkeep failed; trying again")

    async def _follow_circuits(self) -> None:
        """Adopt the circuits other workers opened or closed; take probes that are due."""
        async with self.runtime.db.read() as conn:
            rows = {row.destination: row for row in await shared.circuits(conn)}
        now = self.runtime.clock.now()
        for key, dest in self._dests.items():
            if dest.circuit is not Circuit.CLOSED and key not in rows and not self._writing[key]:
                dest.set_circuit(Circuit.CLOSED)  # closed by another worker
                dest.failures = 0
                self.wake()
        for key, row in rows.items():
            if self._writing[key]:
                continue  # our own change is on its way
            known = self._dests.get(key)
            if known is None:
                known = self._dests[key] = Destination(key, self._limits)
            dest = known
            if row.open_until > now or (
                row.probe_owner is not None
                and row.probe_until is not None
                and row.probe_until >= now
            ):
                mine = row.probe_owner == self.owner and dest.circuit is Circuit.PROBING
                if not mine and dest.circuit is not Circuit.OPEN:
                    dest.set_circuit(Circuit.OPEN)
                    self._give_back_excess(dest)
                continue
            until = now + timedelta(seconds=self.settings.delivery_timeout + 5.0)
            async with self.runtime.db.transaction(priority=True) as conn:
                won = await shared.take_probe(conn, key, owner=self.owner, now=now, until=until)
            if won:
                dest.set_circuit(Circuit.PROBING)
                self.wake()
            elif dest.circuit is not Circuit.OPEN:
                dest.set_circuit(Circuit.OPEN)
                self._give_back_excess(dest)

    # -- one delivery -------------------------------------------------------------------------

    async def _attempt(self, dest: Destination, item: ClaimedDelivery) -> AttemptRecord:
        try:
            if item.webhook_status != _ACTIVE or not item.url:
                return AttemptRecord(item, _DROPPED)
            key = self._signing_key(item)
            headers = delivery_headers(
                message_id=str(item.delivery_id),
                timestamp=int(self.runtime.clock.timestamp()),
                body=item.payload,
                key=key,
            )
            span = self._attempt_span(item, headers) if self._tracing is not None else None
            sending = dest.sending
            sending[item.delivery_id] = self._loop_time()
            try:
                result = await self._sender.send(item.url, item.payload, headers)
            finally:
                del sending[item.delivery_id]
            status = result.status
            if status is not None and 200 <= status < 300:  # the common case needs no policy
                if dest.circuit is Circuit.CLOSED and result.duration_ms < self._slow_ms:
                    dest.succeeded()
                else:
                    self._after_attempt(dest, result)
                record = AttemptRecord(
                    item,
                    _DELIVERED,
                    http_status=status,
                    duration_ms=result.duration_ms,
                    response_excerpt=result.excerpt,
                    request_headers=result.request_headers,
                    response_headers=result.response_headers,
                )
            else:
                self._after_attempt(dest, result)
                record = self._decide(item, result)
            if span is not None:
                end_attempt(
                    span,
                    outcome=record.outcome,
                    http_status=record.http_status,
                    error_class=record.error_class,
                )
            return record
        except asyncio.CancelledError:
            self._inflight -= 1
            self._capacity.set()
            raise
        except Exception as error:  # a bug must not lose the delivery: retry it
            log.exception("delivery %s failed unexpectedly", item.delivery_id, extra=_log_ids(item))
            return self._decide(item, SendResult(None, 0.0, error_class=type(error).__name__))
        finally:
            dest.held -= 1
            if self._limited and (dest.cap - dest.held) * 2 >= dest.cap > 0:
                self.wake()  # room for a claim's worth again

    def _attempt_span(self, item: ClaimedDelivery, headers: dict[str, str]) -> Span:
        """Tracing only: a started span for this attempt, a child of the event's stored
        context; the request carries its ``traceparent`` so the receiver can join the trace."""
        assert self._tracing is not None
        span = self._tracing.attempt(
            self._traceparents.get(item.event_id),
            delivery_id=item.delivery_id,
            event_id=item.event_id,
            webhook_id=item.webhook_id,
            attempt=item.attempt,
        )
        headers[TRACEPARENT] = traceparent_of(span)
        return span

    def _finish(self, record: AttemptRecord) -> None:
        self._outcomes[record.outcome] += 1
        if record.outcome != _DROPPED:
            metrics.ATTEMPT_SECONDS.observe(record.duration_ms / 1000.0)
        self._results.append(record)
        if not self._results_ready.is_set():
            self._results_ready.set()

    def _signing_key(self, item: ClaimedDelivery) -> SigningKey | None:
        encrypted = item.secret_encrypted
        if not encrypted:
            return None
        key = self._keys.get(encrypted)
        if key is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            secret = self.runtime.secret_box.decrypt(encrypted)
            key = self._keys[encrypted] = SigningKey.from_secret(secret)
        return key

    def _decide(self, item: ClaimedDelivery, result: SendResult) -> AttemptRecord:
        settings = self.settings
        now = self.runtime.clock.now()
        verdict = policy.classify(result.status, retryable_error=result.retryable_error)
        decision = policy.decide(
            verdict=verdict,
            attempt=item.attempt,
            now=now,
            schedule=settings.retry_schedule,
            jitter=settings.retry_jitter,
            retry_after=result.retry_after if verdict is policy.Verdict.RETRY else None,
            retry_after_max=settings.retry_after_max_seconds,
            failing_since=item.failing_since,
            disable_after_seconds=settings.disable_after_failing_seconds,
            rng=self._rng,
        )
        if decision.disable_reason:  # rare: a webhook being disabled (per delivery in flight)
            log.warning(
                "disabling webhook %s: %s",
                item.webhook_id,
                decision.disable_reason,
                extra=_log_ids(item),
            )
        error_class = result.error_class
        if (
            error_class is None
            and result.status is not None
            and verdict is not (policy.Verdict.DELIVERED)
        ):
            error_class = f"HTTP{result.status}"
        return AttemptRecord(
            item,
            decision.outcome,
            http_status=result.status,
            duration_ms=result.duration_ms,
            error_class=error_class,
            response_excerpt=result.excerpt,
            next_attempt_at=decision.next_attempt_at,
            disable_reason=decision.disable_reason,
            request_headers=result.request_headers,
            response_headers=result.response_headers,
        )

    # -- recording ----------------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            if len(self._results) < self.batch_size and not self._stopping:
                # A short wait makes one transaction out of many results; it delays only the
                # bookkeeping (and the release of capacity), never a request.
                await asyncio.sleep(RECORD_LINGER)
            self._results_ready.clear()
            batch, self._results = self._results, []
            if batch:
                await self._record(batch)
                if any(record.delivery.ordering is not None for record in batch):
                    self.wake()  # a finished head lets the next of its ordered stream go
                held = self._held
                for record in batch:
                    held.pop(record.delivery.delivery_id, None)
                self._inflight -= len(batch)
                self._capacity.set()
                for outcome, count in self._outcomes.items():
                    if count:
                        metrics.ATTEMPTS.labels(outcome=outcome).inc(count)
                self._outcomes.clear()
                async with self._recorded:
                    self.recorded_count += len(batch)
                    self._recorded.notify_all()
            if self._stopping and not self._results:
                return

    async def _record(self, batch: list[AttemptRecord]) -> None:
        left = await self._write_results(batch, tries=RECORD_ATTEMPTS)
        if len(left) > 1:
            # One result the database refuses must not hold back the others until their
            # leases run out (and send them again): write them one at a time, once each.
            refused = 0
            for record in left:
                refused += len(await self._write_results([record], tries=1, quiet=True))
            log.error("%d of %d delivery results could not be recorded", refused, len(left))
        retry_times = [r.next_attempt_at for r in batch if r.next_attempt_at is not None]
        if retry_times:
            delay = (min(retry_times) - self.runtime.clock.now()).total_seconds()
            self._wake_later(delay)

    async def _write_results(
        self, batch: list[AttemptRecord], *, tries: int, quiet: bool = False
    ) -> list[AttemptRecord]:
        """Record ``batch``, retrying a blip or a deadlock; returns what could not be recorded
        (their leases expire and they are sent again: at-least-once holds)."""
        # Successes of healthy webhooks take the one-round-trip path; a success that ends a
        # webhook's failing streak, and every other outcome, take the general one.
        delivered = [
            r for r in batch if r.outcome == _DELIVERED and r.delivery.failing_since is None
        ]
        others = [
            r for r in batch if r.outcome != _DELIVERED or r.delivery.failing_since is not None
        ]
        for attempt in range(1, tries + 1):
            now = self.runtime.clock.now()
            try:
                if delivered:
                    await self._queue.record_delivered(owner=self.owner, now=now, records=delivered)
                    delivered = []
                if others:
                    await self._queue.record(owner=self.owner, now=now, records=others)
                return []
            except Exception:
                if attempt == tries:
                    if not quiet:
                        log.exception("recording %d delivery results failed", len(batch))
                    return [*delivered, *others]
                log.warning(
                    "recording delivery results failed (try %d); retrying", attempt, exc_info=True
                )
                await asyncio.sleep(0.05 * attempt)  # back off from a deadlock or a blip
        return [*delivered, *others]

    async def wait_recorded(self, count: int, timeout: float = 15.0) -> None:
        """For tests: wait until at least ``count`` results have been committed."""
        async with self._recorded:
            await asyncio.wait_for(
                self._recorded.wait_for(lambda: self.recorded_count >= count), timeout
            )


def _log_ids(item: ClaimedDelivery) -> dict[str, str]:
    return ids(
        account_id=item.account_id,
        webhook_id=item.webhook_id,
        event_id=item.event_id,
        delivery_id=item.delivery_id,
    )


def _host_key(url: str | None) -> str:
    return host_key(url) if url else ""


def claim_pause(futile: int, since_last_claim: float, *, limited: bool = False) -> float:
    """How long a woken claimer waits before claiming: nothing, unless the last two claims
    found nothing (then claims are spaced ``FUTILE_CLAIM_SPACING`` apart) or the last claim
    was cut by a destination's share (``ROOM_LINGER``: more room gathers meanwhile). One
    empty claim is normal (a commit seen by the claim before it was woken for it); two in a
    row mean wake-ups for work that cannot be claimed yet."""
    if limited:
        return ROOM_LINGER
    if futile < 2:
        return 0.0
    return max(0.0, FUTILE_CLAIM_SPACING - since_last_claim)


async def _first(*waits: Awaitable[object], timeout: float | None = None) -> None:
    """Wait for whichever of ``waits`` finishes first (or the timeout); cancel the rest."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def run_delivery_worker(runtime: Runtime, stop: asyncio.Event) -> None:
    """The background service: deliver until ``stop`` is set."""
    await DeliveryWorker(runtime).run(stop)
