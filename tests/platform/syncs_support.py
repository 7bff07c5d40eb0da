"""Helpers for the syncs, executions and scheduler tests: a frozen-clock app, a second
account, consumers, syncs and flows made through the API, and the flow events emitted."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from hookline.api.app import create_app
from hookline.bootstrap import prepare_database
from hookline.catalog import validate_body
from hookline.clock import FrozenClock
from hookline.platform.accounts import create_account
from hookline.platform.runs import drain
from hookline.runtime import Runtime
from hookline.store.tables import events
from tests.support import ApiClient

# In the past: PyJWT checks a token's iat against the wall clock.
START = datetime(2026, 1, 15, 12, 0, 30, tzinfo=UTC)


@dataclass
class Setup:
    api: ApiClient
    rt: Runtime
    clock: FrozenClock
    http: httpx.AsyncClient

    async def other_account(self) -> ApiClient:
        async with self.rt.db.transaction() as conn:
            key = await create_account(conn, "someone else", now=self.clock.now())
        client = ApiClient(self.http, key)
        await client.login()
        return client


@asynccontextmanager
async def frozen_app(database: Any, **overrides: Any) -> AsyncIterator[Setup]:
    """The app on its own runtime with a FrozenClock, and a client for a fresh account."""
    clock = FrozenClock(START)
    rt = Runtime.create(database.settings(**overrides), clock=clock)
    await prepare_database(rt)
    app = create_app(rt, run_background=False)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "syncs", now=clock.now())
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://hookline.test") as http:
            api = ApiClient(http, key)
            await api.login()
            yield Setup(api, rt, clock, http)
            await drain()
    finally:
        await rt.db.dispose()


def flow_body(
    name: str = "invoices",
    *,
    execution: dict[str, Any] | None = None,
    triggers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "execution": execution or {"type": "code", "data": {"code": "print(1)"}},
        "triggers": triggers or [{"id": "trigger-1", "type": "event"}],
    }


async def new_consumer(api: ApiClient, name: str = "Bistro") -> str:
    response = await api.post("/consumers", json={"name": name})
    assert response.status_code == 200, response.text
    return response.json()["consumerid"]


async def new_sync(api: ApiClient, *flows: dict[str, Any], name: str = "Sales") -> dict[str, Any]:
    response = await api.post(
        "/syncs", json={"name": name, "connections": [{"one_api": 1}], "flows": list(flows)}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def enable(api: ApiClient, consumer_id: str, sync_id: str, flow_id: str, **body: Any) -> Any:
    return await api.post(
        f"/consumers/{consumer_id}/syncs/{sync_id}/flows/{flow_id}/enable", json=body
    )


async def flow_events(rt: Runtime, account_id: str | uuid.UUID) -> list[dict[str, Any]]:
    """Every ``account.flow.*`` body of the account, in order, checked against its schema."""
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(events.c.payload, events.c.event_type, events.c.consumer_id)
                .where(events.c.account_id == uuid.UUID(str(account_id)))
                .order_by(events.c.created_at, events.c.id)
            )
        ).all()
    bodies = []
    for row in rows:
        if not row.event_type.startswith("account.flow."):
            continue
        body = json.loads(row.payload)
        validate_body(body)
        assert str(row.consumer_id) == body["consumerid"]
        bodies.append(body)
    return bodies


def flow_event(
    api: ApiClient, event: str, consumer_id: str, created: datetime, **fields: Any
) -> dict[str, Any]:
    return {
        "accountid": api.account_id,
        "event": event,
        "consumerid": consumer_id,
        "created": int(created.timestamp()),
        **fields,
    }
