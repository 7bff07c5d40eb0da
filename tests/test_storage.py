"""Storage on both backends: migrations, schema drift, ids, UTC times, transactions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, select, text

from hookline.bootstrap import prepare_database
from hookline.ids import new_id, new_id_text, new_ids_for_driver, uuid_from_hex
from hookline.runtime import Runtime
from hookline.store.db import Database
from hookline.store.migrate import current, upgrade
from hookline.store.tables import accounts, metadata
from tests.conftest import Backend


async def test_migrations_reach_head_and_match_the_tables(runtime: Runtime) -> None:
    assert await current(runtime.db) == "0011"

    def diff(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn), metadata)

    async with runtime.db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_migrating_twice_is_a_no_op(runtime: Runtime) -> None:
    await upgrade(runtime.db)
    assert await current(runtime.db) == "0011"


async def test_datetimes_round_trip_as_aware_utc(runtime: Runtime) -> None:
    moment = datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=UTC) + timedelta(hours=0)
    account_id = new_id()
    async with runtime.db.transaction() as conn:
        await conn.execute(insert(accounts).values(id=account_id, name="a", created_at=moment))
    async with runtime.db.read() as conn:
        stored = (await conn.execute(select(accounts.c.created_at))).scalar_one()
    assert stored == moment
    assert stored.tzinfo is not None


async def test_a_failed_transaction_leaves_nothing(runtime: Runtime) -> None:
    now = runtime.clock.now()
    with pytest.raises(RuntimeError):
        async with runtime.db.transaction() as conn:
            await conn.execute(insert(accounts).values(id=new_id(), name="gone", created_at=now))
            raise RuntimeError("boom")
    async with runtime.db.read() as conn:
        assert (await conn.execute(select(accounts))).all() == []


async def test_wake_listeners_run_only_after_commit(runtime: Runtime) -> None:
    from hookline.store.db import request_wake

    woken: list[set[str]] = []
    runtime.db.on_wake(woken.append)
    with pytest.raises(RuntimeError):
        async with runtime.db.transaction() as conn:
            await request_wake(conn, "deliveries")
            raise RuntimeError("rolled back")
    assert woken == []
    async with runtime.db.transaction() as conn:
        await request_wake(conn, "deliveries")
        assert woken == []
    assert woken == [{"deliveries"}]


async def test_connecting_ahead_opens_every_pooled_connection_before_traffic(
    postgres_backend: str, tmp_path: Path
) -> None:
    """A server start opens its PostgreSQL pools whole: none is opened under the first burst,
    where each new connection queued requests behind its round trips."""
    from hookline.store.event_sink_pg import POOL_SIZE

    database = Backend(tmp_path, postgres_backend)
    runtime = Runtime.create(database.settings())
    try:
        await prepare_database(runtime)
        await _connect_ahead(runtime, POOL_SIZE)
    finally:
        await runtime.db.dispose()
        await database.drop()


async def _connect_ahead(runtime: Runtime, writer_size: int) -> None:
    await runtime.db.engine.dispose()
    assert runtime.db.engine.pool.checkedin() == 0
    await runtime.db.connect_ahead(events=True)
    assert runtime.db.engine.pool.checkedin() == runtime.db.pool_size
    writer = runtime.db.event_sink()
    assert writer.connections == writer_size
    async with runtime.db.read() as conn:  # the pool hands out what it opened
        await conn.execute(select(accounts.c.id))
    assert runtime.db.engine.pool.checkedin() == runtime.db.pool_size


async def test_warming_rehearses_on_every_pooled_connection_and_commits_nothing(
    postgres_backend: str, tmp_path: Path
) -> None:
    """The start-up rehearsal of ``emit`` runs once on each pooled connection (so each server
    process has planned the hot statements) and leaves no row behind, even when it fails."""
    from hookline.delivery.emit import rehearse_emit
    from hookline.store.tables import deliveries, delivery_queue, events, webhooks

    database = Backend(tmp_path, postgres_backend)
    runtime = Runtime.create(database.settings())
    backends: list[int] = []

    async def rehearse_and_note(conn: Any) -> None:
        await rehearse_emit(conn)
        backends.append((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        if len(backends) == 2:
            raise RuntimeError("a rehearsal that fails")  # logged; start-up goes on

    try:
        await prepare_database(runtime)
        await runtime.db.engine.dispose()
        await runtime.db.connect_ahead(warm=rehearse_and_note)
        assert len(backends) == len(set(backends)) == runtime.db.pool_size
        assert runtime.db.engine.pool.checkedin() == runtime.db.pool_size
        async with runtime.db.read() as conn:
            for table in (accounts, webhooks, events, deliveries, delivery_queue):
                assert (
                    await conn.execute(select(func.count()).select_from(table))
                ).scalar_one() == 0, table.name
    finally:
        await runtime.db.dispose()
        await database.drop()


async def test_connecting_ahead_is_a_no_op_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        await db.connect_ahead(events=True)
        assert db.engine.pool.checkedin() == 0
    finally:
        await db.dispose()


def test_ids_are_time_ordered_uuid7() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    raw = [uuid.UUID(bytes=i.bytes) for i in new_ids_for_driver(1000)]  # what drivers read
    assert all(i.version == 7 for i in raw) and raw == sorted(raw) > ids
    assert len(set(raw)) == len(raw)


def test_id_text_and_fast_hex_parsing_match_the_uuid_module() -> None:
    texts = [new_id_text() for _ in range(200)]
    assert texts == sorted(texts) and all(len(t) == 32 for t in texts)
    for hex_text in texts:
        parsed = uuid_from_hex(hex_text)
        assert parsed == uuid.UUID(hex=hex_text)
        assert str(parsed) == str(uuid.UUID(hex=hex_text)) and parsed.version == 7
        assert hash(parsed) == hash(uuid.UUID(hex=hex_text))
    for bad in ("zz" * 16, "ab" * 15, "ab" * 17):
        with pytest.raises(ValueError):
            uuid_from_hex(bad)


async def test_readiness_is_503_while_the_database_is_unreachable() -> None:
    from tests.support import free_port

    db = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    try:
        status, body = await db.readiness()
    finally:
        await db.dispose()
    assert status == 503
    assert body["status"] == "unavailable" and body["detail"]
