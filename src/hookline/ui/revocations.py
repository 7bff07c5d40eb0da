"""Signed-out dashboard sessions: the cookie is stateless, so signing out also records its
session id until the moment the cookie would have expired anyway; a copy of the cookie is
then refused like a forged one."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import ui_revoked_sessions
from hookline.ui.session import Session


async def revoke(conn: AsyncConnection, session: Session, *, now: datetime) -> None:
    """Record ``session`` as signed out (and forget revocations whose cookies expired)."""
    await conn.execute(delete(ui_revoked_sessions).where(ui_revoked_sessions.c.expires_at < now))
    already = (await conn.execute(select(ui_revoked_sessions.c.session_id).where(
        ui_revoked_sessions.c.session_id == session.session_id))).first()
    if already is None:
        await conn.execute(insert(ui_revoked_sessions).values(
            session_id=session.session_id,
            expires_at=datetime.fromtimestamp(session.expires, UTC)))


async def is_revoked(conn: AsyncConnection, session_id: str) -> bool:
    return (await conn.execute(select(ui_revoked_sessions.c.session_id).where(
        ui_revoked_sessions.c.session_id == session_id))).first() is not None
