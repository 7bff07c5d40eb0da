"""PostgreSQL LISTEN on a dedicated connection, reconnecting when it drops.

NOTIFY is sent after the emitting transaction commits (:mod:`hookline.store.wakeups`), so a
wake-up never arrives before the rows are visible. Notifications sent
while the listener was disconnected are lost, so every (re)connect also counts as a wake-up.
``ignore`` drops the notifications of chosen senders (by server pid): this process's own,
whose commits woke its listeners in-process already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)


def plain_postgres_url(url: str) -> str:
    """asyncpg wants ``postgresql://``; SQLAlchemy URLs carry a ``+driver`` suffix."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


async def listen(
    url: str,
    channel: str,
    on_notify: Callable[[str], None],
    stop: asyncio.Event,
    *,
    health_interval: float = 30.0,
    retry_delay: float = 1.0,
    ignore: Callable[[int], bool] | None = None,
) -> None:
    """Call ``on_notify(payload)`` for each notification on ``channel`` until ``stop`` is set,
    except those whose sending server process ``ignore(pid)`` is true for."""
    dsn = plain_postgres_url(url)

    def heard(_conn: object, pid: int, _channel: str, payload: object) -> None:
        if ignore is None or not ignore(pid):
            on_notify(str(payload))

    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await conn.add_listener(channel, heard)
            on_notify("reconnected")  # anything sent while we were away is not replayed
            while not stop.is_set() and not lost.is_set():
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
                await asyncio.wait(
                    waiters, timeout=health_interval, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waiters:
                    waiter.cancel()
                if not stop.is_set() and not lost.is_set():
                    # A half-open TCP connection raises no event; a query finds it out.
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=10)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("LISTEN %s connection lost (%s); reconnecting", channel, error)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=5)
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=retry_delay)
