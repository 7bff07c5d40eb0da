"""What code outside store/ may ask about the database it runs on: capabilities, never the
backend's name (a caller that branches on a name is SQL that belongs here)."""

from __future__ import annotations

from hookline.store.db import Database


def keeps_data_in_files(db: Database) -> bool:
    """SQLite keeps the database in the data directory, which must exist before it opens."""
    return db.is_sqlite


def serves_several_processes(db: Database) -> bool:
    """PostgreSQL serves separate API and worker processes; SQLite has one writing process
    (``hookline serve`` runs the worker itself)."""
    return not db.is_sqlite
