"""ui_revoked_sessions: a signed-out dashboard session stays signed out

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hookline.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_revoked_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", hookline.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_ui_revoked_sessions")),
    )
    with op.batch_alter_table("ui_revoked_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_ui_revoked_sessions_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ui_revoked_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_ui_revoked_sessions_expires_at")
    op.drop_table("ui_revoked_sessions")
