"""Rate limits per webhook (issue 15.4): validated on save, enforced across workers, and
waiting in the queue without spending attempts."""

from __future__ import annotations

import asyncio
import collections
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from hookline.delivery.worker import DeliveryWorker
from hookline.store.rate_windows import burst, tokens
from hookline.store.tables import deliveries, delivery_queue, webhooks
from tests.delivery import factories as f
from tests.delivery.test_processes import start_worker, stop_process, wait_until_settled
from tests.delivery_api.control_helpers import frozen_stack, worker_of
from tests.delivery_api.helpers import assert_error, connection_event, create_webhook
from tests.receiver import Reply
from tests.support import ApiClient


@pytest.mark.parametrize("value", [0, -1, -0.5, 0.001, 10_001, 1e12])
async def test_a_rate_limit_out_of_range_answers_400(api: ApiClient, value: float) -> None:
    response = await api.post(
        "/webhooks",
        json={
            "event": "account.flow.executed",
            "url": "https://e.com",
            "rate_limit_per_second": value,
        },
    )
    assert_error(response, 400, "ERROR_INVALID_RATE_LIMIT")
    hook = await create_webhook(api)
    changed = await api.patch(
        f"/webhooks/{hook['webhookid']}", json={"rate_limit_per_second": value}
    )
    assert_error(changed, 400, "ERROR_INVALID_RATE_LIMIT")


@pytest.mark.parametrize("value", ["50", True, [50], {"per_second": 50}])
async def test_a_rate_limit_that_is_no_number_answers_422(api: ApiClient, value: Any) -> None:
    response = await api.post(
        "/webhooks",
        json={
            "event": "account.flow.executed",
            "url": "https://e.com",
            "rate_limit_per_second": value,
        },
    )
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["status"] == "error"
    assert payload["detail"][0]["loc"][:2] == ["body", "rate_limit_per_second"]


async def test_the_rate_limit_is_saved_returned_changed_and_removed(api: ApiClient) -> None:
    created = await create_webhook(api, rate_limit_per_second=50)
    assert created["rate_limit_per_second"] == 50
    path = f"/webhooks/{created['webhookid']}"
    assert (await api.get(path)).json()["rate_limit_per_second"] == 50
    listed = (await api.get("/webhooks")).json()
    assert [item["rate_limit_per_second"] for item in listed] == [50]
    assert (await api.patch(path, json={"rate_limit_per_second": 0.5})).json()[
        "rate_limit_per_second"
    ] == 0.5
    # Omitted: kept (a client may PATCH other fields); null: removed.
    assert (await api.patch(path, json={"status": "inactive"})).json()[
        "rate_limit_per_second"
    ] == 0.5
    assert (await api.patch(path, json={"rate_limit_per_second": None})).json()[
        "rate_limit_per_second"
    ] is None
    plain = await create_webhook(api, url="https://example.com/plain")
    assert plain["rate_limit_per_second"] is None


def test_tokens_are_earned_at_the_rate_and_saved_up_to_the_burst() -> None:
    assert burst(1) == 1 and burst(50) == 10 and burst(0.01) == 1
    start, granted = tokens(0.0, 50.0, 100, now=1000.0)  # idle for long: the burst only
    assert granted == 10 and start == pytest.approx(1000.0 - 9 / 50)
    assert tokens(1000.5, 50.0, 100, now=1000.0) == (1000.5, 0)  # next token in the future
    assert tokens(1000.0, 50.0, 3, now=1000.1)[1] == 3  # capped by the share
    assert tokens(5.0, None, 7, now=1000.0) == (5.0, 7)  # limit removed: the share alone


async def _limited_rows(runtime: Any, hook: uuid.UUID) -> list[Any]:
    async with runtime.db.read() as conn:
        queued = (
            await conn.execute(
                select(delivery_queue.c.attempt, delivery_queue.c.lease_owner).where(
                    delivery_queue.c.webhook_id == hook
                )
            )
        ).all()
        states = (
            await conn.execute(
                select(deliveries.c.status, deliveries.c.attempts).where(
                    deliveries.c.webhook_id == hook
                )
            )
        ).all()
    return [sorted(queued), sorted(states)]


async def _settled(worker: DeliveryWorker) -> None:
    """Wait until the worker went through a claim that found nothing to take."""
    worker.idle.clear()
    await asyncio.wait_for(worker.idle.wait(), timeout=15)


async def test_deliveries_over_the_limit_wait_in_the_queue_without_spending_attempts(
    database: Any, receiver: Any
) -> None:
    async with frozen_stack(database) as stack:
        limited = await create_webhook(
            stack.api, url=f"{receiver.url}/limited", rate_limit_per_second=1
        )
        await create_webhook(stack.api, url=f"{receiver.url}/free")
        hook = uuid.UUID(limited["webhookid"])
        for _ in range(5):
            await stack.post_event(connection_event())
        async with worker_of(stack.runtime) as worker:
            # The clock stands still: one token (the burst at 1/s), then nothing.
            await receiver.wait_for(6)
            await worker.wait_recorded(6)
            await _settled(worker)
            paths = collections.Counter(r.path for r in receiver.requests)
            assert paths == {"/free": 5, "/limited": 1}  # the unlimited one is not held
            queued, states = await _limited_rows(stack.runtime, hook)
            assert queued == [(0, None)] * 4  # waiting, unleased, no attempt counted
            assert states == [("delivered", 1)] + [("pending", 0)] * 4

            await stack.advance(1.0)  # one more token
            worker.wake()
            await receiver.wait_for(7)
            await worker.wait_recorded(7)
            await stack.advance(60.0)  # idle a minute: still one token only (burst 1)
            worker.wake()
            await receiver.wait_for(8)
            await worker.wait_recorded(8)
            await _settled(worker)
            assert collections.Counter(r.path for r in receiver.requests)["/limited"] == 3
            queued, states = await _limited_rows(stack.runtime, hook)
            assert queued == [(0, None)] * 2
            assert states == [("delivered", 1)] * 3 + [("pending", 0)] * 2

            # Limit removed: the rest goes at once, through the fair claim again.
            response = await stack.api.patch(
                f"/webhooks/{hook}", json={"rate_limit_per_second": None}
            )
            assert response.json()["rate_limit_per_second"] is None
            worker.wake()
            await receiver.wait_for(10)
            await worker.wait_recorded(10)
        queued, states = await _limited_rows(stack.runtime, hook)
        assert queued == [] and states == [("delivered", 1)] * 5


async def test_a_limit_set_while_deliveries_are_queued_applies_to_them(
    database: Any, receiver: Any
) -> None:
    """The worker learns of the limit from the rows it claimed: they go back unsent."""
    async with frozen_stack(database) as stack:
        created = await create_webhook(stack.api, url=f"{receiver.url}/late")
        hook = uuid.UUID(created["webhookid"])
        for _ in range(3):
            await stack.post_event(connection_event())
        async with stack.runtime.db.transaction() as conn:  # as PATCH writes it
            await conn.execute(
                update(webhooks).where(webhooks.c.id == hook).values(rate_limit_per_second=1.0)
            )
        async with worker_of(stack.runtime) as worker:
            await receiver.wait_for(1)
            await worker.wait_recorded(1)
            await _settled(worker)
            assert len(receiver.requests) == 1
            queued, states = await _limited_rows(stack.runtime, hook)
            assert queued == [(0, None)] * 2
            assert states == [("delivered", 1), ("pending", 0), ("pending", 0)]


async def test_two_postgres_worker_processes_together_keep_to_the_limit(
    postgres_backend: str, tmp_path: Path, receiver: Any
) -> None:
    from hookline.bootstrap import prepare_database
    from hookline.runtime import Runtime
    from tests.conftest import Backend

    rate, total = 20.0, 60
    database = Backend(tmp_path, "postgresql")
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    receiver.default = Reply(200, delay=0.005)
    workers = []
    try:
        account = await f.make_account(rt)
        hook = await f.make_webhook(rt, account, receiver.url + "/limited")
        free = await f.make_webhook(rt, account, receiver.url + "/free")
        async with rt.db.transaction() as conn:
            await conn.execute(
                update(webhooks).where(webhooks.c.id == hook).values(rate_limit_per_second=rate)
            )
        await f.emit_many(rt, account, total)
        env = database.env(HOOKLINE_DELIVERY_BATCH_SIZE="10", HOOKLINE_DELIVERY_CONCURRENCY="20")
        workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
        requests = await receiver.wait_for(2 * total, timeout=60)
        await wait_until_settled(rt, 2 * total)
        limited = sorted(r.at for r in requests if r.path == "/limited")
        assert len(limited) == total
        # Tokens bound the claims: at most rate * t + burst in any t seconds. Receipts lag
        # their claims by a varying delay, allowed for with one more second of tokens.
        window = 1.0
        most = max(
            sum(1 for at in limited[i:] if at < start + window) for i, start in enumerate(limited)
        )
        assert most <= rate * (window + 1.0) + burst(rate), most
        async with rt.db.read() as conn:
            attempts = (
                await conn.execute(
                    select(deliveries.c.webhook_id, deliveries.c.attempts, deliveries.c.status)
                )
            ).all()
        assert collections.Counter(attempts) == {
            (hook, 1, "delivered"): total,
            (free, 1, "delivered"): total,
        }
        sent = collections.Counter(r.headers["webhook-id"] for r in requests)
        assert set(sent.values()) == {1}  # nothing sent twice
    finally:
        for process in workers:
            stop_process(process)
        await rt.db.dispose()
        await database.drop()
