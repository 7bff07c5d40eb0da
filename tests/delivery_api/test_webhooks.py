"""POST/GET/PATCH/DELETE /webhooks: the contract's bodies, rules, errors and account scope."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from hookline.store.tables import webhooks
from tests.delivery_api.helpers import (
    assert_error,
    create_webhook,
    runtime_of,
    second_account,
)
from tests.support import ApiClient

GET_ITEM_FIELDS = {
    "webhookid",
    "accountid",
    "createdby",
    "createdon",
    "event",
    "url",
    "status",
    "integrationid",
    "circuit",  # hookline extension
}
# hookline extensions (issue 15): signing scheme, rotation overlap, payload filter
EXTENSION_FIELDS = {
    "signature_scheme",
    "public_key",
    "rotation_overlap_until",
    "filter",
    "rate_limit_per_second",
    "ordering",
}


async def test_create_returns_the_contract_item_active_without_secret(api: ApiClient) -> None:
    response = await api.post(
        "/webhooks",
        json={
            "event": "account.flow.executed",
            "url": "https://example.com/in",
            "signingsecret": "s3cret-value",
        },
    )
    assert response.status_code == 200
    item = response.json()
    assert set(item) == GET_ITEM_FIELDS | EXTENSION_FIELDS
    assert (item["signature_scheme"], item["public_key"], item["filter"]) == ("hmac", None, None)
    assert item["accountid"] == api.account_id
    assert item["event"] == "account.flow.executed"
    assert item["url"] == "https://example.com/in"
    assert item["status"] == "active"
    assert item["integrationid"] is None
    assert item["createdby"] is None
    uuid.UUID(item["webhookid"])
    assert "s3cret-value" not in response.text


async def test_secret_is_encrypted_at_rest_and_never_returned(api: ApiClient) -> None:
    runtime = runtime_of(api)
    item = await create_webhook(api, signingsecret="whsec_plain-secret")
    async with runtime.db.read() as conn:
        stored = (
            await conn.execute(
                select(webhooks.c.secret_encrypted).where(
                    webhooks.c.id == uuid.UUID(item["webhookid"])
                )
            )
        ).scalar_one()
    assert stored != "whsec_plain-secret"
    assert "plain-secret" not in stored
    assert runtime.secret_box.decrypt(stored) == "whsec_plain-secret"
    texts = [
        (await api.get(f"/webhooks/{item['webhookid']}")).text,
        (await api.get("/webhooks")).text,
        (
            await api.patch(
                f"/webhooks/{item['webhookid']}", json={"signingsecret": "another-secret"}
            )
        ).text,
    ]
    for text in texts:
        assert "plain-secret" not in text and "another-secret" not in text
        assert "signingsecret" not in text and "secret" not in text
    async with runtime.db.read() as conn:
        stored = (
            await conn.execute(
                select(webhooks.c.secret_encrypted).where(
                    webhooks.c.id == uuid.UUID(item["webhookid"])
                )
            )
        ).scalar_one()
    assert runtime.secret_box.decrypt(stored) == "another-secret"


async def test_no_or_empty_secret_stores_none_and_empty_patch_removes_it(api: ApiClient) -> None:
    runtime = runtime_of(api)
    first = await create_webhook(api)
    second = await create_webhook(api, url="https://example.com/2", signingsecret="")
    third = await create_webhook(api, url="https://example.com/3", signingsecret="abc")
    response = await api.patch(f"/webhooks/{third['webhookid']}", json={"signingsecret": ""})
    assert response.status_code == 200
    async with runtime.db.read() as conn:
        rows = dict((await conn.execute(select(webhooks.c.id, webhooks.c.secret_encrypted))).all())
    assert rows == {
        uuid.UUID(first["webhookid"]): None,
        uuid.UUID(second["webhookid"]): None,
        uuid.UUID(third["webhookid"]): None,
    }


@pytest.mark.parametrize(
    "body, location",
    [
        ({"event": "e" * 81, "url": "https://example.com"}, ["body", "event"]),
        (
            {"event": "account.connection.created", "url": "https://e.com/" + "a" * 487},
            ["body", "url"],
        ),
        (
            {
                "event": "account.connection.created",
                "url": "https://e.com",
                "signingsecret": "s" * 101,
            },
            ["body", "signingsecret"],
        ),
        ({"url": "https://example.com"}, ["body", "event"]),
        ({"event": "account.connection.created"}, ["body", "url"]),
        (
            {"event": "account.connection.created", "url": "https://e.com", "integrationid": "x"},
            ["body", "integrationid"],
        ),
    ],
)
async def test_schema_limits_answer_422(api: ApiClient, body: dict, location: list) -> None:
    response = await api.post("/webhooks", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["message"] == "Validation error" and payload["status"] == "error"
    assert [item["loc"] for item in payload["detail"]] == [location]
    assert "s" * 101 not in response.text


async def test_limits_at_the_maximum_are_accepted(api: ApiClient) -> None:
    url = "https://e.com/" + "a" * 486
    assert len(url) == 500
    item = await create_webhook(api, url=url, signingsecret="s" * 100)
    assert item["url"] == url


async def test_unknown_event_answers_400(api: ApiClient) -> None:
    response = await api.post(
        "/webhooks", json={"event": "account.nope", "url": "https://example.com"}
    )
    body = assert_error(response, 400, "ERROR_UNKNOWN_EVENT")
    assert body["message"] == "Unknown event 'account.nope'"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "example.com/hook",
        "https://",
        "http:///path",
        "",
        "   ",
        "https://exa mple.com",
        "javascript:alert(1)",
        "https://example.com:99999/",
        "https://example.com/\nx",
    ],
)
async def test_invalid_urls_answer_400(api: ApiClient, url: str) -> None:
    response = await api.post("/webhooks", json={"event": "account.connection.created", "url": url})
    assert_error(response, 400, "ERROR_INVALID_URL")


async def test_duplicate_url_and_event_in_one_account_answers_400(api: ApiClient) -> None:
    await create_webhook(api)
    response = await api.post(
        "/webhooks", json={"event": "account.connection.created", "url": "https://example.com/hook"}
    )
    body = assert_error(response, 400, "ERROR_WEBHOOK_DUPLICATE")
    assert body["detail"] == "https://example.com/hook"
    # Same url for another event, and the same pair in another account, are fine.
    await create_webhook(api, event="account.connection.deleted")
    other = await second_account(api)
    await create_webhook(other)


async def test_pos_event_needs_a_pos_integration(api: ApiClient) -> None:
    url = "https://example.com/pos"
    missing = await api.post("/webhooks", json={"event": "pos.order.completed", "url": url})
    assert_error(missing, 400, "ERROR_INTEGRATION_REQUIRED")
    unknown = await api.post(
        "/webhooks", json={"event": "pos.order.completed", "url": url, "integrationid": 999999}
    )
    assert_error(unknown, 400, "ERROR_UNKNOWN_INTEGRATION")
    accounting = await api.post(
        "/webhooks", json={"event": "pos.order.completed", "url": url, "integrationid": 1001}
    )
    assert_error(accounting, 400, "ERROR_INVALID_INTEGRATION")
    item = await create_webhook(api, event="pos.order.completed", url=url, integrationid=2001)
    assert item["integrationid"] == 2001
    # one per (url, event): another POS integration on the same url is still a duplicate
    again = await api.post(
        "/webhooks", json={"event": "pos.order.completed", "url": url, "integrationid": 2002}
    )
    assert_error(again, 400, "ERROR_WEBHOOK_DUPLICATE")


async def test_non_pos_event_refuses_an_integrationid(api: ApiClient) -> None:
    response = await api.post(
        "/webhooks",
        json={"event": "account.flow.enabled", "url": "https://example.com", "integrationid": 2001},
    )
    assert_error(response, 400, "ERROR_INVALID_INTEGRATION")


async def test_list_filters_by_status_in_creation_order(api: ApiClient) -> None:
    first = await create_webhook(api, url="https://example.com/1")
    second = await create_webhook(api, url="https://example.com/2")
    third = await create_webhook(api, url="https://example.com/3")
    await api.patch(f"/webhooks/{second['webhookid']}", json={"status": "inactive"})
    everything = (await api.get("/webhooks")).json()
    assert [w["webhookid"] for w in everything] == [
        first["webhookid"],
        second["webhookid"],
        third["webhookid"],
    ]
    active = (await api.get("/webhooks", params={"status": "active"})).json()
    assert [w["webhookid"] for w in active] == [first["webhookid"], third["webhookid"]]
    inactive = (await api.get("/webhooks", params={"status": "inactive"})).json()
    assert [(w["webhookid"], w["status"]) for w in inactive] == [(second["webhookid"], "inactive")]
    assert (await api.get("/webhooks", params={"status": "paused"})).status_code == 422


async def test_get_returns_the_same_item_as_create(api: ApiClient) -> None:
    item = await create_webhook(api)
    response = await api.get(f"/webhooks/{item['webhookid']}")
    assert response.status_code == 200
    assert response.json() == item


async def test_patch_changes_only_status_url_and_secret(api: ApiClient) -> None:
    item = await create_webhook(api)
    path = f"/webhooks/{item['webhookid']}"
    response = await api.patch(path, json={"status": "inactive"})
    assert response.status_code == 200
    assert response.json() == {**item, "status": "inactive"}
    response = await api.patch(path, json={"url": "https://example.org/new"})
    assert response.json() == {**item, "status": "inactive", "url": "https://example.org/new"}
    # event and integrationid are not patchable: ignored, like any unknown field
    response = await api.patch(
        path, json={"event": "account.flow.enabled", "integrationid": 2001, "status": "active"}
    )
    assert response.json() == {**item, "url": "https://example.org/new"}
    # an empty body changes nothing
    response = await api.patch(path, json={})
    assert response.json() == {**item, "url": "https://example.org/new"}


async def test_patch_validates_like_create(api: ApiClient) -> None:
    item = await create_webhook(api)
    await create_webhook(api, url="https://example.com/taken")
    path = f"/webhooks/{item['webhookid']}"
    assert_error(await api.patch(path, json={"url": "mailto:x@y.z"}), 400, "ERROR_INVALID_URL")
    assert_error(
        await api.patch(path, json={"url": "https://example.com/taken"}),
        400,
        "ERROR_WEBHOOK_DUPLICATE",
    )
    assert (await api.patch(path, json={"status": "paused"})).status_code == 422
    assert (await api.patch(path, json={"url": "https://e.com/" + "a" * 487})).status_code == 422
    assert (await api.patch(path, json={"signingsecret": "s" * 101})).status_code == 422
    assert (await api.get(path)).json() == item
    # patching to its own current url is not a duplicate of itself
    assert (await api.patch(path, json={"url": item["url"]})).status_code == 200


async def test_reactivating_clears_the_automatic_disable_state(api: ApiClient) -> None:
    from sqlalchemy import update

    runtime = runtime_of(api)
    item = await create_webhook(api)
    webhook_id = uuid.UUID(item["webhookid"])
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.id == webhook_id)
            .values(status="inactive", disabled_reason="failing for 5 days", failing_since=now)
        )
    response = await api.patch(f"/webhooks/{webhook_id}", json={"status": "active"})
    assert response.json()["status"] == "active"
    async with runtime.db.read() as conn:
        row = (await conn.execute(select(webhooks).where(webhooks.c.id == webhook_id))).one()
    assert (row.status, row.disabled_reason, row.failing_since) == ("active", None, None)


async def test_delete_answers_204_then_404(api: ApiClient) -> None:
    item = await create_webhook(api)
    path = f"/webhooks/{item['webhookid']}"
    response = await api.delete(path)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await api.get(path), 404, "ERROR_WEBHOOK_NOT_FOUND")
    assert_error(await api.delete(path), 404, "ERROR_WEBHOOK_NOT_FOUND")
    assert (await api.get("/webhooks")).json() == []


async def test_unknown_ids_answer_404_and_malformed_ids_422(api: ApiClient) -> None:
    path = f"/webhooks/{uuid.uuid4()}"
    assert_error(await api.get(path), 404, "ERROR_WEBHOOK_NOT_FOUND")
    assert_error(await api.patch(path, json={"status": "inactive"}), 404)
    assert_error(await api.delete(path), 404)
    assert_error(await api.get(path + "/logs"), 404)
    assert (await api.get("/webhooks/not-a-uuid")).status_code == 422


async def test_another_account_sees_nothing_and_gets_404(api: ApiClient) -> None:
    item = await create_webhook(api)
    other = await second_account(api)
    path = f"/webhooks/{item['webhookid']}"
    assert (await other.get("/webhooks")).json() == []
    assert_error(await other.get(path), 404, "ERROR_WEBHOOK_NOT_FOUND")
    assert_error(await other.patch(path, json={"status": "inactive"}), 404)
    assert_error(await other.delete(path), 404)
    assert_error(await other.get(path + "/logs"), 404)
    assert_error(await other.post(path + "/recover", json={"since": "2020-01-01T00:00:00Z"}), 404)
    assert_error(await other.post(f"{path}/logs/{uuid.uuid4()}/redeliver"), 404)
    # untouched for its owner
    assert (await api.get(path)).json() == item


async def test_webhook_routes_need_a_token(api: ApiClient) -> None:
    assert_error(await api.http.get("/webhooks"), 401)
    assert_error(await api.http.post("/webhooks", json={}), 401)
    assert_error(await api.http.post("/events", json={}), 401)


async def test_delete_removes_its_deliveries_queue_rows_and_logs(api: ApiClient) -> None:
    from hookline.store.tables import deliveries, delivery_queue, webhook_logs
    from tests.delivery_api.helpers import connection_event, count_rows, insert_log

    runtime = runtime_of(api)
    item = await create_webhook(api)
    kept = await create_webhook(api, url="https://example.com/kept")
    sent = (await api.post("/events", json=connection_event())).json()
    assert sent["deliveries"] == 2
    async with runtime.db.read() as conn:
        delivery_id = (
            await conn.execute(
                select(deliveries.c.id).where(
                    deliveries.c.webhook_id == uuid.UUID(item["webhookid"])
                )
            )
        ).scalar_one()
    await insert_log(
        runtime,
        account_id=uuid.UUID(api.account_id),
        webhook_id=uuid.UUID(item["webhookid"]),
        delivery_id=delivery_id,
        event_id=uuid.UUID(sent["eventid"]),
        at=runtime.clock.now(),
    )
    assert (await api.delete(f"/webhooks/{item['webhookid']}")).status_code == 204
    remaining = uuid.UUID(kept["webhookid"])
    assert await count_rows(runtime, deliveries) == 1
    assert await count_rows(runtime, deliveries, deliveries.c.webhook_id == remaining) == 1
    assert await count_rows(runtime, delivery_queue) == 1
    assert await count_rows(runtime, webhook_logs) == 0
