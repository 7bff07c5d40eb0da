"""Shared helpers for the webhooks API tests: rows written directly, second accounts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from hookline.ids import new_id
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from hookline.store.tables import deliveries, delivery_queue, events, webhook_logs
from tests.support import ApiClient

CONSUMER = "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e5f"
CONNECTION = "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e6f"


def runtime_of(api: ApiClient) -> Runtime:
    return api.http._transport.app.state.runtime  # type: ignore[attr-defined]


def assert_error(response: httpx.Response, status: int, error_code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "status", "detail", "error_code"}
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]
    if error_code is not None:
        assert body["error_code"] == error_code
    return body


async def second_account(api: ApiClient) -> ApiClient:
    """Another account logged in on the same app."""
    runtime = runtime_of(api)
    async with runtime.db.transaction() as conn:
        key = await create_account(conn, "other account", now=runtime.clock.now())
    other = ApiClient(api.http, key)
    await other.login()
    return other


async def create_webhook(api: ApiClient, **body: Any) -> dict:
    payload = {"event": "account.connection.created", "url": "https://example.com/hook", **body}
    response = await api.post("/webhooks", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def connection_event(**extra: Any) -> dict:
    return {
        "event": "account.connection.created",
        "consumerid": CONSUMER,
        "connectionid": CONNECTION,
        "status": "active",
        **extra,
    }


async def count_rows(runtime: Runtime, table: Any, *where: Any) -> int:
    async with runtime.db.read() as conn:
        query = select(func.count()).select_from(table)
        if where:
            query = query.where(*where)
        return (await conn.execute(query)).scalar_one()


async def insert_delivery(
    runtime: Runtime,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    status: str,
    at: datetime,
    event: str = "account.connection.created",
) -> tuple[uuid.UUID, uuid.UUID]:
    """An event and one delivery of it in ``status``, as the worker would leave them."""
    event_id, delivery_id = new_id(), new_id()
    async with runtime.db.transaction() as conn:
        await conn.execute(
            insert(events).values(
                id=event_id,
                account_id=account_id,
                event_type=event,
                consumer_id=None,
                payload=b'{"event":"' + event.encode() + b'"}',
                created_at=at,
            )
        )
        await conn.execute(
            insert(deliveries).values(
                id=delivery_id,
                event_id=event_id,
                webhook_id=webhook_id,
                account_id=account_id,
                status=status,
                attempts=1,
                created_at=at,
                updated_at=at,
            )
        )
    return event_id, delivery_id


async def insert_log(
    runtime: Runtime,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    event_id: uuid.UUID,
    at: datetime,
    http_status: int = 500,
    outcome: str = "failed",
    attempt: int = 1,
    log_id: uuid.UUID | None = None,
) -> uuid.UUID:
    log_id = log_id or new_id()
    async with runtime.db.transaction() as conn:
        await conn.execute(
            insert(webhook_logs).values(
                id=log_id,
                webhook_id=webhook_id,
                delivery_id=delivery_id,
                event_id=event_id,
                account_id=account_id,
                event="account.connection.created",
                url="https://example.com/hook",
                integration_id=None,
                http_status=http_status,
                attempt=attempt,
                duration_ms=12.5,
                outcome=outcome,
                error_class=None if http_status else "ConnectError",
                response_excerpt="oops",
                next_attempt_at=None,
                created_at=at,
            )
        )
    return log_id


async def queue_rows(runtime: Runtime) -> list[Any]:
    async with runtime.db.read() as conn:
        return (
            await conn.execute(select(delivery_queue).order_by(delivery_queue.c.delivery_id))
        ).all()
