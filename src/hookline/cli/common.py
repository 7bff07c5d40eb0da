"""What the database commands share: the ``--database-url`` option and one short-lived
runtime per command, disposed before the command returns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from hookline.runtime import Runtime

T = TypeVar("T")

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="Overrides HOOKLINE_DATABASE_URL.")
]


def runtime_for(database_url: str | None = None) -> Runtime:
    from hookline.config import Settings
    from hookline.runtime import Runtime

    overrides: dict[str, Any] = {"database_url": database_url} if database_url else {}
    return Runtime.create(Settings(**overrides))


def on_database(
    database_url: str | None, work: Callable[[Runtime], Awaitable[T]], *, migrate: bool = False
) -> T:
    """Run ``work`` against the database (migrated first when asked), then let it go."""
    from hookline.bootstrap import prepare_database

    runtime = runtime_for(database_url)

    async def run() -> T:
        try:
            if migrate:
                await prepare_database(runtime)
            return await work(runtime)
        finally:
            await runtime.db.dispose()

    return asyncio.run(run())
