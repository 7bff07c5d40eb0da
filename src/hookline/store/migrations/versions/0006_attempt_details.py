"""webhook_logs: each attempt's headers; indexes for health and a delivery's attempts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_headers", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("response_headers", sa.Text(), nullable=True))
    # Same number of indexes on the hot insert path: the webhook's index gains ``outcome``.
    op.create_index(
        "ix_webhook_logs_webhook_created_outcome",
        "webhook_logs",
        ["webhook_id", "created_at", "outcome"],
        unique=False,
    )
    op.drop_index("ix_webhook_logs_webhook_created", table_name="webhook_logs")
    # The attempts of one delivery (an event's page groups them by webhook).
    op.create_index("ix_webhook_logs_delivery", "webhook_logs", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_logs_delivery", table_name="webhook_logs")
    op.create_index(
        "ix_webhook_logs_webhook_created",
        "webhook_logs",
        ["webhook_id", "created_at"],
        unique=False,
    )
    op.drop_index("ix_webhook_logs_webhook_created_outcome", table_name="webhook_logs")
    with op.batch_alter_table("webhook_logs", schema=None) as batch_op:
        batch_op.drop_column("response_headers")
        batch_op.drop_column("request_headers")
