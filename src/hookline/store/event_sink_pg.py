"""The event sink on PostgreSQL (see :mod:`hookline.store.event_sink` for the contract).

Standalone events (``accept``, ``accept_batch``): through the pool such an event cost five
round trips (BEGIN, the webhook lookup, the fan-out, NOTIFY, COMMIT), each paid in
SQLAlchemy's greenlet machinery. Here the events, their deliveries and queue rows are one
autocommitted statement on a plain asyncpg pool
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
``emit`` (in the caller's transaction) runs the same statement and read-back through the
caller's SQLAlchemy connection, so it cannot lose a race on a key either.

A batch is one transaction (the statement, the read-back of replayed keys, a check by the
caller, then COMMIT): all or nothing.

Workers are woken after the commit (:mod:`hookline.store.wakeups`: in-process at once, other
processes by a coalesced NOTIFY).

The pool is opened whole at start-up (:meth:`PostgresEventSink.open`): grown on demand, its
first burst paid for connections under load, and that alone put hundreds of milliseconds on
the first events. Connections are not reset on release (asyncpg's default is one more round
trip per event): these statements leave no session state behind.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.errors import translated
from hookline.store.event_sink import (
    Check,
    EventRow,
    ExistingEvent,
    Written,
    as_repeat,
    plan_keys,
    settle,
)
from hookline.store.outbox import FAN_OUT_STATEMENTS, fan_out_postgresql
from hookline.store.wakeups import DELIVERIES, Wakeups, request_wake

SPARE_IDS = 16  # delivery ids a group carries beyond what its events needed last time
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


class _Runner(Protocol):
    """Where statements run: the asyncpg pool (autocommitted), an asyncpg connection in a
    transaction, or the caller's SQLAlchemy transaction (:class:`_InTransaction`)."""

    async def fetchrow(self, sql: str, *args: Any) -> Any: ...

    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...


class _InTransaction:
    """The caller's SQLAlchemy connection as a :class:`_Runner` (driver-level statements)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return (await self._conn.exec_driver_sql(sql, args)).one()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return list((await self._conn.exec_driver_sql(sql, args)).all())


async def _no_session_state(connection: asyncpg.Connection) -> None:
    """Release without a reset query: nothing here sets, listens or locks for the session
    (asyncpg still rolls back a transaction left open, which cannot happen here)."""


async def _plan_statements(connection: asyncpg.Connection) -> None:
    """Plan each statement once as the connection opens: a new server process loads the
    tables' catalog entries on its first plan (12 ms here when idle, several times that
    under load), which would otherwise land on the first events each connection carries."""
    for sql in _STATEMENTS:
        await connection.prepare(sql)


class PostgresEventSink:
    def __init__(self, dsn: str, server_settings: dict[str, str], wakeups: Wakeups) -> None:
        self._dsn = dsn
        self._settings = {"application_name": "hookline-events", **server_settings}
        self._wakeups = wakeups
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._pending: list[tuple[EventRow, asyncio.Future[Written]]] = []
        self._groups = 0  # group statements running
        self._tasks: set[asyncio.Task[None]] = set()
        self._spares = _SpareIds()
        self.batches_committed = 0  # statements that committed events (tests read it)

    async def emit(self, conn: AsyncConnection, row: EventRow) -> Written:
        (written,) = await _write(_InTransaction(conn), [row], self._spares)
        if written.delivery_ids:
            await request_wake(conn, DELIVERIES)
        return written

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

    async def accept(self, row: EventRow) -> Written:
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
        rows = [row for row, _ in group]
        results: list[Written | BaseException]
        try:
            pool = await self._get_pool()
        except Exception as error:  # the database is away: every request hears it
            pool, results = None, [error] * len(rows)
        if pool is not None:
            results = await self._write_or_each(pool, rows)
        self._committed(results)
        settle([future for _, future in group], results)

    async def _write_or_each(
        self, pool: asyncpg.Pool, rows: list[EventRow]
    ) -> list[Written | BaseException]:
        results: list[Written | BaseException]
        try:
            results = list(await _write(pool, rows, self._spares))
        except Exception as error:
            if len(rows) == 1:
                results = [_translated(error)]
            else:  # one event broke the statement: find out which, each on its own
                results = []
                for row in rows:
                    try:
                        results.extend(await _write(pool, [row], self._spares))
                    except Exception as single:
                        results.append(_translated(single))
        return results

    async def accept_batch(self, rows: Sequence[EventRow], check: Check) -> list[Written]:
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                results = await _write(conn, rows, self._spares)
                check(results)
        except asyncpg.PostgresError as error:
            raise _translated(error) from error
        self._committed(results)
        return results

    def _committed(self, results: Sequence[Written | BaseException]) -> None:
        if any(isinstance(r, Written) for r in results):
            self.batches_committed += 1
        if any(isinstance(r, Written) and r.delivery_ids for r in results):
            self._wakeups.committed({DELIVERIES})

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class _SpareIds:
    """How many delivery ids a statement carries: as many per event as the last statement
    needed, plus a margin (``SPARE_IDS`` for several events, 3 for one). Too few only costs
    a second run of the statement (it writes nothing and says how many it needs); each id
    carried costs encoding."""

    def __init__(self) -> None:
        self._per_event = 1.0

    def for_rows(self, count: int) -> int:
        return math.ceil(count * self._per_event) + (3 if count == 1 else SPARE_IDS)

    def saw(self, rows: int, deliveries: int) -> None:
        if rows:
            self._per_event = deliveries / rows


async def _write(runner: _Runner, rows: Sequence[EventRow], spares: _SpareIds) -> list[Written]:
    """One fan-out statement for ``rows`` on ``runner``, then the first events of the keys
    that existed."""
    plan = plan_keys(rows)
    unique = plan.unique
    if plan.keyed:
        # Keyed rows first, by key: concurrent statements lock the same keys in one order.
        unique.sort(key=lambda i: (rows[i].idempotency_key is None, _sort_key(rows[i])))
        ordered = [rows[i] for i in unique]
    else:  # no key: every row, in the order given
        ordered = list(rows)
    fanned = await fan_out_postgresql(runner.fetchrow, ordered, spares.for_rows(len(unique)))
    spares.saw(len(unique), sum(len(ids) for ids in fanned if ids is not None))
    if not plan.keyed and None not in fanned:  # no key: every row written, in order
        return [Written(ids or ()) for ids in fanned]
    results: dict[int, Written] = {}
    missing: list[int] = []
    for index, delivery_ids in zip(unique, fanned, strict=True):
        if delivery_ids is None:
            missing.append(index)
        else:
            results[index] = Written(delivery_ids=delivery_ids)
    if missing:
        found = await _existing(runner, [rows[i] for i in missing])
        for index in missing:
            row = rows[index]
            existing = found.get((row.account_id, row.idempotency_key or ""))
            if existing is None:  # the conflicting row vanished (account deleted): again
                results[index] = (await _write(runner, [row], spares))[0]
            else:
                results[index] = Written(existing=existing)
    for index, first in plan.repeats.items():
        results[index] = as_repeat(rows[first], results[first])
    return [results[i] for i in range(len(rows))]


async def _existing(runner: _Runner, rows: list[EventRow]) -> dict[_Key, ExistingEvent]:
    records = await runner.fetch(
        _EXISTING, [r.account_id for r in rows], [r.idempotency_key for r in rows]
    )
    return {
        (r[0], r[1]): ExistingEvent(r[2], bytes(r[3]), r[4], r[5])  # asyncpg UUIDs as they come
        for r in records
    }


def _sort_key(row: EventRow) -> tuple[bytes, str]:
    return (row.account_id.bytes, row.idempotency_key or "")


def _translated(error: Exception) -> Exception:
    """A driver error as the store raises it (:mod:`hookline.store.errors`)."""
    found = translated(error, "INSERT INTO events")
    if found is not error:
        found.__cause__ = error
    return found
