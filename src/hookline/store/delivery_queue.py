"""The delivery queue as the worker sees it: one protocol, one implementation per backend,
chosen once by :func:`open_delivery_queue`.

The worker claims, records, renews and gives back through this and nothing else, so it never
asks which database it runs on. How each backend reaches the database, and why:

- **PostgreSQL**: the hot units (a claim, a batch of successes) go through a
  :mod:`~hookline.store.queue_link` link, one asyncpg connection running one statement in
  autocommit: one round trip each, no pool checkout, no ORM compilation. Everything rarer
  (other outcomes, lease renewal, give-backs, the heartbeat) takes an ordinary transaction on
  the shared SQLAlchemy pool, where the statements are built once and cached; other outcomes
  write their per-attempt rows over column arrays (``queue.POSTGRES_WRITES``). Workers in
  other processes are found by their heartbeat rows and woken by ``LISTEN``/``NOTIFY``.
- **SQLite**: the hot units run on the event loop's own thread inside ``BEGIN IMMEDIATE``
  (:mod:`~hookline.store.sqlite_inline`), after taking the in-process writer turn: no thread
  hand-off while the file's one writer lock is held. The rest goes through the pool like on
  PostgreSQL, other outcomes' rows as one ``executemany`` each (``queue.SQLITE_WRITES``).
  One process owns the file, so at start every lease found is stale and is released at once,
  and wake-ups never cross a process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import ClassVar, Protocol

from hookline.store import destinations as schedule
from hookline.store import queue
from hookline.store.db import Database
from hookline.store.queue import POSTGRES_WRITES, SQLITE_WRITES, AttemptRecord, NativeWrites
from hookline.store.queue_link import QueueLink, open_queue_link

#: Database files whose leases a worker of this process already released at start (SQLite).
_SQLITE_WORKERS: collections.Counter[str] = collections.Counter()


class DeliveryQueue(QueueLink, Protocol):
    """What a delivery worker needs from the queue: a link's hot units (``claim``,
    ``record_delivered``) and the rest. Every method may raise the driver's connection errors
    (the worker retries); none needs the caller to know the backend."""

    async def start(self, owner: str, now: datetime, dead_before: datetime) -> int:
        """Join the workers; release what dead workers left claimed. Returns how many."""
        ...

    async def beat(self, owner: str, now: datetime, dead_before: datetime) -> int:
        """Say this worker is alive; release the claims of workers that stopped saying so."""
        ...

    async def follow(self, wake: Callable[[str], None], stop: asyncio.Event) -> None:
        """Call ``wake`` whenever another process queues work, until ``stop`` is set."""
        ...

    async def record(self, *, owner: str, now: datetime, records: Sequence[AttemptRecord]) -> None:
        """Every other outcome: retries, failures, drops, a success ending a failing streak."""
        ...

    async def renew(
        self, *, owner: str, delivery_ids: Sequence[uuid.UUID], until: datetime
    ) -> int: ...

    async def give_back(
        self, *, owner: str, delivery_ids: Sequence[uuid.UUID], now: datetime
    ) -> None:
        """Return claimed deliveries unsent: lease released, the attempt not counted."""
        ...

    async def next_due(self) -> datetime | None: ...

    async def stop(self, owner: str) -> None:
        """Leave the workers and close the queue's own connections."""
        ...


class _SharedQueue:
    """What both backends do the same way: the rarer units on the shared pool, and two links
    for the hot ones (so a claim never waits behind a recording in flight). Each backend
    brings its own per-attempt statements (``_writes``)."""

    _writes: ClassVar[NativeWrites]

    def __init__(self, db: Database) -> None:
        self._db = db
        self._claims: QueueLink = open_queue_link(db)
        self._records: QueueLink = open_queue_link(db)
        # The hot units are the links' own methods: no extra coroutine per call.
        self.claim = self._claims.claim
        self.record_delivered = self._records.record_delivered

    async def record(self, *, owner: str, now: datetime, records: Sequence[AttemptRecord]) -> None:
        async with self._db.transaction(priority=True) as conn:
            await queue.record(conn, self._writes, owner=owner, now=now, records=records)

    async def renew(self, *, owner: str, delivery_ids: Sequence[uuid.UUID], until: datetime) -> int:
        async with self._db.transaction(priority=True) as conn:
            return await queue.renew_leases(
                conn, owner=owner, delivery_ids=delivery_ids, until=until
            )

    async def give_back(
        self, *, owner: str, delivery_ids: Sequence[uuid.UUID], now: datetime
    ) -> None:
        async with self._db.transaction(priority=True) as conn:
            await schedule.give_back(conn, owner=owner, delivery_ids=delivery_ids, now=now)

    async def next_due(self) -> datetime | None:
        async with self._db.read() as conn:
            return await queue.next_due(conn)

    async def close(self) -> None:
        """Close the queue's own connections (a lost one has nothing to release)."""
        for link in (self._claims, self._records):
            with contextlib.suppress(Exception):
                await link.close()


class PostgresDeliveryQueue(_SharedQueue):
    """Several worker processes: heartbeats, takeover of dead workers' claims, NOTIFY."""

    _writes = POSTGRES_WRITES

    async def start(self, owner: str, now: datetime, dead_before: datetime) -> int:
        return await self.beat(owner, now, dead_before)

    async def beat(self, owner: str, now: datetime, dead_before: datetime) -> int:
        async with self._db.transaction(priority=True) as conn:
            await schedule.heartbeat(conn, owner, now)
            return await schedule.take_over_dead(conn, now=now, dead_before=dead_before)

    async def follow(self, wake: Callable[[str], None], stop: asyncio.Event) -> None:
        from hookline.store.listen import listen

        db = self._db  # this process's own commits woke the worker in-process already
        await listen(db.url, db.notify_channel, wake, stop, ignore=db.wakeups.sent_here)

    async def stop(self, owner: str) -> None:
        try:
            async with self._db.transaction(priority=True) as conn:
                await schedule.unregister(conn, owner)
        finally:
            await self.close()


class SQLiteDeliveryQueue(_SharedQueue):
    """One process owns the file: every lease found by its first worker is stale."""

    _writes = SQLITE_WRITES

    _joined = False

    async def start(self, owner: str, now: datetime, dead_before: datetime) -> int:
        _SQLITE_WORKERS[self._db.url] += 1
        self._joined = True
        if _SQLITE_WORKERS[self._db.url] > 1:  # another worker of this process runs already
            return 0
        async with self._db.transaction(priority=True) as conn:
            return await schedule.release_all_leases(conn, now)

    async def beat(self, owner: str, now: datetime, dead_before: datetime) -> int:
        return 0  # no other process to watch

    async def follow(self, wake: Callable[[str], None], stop: asyncio.Event) -> None:
        return None  # commits in this process wake the worker directly (Database.on_wake)

    async def stop(self, owner: str) -> None:
        if self._joined:
            _SQLITE_WORKERS[self._db.url] -= 1
            self._joined = False
        await self.close()


def open_delivery_queue(db: Database) -> DeliveryQueue:
    """The queue implementation for ``db``'s backend: the one place that chooses."""
    if db.is_sqlite:
        return SQLiteDeliveryQueue(db)
    return PostgresDeliveryQueue(db)
