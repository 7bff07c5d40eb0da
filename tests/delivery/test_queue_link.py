"""The worker's queue link on both backends: claims never overlap, successes are written only
where the lease is still held, and every attempt is logged."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hookline.store.queue import AttemptRecord
from hookline.store.queue_link import open_queue_link
from tests.delivery.factories import (
    delivery,
    emit_event,
    logs,
    make_account,
    make_webhook,
    queued,
)

LEASE = timedelta(seconds=60)


async def _setup(make_runtime, events: int):
    rt = await make_runtime()
    account = await make_account(rt)
    hook = await make_webhook(rt, account, "http://127.0.0.1:9/hook", secret="whsec_QUJDRA==")
    emitted = [await emit_event(rt, account) for _ in range(events)]
    return rt, hook, emitted


async def test_claims_by_two_links_never_overlap_and_carry_the_exact_payload(make_runtime) -> None:
    rt, hook, emitted = await _setup(make_runtime, 5)
    first, second = open_queue_link(rt.db), open_queue_link(rt.db)
    try:
        now = rt.clock.now()
        a = await first.claim(owner="a", now=now, lease_until=now + LEASE, limit=3)
        b = await second.claim(owner="b", now=now, lease_until=now + LEASE, limit=3)
        c = await first.claim(owner="a", now=now, lease_until=now + LEASE, limit=3)
    finally:
        await first.close()
        await second.close()
    assert len(a) == 3 and len(b) == 2 and c == []
    assert not {i.delivery_id for i in a} & {i.delivery_id for i in b}
    bodies = {e.id: e.payload for e in emitted}
    for item in a + b:
        assert item.payload == bodies[item.event_id]  # byte for byte, as emitted
        assert item.webhook_id == hook and item.attempt == 1 and item.url.endswith("/hook")
        assert item.secret_encrypted and item.webhook_status == "active"
        assert item.failing_since is None


async def test_success_is_written_only_where_the_lease_is_still_held(make_runtime) -> None:
    rt, hook, _ = await _setup(make_runtime, 2)
    link = open_queue_link(rt.db)
    try:
        now = rt.clock.now()
        mine = await link.claim(owner="a", now=now, lease_until=now + LEASE, limit=2)
        # The lease of the second one expired and another worker took it.
        later = now + LEASE + timedelta(seconds=1)
        stolen = await link.claim(owner="b", now=later, lease_until=later + LEASE, limit=1)
        assert [s.delivery_id for s in stolen] == [mine[0].delivery_id]
        records = [
            AttemptRecord(
                item, "delivered", http_status=204, duration_ms=3.5, response_excerpt="ok"
            )
            for item in mine
        ]
        await link.record_delivered(owner="a", now=later, records=records)
    finally:
        await link.close()

    kept, done = mine[0], mine[1]
    assert (await delivery(rt, done.delivery_id)).status == "delivered"
    assert (await delivery(rt, done.delivery_id)).attempts == 1
    assert (await delivery(rt, kept.delivery_id)).status == "pending"  # b's lease stands
    remaining = await queued(rt)
    assert [(row.delivery_id, row.lease_owner) for row in remaining] == [(kept.delivery_id, "b")]
    logged = await logs(rt, hook)  # both requests were made, so both are logged
    assert sorted(row.delivery_id for row in logged) == sorted(i.delivery_id for i in mine)
    assert {(row.outcome, row.http_status, row.response_excerpt) for row in logged} == {
        ("delivered", 204, "ok")
    }


async def test_only_successes_take_the_link(make_runtime) -> None:
    rt, _, _ = await _setup(make_runtime, 1)
    link = open_queue_link(rt.db)
    try:
        now = rt.clock.now()
        (item,) = await link.claim(owner="a", now=now, lease_until=now + LEASE, limit=5)
        with pytest.raises(ValueError):
            await link.record_delivered(
                owner="a", now=now, records=[AttemptRecord(item, "retry", http_status=503)]
            )
    finally:
        await link.close()
    assert len(await queued(rt)) == 1  # nothing was written


async def test_a_postgres_claim_looks_queued_rows_up_by_key_not_by_scanning_the_queue(
    postgres_backend: str, tmp_path
) -> None:
    """With thousands queued, the claim's plan reaches the rows it updates through the primary
    key: its cost stays flat as the backlog grows (a join once hashed the whole queue)."""
    import asyncpg
    from sqlalchemy import insert

    from hookline.bootstrap import prepare_database
    from hookline.ids import new_id
    from hookline.runtime import Runtime
    from hookline.store.listen import plain_postgres_url
    from hookline.store.queue_link import _CLAIM_POSTGRESQL
    from hookline.store.tables import deliveries, delivery_queue, events
    from tests.conftest import Backend

    database = Backend(tmp_path, "postgresql")
    rt = Runtime.create(database.settings())
    try:
        await prepare_database(rt)
        account = await make_account(rt)
        hook = await make_webhook(rt, account, "http://127.0.0.1:9/hook")
        now = rt.clock.now()
        ids = [(new_id(), new_id()) for _ in range(5000)]
        async with rt.db.transaction() as conn:
            await conn.execute(
                insert(events),
                [
                    {
                        "id": e,
                        "account_id": account,
                        "event_type": "account.connection.deleted",
                        "payload": b"{}",
                        "created_at": now,
                    }
                    for e, _ in ids
                ],
            )
            await conn.execute(
                insert(deliveries),
                [
                    {
                        "id": d,
                        "event_id": e,
                        "webhook_id": hook,
                        "account_id": account,
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for e, d in ids
                ],
            )
            await conn.execute(
                insert(delivery_queue),
                [
                    {
                        "delivery_id": d,
                        "webhook_id": hook,
                        "event_id": e,
                        "available_at": now,
                        "attempt": 0,
                    }
                    for e, d in ids
                ],
            )
        conn = await asyncpg.connect(
            plain_postgres_url(rt.db.url),
            server_settings={"search_path": database.schema or "", "jit": "off"},
        )
        try:
            await conn.execute("ANALYZE")
            plan = "\n".join(
                row[0]
                for row in await conn.fetch(
                    "EXPLAIN (ANALYZE) " + _CLAIM_POSTGRESQL,
                    now,
                    100,
                    now + LEASE,
                    "me",
                    100,
                    [],
                    [],
                )
            )
        finally:
            await conn.close()
        assert "Seq Scan on delivery_queue" not in plan, plan
        assert "Index Scan using pk_delivery_queue on delivery_queue q" in plan, plan
        assert "rows=100 " in plan  # and it did claim its batch
    finally:
        await rt.db.dispose()
        await database.drop()


def test_turns_are_dealt_first_rows_first_across_webhooks() -> None:
    from hookline.store.queue_link import deal_turns

    assert deal_turns({"a": 3, "b": 1}, 10) == {"a": 3, "b": 1}  # everything fits
    assert deal_turns({"a": 100, "b": 1, "c": 2}, 6) == {"a": 3, "b": 1, "c": 2}
    assert deal_turns({"a": 100, "b": 100}, 5) in ({"a": 3, "b": 2}, {"a": 2, "b": 3})
    assert deal_turns({"a": 50, "b": 0}, 7) == {"a": 7, "b": 0}
