"""The database handle: one async engine, write transactions, reads, commit-time wake-ups,
and the one place a backend's event sink is chosen (:meth:`Database.event_sink`).

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` for writes, so concurrent writers queue on
the busy timeout instead of failing with "database is locked" halfway through a transaction.
Constraint errors of every statement run through the engine come out as hookline's own
exceptions (:mod:`hookline.store.errors`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_

from hookline.store.errors import translate_engine_errors
from hookline.store.event_sink import SINK_KEY, EventSink
from hookline.store.event_sink_pg import PostgresEventSink
from hookline.store.event_sink_sqlite import SQLiteEventSink
from hookline.store.listen import plain_postgres_url
from hookline.store.sqlite_inline import SQLITE_PRAGMAS, sqlite_call
from hookline.store.wakeups import WAKE_KEY, PostgresNotifier, Wakeups, request_wake

__all__ = ["SQLITE_PRAGMAS", "Database", "request_wake", "sqlite_call"]

log = logging.getLogger(__name__)

# aiosqlite runs each connection on a thread; while the event loop's thread holds the GIL, such
# a thread that finished a statement waits up to the switch interval to go on: 5 ms by
# default, per statement, with the writer lock held. 1 ms keeps those waits short at the cost
# of a few more thread switches.
SQLITE_SWITCH_INTERVAL = 0.001


class Database:
    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        self.url = url
        self.schema = schema
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.pool_size = pool_size
        self.engine: AsyncEngine = _create_engine(url, schema, pool_size)
        translate_engine_errors(self.engine)
        self._writer: tuple[asyncio.AbstractEventLoop, _FifoLock] | None = None
        # The one place a backend is chosen for the event sink and the wake-ups.
        self._new_sink: Callable[[], EventSink]
        if self.is_sqlite:
            self.wakeups = Wakeups()
            path = make_url(url).database or ""
            self._new_sink = lambda: SQLiteEventSink(path, self.writer_turn, self.wakeups)
        else:
            dsn = plain_postgres_url(url)
            self.wakeups = Wakeups(PostgresNotifier(dsn, self.notify_channel, _search_path(schema)))
            self._new_sink = lambda: PostgresEventSink(dsn, _search_path(schema), self.wakeups)
        self._sink: tuple[asyncio.AbstractEventLoop, EventSink] | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def notify_channel(self) -> str:
        """PostgreSQL channel name, scoped by schema so side-by-side installs don't cross-talk."""
        return f"hookline_{self.schema}" if self.schema else "hookline"

    def on_wake(self, listener: Callable[[set[str]], None]) -> None:
        """Run ``listener(topics)`` in-process after a transaction that asked to wake commits."""
        self.wakeups.on_wake(listener)

    @asynccontextmanager
    async def transaction(self, *, priority: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on any exception.

        ``priority`` (SQLite only) lets the delivery worker's short batch transactions go
        before queued API writes, so a burst of events cannot starve the sending of them.
        """
        turn = self.writer_turn(priority)
        await turn.__aenter__()
        held = True
        try:
            async with self.engine.connect() as conn:
                topics = self._collect_wakes(conn)
                try:
                    async with conn.begin():
                        yield conn
                finally:
                    conn.info.pop(WAKE_KEY, None)
                    conn.info.pop(SINK_KEY, None)
                    # Committed or rolled back: the next writer may start while this
                    # connection is reset and returned to the pool (one more SQLite hop).
                    held = False
                    await turn.__aexit__(None, None, None)
        finally:
            if held:
                await turn.__aexit__(None, None, None)
        if topics:
            self.committed(topics)

    def _collect_wakes(self, conn: AsyncConnection) -> set[str]:
        """Let :func:`request_wake` run in ``conn``'s transaction: the topics it asks for
        gather in the returned set (sent on only after a commit)."""
        topics: set[str] = set()
        conn.info[WAKE_KEY] = topics
        conn.info[SINK_KEY] = self.event_sink()  # where emit() in this transaction writes
        return topics

    def committed(self, topics: set[str]) -> None:
        """A transaction asking for ``topics`` committed: wake this process's listeners, and
        (PostgreSQL) other processes by a NOTIFY sent now (:mod:`hookline.store.wakeups`)."""
        self.wakeups.committed(topics)

    def writer_turn(self, priority: bool = False) -> AbstractAsyncContextManager[None]:
        """SQLite: writers of this process queue here, not on the file lock.

        SQLite's busy handler waits in sleeps of up to 100 ms, so two in-process writers
        colliding on the lock (API requests and the delivery worker) would add that much
        latency; an asyncio lock hands the turn over at once. PostgreSQL needs no turn.
        """
        if not self.is_sqlite:
            return nullcontext()
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer[0] is not loop:
            self._writer = (loop, _FifoLock())
        return self._writer[1].turn(priority)

    def event_sink(self) -> EventSink:
        """Where events go in (:mod:`hookline.store.event_sink`): this backend's sink, one
        per event loop (it keeps loop-bound connections and queues)."""
        loop = asyncio.get_running_loop()
        if self._sink is None or self._sink[0] is not loop:
            self._sink = (loop, self._new_sink())  # a sink from a finished loop is dropped
        return self._sink[1]

    async def connect_ahead(
        self,
        *,
        events: bool = False,
        warm: Callable[[AsyncConnection], Awaitable[object]] | None = None,
    ) -> None:
        """Open PostgreSQL's pooled connections before traffic comes (``events``: the
        ``POST /events`` writer's too). Opened on demand, each new connection costs a few
        milliseconds of round trips, and during a burst every request queued behind them:
        hundreds of milliseconds on the first events after a start. SQLite has nothing to
        open ahead.

        ``warm`` runs on each connection in a transaction that is always rolled back: the
        first run of a statement on a new server process plans it while loading the
        catalog (several milliseconds, more under load), so a start-up rehearsal of the hot
        path keeps that cost out of the first real burst.
        """
        if self.is_sqlite:
            return
        async with AsyncExitStack() as held:  # held at once: distinct connections
            for _ in range(self.pool_size):
                conn = await held.enter_async_context(self.engine.connect())
                if warm is not None:
                    await self._rehearse(conn, warm)
        if events:
            await self.event_sink().open()

    async def _rehearse(
        self, conn: AsyncConnection, warm: Callable[[AsyncConnection], Awaitable[object]]
    ) -> None:
        """Run ``warm`` as :meth:`transaction` would run it, then roll everything back (its
        wake-up requests included: nothing was committed)."""
        self._collect_wakes(conn)
        rehearsal = await conn.begin()
        try:
            await warm(conn)
        except Exception:  # only a rehearsal: the real path reports its own errors
            log.warning("warming a pooled connection failed", exc_info=True)
        finally:
            await rehearsal.rollback()
            conn.info.pop(WAKE_KEY, None)
            conn.info.pop(SINK_KEY, None)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work (a deferred transaction on SQLite: takes no write lock)."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(hookline_read=True)
            try:
                yield conn
            finally:
                await conn.rollback()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def readiness(self) -> tuple[int, dict[str, str]]:
        """A readiness probe's status code and body: 503 while the database is unreachable
        (the API's ``/readyz`` and a worker's answer alike)."""
        try:
            await self.ping()
        except Exception as error:  # any failure to reach the database means "not ready"
            return 503, {"status": "unavailable", "detail": type(error).__name__}
        return 200, {"status": "ok", "database": self.dialect}

    async def dispose(self) -> None:
        if self._sink is not None:
            sink, self._sink = self._sink, None
            if sink[0] is asyncio.get_running_loop():
                await sink[1].close()
        await self.wakeups.close()
        await self.engine.dispose()


class _FifoLock:
    """A first-come-first-served async lock with a priority lane; acquire is O(1).

    ``asyncio.Lock.acquire`` scans every waiter; under a burst of writes (hundreds of API
    requests waiting for SQLite) that scan alone would eat the CPU the writes need.
    """

    __slots__ = ("_held", "_urgent", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._urgent: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def turn(self, priority: bool) -> AsyncIterator[None]:
        await self._acquire(self._urgent if priority else self._waiters)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, lane: deque[asyncio.Future[None]]) -> None:
        if not self._held and not self._waiters and not self._urgent:
            self._held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        lane.append(waiter)
        try:
            await waiter  # the holder handed the lock straight to us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            else:
                lane.remove(waiter)
            raise

    def _release(self) -> None:
        for lane in (self._urgent, self._waiters):
            while lane:
                waiter = lane.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # stays held: ownership passes to the waiter
                    return
        self._held = False


def _create_engine(url: str, schema: str | None, pool_size: int) -> AsyncEngine:
    if url.startswith("sqlite"):
        if sys.getswitchinterval() > SQLITE_SWITCH_INTERVAL:
            sys.setswitchinterval(SQLITE_SWITCH_INTERVAL)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["server_settings"] = _search_path(schema)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        connect_args=connect_args,
    )
    return engine


def _search_path(schema: str | None) -> dict[str, str]:
    return {"search_path": schema} if schema else {}


def _execute_no_result(db: sqlite3.Connection, statement: str) -> None:
    db.execute(statement).close()  # runs in aiosqlite's thread; the cursor stays there


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in (*SQLITE_PRAGMAS, "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        statement = (
            "BEGIN" if conn.get_execution_options().get("hookline_read") else ("BEGIN IMMEDIATE")
        )
        # One hand-off to aiosqlite's thread instead of three (cursor, execute, close) through
        # exec_driver_sql: it happens once per transaction, and write transactions queue.
        driver = conn.connection.driver_connection  # aiosqlite.Connection
        try:
            await_(driver._execute(_execute_no_result, driver._conn, statement))
        except sqlite3.Error as error:  # the same exception types as through SQLAlchemy
            raise DBAPIError.instance(statement, None, error, sqlite3.Error) from error
