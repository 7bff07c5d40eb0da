"""Standalone events (``POST /events`` and ``POST /events/batch``) on PostgreSQL: group
commit, one statement per group.

Through the pool such an event cost five round trips (BEGIN, the webhook lookup, the
fan-out, NOTIFY, COMMIT), each paid in SQLAlchemy's greenlet machinery. Here the events,
their deliveries and queue rows are one autocommitted statement on a plain asyncpg pool
(:func:`hookline.store.outbox.fan_out_postgresql`, over column arrays), and the single
events that arrive together share it: a request is answered only after the statement that
carries its event committed. Up to ``GROUPS_IN_FLIGHT`` statements run at once, so a lone
event never waits for another group's commit, and under load each statement carries every
event that arrived meanwhile. A statement that fails (a deleted account, say) is run again
event by event, so each request gets its own answer.

Idempotency: an event whose key exists inserts nothing (``ON CONFLICT DO NOTHING``, which
waits for a concurrent transaction holding that key and sees its outcome), and its first
event is read back. Rows are sorted by key before they are written, so two statements
inserting the same keys take their locks in the same order and cannot deadlock. A key that
appears twice in one group or batch is written once; the second answers the first's event.

A batch is one transaction (the statement, the read-back of replayed keys, a check by the
caller, then COMMIT): all or nothing.

The NOTIFY that wakes workers is sent after that commit, by itself and coalesced (one in
flight at a time, plus one more if events committed meanwhile): inside the transaction it
would take PostgreSQL's notify lock at commit, which serialises the commits (and their WAL
flushes) of every notifying transaction. Sent after the commit, it still never arrives
before the rows are visible.

The pool is opened whole at start-up (:meth:`PostgresEventWriter.open`): grown on demand, its
first burst paid for connections under load, and that alone put hundreds of milliseconds on
the first events. Connections are not reset on release (asyncpg's default is one more round
trip per event): these statements leave no session state behind.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from hookline.store.db import Database
from hookline.store.event_batch import EventRow, ExistingEvent, Written
from hookline.store.listen import plain_postgres_url
from hookline.store.outbox import FAN_OUT_STATEMENTS, fan_out_postgresql

log = logging.getLogger(__name__)

SPARE_IDS = 16  # delivery ids a single event carries on its first try
POOL_SIZE = 10
GROUPS_IN_FLIGHT = 4  # group statements running at once (each holds one pooled connection)
GROUP_MAX = 1000  # events per group statement

_EXISTING = (
    "SELECT e.account_id, e.idempotency_key, e.id, e.payload, e.integration_id, "
    "(SELECT count(*) FROM deliveries d WHERE d.event_id = e.id) "
    "FROM events e JOIN unnest($1::uuid[], $2::text[]) AS k(account_id, idempotency_key) "
    "ON e.account_id = k.account_id AND e.idempotency_key = k.idempotency_key"
)
_STATEMENTS = (*FAN_OUT_STATEMENTS, _EXISTING)

_Key = tuple[uuid.UUID, str]


async def _no_session_state(connection: asyncpg.Connection) -> None:
    """Release without a reset query: nothing here sets, listens or locks for the session
    (asyncpg still rolls back a transaction left open, which cannot happen here)."""


async def _plan_statements(connection: asyncpg.Connection) -> None:
    """Plan each statement once as the connection opens: a new server process loads the
    tables' catalog entries on its first plan (12 ms here when idle, several times that
    under load), which would otherwise land on the first events each connection carries."""
    for sql in _STATEMENTS:
        await connection.prepare(sql)


class PostgresEventWriter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._dsn = plain_postgres_url(db.url)
        self._settings = {"application_name": "hookline-events"}
        if db.schema:
            self._settings["search_path"] = db.schema
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._pending: list[tuple[EventRow, asyncio.Future[Written]]] = []
        self._groups = 0  # group statements running
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_committed = 0  # statements that committed events (tests read it)

    async def open(self) -> None:
        """Connect the whole pool now rather than during the first burst of events."""
        await self._get_pool()

    @property
    def connections(self) -> int:
        """Connections the pool holds (open or being opened)."""
        return 0 if self._pool is None else self._pool.get_size()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=POOL_SIZE,
                        max_size=POOL_SIZE,
                        timeout=10,
                        server_settings=self._settings,
                        init=_plan_statements,
                        reset=_no_session_state,
                    )
        return self._pool

    async def write(self, row: EventRow) -> Written:
        """Store ``row`` and fan it out, committed when this returns (group commit)."""
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._groups < GROUPS_IN_FLIGHT:
            self._groups += 1
            task = asyncio.create_task(self._write_groups(), name="hookline:events")
            self._tasks.add(task)  # a reference, so the loop cannot drop a running group
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _write_groups(self) -> None:
        try:
            while self._pending:
                group = self._pending[:GROUP_MAX]
                del self._pending[:GROUP_MAX]
                await self._write_group(group)
        finally:
            self._groups -= 1

    async def _write_group(self, group: list[tuple[EventRow, asyncio.Future[Written]]]) -> None:
        pool = await self._get_pool()
        rows = [row for row, _ in group]
        try:
            results: list[Written | BaseException] = list(await self._write(pool, rows))
        except Exception as error:
            if len(group) == 1:
                results = [error]
            else:  # one event broke the statement: find out which, each on its own
                results = []
                for row in rows:
                    try:
                        results.extend(await self._write(pool, [row]))
                    except Exception as single:
                        results.append(single)
        for (_, future), result in zip(group, results, strict=True):
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
        every result before the commit and raises to roll the whole batch back."""
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            results = await self._write(conn, rows, wake=False)
            check(results)
        self._count_and_wake(results)
        return results

    async def _write(
        self, runner: Any, rows: Sequence[EventRow], *, wake: bool = True
    ) -> list[Written]:
        """One fan-out statement for ``rows`` on ``runner`` (the pool: autocommitted; or a
        connection in a transaction), then the first events of keys that existed."""
        first: dict[_Key, int] = {}  # a key's first row in this call
        repeats: dict[int, int] = {}  # row index -> index of the row with the same key
        unique: list[int] = []
        for index, row in enumerate(rows):
            if row.idempotency_key is None:
                unique.append(index)
                continue
            key = (row.account_id, row.idempotency_key)
            if key in first:
                repeats[index] = first[key]
            else:
                first[key] = index
                unique.append(index)
        # Keyed rows first, by key: concurrent statements lock the same keys in one order.
        unique.sort(key=lambda i: (rows[i].idempotency_key is None, _sort_key(rows[i])))
        fanned = await fan_out_postgresql(
            runner.fetchrow, [rows[i] for i in unique], SPARE_IDS if len(unique) == 1 else 0
        )
        results: dict[int, Written] = {}
        missing: list[int] = []
        for index, delivery_ids in zip(unique, fanned, strict=True):
            if delivery_ids is None:
                missing.append(index)
            else:
                results[index] = Written(delivery_ids=delivery_ids)
        if missing:
            found = await self._existing(runner, [rows[i] for i in missing])
            for index in missing:
                row = rows[index]
                existing = found.get((row.account_id, row.idempotency_key or ""))
                if existing is None:  # the conflicting row vanished (account deleted): again
                    results[index] = (await self._write(runner, [row], wake=False))[0]
                else:
                    results[index] = Written(existing=existing)
        for index, original in repeats.items():
            results[index] = _as_repeat(rows[original], results[original])
        ordered = [results[i] for i in range(len(rows))]
        if wake:
            self._count_and_wake(ordered)
        return ordered

    async def _existing(self, runner: Any, rows: list[EventRow]) -> dict[_Key, ExistingEvent]:
        records = await runner.fetch(
            _EXISTING, [r.account_id for r in rows], [r.idempotency_key for r in rows]
        )
        return {
            (_as_uuid(r[0]), r[1]): ExistingEvent(_as_uuid(r[2]), bytes(r[3]), r[4], r[5])
            for r in records
        }

    def _count_and_wake(self, results: list[Written]) -> None:
        self.batches_committed += 1
        if any(r.delivery_ids for r in results):
            self._wake_workers()

    def _wake_workers(self) -> None:
        self._db.committed({"deliveries"})  # this process's worker, and a NOTIFY after it

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def _sort_key(row: EventRow) -> tuple[bytes, str]:
    return (row.account_id.bytes, row.idempotency_key or "")


def _as_repeat(first: EventRow, result: Written) -> Written:
    """What a second row with the same key as ``first`` (in one call) answers."""
    if result.existing is not None:
        return result
    return Written(
        existing=ExistingEvent(
            first.event_id, first.payload, first.integration_id, len(result.delivery_ids)
        )
    )


def _as_uuid(value: Any) -> uuid.UUID:
    return value if type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)
