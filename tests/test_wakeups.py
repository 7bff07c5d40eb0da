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
