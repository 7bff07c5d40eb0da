"""Group commit for events that are their own state change (``POST /events``) on SQLite.

SQLite has one writer at a time. Through the pool, one request's transaction takes three or
four hand-offs to a driver thread, each waiting for the event loop and the GIL, and the writer
lock is held across all of them: at a few hundred events a second the requests queue behind
one another for seconds. Here every event that arrived while the previous batch was being
written goes into ONE transaction (a savepoint each, so one bad event fails alone), run
directly on the event loop's thread (:mod:`hookline.store.sqlite_inline`): the statements
take microseconds, far less than a hand-off would, and the lock is held only while they run.
A batch (``POST /events/batch``) is one such transaction too, without savepoints: all or
nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Sequence

from hookline.store.db import Database
from hookline.store.outbox import EventRow, ExistingEvent, Written, sqlite_time, write_sqlite_rows
from hookline.store.sqlite_inline import InlineSQLite, translated

__all__ = ["EventRow", "ExistingEvent", "SQLiteEventBatcher", "Written"]


class SQLiteEventBatcher:
    def __init__(self, db: Database, path: str) -> None:
        self._db = db
        self._sqlite = InlineSQLite(path)
        self._pending: list[tuple[EventRow, asyncio.Future[Written]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches_committed = 0  # transactions written (tests read it)

    async def write(self, row: EventRow) -> Written:
        """Store ``row`` and fan it out; returns once its transaction has committed."""
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="hookline:events")
        return await future

    async def _write_pending(self) -> None:
        while self._pending:
            async with self._db.writer_turn():
                batch, self._pending = self._pending, []
                try:
                    results = await self._sqlite.transaction(_write_all, [row for row, _ in batch])
                except Exception as error:  # the whole batch failed: nothing was written
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
            self.batches_committed += 1
            if any(isinstance(r, Written) and r.delivery_ids for r in results):
                self._db.committed({"deliveries"})
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def write_batch(
        self, rows: Sequence[EventRow], check: Callable[[list[Written]], None]
    ) -> list[Written]:
        """Store and fan out all ``rows`` in ONE transaction, all or nothing: ``check`` sees
        every result before the commit and raises to roll the whole batch back. A key seen
        earlier (before, or in this batch) answers its first event (``existing``)."""
        async with self._db.writer_turn():
            results = await self._sqlite.transaction(_write_batch, rows, check)
        self.batches_committed += 1
        if any(r.delivery_ids for r in results):
            self._db.committed({"deliveries"})
        return results

    async def close(self) -> None:
        self._sqlite.close()


def _write_batch(
    db: sqlite3.Connection, rows: Sequence[EventRow], check: Callable[[list[Written]], None]
) -> list[Written]:
    results = [_write_one(db, row) for row in rows]
    check(results)
    return results


def _write_all(db: sqlite3.Connection, rows: list[EventRow]) -> list[Written | BaseException]:
    results: list[Written | BaseException] = []
    for row in rows:
        db.execute("SAVEPOINT event")
        try:
            results.append(_write_one(db, row))
        except sqlite3.Error as error:
            db.execute("ROLLBACK TO event")
            results.append(translated(error))
        db.execute("RELEASE event")
    return results


def _write_one(db: sqlite3.Connection, row: EventRow) -> Written:
    account = row.account_id.hex
    if row.idempotency_key is not None:
        found = db.execute(
            "SELECT id, payload, integration_id FROM events "
            "WHERE account_id = ? AND idempotency_key = ?",
            (account, row.idempotency_key),
        ).fetchone()
        if found is not None:
            (count,) = db.execute(
                "SELECT count(*) FROM deliveries WHERE event_id = ?", (found[0],)
            ).fetchone()
            return Written(
                existing=ExistingEvent(uuid.UUID(hex=found[0]), bytes(found[1]), found[2], count)
            )
    ids = write_sqlite_rows(
        db,
        (
            row.event_id.hex,
            account,
            row.event,
            row.consumer_id.hex if row.consumer_id else None,
            row.integration_id,
            row.payload,
            row.idempotency_key,
            sqlite_time(row.now),
            row.traceparent,
        ),
        row.pos,
    )
    return Written(delivery_ids=ids)
