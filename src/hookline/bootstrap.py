"""Bring a database to a usable state: schema migrations, then the built-in connector catalog."""

from __future__ import annotations

from hookline.platform.integrations import ensure_builtin_integrations
from hookline.runtime import Runtime
from hookline.store.migrate import upgrade


async def prepare_database(runtime: Runtime) -> None:
    await upgrade(runtime.db)
    async with runtime.db.transaction() as conn:
        await ensure_builtin_integrations(conn, now=runtime.clock.now())
