"""What code outside store/ may ask about the database it runs on: capabilities, never the
backend's name (a caller that branches on a name is SQL that belongs here)."""

from __future__ import annotations

from pathlib import Path

from hookline.store.db import Database


def keeps_data_in_files(db: Database) -> bool:
    """SQLite keeps the database in the data directory, which must exist before it opens."""
    return db.is_sqlite


def serves_several_processes(db: Database) -> bool:
    """PostgreSQL serves separate API and worker processes; SQLite has one writing process
    (``hookline serve`` runs the worker itself)."""
    return not db.is_sqlite


def notifies_across_processes(db: Database) -> bool:
    """PostgreSQL carries wake-ups between processes (LISTEN/NOTIFY); SQLite has one
    process, whose wake-ups stay in memory."""
    return not db.is_sqlite


def database_file(url: str) -> Path | None:
    """The file an embedded database's URL names; ``None`` for a database server."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(parsed.database or "")


def describe_database(url: str) -> str:
    """``sqlite /abs/path.db`` or ``postgresql database D on HOST:PORT as USER``: enough to
    tell databases apart, never the password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "the database of HOOKLINE_DATABASE_URL (not a valid URL)"
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite {parsed.database or ':memory:'}"
    user = f" as {parsed.username}" if parsed.username else ""
    return (
        f"{parsed.get_backend_name()} database {parsed.database or '(default)'} on "
        f"{parsed.host or 'localhost'}:{parsed.port or 5432}{user}"
    )


def vacuums_incrementally(db: Database) -> bool:
    """SQLite gives a purge's free pages back to the file system through incremental vacuum;
    PostgreSQL's autovacuum reclaims space by itself."""
    return db.is_sqlite
