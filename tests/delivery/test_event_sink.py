"""The event sink on both backends: idempotency inside a caller's transaction (also against a
concurrent holder of the key), set-based fan-out of groups and batches identical to one event
at a time (payload filters, POS scoping), and driver errors as hookline's exceptions on every
path (the pool, the inline SQLite connection, the asyncpg pool)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import insert, select, update

from hookline.delivery.emit import EventDraft, emit_draft, prepare
from hookline.errors import DuplicateKey, MissingReference
from hookline.ids import new_id
from hookline.runtime import Runtime
from hookline.store.event_sink import EventRow, Written
from hookline.store.listen import plain_postgres_url
from hookline.store.tables import accounts, deliveries, delivery_queue, events, webhooks
from tests.delivery.factories import EVENT, make_account, make_webhook

CREATED = "account.connection.created"


def _draft(rt: Runtime, account: uuid.UUID, key: str | None = None, **fields: Any) -> EventDraft:
    return EventDraft(
        account_id=account,
        event=fields.pop("event", EVENT),
        consumer_id=new_id(),
        fields={"connectionid": str(new_id()), **fields},
        now=rt.clock.now(),
        idempotency_key=key,
    )


async def _count(rt: Runtime, table: Any) -> int:
    async with rt.db.read() as conn:
        return len((await conn.execute(select(table))).all())


async def _waiting_on_a_lock(rt: Runtime) -> None:
    """Until a PostgreSQL backend of this schema waits for a lock (another session's state:
    there is no event to await, so it is polled)."""
    conn = await asyncpg.connect(plain_postgres_url(rt.db.url))
    try:
        for _ in range(500):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'WITH i AS%'"
            )
            if waiting:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the second emit never waited for the first one's key")
    finally:
        await conn.close()


async def test_emit_with_a_key_another_transaction_holds_answers_that_event(
    runtime: Runtime,
) -> None:
    """The second writer of a key waits for the first transaction (PostgreSQL: ON CONFLICT;
    SQLite: the write lock), then answers its event and writes nothing."""
    rt = runtime
    account = await make_account(rt)
    await make_webhook(rt, account, "http://127.0.0.1:9/hook")
    first_in = asyncio.Event()
    commit_first = asyncio.Event()

    async def first() -> Any:
        async with rt.db.transaction() as conn:
            emitted = await emit_draft(conn, _draft(rt, account, "k"))
            first_in.set()
            await commit_first.wait()
        return emitted

    async def second() -> Any:
        await first_in.wait()
        async with rt.db.transaction() as conn:
            return await emit_draft(conn, _draft(rt, account, "k"))

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_in.wait()
    if not rt.db.is_sqlite:
        await _waiting_on_a_lock(rt)
    commit_first.set()
    one, two = await asyncio.gather(*tasks)

    assert not one.replayed and len(one.delivery_ids) == 1
    assert two.replayed and two.id == one.id and two.delivery_ids == ()
    assert two.body == one.body
    assert await _count(rt, events) == 1
    assert await _count(rt, delivery_queue) == 1


async def test_groups_and_batches_fan_out_as_one_event_at_a_time(runtime: Runtime) -> None:
    """Payload filters and POS scoping, matched set-based for many events at once, give each
    event exactly the webhooks it gets when emitted alone."""
    rt = runtime
    account = await make_account(rt)
    url = "http://127.0.0.1:9/"
    active_only = await make_webhook(rt, account, url + "active", event=CREATED)
    every = await make_webhook(rt, account, url + "every", event=CREATED)
    pos_1 = await make_webhook(rt, account, url + "pos1", event="pos.order.completed")
    async with rt.db.transaction() as conn:
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.id == active_only)
            .values(payload_filter={"status": ["active"]})
        )
        await conn.execute(update(webhooks).where(webhooks.c.id == pos_1).values(integration_id=1))

    def order(n: int, integration: int | None) -> EventDraft:
        return EventDraft(
            account_id=account,
            event="pos.order.completed",
            consumer_id=new_id(),
            fields={
                "order_id": f"o{n}",
                "location_id": "l",
                "updated_at": "2026-11-26T10:15:00Z",
            },
            now=rt.clock.now(),
            integration_id=integration,
        )

    drafts = [
        _draft(rt, account, event=CREATED, status="active"),
        _draft(rt, account, event=CREATED, status="inactive"),
        order(1, 1),
        order(2, 2),
        _draft(rt, account),  # no webhook for its type
        _draft(rt, account, event=CREATED, status="active"),
    ]
    expected = [{active_only, every}, {every}, {pos_1}, set(), set(), {active_only, every}]
    sink = rt.db.event_sink()

    alone = []
    for draft in drafts:
        async with rt.db.transaction() as conn:
            alone.append(await emit_draft(conn, draft))
    grouped = await asyncio.gather(*(sink.accept(prepare(d).row) for d in drafts))
    batch_rows = [prepare(d).row for d in drafts]
    batched = await sink.accept_batch(batch_rows, lambda results: None)

    async def targets(delivery_ids: tuple[uuid.UUID, ...]) -> set[uuid.UUID]:
        async with rt.db.read() as conn:
            rows = await conn.execute(
                select(deliveries.c.webhook_id).where(deliveries.c.id.in_(delivery_ids))
            )
            return set(rows.scalars())

    for index, want in enumerate(expected):
        assert await targets(alone[index].delivery_ids) == want, index
        assert await targets(grouped[index].delivery_ids) == want, index
        assert await targets(batched[index].delivery_ids) == want, index
    async with rt.db.read() as conn:
        queued = set((await conn.execute(select(delivery_queue.c.delivery_id))).scalars())
    made = {i for results in (alone, grouped, batched) for r in results for i in r.delivery_ids}
    assert queued == made and len(made) == 3 * sum(len(want) for want in expected)


async def test_a_batch_writes_its_keys_once_and_answers_repeats(runtime: Runtime) -> None:
    rt = runtime
    account = await make_account(rt)
    await make_webhook(rt, account, "http://127.0.0.1:9/hook")
    sink = rt.db.event_sink()
    earlier = prepare(_draft(rt, account, "seen")).row
    (first,) = await sink.accept_batch([earlier], lambda results: None)
    rows = [
        prepare(_draft(rt, account, "seen")).row,
        prepare(_draft(rt, account, "new")).row,
        prepare(_draft(rt, account)).row,
        prepare(_draft(rt, account, "new")).row,
    ]
    seen, new, plain, again = await sink.accept_batch(rows, lambda results: None)
    assert seen.existing is not None and seen.existing.id == earlier.event_id
    assert seen.existing.deliveries == len(first.delivery_ids) == 1
    assert new.existing is None and len(new.delivery_ids) == 1
    assert plain.existing is None and len(plain.delivery_ids) == 1
    assert again.existing is not None and again.existing.id == rows[1].event_id
    assert await _count(rt, events) == 3
    assert await _count(rt, delivery_queue) == 3


async def test_a_failed_batch_check_writes_nothing(runtime: Runtime) -> None:
    rt = runtime
    account = await make_account(rt)
    await make_webhook(rt, account, "http://127.0.0.1:9/hook")

    def refuse(results: list[Written]) -> None:
        assert len(results) == 2
        raise ValueError("no")

    rows = [prepare(_draft(rt, account)).row for _ in range(2)]
    with pytest.raises(ValueError):
        await rt.db.event_sink().accept_batch(rows, refuse)
    assert await _count(rt, events) == 0
    assert await _count(rt, delivery_queue) == 0


async def test_constraint_errors_come_as_hooklines_exceptions_on_every_path(
    runtime: Runtime,
) -> None:
    rt = runtime
    account = await make_account(rt)
    now = rt.clock.now()
    with pytest.raises(DuplicateKey):  # through the pool: a primary key
        async with rt.db.transaction() as conn:
            await conn.execute(insert(accounts).values(id=account, name="again", created_at=now))
    with pytest.raises(MissingReference):  # through the pool: a foreign key
        await make_webhook(rt, new_id(), "http://127.0.0.1:9/nobody")
    orphan = prepare(_draft(rt, new_id())).row
    sink = rt.db.event_sink()
    with pytest.raises(MissingReference):  # a standalone event (asyncpg / inline SQLite)
        await sink.accept(orphan)
    with pytest.raises(MissingReference):  # a batch
        await sink.accept_batch([orphan], lambda results: None)
    with pytest.raises(MissingReference):  # emit in a transaction
        async with rt.db.transaction() as conn:
            await emit_draft(conn, _draft(rt, new_id()))
    assert await _count(rt, events) == 0


async def test_emit_needs_a_transaction_of_the_database(runtime: Runtime) -> None:
    async with runtime.db.engine.connect() as conn:
        with pytest.raises(RuntimeError, match=r"Database\.transaction"):
            await emit_draft(conn, _draft(runtime, new_id()))


def test_event_rows_carry_the_encoded_body() -> None:
    from datetime import UTC, datetime

    draft = EventDraft(
        account_id=uuid.UUID(int=1),
        event=EVENT,
        consumer_id=uuid.UUID(int=2),
        fields={"connectionid": str(uuid.UUID(int=3))},
        now=datetime(2026, 11, 26, tzinfo=UTC),
        idempotency_key="k",
    )
    prepared = prepare(draft)
    assert isinstance(prepared.row, EventRow)
    assert json.loads(prepared.row.payload) == prepared.body
    assert prepared.body["created"] == int(draft.now.timestamp())
    assert (prepared.row.idempotency_key, prepared.row.pos) == ("k", False)
