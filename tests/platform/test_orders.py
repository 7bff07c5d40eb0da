"""POS orders: push endpoint, idempotent upserts, events and their integration scope, reads,
PATCH, locations, and the simulated connector through the poller registry."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hookline.api.app import create_app
from hookline.clock import FrozenClock
from hookline.platform.accounts import create_api_key
from hookline.platform.connectors import poll_connection, register_connector, unregister_connector
from hookline.platform.connectors.simulated import SimulatedPos
from hookline.platform.orders import iso
from hookline.runtime import Runtime
from hookline.store.tables import deliveries, events, webhooks
from tests.platform.issues_orders_support import (
    POS_A,
    POS_B,
    World,
    add_connection,
    add_webhook,
    emitted,
    frozen_runtime,
    make_world,
)
from tests.support import ApiClient, Ticks

ORDER: dict[str, Any] = {
    "id": "ord-1",
    "order_number": "0001",
    "creation_date": "2026-11-20T09:30:00Z",
    "device_id": "till-1",
    "total": 12.3,
    "tax_amount": 0.7,
    "currency": "EUR",
    "location_id": "loc-1",
    "payments": [],
    "items": [
        {
            "id": "l1",
            "quantity": 3,
            "unit_price": 4.1,
            "total": 12.3,
            "tax_amount": 0.7,
            "tax_rate": 6,
        }
    ],
}


@pytest.fixture
async def http(database: Any) -> AsyncIterator[tuple[ApiClient, Runtime, FrozenClock, World]]:
    rt, clock = await frozen_runtime(database)
    world = await make_world(rt)
    async with rt.db.transaction() as conn:
        key = await create_api_key(conn, world.account_id, now=rt.clock.now())
    app = create_app(rt, run_background=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hookline.test"
        ) as client:
            api = ApiClient(client, key)
            await api.login()
            yield api, rt, clock, world
    finally:
        await rt.db.dispose()


def _order_body(world: World, rt: Runtime, event: str, **fields: Any) -> dict[str, Any]:
    return {
        "accountid": str(world.account_id),
        "event": event,
        "consumerid": str(world.consumer_id),
        "created": int(rt.clock.now().timestamp()),
        "order_id": "ord-1",
        "device_id": "till-1",
        "customer_id": None,
        "location_id": "loc-1",
        "updated_at": iso(rt.clock.now()),
        **fields,
    }


async def test_push_emits_updated_then_completed_once_and_ignores_repeats(http: Any) -> None:
    api, rt, clock, world = http
    url = f"/consumers/{world.consumer_id}/pos/orders"
    first = await api.post(url, json=ORDER)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "connectionid": str(world.pos),
        "items": [{"id": "ord-1", "status": "open", "changed": True, "completed": False}],
    }
    assert await emitted(rt, "pos.order.updated") == [_order_body(world, rt, "pos.order.updated")]
    # The same order again: nothing is written or emitted.
    again = await api.post(url, json=copy.deepcopy(ORDER))
    assert again.json()["items"][0]["changed"] is False
    assert len(await emitted(rt)) == 1

    clock.advance(600)
    closed = {
        **ORDER,
        "closing_date": "2026-11-20T10:00:00Z",
        "payments": [{"total": 12.3, "status": "Completed"}],
    }
    response = await api.post(url, json=closed)
    assert response.json()["items"] == [
        {"id": "ord-1", "status": "closed", "changed": True, "completed": True}
    ]
    updated = await emitted(rt, "pos.order.updated")
    assert updated[1] == _order_body(world, rt, "pos.order.updated")
    assert await emitted(rt, "pos.order.completed") == [
        _order_body(world, rt, "pos.order.completed", updated_at="2026-11-20T10:00:00Z")
    ]

    # A later change (a tip) is an update, never a second completion.
    clock.advance(60)
    await api.post(url, json={**closed, "total_tip": 1.5})
    assert len(await emitted(rt, "pos.order.updated")) == 3
    assert len(await emitted(rt, "pos.order.completed")) == 1

    detail = (await api.get(f"{url}/ord-1")).json()
    assert detail["total_tip"] == 1.5
    assert detail["closing_date"] == "2026-11-20T10:00:00Z"
    assert detail["items"][0]["quantity"] == 3


async def test_status_extension_and_batch(http: Any) -> None:
    api, rt, _clock, world = http
    url = f"/consumers/{world.consumer_id}/pos/orders"
    batch = [
        {**ORDER, "id": "a", "status": "open"},
        {**ORDER, "id": "b", "status": "completed", "location_id": None, "customer_id": "cust-7"},
    ]
    response = await api.post(url, json=batch)
    assert [item["completed"] for item in response.json()["items"]] == [False, True]
    [completed] = await emitted(rt, "pos.order.completed")
    assert completed["order_id"] == "b"
    assert completed["customer_id"] == "cust-7"
    # No location given: the connection is the location; the close time is "now".
    assert completed["location_id"] == str(world.pos)
    assert completed["updated_at"] == iso(rt.clock.now())
    b = (await api.get(f"{url}/b")).json()
    assert b["closing_date"] is not None and b["location_id"] == str(world.pos)
    dup = await api.post(url, json=[{**ORDER, "id": "x"}, {**ORDER, "id": "x"}])
    assert dup.status_code == 400
    assert (await api.post(url, json=[])).status_code == 400


async def test_push_validates_the_contract_fields(http: Any) -> None:
    api, _, _, world = http
    url = f"/consumers/{world.consumer_id}/pos/orders"
    for broken in (
        {**ORDER, "total": "lots"},
        {k: v for k, v in ORDER.items() if k != "items"},
        {**ORDER, "mode": "TELEPORT"},
        {**ORDER, "status": "lost"},
        {**ORDER, "creation_date": "yesterday"},
    ):
        response = await api.post(url, json=broken)
        assert response.status_code == 422, broken


async def test_connection_choice_with_several_pos_connections(http: Any) -> None:
    api, rt, _, world = http
    url = f"/consumers/{world.consumer_id}/pos/orders"
    second = await add_connection(rt, world.account_id, world.consumer_id, POS_B)
    ambiguous = await api.post(url, json=ORDER)
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error_code"] == "ERROR_AMBIGUOUS_CONNECTION"
    wrong = await api.post(url, json=ORDER, headers={"x-chift-connectionid": str(world.accounting)})
    assert wrong.status_code == 400
    bad = await api.post(url, json=ORDER, headers={"x-chift-connectionid": "nope"})
    assert bad.status_code == 400
    ok = await api.post(url, json=ORDER, headers={"x-chift-connectionid": str(second)})
    assert ok.json()["connectionid"] == str(second)
    # Same order id on the other connection is another order.
    other = await api.post(url, json=ORDER, headers={"x-chift-connectionid": str(world.pos)})
    assert other.json()["items"][0]["changed"] is True
    async with rt.db.read() as conn:
        integration_ids = [
            row.integration_id
            for row in await conn.execute(
                select(events.c.integration_id).order_by(events.c.created_at, events.c.id)
            )
        ]
    assert integration_ids == [POS_B, POS_A]


async def test_consumer_without_pos_connection_and_other_accounts(http: Any) -> None:
    api, rt, _, world = http
    from tests.platform.issues_orders_support import add_consumer

    lonely = await add_consumer(rt, world.account_id, "No POS")
    response = await api.post(f"/consumers/{lonely}/pos/orders", json=ORDER)
    assert response.status_code == 400
    assert response.json()["error_code"] == "ERROR_NO_POS_CONNECTION"
    assert (await api.post(f"/consumers/{uuid.uuid4()}/pos/orders", json=ORDER)).status_code == 404
    await api.post(f"/consumers/{world.consumer_id}/pos/orders", json=ORDER)

    other_world = await make_world(rt)
    async with rt.db.transaction() as conn:
        key = await create_api_key(conn, other_world.account_id, now=rt.clock.now())
    other = ApiClient(api.http, key)
    await other.login()
    base = f"/consumers/{world.consumer_id}/pos"
    assert (await other.get(f"{base}/orders")).status_code == 404
    assert (await other.get(f"{base}/orders/ord-1")).status_code == 404
    assert (await other.patch(f"{base}/orders/ord-1", json={"customer_id": "x"})).status_code == 404
    assert (await other.get(f"{base}/locations")).status_code == 404
    assert (await other.post(f"{base}/orders", json=ORDER)).status_code == 404
    assert (await api.get(f"{base}/orders/unknown")).status_code == 404


async def test_pos_events_reach_only_webhooks_of_the_connections_integration(
    http: Any,
) -> None:
    api, rt, _, world = http
    on_a = await add_webhook(
        rt, world.account_id, "pos.order.updated", "https://a.example/h", POS_A
    )
    on_b = await add_webhook(
        rt, world.account_id, "pos.order.updated", "https://b.example/h", POS_B
    )
    second = await add_connection(rt, world.account_id, world.consumer_id, POS_B)
    url = f"/consumers/{world.consumer_id}/pos/orders"
    await api.post(url, json=ORDER, headers={"x-chift-connectionid": str(world.pos)})
    await api.post(
        url, json={**ORDER, "id": "ord-2"}, headers={"x-chift-connectionid": str(second)}
    )
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(webhooks.c.id, events.c.payload)
                .join(deliveries, deliveries.c.webhook_id == webhooks.c.id)
                .join(events, events.c.id == deliveries.c.event_id)
            )
        ).all()
    received = {(row.id, json.loads(row.payload)["order_id"]) for row in rows}
    assert received == {(on_a, "ord-1"), (on_b, "ord-2")}


async def test_reads_filters_paging_and_patch(http: Any) -> None:
    api, rt, clock, world = http
    url = f"/consumers/{world.consumer_id}/pos/orders"
    orders = [
        {**ORDER, "id": "o1", "creation_date": "2026-11-01T10:00:00Z"},
        {**ORDER, "id": "o2", "creation_date": "2026-11-02T10:00:00Z", "location_id": "loc-2"},
        {**ORDER, "id": "o3", "creation_date": "2026-11-03T10:00:00Z", "status": "closed"},
    ]
    await api.post(url, json=orders)
    page = (await api.get(url, params={"size": 2})).json()
    assert [item["id"] for item in page["items"]] == ["o3", "o2"]
    assert (page["total"], page["page"], page["size"]) == (3, 1, 2)
    page2 = (await api.get(url, params={"size": 2, "page": 2})).json()
    assert [item["id"] for item in page2["items"]] == ["o1"]

    async def ids(**params: Any) -> list[str]:
        return [item["id"] for item in (await api.get(url, params=params)).json()["items"]]

    assert await ids(state="open") == ["o2", "o1"]
    assert await ids(state="closed") == ["o3"]
    assert await ids(location_id="loc-2") == ["o2"]
    assert await ids(date_from="2026-11-02") == ["o3", "o2"]
    assert await ids(date_to="2026-11-02") == ["o2", "o1"]
    assert await ids(date_from="2026-11-02", date_to="2026-11-02") == ["o2"]
    assert (await api.get(url, params={"size": 101})).status_code == 422
    assert (await api.get(url, params={"state": "weird"})).status_code == 422

    before = len(await emitted(rt, "pos.order.updated"))
    clock.advance(5)
    patched = await api.patch(f"{url}/o1", json={"customer_id": "cust-42"})
    assert patched.status_code == 200 and patched.json()["customer_id"] == "cust-42"
    updated = await emitted(rt, "pos.order.updated")
    assert len(updated) == before + 1
    assert updated[-1]["order_id"] == "o1" and updated[-1]["customer_id"] == "cust-42"
    assert updated[-1]["updated_at"] == iso(rt.clock.now())
    await api.patch(f"{url}/o1", json={"customer_id": "cust-42"})  # no change, no event
    assert len(await emitted(rt, "pos.order.updated")) == before + 1
    # The re-push of the original then counts as a change (customer differs again).
    again = await api.post(url, json=orders[0])
    assert again.json()["items"][0]["changed"] is True

    locations = (await api.get(f"/consumers/{world.consumer_id}/pos/locations")).json()
    assert locations == {
        "items": [
            {"id": "loc-1", "name": "loc-1", "timezone": None, "address": None},
            {"id": "loc-2", "name": "loc-2", "timezone": None, "address": None},
        ],
        "total": 2,
        "page": 1,
        "size": 50,
    }


async def test_simulated_connector_through_the_poller(http: Any) -> None:
    api, rt, clock, world = http
    register_connector(POS_A, SimulatedPos(seed=7))
    try:
        first = await poll_connection(rt, world.pos)
        assert first.orders_seen >= 1 and first.updated == first.orders_seen
        total_completed = first.completed
        for _ in range(6):
            clock.advance(120)
            result = await poll_connection(rt, world.pos)
            total_completed += result.completed
    finally:
        unregister_connector(POS_A)
    assert total_completed >= 1
    completed = await emitted(rt, "pos.order.completed")
    assert len(completed) == total_completed
    assert len({body["order_id"] for body in completed}) == len(completed)
    page = (
        await api.get(f"/consumers/{world.consumer_id}/pos/orders", params={"size": 100})
    ).json()
    for item in page["items"]:
        assert item["total"] == round(sum(line["total"] for line in item["items"]), 2)
        assert item["tax_amount"] == round(sum(t["tax_amount"] for t in item["taxes"]), 2)
        assert item["currency"] == "EUR"
    closed = (
        await api.get(
            f"/consumers/{world.consumer_id}/pos/orders", params={"state": "closed", "size": 100}
        )
    ).json()
    assert closed["total"] == total_completed
    assert all(item["payments"] for item in closed["items"])
    names = [
        loc["name"]
        for loc in (await api.get(f"/consumers/{world.consumer_id}/pos/locations")).json()["items"]
    ]
    assert names == ["Grand-Place", "Sablon"]


async def test_simulated_connector_is_reproducible() -> None:
    connection = uuid.UUID(int=1)
    from datetime import UTC, datetime

    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    runs = []
    for _ in range(2):
        pos = SimulatedPos(seed=3)
        runs.append(
            [
                [o.model_dump() for o in await pos.fetch_orders(connection, since=None, now=now)]
                for _ in range(3)
            ]
        )
    assert runs[0] == runs[1]


async def test_the_chift_sdk_reads_orders_and_locations(database: Any, live_server: Any) -> None:
    import asyncio

    import chift
    from chift.models.consumers.pos import PosRouter

    from hookline.bootstrap import prepare_database
    from hookline.platform import orders
    from hookline.platform.pos_schema import PushedOrder

    server = live_server()
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    try:
        world = await make_world(rt)
        async with rt.db.transaction() as conn:
            key = await create_api_key(conn, world.account_id, now=rt.clock.now())
            target = await orders.pos_connection_by_id(conn, world.pos)
            await orders.upsert_orders(
                conn,
                target,
                [PushedOrder(**{**ORDER, "id": f"sdk-{index}"}) for index in range(3)],
                now=rt.clock.now(),
            )
    finally:
        await rt.db.dispose()

    def use_sdk() -> tuple[list[Any], Any, list[Any]]:
        chift.url_base = server.url
        chift.account_id = str(key.account_id)
        chift.client_id = key.client_id
        chift.client_secret = key.client_secret
        router = PosRouter(str(world.consumer_id), None)
        return (router.Order.all(page_size=2), router.Order.get("sdk-1"), router.Location.all())

    listed, one, locations = await asyncio.to_thread(use_sdk)
    assert sorted(order.id for order in listed) == ["sdk-0", "sdk-1", "sdk-2"]
    assert one.id == "sdk-1" and one.total == 12.3 and one.location_id == "loc-1"
    assert [location.id for location in locations] == ["loc-1"]


async def test_the_poller_service_polls_connections_with_a_registered_connector(
    database: Any,
) -> None:
    import asyncio

    from hookline.bootstrap import prepare_database
    from hookline.platform.connectors import run_pos_pollers

    rt = Runtime.create(database.settings(scheduler_interval_seconds=0.05))
    await prepare_database(rt)
    stop = asyncio.Event()
    register_connector(POS_A, SimulatedPos(seed=11, new_per_poll=(1, 1), close_probability=1.0))
    try:
        await make_world(rt)
        ticks = Ticks()
        task = asyncio.create_task(run_pos_pollers(rt, stop, ticked=ticks))
        try:
            for _ in range(20):  # an order is created by one poll, completed by a later one
                await ticks.next()
                if await emitted(rt, "pos.order.completed"):
                    break
        finally:
            stop.set()
            await task
        completed = await emitted(rt, "pos.order.completed")
        assert completed and completed[0]["order_id"].startswith("ord-")
    finally:
        unregister_connector(POS_A)
        await rt.db.dispose()
