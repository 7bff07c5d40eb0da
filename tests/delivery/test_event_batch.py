"""SQLite group commit for standalone events: one transaction for the events that arrive
together, each in its own savepoint, so one failing event takes none of the others down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hookline.bootstrap import prepare_database
from hookline.errors import MissingReference
from hookline.ids import new_id
from hookline.runtime import Runtime
from hookline.store.event_sink import EventRow
from tests.conftest import Backend
from tests.delivery.factories import EVENT, make_account, make_webhook, queued


@pytest.fixture
async def sqlite_runtime(tmp_path: Path):
    rt = Runtime.create(Backend(tmp_path, "sqlite").settings())
    await prepare_database(rt)
    yield rt
    await rt.db.dispose()


def _row(rt: Runtime, account, key: str | None = None) -> EventRow:
    return EventRow(
        new_id(), account, EVENT, new_id(), None, b'{"event":"x"}', key, rt.clock.now(), False
    )


async def test_events_arriving_together_share_one_transaction(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    account = await make_account(rt)
    await make_webhook(rt, account, "http://127.0.0.1:9/hook")
    batcher = rt.db.event_sink()
    woken: list[set[str]] = []
    rt.db.on_wake(woken.append)

    written = await asyncio.gather(*(batcher.accept(_row(rt, account)) for _ in range(20)))

    assert all(len(w.delivery_ids) == 1 for w in written)
    assert len(await queued(rt)) == 20
    assert batcher.batches_committed < 20  # grouped, not one commit per event
    assert woken and all(topics == {"deliveries"} for topics in woken)


async def test_a_failing_event_fails_alone(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    account = await make_account(rt)
    await make_webhook(rt, account, "http://127.0.0.1:9/hook")
    batcher = rt.db.event_sink()
    rows = [_row(rt, account), _row(rt, new_id()), _row(rt, account)]  # 2nd: no such account

    results = await asyncio.gather(*(batcher.accept(row) for row in rows), return_exceptions=True)

    assert isinstance(results[1], MissingReference)  # the foreign key, translated
    assert [len(results[i].delivery_ids) for i in (0, 2)] == [1, 1]
    assert sorted(q.event_id for q in await queued(rt)) == sorted(
        [rows[0].event_id, rows[2].event_id]
    )


async def test_a_repeated_key_in_the_same_batch_returns_the_first_event(
    sqlite_runtime: Runtime,
) -> None:
    rt = sqlite_runtime
    account = await make_account(rt)
    await make_webhook(rt, account, "http://127.0.0.1:9/hook")
    batcher = rt.db.event_sink()
    first, second = _row(rt, account, "k1"), _row(rt, account, "k1")

    one, two = await asyncio.gather(batcher.accept(first), batcher.accept(second))

    assert len(one.delivery_ids) == 1 and one.existing is None
    assert two.existing is not None and two.existing.id == first.event_id
    assert two.existing.deliveries == 1 and two.delivery_ids == ()
    assert len(await queued(rt)) == 1


async def test_postgresql_fast_path_notifies_listeners_and_replays_a_key(
    postgres_backend: str, tmp_path: Path
) -> None:
    import asyncpg

    from hookline.store.listen import plain_postgres_url

    backend = Backend(tmp_path, "postgresql")
    rt = Runtime.create(backend.settings())
    await prepare_database(rt)
    listener = await asyncpg.connect(plain_postgres_url(rt.db.url))
    try:
        heard: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener(rt.db.notify_channel, lambda *args: heard.put_nowait(args[3]))
        account = await make_account(rt)
        await make_webhook(rt, account, "http://127.0.0.1:9/hook")
        written = await rt.db.event_sink().accept(_row(rt, account, "k"))
        assert await asyncio.wait_for(heard.get(), timeout=5) == "deliveries"
        assert [q.delivery_id for q in await queued(rt)] == list(written.delivery_ids)
        again = await rt.db.event_sink().accept(_row(rt, account, "k"))
        assert again.existing is not None and again.existing.deliveries == 1
        assert len(await queued(rt)) == 1
    finally:
        await listener.close()
        await rt.db.dispose()
        await backend.drop()
