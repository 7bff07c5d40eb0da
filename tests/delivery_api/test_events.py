"""POST /events: validation, size limits, idempotency and fan-out to matching webhooks."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy import select

from hookline.store.tables import deliveries, delivery_queue, events
from tests.delivery_api.helpers import (
    CONNECTION,
    CONSUMER,
    assert_error,
    connection_event,
    count_rows,
    create_webhook,
    runtime_of,
    second_account,
)
from tests.support import ApiClient

ORDER = {
    "event": "pos.order.completed",
    "consumerid": CONSUMER,
    "order_id": "ord-1",
    "device_id": None,
    "customer_id": None,
    "location_id": "loc-1",
    "updated_at": "2026-11-26T10:15:00Z",
}


async def test_event_is_stored_with_accountid_and_created_and_fanned_out(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    hook = await create_webhook(api)
    response = await api.post("/events", json=connection_event())
    assert response.status_code == 202, response.text
    result = response.json()
    assert set(result) == {"eventid", "body", "deliveries"}
    assert result["deliveries"] == 1
    created = result["body"]["created"]
    assert isinstance(created, int)
    assert abs(created - int(runtime.clock.now().timestamp())) <= 5
    assert result["body"] == {
        "accountid": api.account_id,
        "event": "account.connection.created",
        "consumerid": CONSUMER,
        "created": created,
        "connectionid": CONNECTION,
        "status": "active",
    }
    event_id = uuid.UUID(result["eventid"])
    async with runtime.db.read() as conn:
        stored = (await conn.execute(select(events).where(events.c.id == event_id))).one()
        delivery = (await conn.execute(select(deliveries))).one()
        queued = (await conn.execute(select(delivery_queue))).one()
    assert json.loads(stored.payload) == result["body"]
    assert stored.idempotency_key is None
    assert (delivery.event_id, str(delivery.webhook_id), delivery.status) == (
        event_id,
        hook["webhookid"],
        "pending",
    )
    assert (queued.delivery_id, queued.attempt) == (delivery.id, 0)


async def test_fan_out_reaches_only_active_webhooks_of_that_event_and_account(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    wanted = [await create_webhook(api, url=f"https://example.com/{n}") for n in range(3)]
    paused = await create_webhook(api, url="https://example.com/paused")
    await api.patch(f"/webhooks/{paused['webhookid']}", json={"status": "inactive"})
    await create_webhook(api, event="account.connection.deleted")
    other = await second_account(api)
    await create_webhook(other)
    response = await api.post("/events", json=connection_event())
    assert response.json()["deliveries"] == 3
    async with runtime.db.read() as conn:
        targets = set((await conn.execute(select(deliveries.c.webhook_id))).scalars())
    assert {str(t) for t in targets} == {w["webhookid"] for w in wanted}
    assert await count_rows(runtime, delivery_queue) == 3


async def test_no_webhook_means_an_event_with_zero_deliveries(api: ApiClient) -> None:
    runtime = runtime_of(api)
    response = await api.post("/events", json=connection_event())
    assert response.status_code == 202
    assert response.json()["deliveries"] == 0
    assert await count_rows(runtime, events) == 1
    assert await count_rows(runtime, deliveries) == 0


@pytest.mark.parametrize(
    "body, code, detail",
    [
        ({"event": "account.nope", "consumerid": CONSUMER}, "ERROR_UNKNOWN_EVENT", None),
        ({"consumerid": CONSUMER}, "ERROR_INVALID_BODY", "event: required"),
        ([1, 2], "ERROR_INVALID_BODY", ""),
        (
            {**connection_event(), "consumerid": "not-a-uuid"},
            "ERROR_INVALID_BODY",
            "consumerid: not a uuid",
        ),
        ({**connection_event(), "consumerid": 12}, "ERROR_INVALID_BODY", "consumerid: not a uuid"),
        (
            {**connection_event(), "status": "sleeping"},
            "ERROR_INVALID_BODY",
            "status: 'sleeping' is not one of ['active', 'inactive']",
        ),
        (
            {**connection_event(), "connectionid": "x"},
            "ERROR_INVALID_BODY",
            "connectionid: 'x' is not a 'uuid'",
        ),
        (
            {**connection_event(), "surprise": 1},
            "ERROR_INVALID_BODY",
            "body: Additional properties are not allowed ('surprise' was unexpected)",
        ),
        ({**connection_event(), "accountid": str(uuid.uuid4())}, "ERROR_INVALID_BODY", "accountid"),
        ({**connection_event(), "created": 5}, "ERROR_INVALID_BODY", "created"),
        (
            {**connection_event(), "integrationid": "2001"},
            "ERROR_INVALID_BODY",
            "integrationid: not an integer",
        ),
    ],
)
async def test_bad_bodies_answer_400_with_the_schema_error(
    api: ApiClient,
    body: object,
    code: str,
    detail: str | None,
) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    response = await api.post("/events", json=body)
    payload = assert_error(response, 400, code)
    if detail is not None:
        assert payload["detail"] == detail
    assert await count_rows(runtime, events) == 0


async def test_missing_required_field_is_listed_in_detail(api: ApiClient) -> None:
    body = connection_event()
    del body["status"]
    payload = assert_error(await api.post("/events", json=body), 400, "ERROR_INVALID_BODY")
    # missing fields are sent as null, so the schema reports the null
    assert payload["detail"] == (
        "status: None is not of type 'string'; status: None is not one of ['active', 'inactive']"
    )


async def test_invalid_json_answers_400(api: ApiClient) -> None:
    response = await api.post(
        "/events", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    payload = assert_error(response, 400, "ERROR_INVALID_BODY")
    assert payload["message"] == "The body is not valid JSON"


async def test_oversized_events_answer_413_by_header_and_by_actual_size(api: ApiClient) -> None:
    runtime = runtime_of(api)
    limit = runtime.settings.max_event_bytes
    big = json.dumps({**connection_event(), "pad": "x" * limit}).encode()
    response = await api.post("/events", content=big, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "ERROR_PAYLOAD_TOO_LARGE")

    async def chunks():  # no Content-Length: streamed, checked while reading
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    response = await api.post(
        "/events", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "ERROR_PAYLOAD_TOO_LARGE")
    # A Content-Length that lies (small) does not let a big body through either.
    response = await api.post(
        "/events",
        content=chunks(),
        headers={"Content-Type": "application/json", "Content-Length": "10"},
    )
    assert response.status_code in (400, 413)
    assert await count_rows(runtime, events) == 0


async def test_body_exactly_at_the_limit_is_accepted(database) -> None:
    from tests.delivery_api.conftest_helpers import app_client

    async with app_client(database, max_event_bytes=400) as api:
        body = connection_event()
        raw = json.dumps(body).encode()
        padded = raw[:-1] + b" " * (400 - len(raw)) + b"}"
        assert len(padded) == 400
        ok = await api.post("/events", content=padded, headers={"Content-Type": "application/json"})
        assert ok.status_code == 202, ok.text
        over = await api.post(
            "/events", content=padded + b" ", headers={"Content-Type": "application/json"}
        )
        assert_error(over, 413)


async def test_same_request_id_twice_gives_one_event_one_delivery_same_response(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    headers = {"x-chift-client-requestid": "req-42"}
    first = await api.post("/events", json=connection_event(), headers=headers)
    second = await api.post("/events", json=connection_event(), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert "x-idempotent-replayed" not in first.headers
    assert second.headers["x-idempotent-replayed"] == "true"
    assert await count_rows(runtime, events) == 1
    assert await count_rows(runtime, deliveries) == 1
    assert await count_rows(runtime, delivery_queue) == 1
    # Another key, or no key, is another event.
    third = await api.post(
        "/events", json=connection_event(), headers={"x-chift-client-requestid": "req-43"}
    )
    assert third.json()["eventid"] != first.json()["eventid"]
    assert await count_rows(runtime, deliveries) == 2


async def test_request_ids_are_per_account(api: ApiClient) -> None:
    runtime = runtime_of(api)
    other = await second_account(api)
    headers = {"x-chift-client-requestid": "shared"}
    one = await api.post("/events", json=connection_event(), headers=headers)
    two = await other.post("/events", json=connection_event(), headers=headers)
    assert one.json()["eventid"] != two.json()["eventid"]
    assert two.json()["body"]["accountid"] == other.account_id
    assert await count_rows(runtime, events) == 2


async def test_request_id_reused_for_another_event_answers_409(api: ApiClient) -> None:
    headers = {"x-chift-client-requestid": "req-1"}
    first = await api.post("/events", json=connection_event(), headers=headers)
    assert first.status_code == 202
    changed = await api.post("/events", json=connection_event(status="inactive"), headers=headers)
    payload = assert_error(changed, 409, "ERROR_IDEMPOTENCY_CONFLICT")
    assert payload["detail"] == f"first event: {first.json()['eventid']}"
    too_long = await api.post(
        "/events", json=connection_event(), headers={"x-chift-client-requestid": "k" * 201}
    )
    assert_error(too_long, 400, "ERROR_INVALID_IDEMPOTENCY_KEY")


async def test_concurrent_identical_requests_emit_once(api: ApiClient) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    headers = {"x-chift-client-requestid": "race"}
    responses = await asyncio.gather(
        *[api.post("/events", json=connection_event(), headers=headers) for _ in range(4)]
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.text for r in responses}) == 1
    assert await count_rows(runtime, events) == 1
    assert await count_rows(runtime, deliveries) == 1


async def test_pos_events_reach_only_webhooks_of_their_integration(api: ApiClient) -> None:
    runtime = runtime_of(api)
    lightspeed = await create_webhook(
        api, event="pos.order.completed", url="https://example.com/ls", integrationid=2001
    )
    await create_webhook(
        api, event="pos.order.completed", url="https://example.com/sumup", integrationid=2002
    )
    response = await api.post("/events", json={**ORDER, "integrationid": 2001})
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["deliveries"] == 1
    assert "integrationid" not in result["body"]
    async with runtime.db.read() as conn:
        delivery = (await conn.execute(select(deliveries))).one()
        stored = (await conn.execute(select(events))).one()
    assert str(delivery.webhook_id) == lightspeed["webhookid"]
    assert stored.integration_id == 2001
    assert "integrationid" not in json.loads(stored.payload)


async def test_pos_events_need_a_pos_integrationid(api: ApiClient) -> None:
    runtime = runtime_of(api)
    assert_error(await api.post("/events", json=ORDER), 400, "ERROR_INTEGRATION_REQUIRED")
    assert_error(
        await api.post("/events", json={**ORDER, "integrationid": 1001}),
        400,
        "ERROR_INVALID_INTEGRATION",
    )
    assert_error(
        await api.post("/events", json={**ORDER, "integrationid": 424242}),
        400,
        "ERROR_UNKNOWN_INTEGRATION",
    )
    assert await count_rows(runtime, events) == 0


async def test_non_pos_event_may_name_its_integration(api: ApiClient) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    response = await api.post("/events", json={**connection_event(), "integrationid": 1001})
    assert response.json()["deliveries"] == 1
    async with runtime.db.read() as conn:
        assert (await conn.execute(select(events.c.integration_id))).scalar_one() == 1001
    assert_error(
        await api.post("/events", json={**connection_event(), "integrationid": 5}),
        400,
        "ERROR_UNKNOWN_INTEGRATION",
    )


async def test_an_event_for_more_webhooks_than_the_fast_path_carries_reaches_them_all(
    api: ApiClient,
) -> None:
    from hookline.store.event_sink_pg import SPARE_IDS

    runtime = runtime_of(api)
    hooks = [
        await create_webhook(api, url=f"https://example.com/hook/{i}") for i in range(SPARE_IDS + 2)
    ]
    response = await api.post("/events", json=connection_event())
    assert response.status_code == 202, response.text
    assert response.json()["deliveries"] == len(hooks)
    assert await count_rows(runtime, deliveries) == len(hooks)
    assert await count_rows(runtime, delivery_queue) == len(hooks)
    assert await count_rows(runtime, events) == 1
