"""The database handle: one async engine, write transactions, reads, and commit-time wake-ups.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` for writes, so concurrent writers queue on
the busy timeout instead of failing with "database is locked" halfway through a transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_

from hookline.store.listen import plain_postgres_url
from hookline.store.wakeups import PostgresNotifier, Wakeups

T = TypeVar("T")
log = logging.getLogger(__name__)

# Every SQLite connection: WAL (readers never block the writer), NORMAL sync (durable across a
# process crash; a power loss may lose the last commits), foreign keys enforced. auto_vacuum
# takes effect only on a new file, before its first table: retention then gives purged pages
# back with incremental vacuum (an older file keeps reusing them; ``hookline purge --vacuum``
# converts it).
SQLITE_PRAGMAS = (
    "auto_vacuum=INCREMENTAL",
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
)
# aiosqlite runs each connection on a thread; while the event loop's thread holds the GIL, such
# a thread that finished a statement waits up to the switch interval to go on: 5 ms by
# default, per statement, with the writer lock held. 1 ms keeps those waits short at the cost
# of a few more thread switches.
SQLITE_SWITCH_INTERVAL = 0.001

WAKE_KEY = "hookline_wake"


class Database:
    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        self.url = url
        self.schema = schema
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.pool_size = pool_size
        self.engine: AsyncEngine = _create_engine(url, schema, pool_size)
        self.wakeups = Wakeups(
            None
            if self.is_sqlite
            else PostgresNotifier(
                plain_postgres_url(url), self.notify_channel, _search_path(schema)
            )
        )
        self._writer: tuple[asyncio.AbstractEventLoop, _FifoLock] | None = None
        self._events: tuple[asyncio.AbstractEventLoop, Any] | None = None

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
        return topics

    def committed(self, topics: set[str]) -> None:
        """A transaction asking for ``topics`` committed: wake this process's listeners, and
        (PostgreSQL) other processes by a NOTIFY sent now (:mod:`hookline.store.wakeups`)."""
        self.wakeups.committed(topics)

    def writer_turn(self, priority: bool = False) -> Any:
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

    def event_writer(self) -> Any:
        """The fast path for standalone events (``POST /events``): SQLite's group commit
        (:class:`hookline.store.event_batch.SQLiteEventBatcher`) or PostgreSQL's one-statement
        writer (:class:`hookline.store.event_pg.PostgresEventWriter`)."""
        loop = asyncio.get_running_loop()
        if self._events is None or self._events[0] is not loop:
            writer: Any
            if self.is_sqlite:
                from sqlalchemy.engine import make_url

                from hookline.store.event_batch import SQLiteEventBatcher

                writer = SQLiteEventBatcher(self, make_url(self.url).database or "")
            else:
                from hookline.store.event_pg import PostgresEventWriter

                writer = PostgresEventWriter(self)
            self._events = (loop, writer)  # a writer from a finished loop is just dropped
        return self._events[1]

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
        writer = self.event_writer() if events else None
        if writer is not None:
            await writer.open()

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
        if self._events is not None:
            events, self._events = self._events, None
            if events[0] is asyncio.get_running_loop():
                await events[1].close()
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


async def sqlite_call(conn: AsyncConnection, statement: str, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` in ONE hand-off to aiosqlite's thread.

    Through SQLAlchemy every statement costs three or four hand-offs (cursor, execute, fetch,
    close), each waiting for the other thread to get the GIL; hot paths that run several
    statements use this instead, inside ``conn``'s transaction. ``statement`` names the SQL
    in a raised error, which has the same SQLAlchemy exception type as it would otherwise.
    """
    driver = (await conn.get_raw_connection()).driver_connection  # aiosqlite.Connection
    try:
        # The same private entry point SQLAlchemy's aiosqlite adapter uses for its hand-offs.
        return await driver._execute(fn, driver._conn, *args)
    except sqlite3.Error as error:
        raise DBAPIError.instance(statement, None, error, sqlite3.Error) from error


async def request_wake(conn: AsyncConnection, topic: str) -> None:
    """Ask for wake-ups on ``topic`` once the current transaction commits (never before).

    :meth:`Database.transaction` wakes this process's listeners after the commit and, on
    PostgreSQL, sends the NOTIFY then (not inside the transaction: see
    :mod:`hookline.store.wakeups`). No I/O here.
    """
    topics: set[str] | None = conn.info.get(WAKE_KEY)
    if topics is None:
        raise RuntimeError("request_wake() needs a Database.transaction() connection")
    topics.add(topic)


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
