"""Issue 18, "Why" 2 and 4: hostile input gets a 4xx in the contract's shape, never a 500,
and the same answer on SQLite and PostgreSQL. Every case also checks nothing was written."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select

from hookline.ids import new_id
from hookline.store.tables import consumers, events, executions, flows, syncs, webhooks
from tests.api_edges.helpers import BIG_INTS, chift_error, refused
from tests.delivery_api.helpers import runtime_of, second_account
from tests.platform.issues_orders_support import add_connection
from tests.support import ApiClient


async def count(api: ApiClient, table: object) -> int:
    async with runtime_of(api).db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def new_consumer(api: ApiClient) -> str:
    response = await api.post("/consumers", json={"name": "Bistro"})
    assert response.status_code == 200, response.text
    return str(response.json()["consumerid"])


def connection_event(consumer_id: str, **extra: object) -> dict[str, object]:
    return {
        "event": "account.connection.created",
        "consumerid": consumer_id,
        "connectionid": str(uuid.uuid4()),
        "status": "active",
        **extra,
    }


# --- JSON nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
async def test_deeply_nested_json_is_a_400_on_events_and_model_routes(
    api: ApiClient, depth: int
) -> None:
    consumer_id = await new_consumer(api)
    nested = "[" * depth + "]" * depth
    body = json.dumps(connection_event(consumer_id))[:-1] + f', "extra": {nested}}}'
    headers = {"content-type": "application/json"}
    for path in ("/events", "/consumers", "/syncs", "/webhooks"):
        response = await api.post(path, content=body, headers=headers)
        chift_error(response, 400, "ERROR_INVALID_BODY")
    # unclosed brackets too (Python's parser would recurse into each of them)
    chift_error(await api.post("/events", content="[" * depth, headers=headers), 400)
    assert await count(api, events) == 0


async def test_ordinary_nesting_still_works(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    response = await api.post("/events", json=connection_event(consumer_id))
    assert response.status_code == 202, response.text


# --- integers past the columns' width --------------------------------------------------------


@pytest.mark.parametrize("big", BIG_INTS)
async def test_huge_integration_ids_are_refused_everywhere(api: ApiClient, big: int) -> None:
    consumer_id = await new_consumer(api)
    hook = {"event": "account.connection.created", "url": "https://example.com/h"}
    refused(await api.post("/webhooks", json={**hook, "integrationid": big}))
    pos_hook = {"event": "pos.order.completed", "url": "https://example.com/h"}
    refused(await api.post("/webhooks", json={**pos_hook, "integrationid": big}))
    event = connection_event(consumer_id, integrationid=big)
    chift_error(await api.post("/events", json=event), 400, "ERROR_UNKNOWN_INTEGRATION")
    connections = f"/consumers/{consumer_id}/connections"
    refused(await api.post(connections, json={"integrationid": big}))
    refused(await api.post(connections, json={"integrationid": big, "credentials": []}))
    assert await count(api, webhooks) == 0
    assert await count(api, events) == 0
    assert (await api.get(connections)).json() == []


@pytest.mark.parametrize("big", BIG_INTS)
async def test_huge_pages_and_offsets_are_refused(api: ApiClient, big: int) -> None:
    consumer_id = await new_consumer(api)
    hook = await api.post(
        "/webhooks", json={"event": "account.connection.created", "url": "https://example.com/h"}
    )
    sync = await api.post("/syncs", json={"name": "s", "connections": []})
    paths = {
        f"/webhooks/{hook.json()['webhookid']}/logs": "offset",
        f"/consumers/{consumer_id}/pos/orders": "page",
        f"/consumers/{consumer_id}/pos/locations": "page",
        f"/syncs/{sync.json()['syncid']}/executions": "page",
    }
    for path, name in paths.items():
        response = await api.get(path, params={name: big})
        assert response.status_code == 422, (path, response.text)
        assert [item["loc"] for item in response.json()["detail"]] == [["query", name]]
    # the largest accepted value works (and finds nothing)
    for path, name in paths.items():
        response = await api.get(path, params={name: 2**31 - 1})
        assert response.status_code == 200, (path, response.text)


async def test_huge_ints_inside_sync_definitions_are_refused(api: ApiClient) -> None:
    for big in BIG_INTS:
        body = {"name": "s", "connections": [{"one_api": big}]}
        assert (await api.post("/syncs", json=body)).status_code == 422
    assert await count(api, syncs) == 0


# --- dates at the edge of the calendar --------------------------------------------------------

EDGE_DATES = ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00")


async def test_edge_dates_are_clamped_on_logs_recover_and_executions(api: ApiClient) -> None:
    hook = await api.post(
        "/webhooks", json={"event": "account.connection.created", "url": "https://example.com/h"}
    )
    webhook_id = hook.json()["webhookid"]
    sync = (await api.post("/syncs", json={"name": "s", "connections": []})).json()
    for moment in EDGE_DATES:
        logs = await api.get(f"/webhooks/{webhook_id}/logs", params={"since": moment})
        assert (logs.status_code, logs.json()) == (200, [])
        recovered = await api.post(f"/webhooks/{webhook_id}/recover", json={"since": moment})
        assert (recovered.status_code, recovered.json()) == (202, {"count": 0})
        dated = {"date_from": moment, "date_to": moment}
        runs = await api.get(f"/syncs/{sync['syncid']}/executions", params=dated)
        assert runs.status_code == 200 and runs.json()["items"] == []


async def test_last_calendar_day_as_a_day_filter_is_refused(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    for path, name in (
        ("/issues", "created_on"),
        ("/issues", "last_seen_on"),
        (f"/consumers/{consumer_id}/pos/orders", "date_to"),
    ):
        response = await api.get(path, params={name: "9999-12-31"})
        assert response.status_code == 422, (path, response.text)
        assert (await api.get(path, params={name: "9999-12-30"})).status_code == 200


# --- NUL characters ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "email", "internal_reference"])
async def test_nul_in_consumer_fields_is_a_400_on_both_backends(api: ApiClient, field: str) -> None:
    body = {"name": "Bistro", field: "a\x00b"}
    chift_error(await api.post("/consumers", json=body), 400, "ERROR_NUL_CHARACTER")
    assert await count(api, consumers) == 0
    consumer_id = await new_consumer(api)
    patched = await api.patch(f"/consumers/{consumer_id}", json={field: "x\x00"})
    chift_error(patched, 400, "ERROR_NUL_CHARACTER")
    assert (await api.get(f"/consumers/{consumer_id}")).json()["name"] == "Bistro"


async def test_nul_in_queries_paths_and_other_bodies_is_a_400(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    for response in (
        await api.get("/consumers", params={"search": "a\x00b"}),
        await api.get(f"/consumers/{consumer_id}/pos/orders/a%00b"),
        await api.get("/issues/%00"),
        await api.post("/syncs", json={"name": "s\x00", "connections": []}),
        await api.post("/events", json=connection_event(consumer_id, status="a\x00")),
    ):
        chift_error(response, 400, "ERROR_NUL_CHARACTER")
    # a raw NUL byte is not JSON at all: refused by the parser
    raw = b'{"name": "a\x00b"}'
    for path in ("/consumers", "/events"):
        refused(await api.post(path, content=raw, headers={"content-type": "application/json"}))
    assert await count(api, syncs) == 0 and await count(api, events) == 0
    # a literal backslash-u0000 (escaped backslash) is ordinary text
    literal = await api.post("/consumers", json={"name": "a\\u0000b"})
    assert literal.status_code == 200 and literal.json()["name"] == "a\\u0000b"


# --- loose edges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_json_endpoints_refuse_other_content_types_with_415(
    api: ApiClient, content_type: str
) -> None:
    consumer_id = await new_consumer(api)
    body = json.dumps(connection_event(consumer_id))
    for path in ("/events", "/consumers", "/webhooks"):
        response = await api.post(path, content=body, headers={"content-type": content_type})
        chift_error(response, 415, "ERROR_UNSUPPORTED_MEDIA_TYPE")
    assert await count(api, events) == 0
    # a JSON media type with parameters is JSON
    ok = await api.post(
        "/events", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 202


async def test_unknown_fields_on_post_webhooks_are_a_400(api: ApiClient) -> None:
    body = {"event": "account.connection.created", "url": "https://example.com/h"}
    response = await api.post("/webhooks", json={**body, "status": "inactive"})
    error = chift_error(response, 400, "ERROR_UNKNOWN_FIELD")
    assert "status" in error["message"]
    assert await count(api, webhooks) == 0
    assert (await api.post("/webhooks", json=body)).status_code == 200


async def _execution(api: ApiClient, account_id: uuid.UUID, consumer_id: uuid.UUID) -> uuid.UUID:
    """A sync, a flow and one finished execution of it, written straight to the tables."""
    rt = runtime_of(api)
    now = datetime.now(UTC)
    sync_id, flow_id, execution_id = new_id(), new_id(), new_id()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(syncs).values(
                id=sync_id, account_id=account_id, name="s", definition={}, created_at=now
            )
        )
        await conn.execute(
            insert(flows).values(
                id=flow_id,
                account_id=account_id,
                sync_id=sync_id,
                name="f",
                triggers=[],
                execution={"type": "code", "data": None},
                config={},
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(executions).values(
                id=execution_id,
                account_id=account_id,
                sync_id=sync_id,
                flow_id=flow_id,
                consumer_id=consumer_id,
                status="error",
                trigger="event",
                started_at=now,
                ended_at=now,
            )
        )
    return execution_id


async def test_issue_executionid_must_be_one_of_the_callers_executions(api: ApiClient) -> None:
    consumer_id = uuid.UUID(await new_consumer(api))
    account_id = uuid.UUID(api.account_id)
    connection_id = str(await add_connection(runtime_of(api), account_id, consumer_id, 2001))
    other = await second_account(api)
    other_consumer = uuid.UUID(await new_consumer(other))
    foreign = await _execution(api, uuid.UUID(other.account_id), other_consumer)
    own = await _execution(api, account_id, consumer_id)
    url = f"/consumers/{consumer_id}/issues"
    report = {"connectionid": connection_id, "error_code": "E", "message": "m"}
    response = await api.post(url, json={**report, "executionid": str(foreign)})
    chift_error(response, 404, "ERROR_EXECUTION_NOT_FOUND")
    assert (await api.get("/issues")).json() == []
    accepted = await api.post(url, json={**report, "executionid": str(own)})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["events"][0]["execution_id"] == str(own)
