"""store/capabilities.py on both backends: what code outside store/ may rely on.

The delivery worker needs two of them: ``notifies_across_processes`` (open a LISTEN link for
wake-ups from other processes) and ``serves_several_processes`` (workers in several
processes heartbeat and take over a dead one's claims; with one process, its first worker
releases every claim a previous run left).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from hookline.store.capabilities import (
    database_file,
    keeps_data_in_files,
    notifies_across_processes,
    serves_several_processes,
    vacuums_incrementally,
)
from hookline.store.db import Database
from tests.conftest import Backend

EXPECTED = {
    #             files  processes  notifies  vacuums
    "sqlite": (True, False, False, True),
    "postgresql": (False, True, True, False),
}


async def test_capabilities_follow_the_backend(database: Backend) -> None:
    settings = database.settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url, schema=database.schema)
    try:
        answers = (
            keeps_data_in_files(db),
            serves_several_processes(db),
            notifies_across_processes(db),
            vacuums_incrementally(db),
        )
        assert answers == EXPECTED[database.kind]
        async with db.transaction() as conn:
            await conn.execute(text("SELECT 1"))
        path = database_file(db.url)
        assert (path is not None) == keeps_data_in_files(db)
        if path is not None:  # the data lives in that file, which now exists
            assert Path(path).is_file()
    finally:
        await db.dispose()
