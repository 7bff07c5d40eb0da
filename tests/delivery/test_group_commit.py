"""PostgreSQL group commit for single events (``POST /events``): the events that arrive
together share one statement and one commit, and each request still gets its own answer."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import select

from hookline.api.app import create_app
from hookline.ids import new_id
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from hookline.store.event_sink import EventRow
from hookline.store.tables import deliveries, delivery_queue, events
from tests.delivery.factories import EVENT, make_account, make_webhook, queued
from tests.delivery_api.helpers import assert_error, connection_event
from tests.support import ApiClient


def _row(rt: Runtime, account: uuid.UUID, key: str | None = None) -> EventRow:
    return EventRow(
        new_id(), account, EVENT, new_id(), None, b'{"event":"x"}', key, rt.clock.now(), False
    )


async def test_events_arriving_together_share_statements(pg_runtime: Runtime) -> None:
    rt = pg_runtime
    account = await make_account(rt)
    hook = await make_webhook(rt, account, "http://127.0.0.1:9/hook")
    writer = rt.db.event_sink()
    await writer.open()
    woken: list[set[str]] = []
    rt.db.on_wake(woken.append)
    rows = [_row(rt, account) for _ in range(40)]

    written = await asyncio.gather(*(writer.accept(row) for row in rows))

    assert writer.batches_committed < len(rows)  # grouped, not one commit per event
    assert woken and len(woken) <= writer.batches_committed
    by_event = {q.event_id: q for q in await queued(rt)}
    for row, result in zip(rows, written, strict=True):
        assert result.existing is None
        (delivery_id,) = result.delivery_ids
        assert (by_event[row.event_id].delivery_id, by_event[row.event_id].webhook_id) == (
            delivery_id,
            hook,
        )


async def test_in_a_group_a_failing_event_fails_alone_and_keys_replay(
    pg_runtime: Runtime,
) -> None:
    rt = pg_runtime
    account = await make_account(rt)
    await make_webhook(rt, account, "http://127.0.0.1:9/hook")
    writer = rt.db.event_sink()
    earlier = _row(rt, account, "seen")
    await writer.accept(earlier)
    rows = [
        _row(rt, account),
        _row(rt, new_id()),  # no such account: the foreign key fails this event only
        _row(rt, account, "seen"),  # a key written before this group
        _row(rt, account, "twice"),
        _row(rt, account, "twice"),  # the same new key twice in the group
        _row(rt, account),
    ]
    before = writer.batches_committed

    results = await asyncio.gather(*(writer.accept(row) for row in rows), return_exceptions=True)

    assert isinstance(results[1], Exception) and "foreign key" in str(results[1])
    assert len(results[0].delivery_ids) == len(results[5].delivery_ids) == 1
    assert results[2].existing is not None and results[2].existing.id == earlier.event_id
    assert results[2].existing.deliveries == 1 and results[2].delivery_ids == ()
    assert results[3].existing is None and len(results[3].delivery_ids) == 1
    assert results[4].existing is not None and results[4].existing.id == rows[3].event_id
    assert results[4].existing.deliveries == 1
    assert writer.batches_committed - before < len(rows)
    assert sorted(q.event_id for q in await queued(rt)) == sorted(
        [earlier.event_id, rows[0].event_id, rows[3].event_id, rows[5].event_id]
    )


async def test_concurrent_requests_each_get_their_own_answer(pg_runtime: Runtime) -> None:
    rt = pg_runtime
    app = create_app(rt, run_background=False)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "group commit", now=rt.clock.now())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hookline.test"
    ) as http:
        api = ApiClient(http, key)
        await api.login()
        hook = await api.post(
            "/webhooks",
            json={"event": "account.connection.created", "url": "https://example.com/hook"},
        )
        assert hook.status_code == 200, hook.text
        first = await api.post(
            "/events", json=connection_event(), headers={"x-chift-client-requestid": "before"}
        )
        writer = rt.db.event_sink()
        before = writer.batches_committed

        def header(value: str) -> dict[str, str]:
            return {"x-chift-client-requestid": value}

        plain = [connection_event(connectionid=str(uuid.UUID(int=n))) for n in range(1, 21)]
        requests = [
            *(api.post("/events", json=body) for body in plain),
            api.post("/events", json=connection_event(status="sleeping")),  # invalid: 400
            api.post("/events", json=connection_event(), headers=header("before")),  # replay
            api.post("/events", json=connection_event(status="inactive"), headers=header("before")),
            api.post("/events", json=connection_event(), headers=header("new")),
            api.post("/events", json=connection_event(), headers=header("new")),
        ]
        answers = await asyncio.gather(*requests)

    statements = writer.batches_committed - before
    assert 0 < statements < len(plain)  # the burst shared statements
    for body, answer in zip(plain, answers, strict=False):
        assert answer.status_code == 202, answer.text
        assert answer.json()["body"]["connectionid"] == body["connectionid"]
        assert answer.json()["deliveries"] == 1
    assert len({answer.json()["eventid"] for answer in answers[:20]}) == 20
    invalid, replay, conflict, new_one, new_two = answers[20:]
    assert_error(invalid, 400, "ERROR_INVALID_BODY")
    assert (replay.status_code, replay.headers["x-idempotent-replayed"]) == (202, "true")
    assert replay.json() == first.json()
    assert_error(conflict, 409, "ERROR_IDEMPOTENCY_CONFLICT")
    assert new_one.json() == new_two.json()
    assert sorted(a.headers.get("x-idempotent-replayed", "") for a in (new_one, new_two)) == [
        "",
        "true",
    ]
    async with rt.db.read() as conn:
        stored = (await conn.execute(select(events.c.id))).scalars().all()
        delivered_to = (await conn.execute(select(deliveries.c.event_id))).scalars().all()
        queue = (await conn.execute(select(delivery_queue.c.event_id))).scalars().all()
    assert len(stored) == 1 + 20 + 1  # "before", the 20, and "new" once
    assert sorted(delivered_to) == sorted(queue) == sorted(stored)
