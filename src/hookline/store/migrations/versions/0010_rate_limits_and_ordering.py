"""webhooks: rate limit and ordering; queue ordering key; shared rate windows

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit_per_second", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("ordering", sa.String(length=16), nullable=True))
    with op.batch_alter_table("delivery_queue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ordering_key", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_delivery_queue_ordering",
        "delivery_queue",
        ["webhook_id", "ordering_key", "event_id"],
        unique=False,
        postgresql_where=sa.text("ordering_key IS NOT NULL"),
        sqlite_where=sa.text("ordering_key IS NOT NULL"),
    )
    op.create_table(
        "webhook_rate_windows",
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("next_free_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_rate_windows_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_webhook_rate_windows")),
    )


def downgrade() -> None:
    op.drop_table("webhook_rate_windows")
    op.drop_index("ix_delivery_queue_ordering", table_name="delivery_queue")
    with op.batch_alter_table("delivery_queue", schema=None) as batch_op:
        batch_op.drop_column("ordering_key")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_column("ordering")
        batch_op.drop_column("rate_limit_per_second")
