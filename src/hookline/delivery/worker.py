"""The delivery worker: claim due deliveries, send them concurrently, record results in batches.

Three loops share one process:

- the **claimer** leases batches of due deliveries whenever there is free capacity, so the
  next batch is already claimed while the previous one is still being sent; when the queue is
  empty it sleeps until a wake-up (LISTEN/NOTIFY, or the in-process signal after an emitting
  commit), the next known due time, or the slow poll;
- one **send task** per delivery (bounded overall by ``delivery_concurrency`` and per host by
  the sender);
- the **recorder** writes whatever results have accumulated in one transaction, so a busy
  worker writes a few statements per hundreds of attempts.

A delivery counts against capacity from claim until its result is recorded. While a worker
holds a delivery (waiting for a lane behind a slow host, being sent, or waiting for its
recording), a fourth loop, the **renewer**, extends its lease every third of the lease, so a
live worker's deliveries are never taken over, however long they take. A killed worker's
leases simply expire and the rows become due again (same delivery id = same ``webhook-id``):
at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable
from datetime import timedelta

from hookline.delivery import metrics, policy
from hookline.delivery.sender import Sender, SendResult, host_key
from hookline.delivery.signing import SigningKey, delivery_headers
from hookline.logconfig import ids
from hookline.runtime import Runtime
from hookline.store import queue
from hookline.store.queue import AttemptRecord, ClaimedDelivery
from hookline.store.queue_link import QueueLink, open_queue_link

log = logging.getLogger(__name__)

RECORD_ATTEMPTS = 5
RECORD_LINGER = 0.01  # seconds
# A claim (a round trip that also waits its turn on a busy event loop) takes up to this many
# batches, and up to this many batches of claimed-but-unfinished work may be held beyond the
# concurrency: enough that the senders never wait for a claim or a recording.
CLAIM_BATCHES = 2
HELD_BATCHES = 4
CLAIM_LINGER = 0.005  # seconds


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
        self._capacity = asyncio.Event()
        self._results_ready = asyncio.Event()
        #: Set while the claim loop waits with nothing to do (tests await it, never sleep).
        self.idle = asyncio.Event()
        self._results: list[AttemptRecord] = []
        self._inflight = 0  # claimed and not yet recorded
        #: Claimed and not yet recorded: delivery id -> loop time its lease was last set.
        self._held: dict[uuid.UUID, float] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._per_host = max(1, self.settings.delivery_per_host_concurrency)
        self._backlogs: dict[str, collections.deque[ClaimedDelivery]] = {}
        self._lanes: dict[str, int] = {}
        self._keys: dict[str, SigningKey] = {}  # by encrypted secret (a random nonce each)
        self._rng = random.Random()
        self._outcomes: collections.Counter[str] = collections.Counter()
        self._recorded = asyncio.Condition()
        self.recorded_count = 0
        self._active = False
        self._stopping = False
        self._claims: QueueLink
        self._records: QueueLink

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
        db = self.runtime.db
        db.on_wake(self.wake)
        helpers: list[asyncio.Task[None]] = []
        listen_stop = asyncio.Event()
        # Two links, so a claim never waits for a recording in flight (PostgreSQL).
        self._claims = open_queue_link(db)
        self._records = open_queue_link(db)
        try:
            async with Sender(self.settings) as sender:
                self._sender = sender
                if not db.is_sqlite:
                    from hookline.store.listen import listen

                    helpers.append(
                        asyncio.create_task(
                            listen(db.url, db.notify_channel, self.wake, listen_stop),
                            name="hookline:delivery-listen",
                        )
                    )
                recorder = asyncio.create_task(self._record_loop(), name="hookline:recorder")
                helpers.append(
                    asyncio.create_task(
                        self._renew_loop(listen_stop), name="hookline:lease-renewer"
                    )
                )
                try:
                    await self._claim_loop(stop)
                finally:
                    await self._drain(recorder)
        finally:
            self._active = False
            listen_stop.set()
            for link in (self._claims, self._records):
                with contextlib.suppress(Exception):
                    await link.close()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=5)

    async def _drain(self, recorder: asyncio.Task[None]) -> None:
        """On stop: let in-flight sends finish (bounded), record them, then stop the recorder."""
        if self._sends:
            grace = min(self.settings.delivery_timeout, 8.0)
            _, pending = await asyncio.wait(set(self._sends), timeout=grace)
            for task in pending:  # their leases expire and another worker sends them again
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._stopping = True
        self._results_ready.set()  # the recorder flushes what is left, then returns
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(recorder, timeout=10)

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        clock = self.runtime.clock
        lease = timedelta(seconds=self.settings.delivery_lease_seconds)
        poll = max(0.01, self.settings.delivery_poll_seconds)
        while not stop.is_set():
            want = min(CLAIM_BATCHES * self.batch_size, self._capacity_limit - self._inflight)
            if want < self._min_claim:
                self._capacity.clear()
                await _first(stop.wait(), self._capacity.wait())
                continue
            self._wake.clear()
            now = clock.now()
            try:
                items = await self._claims.claim(
                    owner=self.owner, now=now, lease_until=now + lease, limit=want
                )
            except Exception:
                log.exception("claiming deliveries failed; retrying")
                await _first(stop.wait(), timeout=1.0)
                continue
            self._inflight += len(items)
            leased_at = asyncio.get_running_loop().time()
            held = self._held
            for item in items:
                held[item.delivery_id] = leased_at
                self._dispatch(item)
            if len(items) >= want:
                continue  # probably more due: claim again while these are being sent
            timeout = poll
            if not items:  # idle: sleep until the next due time (a retry or a lease expiry)
                with contextlib.suppress(Exception):
                    async with self.runtime.db.read() as conn:
                        due = await queue.next_due(conn)
                    if due is not None:
                        timeout = min(poll, max(0.01, (due - clock.now()).total_seconds()))
            elif self._wake.is_set():
                continue  # woken while claiming: there is new work already
            if not items:
                self.idle.set()
            await _first(stop.wait(), self._wake.wait(), timeout=timeout)
            self.idle.clear()
            if self._wake.is_set() and not stop.is_set():
                # Events arrive in bursts of commits: gathering a few milliseconds' worth makes
                # one claim transaction out of many at a small cost in latency.
                await asyncio.sleep(CLAIM_LINGER)

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
                async with self.runtime.db.transaction(priority=True) as conn:
                    kept = await queue.renew_leases(
                        conn,
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

    # -- sending ------------------------------------------------------------------------------

    def _dispatch(self, item: ClaimedDelivery) -> None:
        """Queue ``item`` for its host; start a lane unless the host has all it may have.

        Lanes (at most ``delivery_per_host_concurrency`` per host) each send one delivery
        after another, like a client's connection loop: no task and no semaphore wait per
        delivery, and a slow host only ever occupies its own lanes.
        """
        key = _host_key(item.url)
        backlog = self._backlogs.get(key)
        if backlog is None:
            backlog = self._backlogs[key] = collections.deque()
        backlog.append(item)
        lanes = self._lanes.get(key, 0)
        if lanes < self._per_host:
            self._lanes[key] = lanes + 1
            task = asyncio.create_task(self._lane(key, backlog))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _lane(self, key: str, backlog: collections.deque[ClaimedDelivery]) -> None:
        try:
            while backlog:
                self._finish(await self._attempt(backlog.popleft()))
        finally:
            # No await between the last emptiness check and here: _dispatch sees either a
            # live lane (which will take its item) or the decremented count.
            self._lanes[key] -= 1
            if not self._lanes[key]:
                del self._lanes[key]
                if not backlog:
                    self._backlogs.pop(key, None)

    # -- one delivery -------------------------------------------------------------------------

    async def _attempt(self, item: ClaimedDelivery) -> AttemptRecord:
        try:
            if item.webhook_status != "active" or not item.url:
                return AttemptRecord(item, policy.DROPPED)
            key = self._signing_key(item)
            headers = delivery_headers(
                message_id=str(item.delivery_id),
                timestamp=int(self.runtime.clock.timestamp()),
                body=item.payload,
                key=key,
            )
            result = await self._sender.send(item.url, item.payload, headers)
            status = result.status
            if status is not None and 200 <= status < 300:  # the common case needs no policy
                return AttemptRecord(
                    item,
                    policy.DELIVERED,
                    http_status=status,
                    duration_ms=result.duration_ms,
                    response_excerpt=result.excerpt,
                )
            return self._decide(item, result)
        except asyncio.CancelledError:
            self._inflight -= 1
            self._capacity.set()
            raise
        except Exception as error:  # a bug must not lose the delivery: retry it
            log.exception("delivery %s failed unexpectedly", item.delivery_id, extra=_log_ids(item))
            return self._decide(item, SendResult(None, 0.0, error_class=type(error).__name__))

    def _finish(self, record: AttemptRecord) -> None:
        self._outcomes[record.outcome] += 1
        if record.outcome != policy.DROPPED:
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
        # Successes of healthy webhooks take the one-round-trip path; a success that ends a
        # webhook's failing streak, and every other outcome, take the general one.
        delivered = [
            r for r in batch if r.outcome == policy.DELIVERED and r.delivery.failing_since is None
        ]
        others = [
            r
            for r in batch
            if r.outcome != policy.DELIVERED or r.delivery.failing_since is not None
        ]
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            now = self.runtime.clock.now()
            try:
                if delivered:
                    await self._records.record_delivered(
                        owner=self.owner, now=now, records=delivered
                    )
                    delivered = []
                if others:
                    async with self.runtime.db.transaction(priority=True) as conn:
                        await queue.record(conn, owner=self.owner, now=now, records=others)
                break
            except Exception:
                if attempt == RECORD_ATTEMPTS:
                    # Leases expire and the deliveries are sent again: at-least-once holds.
                    log.exception("recording %d delivery results failed; giving up", len(batch))
                    return
                log.warning(
                    "recording delivery results failed (try %d); retrying", attempt, exc_info=True
                )
                await asyncio.sleep(0.05 * attempt)  # back off from a deadlock or a blip
        retry_times = [r.next_attempt_at for r in batch if r.next_attempt_at is not None]
        if retry_times:
            delay = (min(retry_times) - self.runtime.clock.now()).total_seconds()
            self._wake_later(delay)

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
