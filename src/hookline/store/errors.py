"""Driver errors translated at the store's edge into hookline's own exceptions.

Code above ``store/`` never catches a driver's exception type (SQLAlchemy's
``IntegrityError``, asyncpg's ``UniqueViolationError``, ``sqlite3.IntegrityError``): a
constraint that refuses a write raises :class:`hookline.errors.DuplicateKey` (unique index,
primary key), :class:`hookline.errors.MissingReference` (foreign key) or their base
:class:`hookline.errors.ConstraintViolation`, whichever way the statement reached the
database: through the SQLAlchemy pool (:func:`translate_engine_errors`, installed on every
engine), a plain asyncpg connection or the inline SQLite connection (:func:`translated`).
Other driver errors keep the SQLAlchemy types the API maps to 503 (database away) or 500.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from hookline.errors import ConstraintViolation, DuplicateKey, MissingReference

# SQLSTATE class 23: integrity constraint violation (asyncpg exceptions and SQLAlchemy's
# asyncpg adapter both carry ``sqlstate``).
_PG_KINDS: dict[str, type[ConstraintViolation]] = {"23505": DuplicateKey, "23503": MissingReference}
_SQLITE_KINDS: dict[str, type[ConstraintViolation]] = {
    "SQLITE_CONSTRAINT_UNIQUE": DuplicateKey,
    "SQLITE_CONSTRAINT_PRIMARYKEY": DuplicateKey,
    "SQLITE_CONSTRAINT_FOREIGNKEY": MissingReference,
}


def constraint_violation(error: BaseException) -> ConstraintViolation | None:
    """hookline's exception for a driver's constraint error, or ``None`` for any other."""
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("23"):
        return _PG_KINDS.get(sqlstate, ConstraintViolation)(str(error))
    if isinstance(error, sqlite3.IntegrityError):
        name = getattr(error, "sqlite_errorname", "")
        return _SQLITE_KINDS.get(name, ConstraintViolation)(str(error))
    return None


def translated(error: BaseException, statement: str) -> Exception:
    """What the store raises for ``error`` from a driver called directly (not through the
    pool): a constraint violation as hookline's exception, a sqlite3 error as the SQLAlchemy
    exception the pool would raise, anything else as it is. Raise it ``from error``."""
    violation = constraint_violation(error)
    if violation is not None:
        return violation
    if isinstance(error, sqlite3.Error):
        return DBAPIError.instance(statement, None, error, sqlite3.Error)
    return error if isinstance(error, Exception) else RuntimeError(str(error))


def translate_engine_errors(engine: AsyncEngine) -> None:
    """Make every statement run through ``engine`` raise hookline's constraint exceptions
    (SQLAlchemy rolls back and cleans up as for its own exception type)."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _translate(context: ExceptionContext) -> None:
        violation = constraint_violation(context.original_exception)
        if violation is not None:
            raise violation
