"""Signed-out dashboard sessions: the cookie is stateless, so signing out also records its
session id until the moment the cookie would have expired anyway; a copy of the cookie is
then refused like a forged one. A session also ends when its API key is revoked."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import api_keys, ui_revoked_sessions
from hookline.ui.session import Session


async def revoke(conn: AsyncConnection, session: Session, *, now: datetime) -> None:
    """Record ``session`` as signed out (and forget revocations whose cookies expired)."""
    await conn.execute(delete(ui_revoked_sessions).where(ui_revoked_sessions.c.expires_at < now))
    already = (
        await conn.execute(
            select(ui_revoked_sessions.c.session_id).where(
                ui_revoked_sessions.c.session_id == session.session_id
            )
        )
    ).first()
    if already is None:
        await conn.execute(
            insert(ui_revoked_sessions).values(
                session_id=session.session_id,
                expires_at=datetime.fromtimestamp(session.expires, UTC),
            )
        )


async def is_live(conn: AsyncConnection, session: Session) -> bool:
    """One query: the session was not signed out, and its API key was not revoked since."""
    signed_out = (
        select(ui_revoked_sessions.c.session_id)
        .where(ui_revoked_sessions.c.session_id == session.session_id)
        .exists()
    )
    return (
        await conn.execute(
            select(api_keys.c.id).where(
                api_keys.c.client_id == session.client_id,
                api_keys.c.account_id == session.account_id,
                ~signed_out,
            )
        )
    ).first() is not None
