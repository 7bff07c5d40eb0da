"""Standalone events (``POST /events``) on PostgreSQL: one statement, one round trip.

Through the pool such an event cost five round trips (BEGIN, the webhook lookup, the
fan-out, NOTIFY, COMMIT), each paid in SQLAlchemy's greenlet machinery: at a few hundred
events a second the API process ran out of CPU and requests queued. Here the event, its
deliveries and queue rows are one autocommitted statement on a plain asyncpg pool, committed
durably like any event.

The NOTIFY that wakes workers is sent after that commit, by itself and coalesced (one in
flight at a time, plus one more if events committed meanwhile): inside the transaction it
would take PostgreSQL's notify lock at commit, which serialises the commits (and their WAL
flushes) of every notifying transaction. Sent after the commit, it still never arrives
before the rows are visible.

The pool is opened whole at start-up (:meth:`PostgresEventWriter.open`): grown on demand, its
first burst paid for connections under load, and that alone put hundreds of milliseconds on
the first events. Connections are not reset on release (asyncpg's default is one more round
trip per event): these statements leave no session state behind.

Delivery ids stay time-ordered (UUIDv7 from Python): a statement carries ``SPARE_IDS`` of
them, and the rare event matching more webhooks than that fails the statement on the
``NOT NULL`` id and goes through the general path instead (:class:`NeedsGeneralPath`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg

from hookline.ids import new_ids_for_driver
from hookline.store.db import Database
from hookline.store.event_batch import EventRow, ExistingEvent, Written
from hookline.store.listen import plain_postgres_url
from hookline.store.outbox import webhook_match_sql

log = logging.getLogger(__name__)

SPARE_IDS = 16
POOL_SIZE = 10


class NeedsGeneralPath(Exception):
    """The event matches more webhooks than one statement carries ids for."""


_EVENT = (
    "WITH e AS (INSERT INTO events (id, account_id, event_type, consumer_id, integration_id, "
    "payload, idempotency_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING id), "
    "w AS (SELECT id AS webhook_id, row_number() OVER (ORDER BY id) AS n FROM webhooks "
    "WHERE {match} AND EXISTS (SELECT 1 FROM e)), "
    "d AS (INSERT INTO deliveries (id, event_id, webhook_id, account_id, status, attempts, "
    "created_at, updated_at) SELECT ($9::uuid[])[w.n], $1, w.webhook_id, $2, 'pending', 0, "
    "$8, $8 FROM w RETURNING id, webhook_id), "
    "q AS (INSERT INTO delivery_queue (delivery_id, webhook_id, event_id, available_at, "
    "attempt) SELECT d.id, d.webhook_id, $1, $8, 0 FROM d RETURNING delivery_id) "
    "SELECT (SELECT count(*) FROM e) AS inserted, "
    "array(SELECT delivery_id FROM q ORDER BY delivery_id) AS ids"
)
_EXISTING = (
    "SELECT e.id, e.payload, e.integration_id, "
    "(SELECT count(*) FROM deliveries d WHERE d.event_id = e.id) "
    "FROM events e WHERE e.account_id = $1 AND e.idempotency_key = $2"
)


async def _no_session_state(connection: asyncpg.Connection) -> None:
    """Release without a reset query: nothing here sets, listens or locks for the session
    (asyncpg still rolls back a transaction left open, which cannot happen here)."""


def _event_sql(*, pos: bool, integration: str | None) -> str:
    match = webhook_match_sql(
        "postgresql", account="$2", event="$3", payload="$6", pos=pos, integration=integration
    )
    return _EVENT.format(match=match)


_EVENT_ANY_SOURCE = _event_sql(pos=False, integration=None)
_EVENT_POS_UNNAMED = _event_sql(pos=True, integration=None)
_EVENT_POS_NAMED = _event_sql(pos=True, integration="$10")
_STATEMENTS = (_EVENT_ANY_SOURCE, _EVENT_POS_UNNAMED, _EVENT_POS_NAMED, _EXISTING)


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
        self._notifier: asyncio.Task[None] | None = None
        self._notify_again = False

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
        """Store ``row`` and fan it out, committed when this returns."""
        if not row.pos:
            sql, extra = _EVENT_ANY_SOURCE, ()
        elif row.integration_id is None:
            sql, extra = _EVENT_POS_UNNAMED, ()
        else:
            sql, extra = _EVENT_POS_NAMED, (row.integration_id,)
        ids = new_ids_for_driver(SPARE_IDS)
        pool = await self._get_pool()
        try:
            record = await pool.fetchrow(
                sql,
                row.event_id,
                row.account_id,
                row.event,
                row.consumer_id,
                row.integration_id,
                row.payload,
                row.idempotency_key,
                row.now,
                ids,
                *extra,
            )
        except asyncpg.NotNullViolationError as error:
            raise NeedsGeneralPath(str(error)) from error
        if record["inserted"]:
            delivery_ids = tuple(uuid.UUID(bytes=i.bytes) for i in record["ids"])
            if delivery_ids:
                self._wake_workers()
            return Written(delivery_ids=delivery_ids)
        found = await pool.fetchrow(_EXISTING, row.account_id, row.idempotency_key)
        if found is None:  # the conflicting row vanished (its account was deleted): retry
            return await self.write(row)
        return Written(existing=ExistingEvent(found[0], bytes(found[1]), found[2], found[3]))

    def _wake_workers(self) -> None:
        self._db.committed({"deliveries"})  # this process's worker, at once
        if self._notifier is not None and not self._notifier.done():
            self._notify_again = True  # the running notifier sends one more when done
            return
        self._notifier = asyncio.create_task(self._notify(), name="hookline:notify")

    async def _notify(self) -> None:
        """Other processes' workers: NOTIFY until no event committed since the last one."""
        pool = await self._get_pool()
        while True:
            self._notify_again = False
            try:
                await pool.execute("SELECT pg_notify($1, 'deliveries')", self._db.notify_channel)
            except Exception:  # workers fall back to their poll; the next event notifies
                log.warning("NOTIFY after an event failed", exc_info=True)
                return
            if not self._notify_again:
                return

    async def close(self) -> None:
        if self._notifier is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._notifier, timeout=5)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
