"""The database handle: one async engine, write transactions, reads, and commit-time wake-ups.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` for writes, so concurrent writers queue on
the busy timeout instead of failing with "database is locked" halfway through a transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

WAKE_KEY = "hookline_wake"
CHANNEL_KEY = "hookline_channel"


class Database:
    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        self.url = url
        self.schema = schema
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.engine: AsyncEngine = _create_engine(url, schema, pool_size)
        self._wake_listeners: list[Callable[[set[str]], None]] = []

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def notify_channel(self) -> str:
        """PostgreSQL channel name, scoped by schema so side-by-side installs don't cross-talk."""
        return f"hookline_{self.schema}" if self.schema else "hookline"

    def on_wake(self, listener: Callable[[set[str]], None]) -> None:
        """Run ``listener(topics)`` in-process after a transaction that asked to wake commits."""
        self._wake_listeners.append(listener)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on any exception."""
        async with self.engine.connect() as conn:
            topics: set[str] = set()
            conn.info[WAKE_KEY] = topics
            conn.info[CHANNEL_KEY] = self.notify_channel
            try:
                async with conn.begin():
                    yield conn
            finally:
                conn.info.pop(WAKE_KEY, None)
        if topics:
            for listener in self._wake_listeners:
                listener(topics)

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

    async def dispose(self) -> None:
        await self.engine.dispose()


async def request_wake(conn: AsyncConnection, topic: str) -> None:
    """Ask for wake-ups on ``topic`` once the current transaction commits (never before).

    In-process listeners are called by :meth:`Database.transaction`; other processes hear a
    PostgreSQL NOTIFY, which the server itself delivers only at commit.
    """
    topics: set[str] | None = conn.info.get(WAKE_KEY)
    if topics is None or topic in topics:
        if topics is None:
            raise RuntimeError("request_wake() needs a Database.transaction() connection")
        return
    topics.add(topic)
    if conn.dialect.name == "postgresql":
        channel = conn.info[CHANNEL_KEY]
        await conn.execute(text("SELECT pg_notify(:channel, :topic)"),
                           {"channel": channel, "topic": topic})


def _create_engine(url: str, schema: str | None, pool_size: int) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["server_settings"] = {"search_path": schema}
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False,
        connect_args=connect_args,
    )
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("hookline_read"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
