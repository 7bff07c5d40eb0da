"""delivery scheduling: fair claim index, shared circuit breakers, worker heartbeats

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hookline.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_queue", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_queue_webhook_id_available_at",
            ["webhook_id", "available_at"],
            unique=False,
        )
    op.create_table(
        "delivery_destinations",
        sa.Column("destination", sa.String(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", hookline.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("open_until", hookline.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cooldown_seconds", sa.Float(), nullable=False),
        sa.Column("probe_owner", sa.String(length=64), nullable=True),
        sa.Column("probe_until", hookline.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("destination", name=op.f("pk_delivery_destinations")),
    )
    op.create_table(
        "delivery_workers",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("heartbeat_at", hookline.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_delivery_workers")),
    )


def downgrade() -> None:
    op.drop_table("delivery_workers")
    op.drop_table("delivery_destinations")
    with op.batch_alter_table("delivery_queue", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_queue_webhook_id_available_at")
