"""An authenticated in-process client on a runtime with custom settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from hookline.api.app import create_app
from hookline.bootstrap import prepare_database
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from tests.support import ApiClient


@asynccontextmanager
async def app_client(database: Any, **settings: Any) -> AsyncIterator[ApiClient]:
    runtime = Runtime.create(database.settings(**settings))
    await prepare_database(runtime)
    app = create_app(runtime, run_background=False)
    try:
        async with runtime.db.transaction() as conn:
            key = await create_account(conn, "custom", now=runtime.clock.now())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hookline.test"
        ) as http:
            client = ApiClient(http, key)
            await client.login()
            yield client
    finally:
        await runtime.db.dispose()
