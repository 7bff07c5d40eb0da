"""POST /events/batch: results in request order, all-or-nothing validation with indexed
errors, per-item idempotency (also between racing batches), limits, and a fan-out identical
to that of single events, POS events included."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from hookline.api.app import create_app
from hookline.bootstrap import prepare_database
from hookline.runtime import Runtime
from hookline.store.listen import plain_postgres_url
from hookline.store.tables import deliveries, delivery_queue, events
from tests.delivery_api.helpers import (
    CONSUMER,
    assert_error,
    connection_event,
    count_rows,
    create_webhook,
    runtime_of,
    second_account,
)
from tests.support import ApiClient


def conn_event(n: int, event: str = "account.connection.created", **extra: Any) -> dict:
    body = {**connection_event(connectionid=str(uuid.UUID(int=n))), "event": event, **extra}
    if event != "account.connection.created":
        body.pop("status")
    return body


def order_event(n: int, integration: int | None = 2001, **extra: Any) -> dict:
    body = {
        "event": "pos.order.completed",
        "consumerid": CONSUMER,
        "order_id": f"ord-{n}",
        "device_id": None,
        "customer_id": None,
        "location_id": "loc-1",
        "updated_at": "2026-11-26T10:15:00Z",
        **extra,
    }
    if integration is not None:
        body["integrationid"] = integration
    return body


async def post_batch(api: ApiClient, items: list[dict], **kwargs: Any) -> httpx.Response:
    return await api.post("/events/batch", json={"events": items}, **kwargs)


async def stored_payloads(runtime: Runtime) -> dict[uuid.UUID, dict]:
    async with runtime.db.read() as conn:
        rows = (await conn.execute(select(events.c.id, events.c.payload))).all()
    return {row.id: json.loads(row.payload) for row in rows}


async def test_results_come_in_request_order_and_each_names_its_event(api: ApiClient) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    items = [conn_event(n) for n in range(5)] + [conn_event(9, "account.connection.deleted")]
    response = await post_batch(api, items)
    assert response.status_code == 202, response.text
    results = response.json()["items"]
    assert [set(r) for r in results] == [{"eventid", "deliveries", "replayed"}] * 6
    assert [(r["deliveries"], r["replayed"]) for r in results] == [(1, False)] * 5 + [(0, False)]
    stored = await stored_payloads(runtime)
    assert len(stored) == 6
    for item, result in zip(items, results, strict=True):
        body = stored[uuid.UUID(result["eventid"])]
        assert (body["event"], body["connectionid"]) == (item["event"], item["connectionid"])
        assert body["accountid"] == api.account_id
    assert await count_rows(runtime, delivery_queue) == 5


async def _webhook_set(api: ApiClient) -> dict[str, str]:
    """The same webhooks in any account: name -> webhookid."""
    hooks = {
        "created-1": await create_webhook(api, url="https://example.com/c1"),
        "created-2": await create_webhook(api, url="https://example.com/c2"),
        "created-off": await create_webhook(api, url="https://example.com/off"),
        "pos-2001": await create_webhook(
            api, event="pos.order.completed", url="https://example.com/p1", integrationid=2001
        ),
        "pos-2002": await create_webhook(
            api, event="pos.order.completed", url="https://example.com/p2", integrationid=2002
        ),
    }
    off = hooks["created-off"]["webhookid"]
    assert (await api.patch(f"/webhooks/{off}", json={"status": "inactive"})).status_code == 200
    return {name: hook["webhookid"] for name, hook in hooks.items()}


async def _targets(runtime: Runtime, names: dict[str, str], event_id: str) -> set[str]:
    by_id = {webhook_id: name for name, webhook_id in names.items()}
    async with runtime.db.read() as conn:
        rows = await conn.execute(
            select(deliveries.c.webhook_id).where(deliveries.c.event_id == uuid.UUID(event_id))
        )
        return {by_id[str(row.webhook_id)] for row in rows}


async def test_a_mixed_batch_fans_out_exactly_as_single_events(api: ApiClient) -> None:
    runtime = runtime_of(api)
    items = [
        conn_event(1),
        order_event(1, 2001),
        order_event(2, 2002),
        conn_event(2, "account.connection.deleted"),
        order_event(3, 2003),  # a POS integration nobody subscribed to
        conn_event(3, integrationid=1001),  # a non-POS event may name its integration
    ]
    expected = [
        {"created-1", "created-2"},
        {"pos-2001"},
        {"pos-2002"},
        set(),
        set(),
        {"created-1", "created-2"},
    ]
    singles_account = await second_account(api)
    single_hooks = await _webhook_set(singles_account)
    batch_hooks = await _webhook_set(api)
    singles = []
    for item in items:
        response = await singles_account.post("/events", json=item)
        assert response.status_code == 202, response.text
        singles.append(response.json())
    woken: list[set[str]] = []
    runtime.db.on_wake(woken.append)
    response = await post_batch(api, items)
    assert response.status_code == 202, response.text
    results = response.json()["items"]
    assert woken == [{"deliveries"}]  # workers are woken once for the whole batch
    assert [r["deliveries"] for r in results] == [s["deliveries"] for s in singles]
    for index, (single, batched) in enumerate(zip(singles, results, strict=True)):
        assert await _targets(runtime, single_hooks, single["eventid"]) == expected[index]
        assert await _targets(runtime, batch_hooks, batched["eventid"]) == expected[index]
    async with runtime.db.read() as conn:
        integrations = dict(
            (await conn.execute(select(events.c.id, events.c.integration_id))).all()
        )
    assert [integrations[uuid.UUID(r["eventid"])] for r in results] == [
        None,
        2001,
        2002,
        None,
        2003,
        1001,
    ]
    assert await count_rows(runtime, delivery_queue) == 2 * sum(len(e) for e in expected)


async def test_any_invalid_item_rejects_the_batch_and_names_every_bad_item(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    items = [
        conn_event(0),
        conn_event(1, status="sleeping"),
        conn_event(2, requestid="k" * 201),
        {"event": "account.nope", "consumerid": CONSUMER},
        order_event(4, integration=None),
        conn_event(5),
        order_event(6, integration=1001),
        "not an object",
        conn_event(8, surprise=1),
        conn_event(9, integrationid=424242),
        conn_event(10, integrationid=2**40),
    ]
    payload = assert_error(await post_batch(api, items), 400, "ERROR_INVALID_BODY")
    assert payload["detail"].split("; ") == [
        "events[1].status: 'sleeping' is not one of ['active', 'inactive']",
        "events[2].requestid: must be a string of 1 to 200 characters",
        "events[3].event: Unknown event 'account.nope'",
        "events[4].integrationid: required for POS events",
        "events[6].integrationid: 1001 is not a Point of Sale integration",
        "events[7]: not a JSON object",
        "events[8]: Additional properties are not allowed ('surprise' was unexpected)",
        "events[9].integrationid: unknown integration 424242",
        "events[10].integrationid: out of range",
    ]
    assert payload["message"] == "9 of 11 events are invalid; none was accepted"
    # A NUL (no text column holds one) is refused for the whole request, before parsing.
    with_nul = [conn_event(0), conn_event(1, requestid="nul\x00inside")]
    assert_error(await post_batch(api, with_nul), 400, "ERROR_NUL_CHARACTER")
    assert await count_rows(runtime, events) == 0
    assert await count_rows(runtime, deliveries) == 0


async def test_bodies_that_are_not_a_batch_answer_400(api: ApiClient) -> None:
    for body in ([conn_event(0)], {"events": conn_event(0)}, {"events": [], "more": 1}):
        assert_error(await api.post("/events/batch", json=body), 400, "ERROR_INVALID_BODY")
    broken = await api.post(
        "/events/batch", content=b'{"events": [', headers={"Content-Type": "application/json"}
    )
    assert assert_error(broken, 400, "ERROR_INVALID_BODY")["message"] == (
        "The body is not valid JSON"
    )
    # A lone surrogate is not JSON that orjson reads (nor text PostgreSQL stores).
    surrogate = b'{"events": [{"event": "account.connection.created", "requestid": "\\ud800"}]}'
    broken = await api.post(
        "/events/batch", content=surrogate, headers={"Content-Type": "application/json"}
    )
    assert_error(broken, 400, "ERROR_INVALID_BODY")
    empty = await post_batch(api, [])
    assert (empty.status_code, empty.json()) == (202, {"items": []})


async def test_request_ids_replay_their_first_event_and_queue_nothing_again(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    first = (
        await post_batch(api, [conn_event(1, requestid="k1"), conn_event(2, requestid="k2")])
    ).json()["items"]
    again = await post_batch(
        api,
        [
            conn_event(3, requestid="k3"),
            conn_event(1, requestid="k1"),
            conn_event(4, requestid="k4"),
            conn_event(4, requestid="k4"),  # repeated within the batch
            conn_event(5),
        ],
    )
    assert again.status_code == 202, again.text
    items = again.json()["items"]
    assert items[1] == {**first[0], "replayed": True}
    assert (items[0]["replayed"], items[2]["replayed"], items[3]["replayed"]) == (
        False,
        False,
        True,
    )
    assert items[3]["eventid"] == items[2]["eventid"] and items[3]["deliveries"] == 1
    assert len({item["eventid"] for item in items}) == 4
    assert await count_rows(runtime, events) == 5  # 2 + k3, k4 and the keyless one
    assert await count_rows(runtime, deliveries) == 5
    # The same key through POST /events (the header) is the same event.
    single = await api.post(
        "/events", json=conn_event(2), headers={"x-chift-client-requestid": "k2"}
    )
    assert single.headers["x-idempotent-replayed"] == "true"
    assert single.json()["eventid"] == first[1]["eventid"]
    # Keys are per account.
    other = await second_account(api)
    theirs = (await post_batch(other, [conn_event(1, requestid="k1")])).json()["items"]
    assert theirs[0]["replayed"] is False and theirs[0]["eventid"] != first[0]["eventid"]


async def test_a_request_id_reused_for_another_event_rejects_the_whole_batch(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    await create_webhook(api)
    first = (await post_batch(api, [conn_event(1, requestid="k1")])).json()["items"][0]
    response = await post_batch(
        api, [conn_event(2, requestid="k2"), conn_event(1, status="inactive", requestid="k1")]
    )
    payload = assert_error(response, 409, "ERROR_IDEMPOTENCY_CONFLICT")
    assert payload["detail"] == f"events[1]: first event: {first['eventid']}"
    inside = await post_batch(api, [conn_event(3, requestid="k3"), conn_event(4, requestid="k3")])
    assert assert_error(inside, 409, "ERROR_IDEMPOTENCY_CONFLICT")["detail"].startswith(
        "events[1]: first event: "
    )
    assert await count_rows(runtime, events) == 1  # neither k2 nor k3 was kept
    assert await count_rows(runtime, deliveries) == 1


async def test_limits_answer_before_the_body_is_parsed(database: Any) -> None:
    from tests.delivery_api.conftest_helpers import app_client

    async with app_client(
        database, max_batch_bytes=2000, max_batch_events=3, max_event_bytes=400
    ) as api:
        runtime = runtime_of(api)
        not_json = b"{" + b"x" * 2000  # invalid JSON: a 400 would mean it was parsed
        headers = {"Content-Type": "application/json"}
        response = await api.post("/events/batch", content=not_json, headers=headers)
        assert "content-length" in {k.lower() for k in response.request.headers}
        assert_error(response, 413, "ERROR_PAYLOAD_TOO_LARGE")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for start in range(0, len(not_json), 256):
                yield not_json[start : start + 256]

        response = await api.post("/events/batch", content=chunks(), headers=headers)
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert_error(response, 413, "ERROR_PAYLOAD_TOO_LARGE")
        too_many = assert_error(
            await post_batch(api, [conn_event(n) for n in range(4)]), 400, "ERROR_TOO_MANY_EVENTS"
        )
        assert too_many["detail"] == "events: 4 items"
        oversized = order_event(1, order_id="o" * 400)  # valid, but over max_event_bytes
        payload = assert_error(await post_batch(api, [conn_event(0), oversized]), 400)
        assert payload["detail"] == "events[1]: larger than 400 bytes"
        ok = await post_batch(api, [conn_event(n) for n in range(3)])
        assert ok.status_code == 202, ok.text
        assert await count_rows(runtime, events) == 3


async def test_the_batch_route_is_described_in_openapi(api: ApiClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    operation = spec["paths"]["/events/batch"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["events"]
    item = schema["$defs"]["BatchEventItem"]["properties"]
    assert {"event", "consumerid", "integrationid", "requestid"} <= set(item)
    assert {"202", "400", "409", "413"} <= set(operation["responses"])


@asynccontextmanager
async def _second_app(runtime: Runtime, api: ApiClient) -> AsyncIterator[ApiClient]:
    """Another API on the same database with its own pools, as another process would be."""
    other = Runtime.create(runtime.settings)
    await prepare_database(other)
    app = create_app(other, run_background=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hookline.test"
        ) as http:
            client = ApiClient(http, api.key)
            client.headers = api.headers
            yield client
    finally:
        await other.db.dispose()


async def waiting_on_locks(url: str, count: int, timeout: float = 20.0) -> None:
    """Until ``count`` event writers wait for a lock (polling another server's state)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'hookline-events' AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{waiting} waiting"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_racing_batches_share_their_keys_without_double_events(api: ApiClient) -> None:
    """Two APIs (own pools, as two processes) send batches with the same keys in opposite
    orders while a third transaction holds a key in the middle: both batches are in flight
    at once, and when the holder rolls back, one wins every key and the other replays them
    (had each written its keys in its own order, each would hold half of them and wait for
    the other's: a deadlock)."""
    runtime = runtime_of(api)
    await create_webhook(api)
    url = plain_postgres_url(runtime.db.url)
    schema = runtime.settings.database_schema
    keys = [f"race-{n:02d}" for n in range(40)]
    async with _second_app(runtime, api) as other:
        for round_ in range(2):
            batch = [conn_event(n, requestid=f"{key}-{round_}") for n, key in enumerate(keys)]
            holder = await asyncpg.connect(url, server_settings={"search_path": schema})
            try:
                held = holder.transaction()
                await held.start()
                await holder.execute(
                    "INSERT INTO events (id, account_id, event_type, payload, idempotency_key, "
                    "created_at) VALUES ($1, $2, 'account.connection.created', '{}', $3, now())",
                    uuid.uuid4(),
                    uuid.UUID(api.account_id),
                    batch[20]["requestid"],  # a key in the middle of both orders
                )
                one = asyncio.ensure_future(post_batch(api, batch))
                two = asyncio.ensure_future(post_batch(other, list(reversed(batch))))
                await waiting_on_locks(url, 2)
                await held.rollback()
                first, second = await one, await two
            finally:
                await holder.close()
            assert first.status_code == second.status_code == 202, (first.text, second.text)
            ours, theirs = first.json()["items"], list(reversed(second.json()["items"]))
            for mine, yours in zip(ours, theirs, strict=True):
                assert mine["eventid"] == yours["eventid"]
                assert mine["deliveries"] == yours["deliveries"] == 1
            replays = {(m["replayed"], y["replayed"]) for m, y in zip(ours, theirs, strict=True)}
            assert replays in ({(False, True)}, {(True, False)})  # one batch won every key
    assert await count_rows(runtime, events) == 2 * len(keys)
    assert await count_rows(runtime, deliveries) == 2 * len(keys)
    assert await count_rows(runtime, delivery_queue) == 2 * len(keys)
