"""POST .../logs/{id}/redeliver and POST /webhooks/{id}/recover: queue rows and statuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update

from hookline.store.tables import deliveries, delivery_queue
from tests.delivery_api.helpers import (
    assert_error,
    create_webhook,
    insert_delivery,
    insert_log,
    queue_rows,
    runtime_of,
)
from tests.support import ApiClient

OLD = datetime(2026, 11, 1, tzinfo=UTC)


async def _statuses(api: ApiClient) -> dict[uuid.UUID, str]:
    async with runtime_of(api).db.read() as conn:
        return dict((await conn.execute(select(deliveries.c.id, deliveries.c.status))).all())


async def test_redeliver_requeues_the_same_delivery_now(api: ApiClient) -> None:
    runtime = runtime_of(api)
    hook = await create_webhook(api)
    webhook_id, account_id = uuid.UUID(hook["webhookid"]), uuid.UUID(api.account_id)
    event_id, delivery_id = await insert_delivery(
        runtime, account_id=account_id, webhook_id=webhook_id, status="failed", at=OLD
    )
    log_id = await insert_log(
        runtime,
        account_id=account_id,
        webhook_id=webhook_id,
        delivery_id=delivery_id,
        event_id=event_id,
        at=OLD,
    )
    woken: list[set[str]] = []
    runtime.db.on_wake(woken.append)
    before = runtime.clock.now()
    response = await api.post(f"/webhooks/{webhook_id}/logs/{log_id}/redeliver")
    assert response.status_code == 202
    assert response.json() == {"delivery_id": str(delivery_id), "status": "pending"}
    [row] = await queue_rows(runtime)
    assert (row.delivery_id, row.webhook_id, row.event_id, row.attempt, row.lease_owner) == (
        delivery_id,
        webhook_id,
        event_id,
        0,
        None,
    )
    assert before <= row.available_at <= runtime.clock.now()
    assert await _statuses(api) == {delivery_id: "pending"}
    assert woken == [{"deliveries"}]
    # again: still one queue row for that delivery
    response = await api.post(f"/webhooks/{webhook_id}/logs/{log_id}/redeliver")
    assert response.status_code == 202
    assert [r.delivery_id for r in await queue_rows(runtime)] == [delivery_id]


async def test_redeliver_brings_a_scheduled_retry_forward_but_leaves_a_leased_one(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    hook = await create_webhook(api)
    webhook_id, account_id = uuid.UUID(hook["webhookid"]), uuid.UUID(api.account_id)
    later = runtime.clock.now() + timedelta(hours=5)
    logs = []
    for owner in (None, "worker-1"):
        event_id, delivery_id = await insert_delivery(
            runtime, account_id=account_id, webhook_id=webhook_id, status="pending", at=OLD
        )
        async with runtime.db.transaction() as conn:
            await conn.execute(
                insert(delivery_queue).values(
                    delivery_id=delivery_id,
                    webhook_id=webhook_id,
                    event_id=event_id,
                    available_at=later,
                    attempt=3,
                    lease_owner=owner,
                )
            )
        logs.append(
            (
                delivery_id,
                await insert_log(
                    runtime,
                    account_id=account_id,
                    webhook_id=webhook_id,
                    delivery_id=delivery_id,
                    event_id=event_id,
                    at=OLD,
                    outcome="retry",
                ),
            )
        )
    for _, log_id in logs:
        response = await api.post(f"/webhooks/{webhook_id}/logs/{log_id}/redeliver")
        assert response.status_code == 202
    rows = {row.delivery_id: row for row in await queue_rows(runtime)}
    scheduled, leased = rows[logs[0][0]], rows[logs[1][0]]
    assert scheduled.available_at <= runtime.clock.now()
    assert (scheduled.attempt, scheduled.lease_owner) == (0, None)
    assert (leased.available_at, leased.attempt, leased.lease_owner) == (later, 3, "worker-1")


async def test_redeliver_errors(api: ApiClient) -> None:
    runtime = runtime_of(api)
    hook = await create_webhook(api)
    webhook_id, account_id = uuid.UUID(hook["webhookid"]), uuid.UUID(api.account_id)
    other_hook = await create_webhook(api, url="https://example.com/other")
    event_id, delivery_id = await insert_delivery(
        runtime, account_id=account_id, webhook_id=webhook_id, status="failed", at=OLD
    )
    log_id = await insert_log(
        runtime,
        account_id=account_id,
        webhook_id=webhook_id,
        delivery_id=delivery_id,
        event_id=event_id,
        at=OLD,
    )
    assert_error(
        await api.post(f"/webhooks/{webhook_id}/logs/{uuid.uuid4()}/redeliver"),
        404,
        "ERROR_LOG_NOT_FOUND",
    )
    assert_error(
        await api.post(f"/webhooks/{other_hook['webhookid']}/logs/{log_id}/redeliver"),
        404,
        "ERROR_LOG_NOT_FOUND",
    )
    assert_error(
        await api.post(f"/webhooks/{uuid.uuid4()}/logs/{log_id}/redeliver"),
        404,
        "ERROR_WEBHOOK_NOT_FOUND",
    )
    await api.patch(f"/webhooks/{webhook_id}", json={"status": "inactive"})
    body = assert_error(
        await api.post(f"/webhooks/{webhook_id}/logs/{log_id}/redeliver"),
        400,
        "ERROR_WEBHOOK_INACTIVE",
    )
    assert "inactive" in body["message"]
    assert await queue_rows(runtime) == []
    assert await _statuses(api) == {delivery_id: "failed"}


async def test_recover_requeues_failed_deliveries_since_a_time(api: ApiClient) -> None:
    runtime = runtime_of(api)
    hook = await create_webhook(api)
    other = await create_webhook(api, url="https://example.com/other")
    webhook_id, account_id = uuid.UUID(hook["webhookid"]), uuid.UUID(api.account_id)
    since = datetime(2026, 11, 10, tzinfo=UTC)
    made = {}
    for name, status, at, target in [
        ("old_failed", "failed", since - timedelta(seconds=1), webhook_id),
        ("failed_at_since", "failed", since, webhook_id),
        ("failed_after", "failed", since + timedelta(days=2), webhook_id),
        ("delivered", "delivered", since + timedelta(days=1), webhook_id),
        ("pending", "pending", since + timedelta(days=1), webhook_id),
        ("other_webhook", "failed", since + timedelta(days=1), uuid.UUID(other["webhookid"])),
    ]:
        made[name] = (
            await insert_delivery(
                runtime, account_id=account_id, webhook_id=target, status=status, at=at
            )
        )[1]
    # created before ``since`` but updated (failed again) after it: recovered too
    async with runtime.db.transaction() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == made["old_failed"])
            .values(updated_at=since + timedelta(hours=1))
        )
    made["really_old"] = (
        await insert_delivery(
            runtime, account_id=account_id, webhook_id=webhook_id, status="failed", at=OLD
        )
    )[1]
    response = await api.post(
        f"/webhooks/{webhook_id}/recover", json={"since": "2026-11-10T00:00:00Z"}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"count": 3}
    recovered = {made["old_failed"], made["failed_at_since"], made["failed_after"]}
    rows = await queue_rows(runtime)
    assert {row.delivery_id for row in rows} == recovered
    assert all(row.attempt == 0 and row.lease_owner is None for row in rows)
    assert all(row.available_at <= runtime.clock.now() for row in rows)
    statuses = await _statuses(api)
    assert {d for d, s in statuses.items() if s == "pending"} == recovered | {made["pending"]}
    assert statuses[made["really_old"]] == "failed"
    assert statuses[made["other_webhook"]] == "failed"
    # nothing failed any more: a second recover queues nothing
    again = await api.post(
        f"/webhooks/{webhook_id}/recover", json={"since": "2026-11-10T00:00:00Z"}
    )
    assert again.json() == {"count": 0}
    assert len(await queue_rows(runtime)) == 3


async def test_recover_errors(api: ApiClient) -> None:
    hook = await create_webhook(api)
    path = f"/webhooks/{hook['webhookid']}/recover"
    assert_error(
        await api.post(f"/webhooks/{uuid.uuid4()}/recover", json={"since": "2026-11-10T00:00:00Z"}),
        404,
    )
    assert (await api.post(path, json={})).status_code == 422
    assert (await api.post(path, json={"since": "soon"})).status_code == 422
    await api.patch(f"/webhooks/{hook['webhookid']}", json={"status": "inactive"})
    assert_error(
        await api.post(path, json={"since": "2026-11-10T00:00:00Z"}), 400, "ERROR_WEBHOOK_INACTIVE"
    )
