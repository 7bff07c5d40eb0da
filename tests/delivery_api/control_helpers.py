"""An API client and a delivery worker on one runtime whose clock tests move (issue 15)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from hookline.api.app import create_app
from hookline.bootstrap import prepare_database
from hookline.clock import FrozenClock
from hookline.delivery.worker import DeliveryWorker
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from tests.support import ApiClient

OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef0123").decode()


@dataclass
class Stack:
    runtime: Runtime
    clock: FrozenClock
    api: ApiClient

    async def advance(self, seconds: float) -> None:
        """Move the clock; the API token is issued again (its expiry follows the clock)."""
        self.clock.advance(seconds)
        await self.api.login()

    async def post_event(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.api.post("/events", json=body)
        assert response.status_code == 202, response.text
        return response.json()


@contextlib.asynccontextmanager
async def frozen_stack(database: Any, **settings: Any) -> AsyncIterator[Stack]:
    clock = FrozenClock()
    runtime = Runtime.create(database.settings(**settings), clock=clock)
    await prepare_database(runtime)
    app = create_app(runtime, run_background=False)
    try:
        async with runtime.db.transaction() as conn:
            key = await create_account(conn, "issue 15", now=clock.now())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hookline.test") as http:
            api = ApiClient(http, key)
            await api.login()
            yield Stack(runtime, clock, api)
    finally:
        await runtime.db.dispose()


@contextlib.asynccontextmanager
async def worker_of(runtime: Runtime) -> AsyncIterator[DeliveryWorker]:
    worker = DeliveryWorker(runtime)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
