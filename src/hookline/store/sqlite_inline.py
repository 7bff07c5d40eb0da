"""SQLite at driver level: transactions on the event loop's own thread for the hot write
paths, one-hop calls on aiosqlite's thread inside a pooled transaction, and the pragmas of
every connection.

A hand-off to a driver thread costs more than the statements of a batch: the result waits
for the event loop's next turn and, while the loop's thread holds the GIL, every statement
in the driver thread waits for it too, with the writer lock held all along. The hot paths
(the delivery worker's claims and results, ``POST /events`` bursts) therefore run their few
set-based statements here, directly, for a millisecond or two at a time.

Two things could block the loop for longer, and neither happens here: waiting for another
process's write lock (the busy timeout is zero; a busy database is retried after a short
asynchronous sleep) and the WAL checkpoint, which fsyncs (automatic checkpoints are off on
this connection; a passive one runs on a thread every ``CHECKPOINT_EVERY`` transactions).
Writers of this process still take turns on :meth:`Database.writer_turn` first.

Errors come out translated (:mod:`hookline.store.errors`): constraint violations as
hookline's exceptions, other sqlite3 errors as the SQLAlchemy ones the pool would raise.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.errors import translated as translated_error

T = TypeVar("T")

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

BUSY_RETRY_SECONDS = 30.0
CHECKPOINT_EVERY = 200  # transactions


class InlineSQLite:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._transactions = 0

    async def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` between ``BEGIN IMMEDIATE`` and ``COMMIT``; errors come
        translated (see the module's docstring)."""
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while True:
            try:
                result = self._run(fn, args)
                break
            except sqlite3.OperationalError as error:  # another process holds the lock
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise translated(error) from error
                await asyncio.sleep(0.005)
            except sqlite3.Error as error:
                raise translated(error) from error
        self._transactions += 1
        if self._transactions % CHECKPOINT_EVERY == 0:
            await asyncio.to_thread(_checkpoint, self._path)
        return result

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = _connect(self._path)
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db, *args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def translated(error: sqlite3.Error) -> Exception:
    """What the store raises for ``error`` (see the module's docstring)."""
    return translated_error(error, "(inline SQLite transaction)")


async def sqlite_call(conn: AsyncConnection, statement: str, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` in ONE hand-off to aiosqlite's thread.

    Through SQLAlchemy every statement costs three or four hand-offs (cursor, execute, fetch,
    close), each waiting for the other thread to get the GIL; hot paths that run several
    statements use this instead, inside ``conn``'s transaction. ``statement`` names the SQL
    in a raised error, translated as the pool's would be.
    """
    driver = (await conn.get_raw_connection()).driver_connection  # aiosqlite.Connection
    assert driver is not None
    try:
        # The same private entry point SQLAlchemy's aiosqlite adapter uses for its hand-offs.
        result: T = await driver._execute(fn, driver._conn, *args)
    except sqlite3.Error as error:
        raise translated_error(error, statement) from error
    return result


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    for pragma in (*SQLITE_PRAGMAS, "busy_timeout=0", "wal_autocheckpoint=0"):
        db.execute(f"PRAGMA {pragma}")
    return db


def _checkpoint(path: str) -> None:
    db = sqlite3.connect(path, timeout=1)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db.close()
