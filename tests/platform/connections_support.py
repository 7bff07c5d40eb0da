"""Helpers for the consumer/connection/agent tests: emitted events, second accounts, clients
on a frozen-clock runtime."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from hookline.api.app import create_app
from hookline.bootstrap import prepare_database
from hookline.catalog import validate_body
from hookline.clock import FrozenClock
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from hookline.store.tables import events
from tests.support import ApiClient

CONNECTION_EVENTS = (
    "account.connection.created",
    "account.connection.updated",
    "account.connection.deleted",
    "account.connection.up",
    "account.connection.down",
)


async def emitted(
    rt: Runtime, *, account_id: str | uuid.UUID | None = None, prefix: str = "account.connection."
) -> list[dict[str, Any]]:
    """Every stored event body (in order), each checked against its catalog schema."""
    query = select(
        events.c.payload, events.c.event_type, events.c.integration_id, events.c.consumer_id
    ).order_by(events.c.created_at, events.c.id)
    if account_id is not None:
        query = query.where(events.c.account_id == uuid.UUID(str(account_id)))
    async with rt.db.read() as conn:
        rows = (await conn.execute(query)).all()
    bodies = []
    for row in rows:
        if not row.event_type.startswith(prefix):
            continue
        body = json.loads(row.payload)
        validate_body(body)
        assert body["event"] == row.event_type
        assert body["consumerid"] == str(row.consumer_id)
        body["_integration_id"] = row.integration_id
        bodies.append(body)
    return bodies


def strip(body: dict[str, Any]) -> dict[str, Any]:
    """The body without the test-only ``_integration_id`` key."""
    return {key: value for key, value in body.items() if not key.startswith("_")}


@asynccontextmanager
async def frozen_api(
    database: Any, **overrides: Any
) -> AsyncIterator[tuple[ApiClient, Runtime, FrozenClock]]:
    """An authenticated in-process client on a runtime whose clock only moves when told."""
    clock = FrozenClock()
    rt = Runtime.create(database.settings(**overrides), clock=clock)
    await prepare_database(rt)
    try:
        async with client_for(rt) as api:
            yield api, rt, clock
    finally:
        await rt.db.dispose()


@asynccontextmanager
async def client_for(rt: Runtime, name: str = "test account") -> AsyncIterator[ApiClient]:
    """A client for a NEW account on ``rt`` (a second one gives cross-account checks)."""
    app = create_app(rt, run_background=False)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, name, now=rt.clock.now())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hookline.test") as http:
        client = ApiClient(http, key)
        await client.login()
        yield client


def runtime_of(api: ApiClient) -> Runtime:
    return api.http._transport.app.state.runtime  # type: ignore[attr-defined]


async def new_consumer(api: ApiClient, name: str = "Bistro", **extra: Any) -> str:
    response = await api.post("/consumers", json={"name": name, **extra})
    assert response.status_code == 200, response.text
    return response.json()["consumerid"]


ODOO = 1001
ODOO_CREDENTIALS = [
    {"key": "url", "value": "https://odoo.example"},
    {"key": "database", "value": "prod"},
    {"key": "username", "value": "admin"},
    {"key": "api_key", "value": "s3cret-odoo-key"},
]
LOCAL_POS = 2003
LOCAL_POS_CREDENTIALS = [{"key": "store_code", "value": "S-42"}]


async def new_connection(
    api: ApiClient,
    consumer_id: str,
    integration_id: int = ODOO,
    credentials: list[dict[str, str]] | None = None,
    name: str = "Main books",
) -> dict[str, Any]:
    if credentials is None:
        credentials = ODOO_CREDENTIALS if integration_id == ODOO else LOCAL_POS_CREDENTIALS
    response = await api.post(
        f"/consumers/{consumer_id}/connections",
        json={"integrationid": integration_id, "name": name, "credentials": credentials},
    )
    assert response.status_code == 200, response.text
    return response.json()
