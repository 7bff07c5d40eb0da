"""GET /webhooks/{id}/logs: contract fields plus extensions, newest first, paging, filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.delivery_api.helpers import (
    assert_error,
    create_webhook,
    insert_delivery,
    insert_log,
    runtime_of,
)
from tests.support import ApiClient

BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LOG_FIELDS = {
    "webhooklogid",
    "webhookid",
    "event",
    "url",
    "accountid",
    "createdon",
    "httpstatus",
    "integrationid",
    "attempt",
    "duration_ms",
    "outcome",
    "error_class",
    "response_excerpt",
    "delivery_id",
    "event_id",
    "next_attempt_at",
}


async def _webhook_with_logs(api: ApiClient, spec: list[tuple[int, str]]) -> tuple[str, list]:
    """A webhook with one log per (http_status, outcome), a minute apart, oldest first."""
    runtime = runtime_of(api)
    hook = await create_webhook(api)
    webhook_id = uuid.UUID(hook["webhookid"])
    account_id = uuid.UUID(api.account_id)
    event_id, delivery_id = await insert_delivery(
        runtime, account_id=account_id, webhook_id=webhook_id, status="failed", at=BASE
    )
    ids = []
    for n, (http_status, outcome) in enumerate(spec):
        ids.append(
            await insert_log(
                runtime,
                account_id=account_id,
                webhook_id=webhook_id,
                delivery_id=delivery_id,
                event_id=event_id,
                at=BASE + timedelta(minutes=n),
                http_status=http_status,
                outcome=outcome,
                attempt=n + 1,
            )
        )
    return hook["webhookid"], [str(i) for i in ids]


async def test_log_items_have_contract_fields_and_extensions(api: ApiClient) -> None:
    webhook_id, ids = await _webhook_with_logs(api, [(0, "retry")])
    response = await api.get(f"/webhooks/{webhook_id}/logs")
    assert response.status_code == 200
    [item] = response.json()
    assert set(item) == LOG_FIELDS
    assert item["webhooklogid"] == ids[0]
    assert item["webhookid"] == webhook_id
    assert item["accountid"] == api.account_id
    assert item["event"] == "account.connection.created"
    assert item["url"] == "https://example.com/hook"
    assert item["httpstatus"] == 0
    assert item["integrationid"] is None
    assert (item["attempt"], item["duration_ms"], item["outcome"]) == (1, 12.5, "retry")
    assert (item["error_class"], item["response_excerpt"]) == ("ConnectError", "oops")
    assert datetime.fromisoformat(item["createdon"]) == BASE
    assert "x-next-cursor" not in response.headers


async def test_logs_are_newest_first_and_page_by_offset_and_cursor(api: ApiClient) -> None:
    webhook_id, ids = await _webhook_with_logs(api, [(500, "retry")] * 7)
    newest_first = list(reversed(ids))
    path = f"/webhooks/{webhook_id}/logs"
    everything = (await api.get(path)).json()
    assert [item["webhooklogid"] for item in everything] == newest_first
    page = await api.get(path, params={"limit": 3, "offset": 3})
    assert [item["webhooklogid"] for item in page.json()] == newest_first[3:6]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await api.get(path, params=params)
        seen += [item["webhooklogid"] for item in response.json()]
        cursor = response.headers.get("x-next-cursor")
        if cursor is None:
            break
        assert cursor == seen[-1]
    assert seen == newest_first


async def test_limit_bounds_answer_422(api: ApiClient) -> None:
    webhook_id, _ = await _webhook_with_logs(api, [])
    path = f"/webhooks/{webhook_id}/logs"
    assert (await api.get(path, params={"limit": 0})).status_code == 422
    assert (await api.get(path, params={"limit": 501})).status_code == 422
    assert (await api.get(path, params={"limit": 500})).status_code == 200
    assert (await api.get(path, params={"offset": -1})).status_code == 422
    assert_error(
        await api.get(path, params={"cursor": str(uuid.uuid4())}), 404, "ERROR_LOG_NOT_FOUND"
    )


async def test_default_limit_is_50(api: ApiClient) -> None:
    webhook_id, ids = await _webhook_with_logs(api, [(200, "delivered")] * 52)
    response = await api.get(f"/webhooks/{webhook_id}/logs")
    assert len(response.json()) == 50
    assert response.headers["x-next-cursor"] == ids[2]


async def test_status_filters_by_outcome_class_and_code(api: ApiClient) -> None:
    spec = [
        (200, "delivered"),
        (503, "retry"),
        (0, "retry"),
        (404, "failed"),
        (410, "disabled"),
        (201, "delivered"),
    ]
    webhook_id, ids = await _webhook_with_logs(api, spec)
    path = f"/webhooks/{webhook_id}/logs"

    async def pick(status: str) -> list[str]:
        response = await api.get(path, params={"status": status})
        assert response.status_code == 200, response.text
        return [item["webhooklogid"] for item in response.json()]

    assert await pick("delivered") == [ids[5], ids[0]]
    assert await pick("retry") == [ids[2], ids[1]]
    assert await pick("failed") == [ids[3]]
    assert await pick("disabled") == [ids[4]]
    assert await pick("2xx") == [ids[5], ids[0]]
    assert await pick("4xx") == [ids[4], ids[3]]
    assert await pick("5xx") == [ids[1]]
    assert await pick("404") == [ids[3]]
    assert await pick("0") == [ids[2]]
    assert_error(await api.get(path, params={"status": "broken"}), 400, "ERROR_INVALID_FILTER")
    assert_error(await api.get(path, params={"status": "9xx"}), 400, "ERROR_INVALID_FILTER")


async def test_since_keeps_attempts_at_or_after_that_time(api: ApiClient) -> None:
    webhook_id, ids = await _webhook_with_logs(api, [(500, "retry")] * 4)
    path = f"/webhooks/{webhook_id}/logs"
    since = (BASE + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    response = await api.get(path, params={"since": since})
    assert [item["webhooklogid"] for item in response.json()] == [ids[3], ids[2]]
    naive = (BASE + timedelta(minutes=3)).replace(tzinfo=None).isoformat()
    response = await api.get(path, params={"since": naive})  # read as UTC
    assert [item["webhooklogid"] for item in response.json()] == [ids[3]]
    response = await api.get(path, params={"since": "2026-11-20T13:00:00+01:00", "status": "retry"})
    assert [item["webhooklogid"] for item in response.json()] == list(reversed(ids))
    assert (await api.get(path, params={"since": "yesterday"})).status_code == 422


async def test_logs_of_another_webhook_are_not_listed(api: ApiClient) -> None:
    webhook_id, ids = await _webhook_with_logs(api, [(200, "delivered")])
    other = await create_webhook(api, url="https://example.com/other")
    assert (await api.get(f"/webhooks/{other['webhookid']}/logs")).json() == []
    listed = (await api.get(f"/webhooks/{webhook_id}/logs")).json()
    assert [item["webhooklogid"] for item in listed] == ids
