"""GET /events and GET /events/{eventid}: search newest first, cursor pages, one event whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, update

from hookline.delivery import event_log
from hookline.ids import new_id
from hookline.store.tables import deliveries, delivery_queue, events
from tests.delivery_api.helpers import (
    CONNECTION,
    CONSUMER,
    assert_error,
    connection_event,
    create_webhook,
    insert_delivery,
    insert_log,
    runtime_of,
    second_account,
)
from tests.support import ApiClient

BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OTHER_CONSUMER = "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e70"
OTHER_CONNECTION = "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e71"


async def insert_events(api: ApiClient, count: int, *, event: str = "account.flow.enabled") -> list:
    """``count`` events a minute apart from BASE, oldest first; returns their ids."""
    runtime = runtime_of(api)
    ids = []
    async with runtime.db.transaction() as conn:
        for n in range(count):
            ids.append(new_id())
            await conn.execute(
                insert(events).values(
                    id=ids[-1],
                    account_id=uuid.UUID(api.account_id),
                    event_type=event,
                    consumer_id=None,
                    payload=b'{"event":"%s","n":%d}' % (event.encode(), n),
                    created_at=BASE + timedelta(minutes=n),
                )
            )
    return [str(i) for i in ids]


async def all_pages(api: ApiClient, **params: str) -> tuple[list[str], int]:
    """Follow X-Next-Cursor to the end; returns the ids seen and the number of requests."""
    seen: list[str] = []
    cursor = None
    requests = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/events", params=query)
        assert response.status_code == 200, response.text
        requests += 1
        seen += [item["eventid"] for item in response.json()]
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            return seen, requests


async def test_events_are_listed_newest_first_with_their_exact_body(api: ApiClient) -> None:
    await create_webhook(api)
    first = (await api.post("/events", json=connection_event())).json()
    second = (await api.post("/events", json=connection_event(status="inactive"))).json()
    response = await api.get("/events")
    assert response.status_code == 200
    assert "X-Next-Cursor" not in response.headers
    items = response.json()
    assert [item["eventid"] for item in items] == [second["eventid"], first["eventid"]]
    top = items[0]
    assert top["event"] == "account.connection.created"
    assert top["consumerid"] == CONSUMER
    assert top["connectionid"] == CONNECTION
    assert top["body"] == second["body"]
    assert datetime.fromisoformat(top["created"]).timestamp() == pytest.approx(
        second["body"]["created"], abs=1
    )


async def test_filters_by_type_consumer_connection_and_time(api: ApiClient) -> None:
    a = (await api.post("/events", json=connection_event())).json()["eventid"]
    b = (
        await api.post(
            "/events", json=connection_event(consumerid=OTHER_CONSUMER, connectionid=CONNECTION)
        )
    ).json()["eventid"]
    c = (await api.post("/events", json=connection_event(connectionid=OTHER_CONNECTION))).json()[
        "eventid"
    ]
    old = await insert_events(api, 3)
    ids = lambda response: [item["eventid"] for item in response.json()]  # noqa: E731
    assert ids(await api.get("/events", params={"consumerid": OTHER_CONSUMER})) == [b]
    assert ids(await api.get("/events", params={"connectionid": CONNECTION})) == [b, a]
    assert ids(await api.get("/events", params={"connectionid": OTHER_CONNECTION})) == [c]
    assert ids(await api.get("/events", params={"event": "account.flow.enabled"})) == old[::-1]
    window = {
        "since": (BASE + timedelta(minutes=1)).isoformat(),
        "until": (BASE + timedelta(minutes=2)).isoformat(),
    }
    assert ids(await api.get("/events", params=window)) == [old[2], old[1]]
    naive = {"until": "2026-11-20T12:00:00"}  # no zone: read as UTC
    assert ids(await api.get("/events", params=naive)) == [old[0]]


async def test_cursor_pages_cover_every_event_once(api: ApiClient) -> None:
    made = await insert_events(api, 7)
    seen, requests = await all_pages(api, limit="3")
    assert seen == made[::-1]
    assert requests == 3


async def test_a_rare_match_costs_bounded_pages(api: ApiClient, monkeypatch) -> None:
    monkeypatch.setattr(event_log, "WINDOW", 4)
    monkeypatch.setattr(event_log, "SCAN_BUDGET", 8)
    rare = await insert_events(api, 1, event="account.flow.disabled")
    await insert_events(api, 20)  # newer, all of another type
    first = await api.get("/events", params={"event": "account.flow.disabled"})
    assert first.json() == []  # 8 events examined, none matched: continue from there
    assert first.headers["X-Next-Cursor"]
    seen, requests = await all_pages(api, event="account.flow.disabled")
    assert seen == rare
    assert requests == 3  # 21 events, at most 8 examined per request


async def test_one_event_shows_each_webhooks_delivery_and_attempts(api: ApiClient) -> None:
    runtime = runtime_of(api)
    hook_a = await create_webhook(api, url="https://a.example/hook")
    hook_b = await create_webhook(api, url="https://b.example/hook")
    sent = (await api.post("/events", json=connection_event())).json()
    event_id = uuid.UUID(sent["eventid"])
    account_id = uuid.UUID(api.account_id)
    async with runtime.db.read() as conn:
        rows = (
            await conn.execute(deliveries.select().where(deliveries.c.event_id == event_id))
        ).all()
    by_hook = {str(row.webhook_id): row.id for row in rows}
    due = BASE + timedelta(hours=1)
    async with runtime.db.transaction() as conn:  # as the worker leaves a retried delivery
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == by_hook[hook_a["webhookid"]])
            .values(attempts=1, last_http_status=503)
        )
        await conn.execute(
            update(delivery_queue)
            .where(delivery_queue.c.delivery_id == by_hook[hook_a["webhookid"]])
            .values(available_at=due, attempt=1)
        )
    log_id = await insert_log(
        runtime,
        account_id=account_id,
        webhook_id=uuid.UUID(hook_a["webhookid"]),
        delivery_id=by_hook[hook_a["webhookid"]],
        event_id=event_id,
        at=BASE,
        http_status=503,
        outcome="retry",
    )
    response = await api.get(f"/events/{event_id}")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["eventid"] == str(event_id)
    assert detail["body"] == sent["body"]
    hooks = {item["webhookid"]: item for item in detail["webhooks"]}
    assert set(hooks) == {hook_a["webhookid"], hook_b["webhookid"]}
    a = hooks[hook_a["webhookid"]]
    assert (a["status"], a["attempts"], a["last_http_status"]) == ("pending", 1, 503)
    assert datetime.fromisoformat(a["next_attempt_at"]) == due
    assert [(x["webhooklogid"], x["httpstatus"], x["outcome"]) for x in a["logs"]] == [
        (str(log_id), 503, "retry")
    ]
    b = hooks[hook_b["webhookid"]]
    assert (b["status"], b["attempts"], b["logs"], b["sending"]) == ("pending", 0, [], False)
    assert b["url"] == "https://b.example/hook"


async def test_events_are_scoped_to_the_account(api: ApiClient) -> None:
    hook = await create_webhook(api)
    event_id, _ = await insert_delivery(
        runtime_of(api),
        account_id=uuid.UUID(api.account_id),
        webhook_id=uuid.UUID(hook["webhookid"]),
        status="failed",
        at=BASE,
    )
    other = await second_account(api)
    assert (await other.get("/events")).json() == []
    assert_error(await other.get(f"/events/{event_id}"), 404, "ERROR_EVENT_NOT_FOUND")
    assert_error(await other.get("/events", params={"cursor": str(event_id)}), 404)
    assert (await api.get(f"/events/{event_id}")).status_code == 200


async def test_bad_filters_answer_4xx(api: ApiClient) -> None:
    assert_error(await api.get("/events", params={"event": "no.such.event"}), 400)
    assert_error(
        await api.get(
            "/events", params={"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"}
        ),
        400,
    )
    # malformed parameters: the contract's validation error shape
    assert (await api.get("/events", params={"consumerid": "nope"})).status_code == 422
    assert (await api.get("/events", params={"limit": "0"})).status_code == 422
    assert_error(await api.get(f"/events/{uuid.uuid4()}"), 404, "ERROR_EVENT_NOT_FOUND")


async def test_the_event_endpoints_are_in_the_openapi(api: ApiClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    listed = schema["paths"]["/events"]["get"]
    assert {p["name"] for p in listed["parameters"]} >= {
        "event",
        "consumerid",
        "connectionid",
        "since",
        "until",
        "cursor",
        "limit",
    }
    assert "post" in schema["paths"]["/events"]
    one = schema["paths"]["/events/{eventid}"]["get"]
    ref = one["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert "webhooks" in schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
