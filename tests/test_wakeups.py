"""Wake-ups after a commit: in-process listeners at once, other processes by a NOTIFY sent
after the commit (never for a rolled-back transaction, never before the rows are visible)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import insert

from hookline.bootstrap import prepare_database
from hookline.ids import new_id
from hookline.runtime import Runtime
from hookline.store.db import request_wake
from hookline.store.listen import listen
from hookline.store.tables import accounts
from tests.conftest import POSTGRES_URL, Backend


async def test_notify_comes_after_the_commit_and_only_for_commits(
    postgres_backend: str, tmp_path: Path
) -> None:
    database = Backend(tmp_path, postgres_backend)
    runtime = Runtime.create(database.settings())
    listener = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": database.schema})
    heard: asyncio.Queue[str] = asyncio.Queue()
    account_id = new_id()

    def on_notify(conn: object, pid: int, channel: str, payload: str) -> None:
        heard.put_nowait(payload)

    try:
        await prepare_database(runtime)
        await listener.add_listener(runtime.db.notify_channel, on_notify)
        with pytest.raises(RuntimeError):
            async with runtime.db.transaction() as conn:
                await request_wake(conn, "deliveries")
                raise RuntimeError("rolled back: no NOTIFY")
        async with runtime.db.transaction() as conn:
            await conn.execute(
                insert(accounts).values(id=account_id, name="a", created_at=runtime.clock.now())
            )
            await request_wake(conn, "deliveries")
        assert await asyncio.wait_for(heard.get(), timeout=10) == "deliveries"
        # Told, the listener sees the committed row.
        visible = await listener.fetchval("SELECT count(*) FROM accounts WHERE id = $1", account_id)
        assert visible == 1
        await runtime.db.dispose()  # sends whatever is pending
        await listener.fetchval("SELECT 1")  # a round trip delivers any notification left
        assert heard.empty()  # one commit, one NOTIFY; none for the rollback
    finally:
        await listener.close()
        await runtime.db.dispose()
        await database.drop()


async def test_in_process_listeners_hear_each_commit_at_once(runtime: Runtime) -> None:
    woken: list[set[str]] = []
    runtime.db.on_wake(woken.append)
    async with runtime.db.transaction() as conn:
        await request_wake(conn, "deliveries")
        await request_wake(conn, "deliveries")
    assert woken == [{"deliveries"}]


async def test_a_listener_ignores_its_own_process_notifications(
    postgres_backend: str, tmp_path: Path
) -> None:
    """A commit wakes this process's listeners in-process; its NOTIFY must not wake them a
    second time through this process's LISTEN connection. Other senders are heard."""
    database = Backend(tmp_path, postgres_backend)
    runtime = Runtime.create(database.settings())
    channel = runtime.db.notify_channel
    witness = await asyncpg.connect(POSTGRES_URL)  # hears everything, ignores nothing
    other = await asyncpg.connect(POSTGRES_URL)
    seen: asyncio.Queue[str] = asyncio.Queue()
    heard: asyncio.Queue[str] = asyncio.Queue()
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await prepare_database(runtime)
        await witness.add_listener(channel, lambda *args: seen.put_nowait(args[3]))
        task = asyncio.create_task(
            listen(
                runtime.db.url, channel, heard.put_nowait, stop, ignore=runtime.db.wakeups.sent_here
            )
        )
        assert await asyncio.wait_for(heard.get(), timeout=10) == "reconnected"
        async with runtime.db.transaction() as conn:
            await request_wake(conn, "deliveries")
        assert await asyncio.wait_for(seen.get(), timeout=10) == "deliveries"  # sent
        await other.execute("SELECT pg_notify($1, 'from-elsewhere')", channel)
        assert await asyncio.wait_for(seen.get(), timeout=10) == "from-elsewhere"
        # In commit order: the own notification came first and was dropped.
        assert await asyncio.wait_for(heard.get(), timeout=10) == "from-elsewhere"
        assert heard.empty()
        assert not runtime.db.wakeups.sent_here(other.get_server_pid())
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, timeout=10)
        await witness.close()
        await other.close()
        await runtime.db.dispose()
        await database.drop()
