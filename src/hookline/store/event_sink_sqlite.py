"""The event sink on SQLite (see :mod:`hookline.store.event_sink` for the contract).

SQLite has one writer at a time. Through the pool, one request's transaction takes three or
four hand-offs to a driver thread, each waiting for the event loop and the GIL, and the writer
lock is held across all of them: at a few hundred events a second the requests queue behind
one another for seconds. So standalone events (``accept``) are group-committed: every event
that arrived while the previous group was being written goes into ONE transaction, run
directly on the event loop's thread (:mod:`hookline.store.sqlite_inline`): the statements
take microseconds, far less than a hand-off would, and the lock is held only while they run.
The group is written set-based (:func:`hookline.store.outbox.write_sqlite_events`); if it
fails (an event naming a deleted account, say), each event is written again alone under a
savepoint, so one bad event fails alone. A batch (``accept_batch``) is one such transaction,
without the second chance: all or nothing.

Idempotency needs no race handling here: the keys are looked up inside the write
transaction, which holds SQLite's only write lock until it commits.

``emit`` writes in the caller's pooled (aiosqlite) transaction, every statement in one
hand-off to its thread.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.event_sink import (
    Check,
    EventRow,
    ExistingEvent,
    Written,
    as_repeat,
    plan_keys,
    settle,
)
from hookline.store.outbox import write_sqlite_events
from hookline.store.sqlite_inline import InlineSQLite, sqlite_call, translated
from hookline.store.wakeups import DELIVERIES, Wakeups, request_wake

WriterTurn = Callable[[], AbstractAsyncContextManager[None]]

_EXISTING = (
    "SELECT e.idempotency_key, e.id, e.payload, e.integration_id, "
    "(SELECT count(*) FROM deliveries d WHERE d.event_id = e.id) "
    "FROM events e WHERE e.account_id = ? AND e.idempotency_key IN "
    "(SELECT value FROM json_each(?))"
)


class SQLiteEventSink:
    def __init__(self, path: str, turn: WriterTurn, wakeups: Wakeups) -> None:
        self._turn = turn  # this process's writers take turns here first
        self._wakeups = wakeups
        self._sqlite = InlineSQLite(path)
        self._pending: list[tuple[EventRow, asyncio.Future[Written]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches_committed = 0  # transactions written (tests read it)

    async def emit(self, conn: AsyncConnection, row: EventRow) -> Written:
        (written,) = await sqlite_call(conn, "INSERT INTO events", write_events, [row])
        if written.delivery_ids:
            await request_wake(conn, DELIVERIES)
        return written

    async def accept(self, row: EventRow) -> Written:
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="hookline:events")
        return await future

    async def _write_pending(self) -> None:
        while self._pending:
            async with self._turn():
                group, self._pending = self._pending, []
                try:
                    results = await self._sqlite.transaction(_write_group, [r for r, _ in group])
                except Exception as error:  # the whole group failed: nothing was written
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    continue
            self._committed(results)
            settle([future for _, future in group], results)

    async def accept_batch(self, rows: Sequence[EventRow], check: Check) -> list[Written]:
        async with self._turn():
            results = await self._sqlite.transaction(_write_batch, rows, check)
        self._committed(results)
        return results

    def _committed(self, results: Sequence[Written | BaseException]) -> None:
        self.batches_committed += 1
        if any(isinstance(r, Written) and r.delivery_ids for r in results):
            self._wakeups.committed({DELIVERIES})

    async def open(self) -> None:
        """Nothing to open ahead: the file is opened by the first write."""

    async def close(self) -> None:
        self._sqlite.close()


def write_events(db: sqlite3.Connection, rows: Sequence[EventRow]) -> list[Written]:
    """Write ``rows`` in ``db``'s current write transaction: keys that exist (before, or
    earlier in ``rows``) answer their event; the other rows are stored and fanned out."""
    if len(rows) == 1 and rows[0].idempotency_key is None:  # emit's case: nothing to look up
        (ids,) = write_sqlite_events(db, rows)
        return [Written(ids)]
    plan = plan_keys(rows)
    existing = _existing(db, [rows[i] for i in plan.unique if _key(rows[i]) is not None])
    new = [i for i in plan.unique if _key(rows[i]) not in existing]
    results: dict[int, Written] = {}
    for index, ids in zip(new, write_sqlite_events(db, [rows[i] for i in new]), strict=True):
        results[index] = Written(delivery_ids=ids)
    for index in plan.unique:
        if index not in results:
            results[index] = Written(existing=existing[_key(rows[index])])
    for index, first in plan.repeats.items():
        results[index] = as_repeat(rows[first], results[first])
    return [results[i] for i in range(len(rows))]


def _key(row: EventRow) -> tuple[uuid.UUID, str] | None:
    return None if row.idempotency_key is None else (row.account_id, row.idempotency_key)


def _existing(
    db: sqlite3.Connection, rows: Sequence[EventRow]
) -> dict[tuple[uuid.UUID, str] | None, ExistingEvent]:
    """The events that the keys of ``rows`` already produced, by (account, key)."""
    keys: dict[uuid.UUID, list[str]] = {}
    for row in rows:
        keys.setdefault(row.account_id, []).append(row.idempotency_key or "")
    found: dict[tuple[uuid.UUID, str] | None, ExistingEvent] = {}
    for account_id, wanted in keys.items():
        for key, event_id, payload, integration_id, count in db.execute(
            _EXISTING, (account_id.hex, json.dumps(wanted))
        ):
            found[(account_id, key)] = ExistingEvent(
                uuid.UUID(hex=event_id), bytes(payload), integration_id, count
            )
    return found


def _write_batch(db: sqlite3.Connection, rows: Sequence[EventRow], check: Check) -> list[Written]:
    results = write_events(db, rows)
    check(results)
    return results


def _write_group(db: sqlite3.Connection, rows: list[EventRow]) -> list[Written | BaseException]:
    """A group of standalone events: all at once, or (when that fails) each on its own, so
    one bad event fails alone. A group of one needs no savepoint: its failure is the
    transaction's, rolled back whole."""
    if len(rows) == 1:
        return list(write_events(db, rows))
    db.execute("SAVEPOINT events")
    try:
        written: list[Written | BaseException] = list(write_events(db, rows))
    except sqlite3.Error:
        db.execute("ROLLBACK TO events")
        written = []
        for row in rows:
            db.execute("SAVEPOINT event")
            try:
                written.extend(write_events(db, [row]))
            except sqlite3.Error as error:
                db.execute("ROLLBACK TO event")
                written.append(translated(error))
            db.execute("RELEASE event")
    db.execute("RELEASE events")
    return written
