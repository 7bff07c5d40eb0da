"""Schema migrations (Alembic), run programmatically against SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from hookline.store.db import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    if db.schema:
        async with db.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            # Several processes may start at once; one migrates, the others wait and find
            # nothing left to do. The lock ends with the transaction.
            await conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        await conn.run_sync(_run, "upgrade", revision)


async def current(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )


def _run(sync_conn: Any, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = sync_conn
    getattr(command, action)(config, revision)
