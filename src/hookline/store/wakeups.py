"""Wake-ups after a commit: this process's listeners at once, other processes by a
PostgreSQL ``NOTIFY`` sent after the commit, by itself and coalesced.

Why not ``NOTIFY`` inside the emitting transaction (as until 2026-12): a transaction that
notified takes PostgreSQL's notify lock at commit and holds it across its WAL flush, so
every notifying commit waits for the previous one's fsync, and each cost one more round
trip. Under load the general emit path queued behind that lock (the in-process emit
benchmark at 500 events/s: commits took seconds). Sent after the commit, a notification
still never arrives before the rows are visible; the price is that a process dying between
its commit and the ``NOTIFY`` leaves other processes' workers to find the rows on their
next poll (``HOOKLINE_DELIVERY_POLL_SECONDS``), which they do anyway after a lost
``LISTEN`` connection.

One ``NOTIFY`` is in flight at a time, on one connection of its own; topics asked for
meanwhile go in the next one, so a burst of commits costs a few notifications, not one
each. This process's own ``LISTEN`` connections hear those notifications too, after its
listeners were already woken in-process: they recognise them by the sending backend's pid
(:meth:`Wakeups.sent_here`) and drop them, so a commit wakes a worker once, not twice (the
echo cost a futile claim per commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

WakeListener = Callable[[set[str]], None]
WAKE_KEY = "hookline_wake"  # conn.info: the topics a transaction asked to wake at commit
DELIVERIES = "deliveries"  # the topic of new due deliveries: the workers'


async def request_wake(conn: AsyncConnection, topic: str) -> None:
    """Ask for wake-ups on ``topic`` once the current transaction commits (never before).

    :meth:`hookline.store.db.Database.transaction` wakes this process's listeners after the
    commit and, on PostgreSQL, has the NOTIFY sent then (see this module's docstring). No I/O
    here.
    """
    topics: set[str] | None = conn.info.get(WAKE_KEY)
    if topics is None:
        raise RuntimeError("request_wake() needs a Database.transaction() connection")
    topics.add(topic)


class PostgresNotifier:
    """``NOTIFY channel, topic`` for the topics :meth:`send` is given, after the fact."""

    def __init__(self, dsn: str, channel: str, server_settings: dict[str, str]) -> None:
        self._dsn = dsn
        self._channel = channel
        # pg_notify() gives its transaction an id, so each NOTIFY's commit would wait for a
        # WAL flush: nothing here needs that (a notification lost in a crash is made up for
        # by the listeners' poll), and the flush would delay the next NOTIFY.
        self._settings = {**server_settings, "synchronous_commit": "off"}
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncpg.Connection | None = None

    def send(self, topics: set[str]) -> None:
        """Notify ``topics`` soon (this call does no I/O)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop: what belonged to the old one is dropped
            self._loop, self._conn, self._task = loop, None, None
        self._pending |= topics
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="hookline:notify")

    def sent_by(self, pid: int) -> bool:
        """Whether ``pid`` is the server process of this notifier's live connection."""
        conn = self._conn
        return conn is not None and not conn.is_closed() and conn.get_server_pid() == pid

    async def _run(self) -> None:
        while self._pending:
            topics, self._pending = self._pending, set()
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(
                        self._dsn, timeout=10, server_settings=self._settings
                    )
                for topic in sorted(topics):
                    await self._conn.execute("SELECT pg_notify($1, $2)", self._channel, topic)
            except Exception:  # workers fall back to their poll; the next commit notifies
                log.warning("NOTIFY after a commit failed", exc_info=True)
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.terminate()
                return

    async def close(self) -> None:
        """Send what is pending (up to 5 s), then close the connection."""
        task, conn = self._task, self._conn
        if self._loop is not asyncio.get_running_loop():
            return  # made on another loop: nothing of it can be awaited here
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
        self._conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)


class Wakeups:
    """Who hears that a transaction asking for wake-ups committed."""

    def __init__(self, notifier: PostgresNotifier | None = None) -> None:
        self._listeners: list[WakeListener] = []
        self._notifier = notifier

    def on_wake(self, listener: WakeListener) -> None:
        """Run ``listener(topics)`` in-process after each such commit."""
        self._listeners.append(listener)

    def sent_here(self, pid: int) -> bool:
        """Whether a notification from server process ``pid`` is one this process sent
        (its listeners heard that commit in-process already)."""
        return self._notifier is not None and self._notifier.sent_by(pid)

    def committed(self, topics: set[str]) -> None:
        """A transaction that asked to wake ``topics`` committed: tell everyone."""
        for listener in self._listeners:
            listener(topics)
        if self._notifier is not None:
            self._notifier.send(topics)

    async def close(self) -> None:
        if self._notifier is not None:
            await self._notifier.close()
