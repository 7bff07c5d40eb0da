"""delivery_queue: drop the index on available_at alone

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 00:00:00

The claim takes each webhook's oldest due rows with ``webhook_id = … ORDER BY webhook_id,
available_at LIMIT k``, which ``ix_delivery_queue_webhook_id_available_at`` answers in k
steps. With ``ix_delivery_queue_available_at`` beside it, PostgreSQL's planner could walk the
queue in time order instead and filter on ``webhook_id``; it did so whenever its statistics
saw one webhook holding most of the queue (an account's backlog), and then each claim of
another webhook stepped over that whole backlog (bench.hostile's backlog case: 22 ms claims
over 100,000 queued rows). The earliest due time, the one thing the lone index served, is read
per webhook from the composite index (``store/queue.py``), and every write to the hottest
table maintains one index fewer.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_delivery_queue_available_at", table_name="delivery_queue")


def downgrade() -> None:
    op.create_index("ix_delivery_queue_available_at", "delivery_queue", ["available_at"])
