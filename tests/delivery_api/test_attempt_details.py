"""GET /webhooks/{id}/logs/{logid}: one attempt whole, as the real worker recorded it.

Attempts go through the real worker to a real loopback receiver, so the stored headers are
compared with what the receiver actually got, on both the fast (delivered) and the general
(retry/failed) recording paths.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from hookline.delivery.attempts import schedule_ahead
from hookline.delivery.worker import DeliveryWorker
from tests.delivery_api.conftest_helpers import app_client
from tests.delivery_api.helpers import (
    assert_error,
    connection_event,
    create_webhook,
    runtime_of,
    second_account,
)
from tests.receiver import Reply
from tests.support import ApiClient

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def worker_api(api: ApiClient) -> AsyncIterator[tuple[ApiClient, DeliveryWorker]]:
    worker = DeliveryWorker(runtime_of(api))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield api, worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


def pairs(items: list[dict]) -> dict[str, str]:
    return {item["name"].lower(): item["value"] for item in items}


async def test_a_delivered_attempt_keeps_what_was_sent_and_what_came_back(
    worker_api, receiver
) -> None:
    api, worker = worker_api
    receiver.replies = [Reply(200, b'{"ok":true}', headers={"X-Receiver": "r1"})]
    hook = await create_webhook(api, url=f"{receiver.url}/hook", signingsecret=SECRET)
    sent = await api.post("/events", json=connection_event())
    [got] = await receiver.wait_for(1)
    await worker.wait_recorded(1)
    [log] = (await api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
    response = await api.get(f"/webhooks/{hook['webhookid']}/logs/{log['webhooklogid']}")
    assert response.status_code == 200, response.text
    detail = response.json()
    # the list item's fields, unchanged
    assert {key: detail[key] for key in log} == log
    sent_headers = pairs(detail["request_headers"])
    received = {name.lower(): value for name, value in got.headers.items()}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "x-chift-signature"):
        assert sent_headers[name] == received[name]
    assert sent_headers["content-length"] == str(len(got.body))
    assert detail["request_body"].encode() == got.body
    assert detail["event_id"] == sent.json()["eventid"]
    assert pairs(detail["response_headers"])["x-receiver"] == "r1"
    assert detail["httpstatus"] == 200
    assert detail["response_excerpt"] == '{"ok":true}'
    assert (detail["delivery_status"], detail["delivery_attempts"]) == ("delivered", 1)
    assert detail["delivery_next_attempt_at"] is None
    assert detail["retry_schedule"] == []


async def test_a_retried_attempt_shows_the_schedule_ahead(worker_api, receiver) -> None:
    api, worker = worker_api
    # Test settings: schedule 0, 0.2, 0.4 s; the first attempt fails with 503.
    receiver.replies = [Reply(503, b"down", headers={"Retry-After": "30"})]
    receiver.default = Reply(200)
    hook = await create_webhook(api, url=f"{receiver.url}/hook")
    await api.post("/events", json=connection_event())
    await receiver.wait_for(1)
    await worker.wait_recorded(1)
    logs = (await api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
    [first] = [item for item in logs if item["attempt"] == 1]
    assert first["outcome"] == "retry"
    detail = (await api.get(f"/webhooks/{hook['webhookid']}/logs/{first['webhooklogid']}")).json()
    assert detail["error_class"] == "HTTP503"
    assert pairs(detail["response_headers"])["retry-after"] == "30"
    assert "webhook-signature" not in pairs(detail["request_headers"])  # no secret: unsigned
    assert detail["delivery_status"] == "pending"
    next_at = datetime.fromisoformat(detail["next_attempt_at"])
    # Retry-After (30 s, within the bound) set the next attempt; one more entry follows it.
    assert [(p["attempt"], datetime.fromisoformat(p["at"])) for p in detail["retry_schedule"]] == [
        (2, next_at),
        (3, next_at + timedelta(seconds=0.4)),
    ]
    assert datetime.fromisoformat(detail["delivery_next_attempt_at"]) == next_at


async def test_no_response_keeps_the_request_and_no_response_headers(worker_api) -> None:
    api, worker = worker_api
    hook = await create_webhook(api, url="http://127.0.0.1:9/closed")  # discard port: refused
    await api.post("/events", json=connection_event())
    await worker.wait_recorded(1)
    [log, *_] = (await api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
    detail = (await api.get(f"/webhooks/{hook['webhookid']}/logs/{log['webhooklogid']}")).json()
    assert detail["httpstatus"] == 0
    assert detail["error_class"]
    assert detail["response_headers"] == []
    assert "webhook-id" in pairs(detail["request_headers"])


def test_schedule_ahead_follows_the_configured_delays() -> None:
    at = datetime(2026, 1, 1, 12, 0)
    planned = schedule_ahead(1, at, [0, 5, 300, 1800])
    assert [(p.number, p.at) for p in planned] == [
        (2, at),
        (3, at + timedelta(seconds=300)),
        (4, at + timedelta(seconds=2100)),
    ]
    assert schedule_ahead(4, None, [0, 5, 300, 1800]) == []


async def test_another_accounts_attempt_and_unknown_ids_are_404(worker_api, receiver) -> None:
    api, worker = worker_api
    hook = await create_webhook(api, url=f"{receiver.url}/hook")
    await api.post("/events", json=connection_event())
    await worker.wait_recorded(1)
    [log] = (await api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
    other = await second_account(api)
    path = f"/webhooks/{hook['webhookid']}/logs/{log['webhooklogid']}"
    assert_error(await other.get(path), 404)
    assert_error(await api.get(f"/webhooks/{hook['webhookid']}/logs/{uuid.uuid4()}"), 404)
    assert_error(await api.get(f"/webhooks/{uuid.uuid4()}/logs/{log['webhooklogid']}"), 404)
    assert (await api.get(f"/webhooks/{hook['webhookid']}/logs/not-an-id")).status_code == 422


async def test_the_response_excerpt_is_bounded_by_the_setting(database, receiver) -> None:
    async with app_client(database, response_excerpt_bytes=16) as api:
        worker = DeliveryWorker(runtime_of(api))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            receiver.default = Reply(200, b"x" * 5000)
            hook = await create_webhook(api, url=f"{receiver.url}/hook")
            await api.post("/events", json=connection_event())
            await worker.wait_recorded(1)
            [log] = (await api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
            path = f"/webhooks/{hook['webhookid']}/logs/{log['webhooklogid']}"
            detail = (await api.get(path)).json()
            assert detail["response_excerpt"] == "x" * 16
            assert pairs(detail["response_headers"])["content-length"] == "5000"
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)


async def test_the_attempt_is_in_the_openapi(api: ApiClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    operation = schema["paths"]["/webhooks/{webhookid}/logs/{webhooklogid}"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    model = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"request_headers", "request_body", "response_headers", "retry_schedule"} <= set(
        model["properties"]
    )
